import json
from pathlib import Path

import cv2
import pytest

from stream_iqa.cli import main


@pytest.fixture()
def image_dir(tmp_path: Path, photos) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("coffee", "chelsea"):
        cv2.imwrite(str(d / f"{name}.png"), cv2.cvtColor(photos[name], cv2.COLOR_RGB2BGR))
    return d


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_score_json_lines_in_input_order(image_dir, student_checkpoint, capsys):
    code = main(["score", "--json", "--checkpoint", str(student_checkpoint), "--depth", "prior",
                 str(image_dir / "coffee.png"), str(image_dir)])
    lines = _json_lines(capsys.readouterr().out)
    assert code == 0
    assert [Path(r["path"]).name for r in lines] == ["coffee.png", "chelsea.png", "coffee.png"]
    for r in lines:
        assert 0 <= r["quality"] <= 100
        assert set(r["distortions"]) == {"low_light", "haze", "flare"}
    assert lines[0]["quality"] == lines[2]["quality"]  # same image, same score


def test_score_says_which_flags_fired_at_the_models_thresholds(image_dir, capsys):
    """A caller must not need model.json to read a score: each line carries the flags decided at the shipped model's
    thresholds."""
    from stream_iqa.nn.registry import create_model
    from stream_iqa.schema import ImageScore
    from stream_iqa.settings import DEFAULT_CHECKPOINT

    thresholds = create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT).flag_thresholds
    # darken one photo hard: low light must fire there and nowhere else it was not already firing
    img = cv2.imread(str(image_dir / "coffee.png"))
    cv2.imwrite(str(image_dir / "dark.png"), (img * 0.04).astype("uint8"))
    assert main(["score", "--json", "--depth", "prior", str(image_dir)]) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert len(lines) == 3
    for r in lines:
        score = ImageScore.model_validate(r)  # the contract parses its own output
        assert r["schema"] == "stream-iqa/image-score/1"
        assert score.flags == {k: p >= thresholds[k] for k, p in r["distortions"].items()}
    dark = {Path(r["path"]).name: r["flags"]["low_light"] for r in lines}
    assert dark == {"chelsea.png": False, "coffee.png": False, "dark.png": True}, lines


def test_unreadable_image_gives_an_error_line_and_exit_3(image_dir, student_checkpoint, capsys, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    code = main(["score", "--json", "--checkpoint", str(student_checkpoint), "--depth", "prior",
                 str(fake), str(tmp_path / "absent.jpg"), str(image_dir / "coffee.png")])
    lines = _json_lines(capsys.readouterr().out)
    assert code == 3
    assert "cannot decode" in lines[0]["error"] and "quality" not in lines[0] and "flags" not in lines[0]
    assert "no such file" in lines[1]["error"]
    assert "quality" in lines[2]


def test_missing_checkpoint_is_one_line_naming_the_setting(image_dir, tmp_path, capsys):
    code = main(["score", "--checkpoint", str(tmp_path / "nope.safetensors"), str(image_dir)])
    err = capsys.readouterr().err
    assert code == 3
    assert "STREAM_IQA_MODEL__CHECKPOINT" in err and "Traceback" not in err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["score"])
    assert exc.value.code == 2


def test_config_prints_effective_settings(capsys, monkeypatch):
    monkeypatch.setenv("STREAM_IQA_MODEL__DEVICE", "cpu")
    assert main(["config"]) == 0
    assert "device: cpu" in capsys.readouterr().out


def test_depth_source_other_than_the_trained_one_is_logged(student_checkpoint, monkeypatch, capsys):
    from stream_iqa.log import configure_logging
    from stream_iqa.model.scorer import load_scorer
    from stream_iqa.settings import Settings

    configure_logging("INFO", "json")
    monkeypatch.setattr("stream_iqa.depth.PriorDepth.name", "another-source")
    load_scorer(Settings.load(model={"checkpoint": student_checkpoint, "device": "cpu"}, depth={"source": "prior"}))
    err = capsys.readouterr().err
    assert "depth source differs from training" in err and "STREAM_IQA_DEPTH__SOURCE" in err
