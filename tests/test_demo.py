import io

import pytest
import torch
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


@pytest.mark.slow
def test_kafka_demo_answers_every_input_through_a_real_broker():
    """The README's main job, with the shipped model: every input gets its report or error record."""
    from stream_iqa.service.demo import run_kafka_demo

    settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
    out = io.StringIO()
    threads = torch.get_num_threads()  # the service splits them between concurrent clips; give them back after
    try:
        result = run_kafka_demo(settings, console=Console(file=out, width=200), timeout_s=300,
                                scorer=load_scorer(settings))
    finally:
        torch.set_num_threads(threads)
    assert result.complete and len(result.reports) == 4 and [e["code"] for e in result.errors] == ["undecodable_video"]
    found = {r["clip_id"]: {s["type"] for s in r["segments"]} for r in result.reports}
    assert found == {"cam1-000": set(), "cam1-001": {"low_light"}, "cam2-000": {"haze"}, "cam2-001": {"low_light"}}
    assert all(r["source"]["topic"] == settings.kafka.input_topic for r in result.reports)
    assert "4 reports and 1 error record for 5 inputs" in out.getvalue()


@pytest.mark.slow
def test_the_demo_on_a_terminal_shows_its_result_not_the_services_log(monkeypatch, capsys):
    """On a terminal the service's internals (broker, group, every clip) are turned down to warnings and a progress
    line stands in for them; off a terminal (CI, pipes) every log line still shows."""
    import stream_iqa.cli as cli

    threads = torch.get_num_threads()
    monkeypatch.setattr(cli, "_terminal", lambda: True)
    try:
        assert main(["demo", "--device", "cpu", "--depth", "prior"]) == 0
    finally:
        torch.set_num_threads(threads)
        from stream_iqa.logging import configure_logging

        configure_logging()
    out, err = capsys.readouterr()
    assert "4 reports and 1 error record for 5 inputs" in out and "one report or error record per input" in out
    for internal in ("broker started", "partitions assigned", "clip started", "clip reported"):
        assert internal not in err, internal
