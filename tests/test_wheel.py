"""The package as a user installs it: an sdist, a wheel built from that sdist (as an index would build it), installed
outside the source tree and used from another folder — the command line and the Python API, with the model that
ships inside the wheel. The source tree must not leak in: the import is checked to come from the install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from stream_iqa.synthesis.clips import ClipSpec, build_clip

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
MODEL_FILES = {"model.safetensors", "model.json", "model.onnx"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # a copy, so that building leaves nothing (build/, egg-info) in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", "runs", ".cache", ".git", "*.egg-info", "build",
                                                            "dist", "__pycache__", "tests", ".pytest_cache"))
    subprocess.run([sys.executable, "-c", "import sys; from setuptools.build_meta import build_sdist; "
                    "build_sdist(sys.argv[1])", str(work / "sdist")], cwd=src, check=True, capture_output=True)
    (sdist,) = (work / "sdist").glob("stream_iqa-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(n).name for n in tar.getnames() if "/stream_iqa/weights/dgiqa-lite/" in n}
    assert MODEL_FILES <= names, names
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "wheels"), str(sdist)], check=True, capture_output=True)
    (wheel,) = (work / "wheels").glob("stream_iqa-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {Path(n).name for n in zf.namelist() if n.startswith("stream_iqa/weights/dgiqa-lite/")}
    assert MODEL_FILES <= shipped, shipped
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    build_clip(ClipSpec(scenes=["coffee"], scene_s=2.0), elsewhere / "clip.mp4")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_IQA_")}
    env |= {"PYTHONPATH": str(target), "STREAM_IQA_MODEL__DEVICE": "cpu", "STREAM_IQA_DEPTH__SOURCE": "prior"}
    return elsewhere, env


def test_the_installed_wheel_carries_the_model_and_replays_from_another_folder(installed):
    elsewhere, env = installed
    where = subprocess.run([sys.executable, "-c", "import stream_iqa, stream_iqa.settings as s; "
                            "print(stream_iqa.__file__); print(s.DEFAULT_CHECKPOINT)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    site = env["PYTHONPATH"]
    assert all(p.startswith(site) for p in where), where  # the install, never the checkout
    script = Path(site) / "bin" / "stream-iqa"
    out = subprocess.run([sys.executable, str(script), "replay", "--json", "clip.mp4"], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["clip_id"] == "clip.mp4" and report["frames_analyzed"] > 0 and report["model"]["name"] == "dgiqa-lite"


def test_the_installed_wheels_python_api_in_three_lines(installed):
    elsewhere, env = installed
    code = ("import stream_iqa\n"
            "report = stream_iqa.analyze('clip.mp4')\n"
            "print(report.model_dump_json())\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["schema"] == "stream-iqa/clip-report/1" and report["frames_analyzed"] > 0
