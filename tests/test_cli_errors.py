"""Every failure of the command line is one line on stderr with its documented exit code: 2 for bad arguments or
configuration, 3 for input that cannot be read and output that cannot be written, and 1 with a traceback for bugs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stream_iqa.synthesis.clips import ClipSpec, build_clip
from stream_iqa.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_clip(ClipSpec(scenes=["coffee"], scene_s=1.0), tmp_path_factory.mktemp("clip") / "coffee.mp4")


@pytest.fixture()
def no_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if replay gets as far as loading the model: these errors must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the command line was already known to fail")

    monkeypatch.setattr("stream_iqa.pipeline.Pipeline", refuse)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, for the real exit status and stderr (the STREAM_IQA_* environment is cleared by
    conftest's fixture, and the child inherits that)."""
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "stream_iqa.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("fps, message", [("0", "greater than 0"), ("-1", "greater than 0"), ("nan", "finite")])
def test_bad_fps_is_a_configuration_error(clip, capsys, no_analysis, fps, message):
    assert main(["replay", "--depth", "prior", "--fps", fps, str(clip)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("stream-iqa replay: video.fps: ") and message in line


def test_bad_fps_exits_2_with_one_line_in_a_real_process(clip):
    result = _run("replay", "--depth", "prior", "--fps", "0", str(clip))
    assert result.returncode == 2 and result.stdout == ""
    assert _one_line(result.stderr) == "stream-iqa replay: video.fps: Input should be greater than 0"


def test_unknown_device_and_model_are_configuration_errors(clip, capsys, no_analysis):
    assert main(["replay", "--device", "gpu", str(clip)]) == 2
    assert "model.device: 'gpu' is not a device" in _one_line(capsys.readouterr().err)
    assert main(["replay", "--model", "nope", str(clip)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "model.name: unknown model 'nope'" in line and "dgiqa-lite" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_configuration_error(clip, capsys, no_analysis, monkeypatch):
    assert main(["replay", "--device", "cuda", str(clip)]) == 2
    assert "CUDA is not available" in _one_line(capsys.readouterr().err)
    monkeypatch.setenv("STREAM_IQA_MODEL__DEVICE", "cuda:0")
    assert main(["score", "photo.jpg"]) == 2
    assert "model.device" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("via", ["flag", "env"])
def test_malformed_yaml_is_a_configuration_error(tmp_path, capsys, monkeypatch, via):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  device: [cpu\n")
    if via == "env":
        monkeypatch.setenv("STREAM_IQA_CONFIG", str(config))
    assert main(["config", *(["--config", str(config)] if via == "flag" else [])]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"config file {config} is not valid YAML" in line and "line 3" in line


def test_bootstrap_flag_is_validated_before_the_service_starts(capsys, monkeypatch):
    started = []
    monkeypatch.setattr("stream_iqa.service.app.Service", lambda settings: started.append(settings))
    assert main(["serve", "--device", "cpu", "--bootstrap-servers", "kafka"]) == 2
    assert "kafka.bootstrap_servers: 'kafka' is not host:port" in _one_line(capsys.readouterr().err)
    assert started == []


def test_dump_under_a_regular_file_fails_before_the_analysis(clip, tmp_path, capsys, no_analysis):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    dump = blocker / "frames" / "f.jsonl"
    assert main(["replay", "--depth", "prior", "--dump", str(dump), str(clip)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _one_line(captured.err) == f"stream-iqa replay: cannot write --dump {dump}: {blocker} is not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the regular-file test covers it")
def test_dump_into_a_read_only_folder_fails_before_the_analysis(clip, tmp_path, capsys, no_analysis):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["replay", "--depth", "prior", "--dump", str(folder / "f.csv"), str(clip)]) == 3
    finally:
        folder.chmod(0o700)
    assert "cannot write --dump" in _one_line(capsys.readouterr().err)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to simulate a full disk")
def test_full_disk_after_the_analysis_still_prints_the_report(clip, tmp_path, capsys):
    dump = tmp_path / "frames.jsonl"
    dump.symlink_to("/dev/full")  # passes the check (it can be opened), every write raises ENOSPC
    assert main(["replay", "--json", "--depth", "prior", "--dump", str(dump), str(clip)]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out)["schema"] == "stream-iqa/clip-report/1"
    line = _one_line(captured.err)
    assert line.startswith(f"stream-iqa replay: cannot write --dump {dump}") and "No space left on device" in line


def test_failed_write_after_the_analysis_still_prints_the_summary(clip, tmp_path, capsys, monkeypatch):
    def lose_the_disk(records, path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("stream_iqa.dumps.write_frames", lose_the_disk)
    dump = tmp_path / "frames.csv"
    assert main(["replay", "--depth", "prior", "--dump", str(dump), str(clip)]) == 3
    captured = capsys.readouterr()
    assert "coffee.mp4" in captured.out and "frames analysed" in captured.out
    assert _one_line(captured.err) == f"stream-iqa replay: cannot write --dump {dump}: Input/output error"


def test_usage_errors_are_one_line(clip, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--dump", "frames.txt", str(clip)])
    assert exc.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "--dump" in line and "needs a .jsonl or .csv file, got 'frames.txt'" in line


def test_bad_checkpoint_and_data_files_exit_3(tmp_path, capsys):
    checkpoint = tmp_path / "broken.safetensors"
    checkpoint.write_bytes(b"")
    checkpoint.with_suffix(".json").write_text("{not json")
    assert main(["score", "--device", "cpu", "--checkpoint", str(checkpoint), "photo.jpg"]) == 3
    assert "is not valid JSON" in _one_line(capsys.readouterr().err)
    table = tmp_path / "mos.csv"
    table.write_text("image,mos\na.jpg,not-a-number\n")
    assert main(["eval", "--device", "cpu", "--depth", "prior", "csv", str(table)]) == 3
    assert "not a number" in _one_line(capsys.readouterr().err)


def test_a_depth_anything_file_of_another_layout_exits_3_naming_it(tmp_path, capsys, monkeypatch):
    wrong = tmp_path / "not_depth_anything.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    monkeypatch.setenv("STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT", str(wrong))
    assert main(["score", "--device", "cpu", "--depth", "depth-anything", "photo.jpg"]) == 3
    line = _one_line(capsys.readouterr().err)
    assert "not_depth_anything.pth" in line and "not a Depth Anything ViT-S state dict" in line


def test_bad_training_recipe_is_a_configuration_error(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochz: 3\n")
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "unknown training settings ['epochz']" in _one_line(capsys.readouterr().err)


def test_train_init_from_replaces_the_recipes_stage_1_checkpoint(tmp_path, monkeypatch):
    """`make train-dgiqa-distilled` trains the stage-2 recipe on another stage-1 checkpoint; the recipe's own
    init_from must not win over the command line."""
    import stream_iqa.train.trainer as trainer

    seen = {}
    monkeypatch.setattr(trainer, "train", lambda cfg, settings, **kw: seen.update(init_from=cfg.init_from))
    other = tmp_path / "stage1.safetensors"
    recipe = Path(__file__).resolve().parents[1] / "configs" / "train-v2-flags.yaml"
    assert main(["train", "--recipe", str(recipe), "--init-from", str(other),
                 "--out", str(tmp_path / "m.safetensors")]) == 0
    assert seen == {"init_from": str(other)}


def test_a_bug_keeps_its_traceback_and_exits_1():
    """A ValueError from a programming mistake must not be reported as bad input (exit 3)."""
    code = ("import sys\nimport stream_iqa.cli as cli\n"
            "def broken(args):\n    raise ValueError('a bug, not bad input')\n"
            "cli.cmd_models = broken\nsys.exit(cli.main(['models']))\n")
    result = _run(code=code)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: a bug, not bad input" in result.stderr


def test_a_tool_subcommand_passes_its_arguments_through_and_keeps_its_own_usage(capsys):
    assert main(["report", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: stream-iqa report") and "--checkpoint" in out
    assert main(["bench-model", "--no-such-option"]) == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
    assert main(["train-quality-view", "--final"]) == 2  # the tool's own check, as one line naming the subcommand
    assert capsys.readouterr().err.strip() == "stream-iqa train-quality-view: --final needs --out"


@pytest.mark.parametrize("outputs", [["--plot", "{video}"], ["--dump", "{video}.csv", "--html", "{video}.csv"]])
def test_replay_refuses_outputs_that_would_overwrite_the_input_or_each_other(clip, tmp_path, capsys, no_analysis,
                                                                               outputs):
    # Once `--plot victim.mp4 victim.mp4` replaced the video with a PNG, and --dump and --html the same file kept
    # only the page. Now the output's suffix must match what it holds, and no output may name another file given.
    video = tmp_path / "victim.mp4"
    video.write_bytes(clip.read_bytes())
    args = [a.format(video=video) for a in outputs]
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--depth", "prior", *args, str(video)])
    assert exc.value.code == 2
    assert "needs a" in _one_line(capsys.readouterr().err)
    assert video.read_bytes() == clip.read_bytes()


def test_replay_refuses_an_output_that_is_the_input_under_another_name(clip, tmp_path, capsys, no_analysis):
    video = tmp_path / "victim.png"  # a video may be named anything; a link or a file URI still names the same file
    video.write_bytes(clip.read_bytes())
    link = tmp_path / "link.png"
    link.symlink_to(video)
    for output, given in ((link, str(video)), (video, video.as_uri())):
        assert main(["replay", "--depth", "prior", "--plot", str(output), given]) == 2
        assert _one_line(capsys.readouterr().err) == (f"stream-iqa replay: --plot {output} is also the input video: "
                                                      "it would be overwritten")
    assert video.read_bytes() == clip.read_bytes()


def test_fps_with_another_sampling_is_refused_not_ignored(clip, capsys, no_analysis, monkeypatch):
    assert main(["replay", "--depth", "prior", "--sampling", "keyframes", "--fps", "5", str(clip)]) == 2
    assert _one_line(capsys.readouterr().err) == ("stream-iqa replay: --fps applies to sampling 'fps' only; sampling "
                                                  "is 'keyframes' (set --sampling fps, or drop --fps)")
    monkeypatch.setenv("STREAM_IQA_VIDEO__SAMPLING", "every_n")  # from the environment, too
    assert main(["replay", "--depth", "prior", "--fps", "5", str(clip)]) == 2
    assert "sampling is 'every_n'" in capsys.readouterr().err
