"""`stream-iqa bench` end to end at --quick sizes: every section runs, the record is complete (no timing asserted)."""

import json
import math

import pytest

from stream_iqa.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    md, js = d / "BENCHMARKS.md", d / "bench.json"
    md.write_text("# Benchmarks\n")
    rc = main(["bench", "--quick", "--append", str(md), "--json", str(js)])
    return rc, md.read_text(), json.loads(js.read_text())


def test_every_section_runs_and_is_appended_with_machine_and_command(quick_run):
    rc, text, _ = quick_run
    assert rc == 0
    assert text.startswith("# Benchmarks\n")  # appended, not overwritten
    assert "stream-iqa bench --quick --append" in text and "Machine: " in text and "torch " in text
    for title in ("Decode floor vs replay", "Teacher vs student", "Depth on every frame vs reused",
                  "Concurrent streams through one engine"):
        assert title in text
    assert text.count("peak RSS of this section's process") == 4


def test_ratios_are_measured_numbers(quick_run):
    _, _, data = quick_run
    decode, models, depth, streams = data["sections"]
    ratios = {row[0]: float(row[3]) for row in decode["rows"]}
    assert ratios["decode floor (every frame)"] == 1.0 and ratios["replay, fps 2 (default)"] > 1.0
    assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    eager = [r for r in models["rows"] if r[1] == "eager, no_grad (unoptimised)"]
    assert eager and eager[0][4] == "1.00"
    assert any(r[1].startswith("ONNX Runtime fp32") for r in models["rows"])
    every, reused = depth["rows"][0], depth["rows"][1]
    assert every[2].endswith("/" + every[2].split("/")[1]) and int(reused[2].split("/")[0]) < int(every[2].split("/")[0])
    assert [r[0] for r in streams["rows"]] == [1, 2] and all(float(r[4]) > 0 for r in streams["rows"])
    assert all(s["peak_rss_mb"] > 100 for s in data["sections"])  # a child process with torch loaded


@pytest.mark.parametrize("argv, code", [(["--sections", "decode,nonsense"], 2),
                                        (["--sections", "decode", "--clip", "/nonexistent.mp4"], 3)])
def test_bad_arguments_are_refused_before_anything_runs(argv, code, capsys):
    assert main(["bench", "--quick", *argv]) == code
    assert "stream-iqa bench:" in capsys.readouterr().err


def test_model_speed_compares_against_a_baseline_checkpoint(student_checkpoint, capsys):
    from stream_iqa.bench.model_speed import main as model_speed

    model_speed(["--checkpoint", str(student_checkpoint), "--baseline", str(student_checkpoint), "--rounds", "1",
                 "--batch", "1", "--teacher-crops", "1"])
    out = capsys.readouterr().out
    assert "| baseline student score, batch 1 |" in out and "the baseline's frames/s at batch 1" in out
