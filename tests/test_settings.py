from pathlib import Path

import pytest
from pydantic import ValidationError

from stream_iqa.settings import Settings


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
    with pytest.raises(ValidationError):
        Settings.load(config=cfg)
    with pytest.raises(FileNotFoundError, match="STREAM_IQA_CONFIG"):
        Settings.load(config=tmp_path / "absent.yaml")
    cfg.write_text("model:\n  precision: fp8\n")
    with pytest.raises(ValidationError):
        Settings.load(config=cfg)


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
