import json
import math
from pathlib import Path
from typing import get_origin

import pytest

from stream_iqa.errors import ConfigError
from stream_iqa.settings import Settings, unknown_variables


def test_defaults_point_at_the_shipped_model():
    s = Settings.load()
    assert s.model.name == "dgiqa-lite"
    assert s.model.checkpoint.name == "model.safetensors"
    assert s.depth.source == "auto"


def test_env_overrides_yaml_and_yaml_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  device: cpu\n  threads: 3\ndepth:\n  source: prior\n")
    monkeypatch.setenv("STREAM_IQA_MODEL__THREADS", "1")
    s = Settings.load(config=cfg)
    assert s.model.device == "cpu" and s.model.threads == 1 and s.depth.source == "prior"
    monkeypatch.setenv("STREAM_IQA_CONFIG", str(cfg))
    assert Settings.load().depth.source == "prior"


def test_unknown_or_invalid_settings_are_refused(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("modle:\n  device: cpu\n")
    with pytest.raises(ConfigError, match="^modle: Extra inputs are not permitted$"):
        Settings.load(config=cfg)
    with pytest.raises(ConfigError, match="STREAM_IQA_CONFIG"):
        Settings.load(config=tmp_path / "absent.yaml")
    cfg.write_text("model:\n  precision: fp8\n")
    with pytest.raises(ConfigError, match="^model.precision: Input should be 'fp32', 'fp16' or 'bf16'$"):
        Settings.load(config=cfg)
    cfg.write_text("- model\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        Settings.load(config=cfg)


def _sections() -> list[str]:
    from stream_iqa.settings import _section_type

    return [name for name, field in Settings.model_fields.items() if _section_type(field.annotation) is not None]


@pytest.mark.parametrize("section", _sections())
def test_a_mistyped_name_in_any_section_is_refused_not_left_at_its_default(section: str):
    # A typo such as video.max_pixel (for max_pixels) once left the decode limit at its default without a word.
    with pytest.raises(ConfigError, match=rf"^{section}\.no_such_setting: Extra inputs are not permitted$"):
        Settings.load(**{section: {"no_such_setting": 1}})


def test_mistyped_limits_are_refused_from_yaml_and_the_environment(tmp_path: Path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("video:\n  max_pixel: 100\n")
    with pytest.raises(ConfigError, match="^video.max_pixel: Extra inputs are not permitted$"):
        Settings.load(config=cfg)
    monkeypatch.setenv("STREAM_IQA_ENGINE__BATCHSIZE", "1")
    with pytest.raises(ConfigError, match="^engine.batchsize: Extra inputs are not permitted$"):
        Settings.load()


def test_malformed_yaml_is_one_config_error_with_its_position(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  device: cpu\n   threads: 2\n")
    with pytest.raises(ConfigError) as info:
        Settings.load(config=cfg)
    assert str(info.value).startswith(f"config file {cfg} is not valid YAML: ") and "line 3" in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_are_validated_and_merged_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """How the CLI applies its flags: other fields of the same section keep their env and YAML values."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  threads: 3\n  precision: bf16\nvideo:\n  every_n: 4\n  sampling: every_n\n")
    monkeypatch.setenv("STREAM_IQA_MODEL__THREADS", "1")
    monkeypatch.setenv("STREAM_IQA_VIDEO__MAX_PIXELS", "1000")
    s = Settings.load(config=cfg, model={"device": "cpu"}, video={"fps": 1.5, "sampling": "fps"})
    assert (s.model.device, s.model.threads, s.model.precision) == ("cpu", 1, "bf16")
    assert (s.video.fps, s.video.sampling, s.video.every_n, s.video.max_pixels) == (1.5, "fps", 4, 1000)


@pytest.mark.parametrize("fps, message", [(0, "greater than 0"), (-1, "greater than 0"), (math.nan, "finite number"),
                                          (math.inf, "finite number")])
def test_invalid_overrides_name_the_setting(fps, message):
    with pytest.raises(ConfigError, match=f"^video.fps: Input should be .*{message}"):
        Settings.load(video={"fps": fps})


def test_device_and_model_combinations_that_cannot_load_are_config_errors():
    with pytest.raises(ConfigError, match="^model.device: 'gpu' is not a device"):
        Settings.load(model={"device": "gpu"})
    assert Settings.load(model={"device": "cuda:1"}).model.device == "cuda:1"  # CUDA's presence: checked at load
    with pytest.raises(ConfigError, match="needs the official DGIQA .pth"):
        Settings.load(model={"name": "dgiqa"})
    with pytest.raises(ConfigError, match="onnxruntime backend runs an exported dgiqa-lite"):
        Settings.load(model={"name": "dgiqa", "checkpoint": None, "backend": "onnxruntime"})
    with pytest.raises(ConfigError, match="^depth: .*STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT"):
        Settings.load(depth={"source": "depth-anything"})


def test_log_level_is_validated_case_insensitively(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAM_IQA_LOG__LEVEL", "debug")
    assert Settings.load().log.level == "DEBUG"
    monkeypatch.setenv("STREAM_IQA_LOG__LEVEL", "verbose")
    with pytest.raises(ConfigError, match="^log.level: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRIT"):
        Settings.load()


@pytest.mark.parametrize("servers", ["kafka", "host:notaport", "", " , ", ":9092", "kafka:", "kafka:0", "kafka:65536",
                                     "::1:9092", "[not-ipv6]:9092", "a:1,kafka", "bad host:9092"])
def test_unparseable_bootstrap_addresses_are_config_errors(servers, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAM_IQA_KAFKA__BOOTSTRAP_SERVERS", servers)
    with pytest.raises(ConfigError, match="^kafka.bootstrap_servers: "):
        Settings.load()


@pytest.mark.parametrize("servers", ["kafka:9092", "127.0.0.1:9092", "[::1]:9092", "[fe80::1]:19092",
                                     "kafka-0.kafka.svc:9093, kafka-1.kafka.svc:9093", "my_broker:9092"])
def test_valid_bootstrap_addresses_pass(servers):
    assert Settings.load(kafka={"bootstrap_servers": servers}).kafka.bootstrap_servers == servers


@pytest.mark.parametrize("value", ["/data/clips", " /data/clips , /more ", '["/data/clips"]',
                                   '["/data/clips", "/more"]'])
def test_allowed_roots_take_a_comma_separated_or_json_list(value, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAM_IQA_SERVICE__ALLOWED_ROOTS", value)
    expected = [Path("/data/clips"), Path("/more")] if "more" in value else [Path("/data/clips")]
    assert Settings.load().service.allowed_roots == expected


def test_every_list_setting_takes_comma_separated_values(monkeypatch: pytest.MonkeyPatch):
    """Not just allowed_roots: any list in the tree, from the environment or YAML, in either form."""
    defaults = Settings.load()
    sections = {name: field.annotation for name, field in Settings.model_fields.items()
                if hasattr(field.annotation, "model_fields")}
    lists = [(section, name) for section, model in sections.items()
             for name, sub in model.model_fields.items() if get_origin(sub.annotation) is list]
    assert ("service", "allowed_hosts") in lists
    for section, name in lists:
        values = [str(v) for v in getattr(getattr(defaults, section), name)] or ["a.example", "b.example"]
        monkeypatch.setenv(f"STREAM_IQA_{section.upper()}__{name.upper()}", ",".join(values))
        assert [str(v) for v in getattr(getattr(Settings.load(), section), name)] == values, (section, name)
        monkeypatch.setenv(f"STREAM_IQA_{section.upper()}__{name.upper()}", "")
        assert getattr(getattr(Settings.load(), section), name) == [], (section, name)
    with pytest.raises(ConfigError, match="^service.allowed_hosts: not a JSON list"):
        Settings.load(service={"allowed_hosts": '["a", '})


def test_unparseable_environment_json_is_a_config_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAM_IQA_TEMPORAL__ENTER", "haze=0.5")
    with pytest.raises(ConfigError, match='"temporal"'):
        Settings.load()


def test_unknown_variables_are_named_with_the_closest_valid_name():
    env = {
        "STREAM_IQA_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",  # one underscore
        "STREAM_IQA_MODEL__DEVCE": "cpu",
        "STREAM_IQA_SERVICE__ALLOWED_ROOT": "/data",
        "STREAM_IQA_NOTHING_LIKE_IT": "1",
        "STREAM_IQA_CONFIG": "c.yaml", "STREAM_IQA_MODEL": "{}", "STREAM_IQA_DEPTH_REUSE__ENABLED": "false",
        "stream_iqa_log__level": "info", "STREAM_IQA_TEMPORAL__ENTER__HAZE": "0.5", "OTHER_VARIABLE": "x",
    }
    assert unknown_variables(env) == [
        ("STREAM_IQA_KAFKA_BOOTSTRAP_SERVERS", "STREAM_IQA_KAFKA__BOOTSTRAP_SERVERS"),
        ("STREAM_IQA_MODEL__DEVCE", "STREAM_IQA_MODEL__DEVICE"),
        ("STREAM_IQA_SERVICE__ALLOWED_ROOT", "STREAM_IQA_SERVICE__ALLOWED_ROOTS"),
        ("STREAM_IQA_NOTHING_LIKE_IT", None),
    ]


def test_every_setting_variable_is_known():
    env = {"STREAM_IQA_CONFIG": "c.yaml"}
    for section, field in Settings.model_fields.items():
        env[f"STREAM_IQA_{section.upper()}"] = "{}"
        for name in getattr(field.annotation, "model_fields", {}):
            env[f"STREAM_IQA_{section.upper()}__{name.upper()}"] = "x"
    assert unknown_variables(env) == []


def test_loading_warns_about_an_unknown_variable(monkeypatch: pytest.MonkeyPatch, capsys):
    from stream_iqa.log import configure_logging

    configure_logging("INFO", "json")
    monkeypatch.setenv("STREAM_IQA_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("STREAM_IQA_MODEL__DEVICE", "cpu")
    assert Settings.load().kafka.bootstrap_servers == "127.0.0.1:9092"  # ignored, hence the warning
    (line,) = capsys.readouterr().err.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["variable"] == "STREAM_IQA_KAFKA_BOOTSTRAP_SERVERS"
    assert record["did_you_mean"] == "STREAM_IQA_KAFKA__BOOTSTRAP_SERVERS"


def test_masked_dump_is_plain_data():
    dumped = Settings.load().masked()
    assert isinstance(dumped["model"]["checkpoint"], str)


def test_configs_default_yaml_lists_every_setting_at_its_default():
    """configs/default.yaml documents the whole tree; it must not drift from the code."""
    import yaml

    from stream_iqa.settings import REPO_ROOT

    documented = yaml.safe_load((REPO_ROOT / "configs" / "default.yaml").read_text())
    actual = Settings.load().masked()
    actual.pop("config")

    def keys(d: dict, prefix: str = "") -> set[str]:
        out: set[str] = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
        return out

    paths = {"model.checkpoint", "data.root", "data.cache_dir"}  # commented out: defaults resolve from the repo
    assert keys(documented) == keys(actual) - paths
    loaded = Settings.load(config=REPO_ROOT / "configs" / "default.yaml")
    assert loaded.video == Settings.load().video and loaded.temporal == Settings.load().temporal
