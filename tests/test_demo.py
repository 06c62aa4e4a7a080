import io

import pytest
import torch
from rich.console import Console

from stream_iqa.cli import main
from stream_iqa.photo_demo import run_demo
from stream_iqa.model.scorer import load_scorer
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


@pytest.mark.slow
def test_kafka_demo_answers_every_input_through_a_real_broker():
    """The README's main job, with the shipped model: every input gets its report or error record."""
    from stream_iqa.service.kafka_demo import run_kafka_demo

    settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
    out = io.StringIO()
    threads = torch.get_num_threads()  # the service splits them between concurrent clips; give them back after
    try:
        result = run_kafka_demo(settings, console=Console(file=out, width=200), timeout_s=300,
                                scorer=load_scorer(settings), progress=True)
    finally:
        torch.set_num_threads(threads)
    assert result.complete and len(result.reports) == 4 and [e["code"] for e in result.errors] == ["undecodable_video"]
    found = {r["clip_id"]: {s["type"] for s in r["segments"]} for r in result.reports}
    assert found == {"cam1-000": set(), "cam1-001": {"low_light"}, "cam2-000": {"haze"}, "cam2-001": {"low_light"}}
    assert all(r["source"]["topic"] == settings.kafka.input_topic for r in result.reports)
    assert "4 reports and 1 error record for 5 inputs" in out.getvalue()


def test_the_demo_on_a_terminal_turns_the_services_log_down_to_warnings(monkeypatch, capsys, student_checkpoint):
    """On a terminal the service's internals (broker, group, every clip) are turned down to warnings and a progress
    line stands in for them; off a terminal (CI, pipes) every log line still shows. The demo itself is stood in for
    by one that logs like the service (the real one runs in the test above)."""
    import stream_iqa.cli as cli
    import stream_iqa.service.kafka_demo as demo
    from stream_iqa.log import configure_logging, get_logger

    seen = {}

    def fake_demo(settings, scorer=None, timeout_s=0.0, progress=False):
        seen["progress"] = progress
        get_logger("stream_iqa.service.app").info("clip started")
        get_logger("stream_iqa.service.app").warning("clip failed")
        return demo.DemoResult(inputs=[], seconds=0.0)

    monkeypatch.setattr(demo, "run_kafka_demo", fake_demo)
    args = ["demo", "--checkpoint", str(student_checkpoint), "--device", "cpu", "--depth", "prior"]
    try:
        for terminal, verbose in ((True, False), (True, True), (False, False)):
            monkeypatch.setattr(cli, "_terminal", lambda: terminal)
            assert main(args + (["--verbose"] if verbose else [])) == 0
            err = capsys.readouterr().err
            quiet = terminal and not verbose
            assert seen["progress"] is quiet and ("clip started" in err) is not quiet and "clip failed" in err
    finally:
        configure_logging()
