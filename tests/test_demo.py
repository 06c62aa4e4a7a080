from rich.console import Console

from stream_iqa.cli import main
from stream_iqa.demo import run_demo
from stream_iqa.scoring import load_scorer
from stream_iqa.settings import Settings


def test_demo_scores_every_photo_clean_and_degraded(student_checkpoint):
    scorer = load_scorer(Settings.load(model={"checkpoint": student_checkpoint, "device": "cpu"}, depth={"source": "prior"}))
    rows = run_demo(scorer, console=Console(file=open("/dev/null", "w")))
    assert len(rows) == 5 * 4
    assert {r["made"] for r in rows} == {"clean", "low_light", "haze", "flare"}
    assert all(0 <= r["quality"] <= 100 for r in rows)


def test_demo_command_with_a_missing_model_names_the_setting(tmp_path, capsys):
    assert main(["demo", "--checkpoint", str(tmp_path / "none.safetensors")]) == 3
    assert "STREAM_IQA_MODEL__CHECKPOINT" in capsys.readouterr().err
