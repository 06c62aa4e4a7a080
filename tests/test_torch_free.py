"""The ONNX Runtime path without torch: its numpy twins of the prior, the resize and depth reuse agree with the torch
code, and `stream-iqa replay` / `score` run with torch made unimportable and answer as the PyTorch backend does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_iqa.depth.prior import NumpyOps, PriorDepth
from stream_iqa.depth.state import DepthState, signatures, warp_depth
from stream_iqa.depth.torch_ops import TorchOps
from stream_iqa.images import resize_array, resize_tensor, to_array, to_tensor
from stream_iqa.model.choice import BUILTIN_MODELS, cuda_possible, known_model, resolve_device_name
from stream_iqa.synthesis.clips import ClipSpec, build_clip

#: runs the CLI with torch, timm and torchvision unimportable, and fails if any torch module was loaded anyway
NO_TORCH = """
import sys
for name in ("torch", "timm", "torchvision"):
    sys.modules[name] = None
from stream_iqa.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("torch", "timm"))
if loaded:
    sys.exit("torch modules loaded: " + ", ".join(loaded))
sys.exit(rc)
"""


def test_the_numpy_prior_is_the_torch_prior(photos):
    prior = PriorDepth()
    for img in photos.values():
        for size in ((192, 192), None):
            want = prior(to_tensor(img), size).numpy()
            got = prior(to_array(img), size)
            assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == want.shape
            assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("shape", [(2, 3, 361, 643), (1, 3, 100, 37), (1, 1, 5, 7), (1, 3, 4, 4)])
@pytest.mark.parametrize("factor", [2, 3, 5])
def test_block_averages_agree_where_the_border_cuts_blocks(shape, factor):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    want = TorchOps.downscale(torch.from_numpy(x), factor).numpy()
    assert np.abs(NumpyOps.downscale(x, factor) - want).max() < 1e-5


@pytest.mark.parametrize("size", [(192, 192), (100, 50), (360, 100), (400, 700)])
def test_the_numpy_resize_is_the_students_resize(size):
    x = np.random.default_rng(1).random((2, 3, 360, 641), dtype=np.float32)
    assert np.abs(resize_array(x, size) - resize_tensor(torch.from_numpy(x), size).numpy()).max() < 1e-4
    assert np.array_equal(resize_array(x, size, threads=3), resize_array(x, size))  # planes resized at once, same


def test_signatures_and_warps_agree_across_array_kinds():
    rng = np.random.default_rng(2)
    for shape in ((3, 3, 360, 640), (1, 3, 97, 203), (1, 3, 720, 1280)):
        x = rng.random(shape, dtype=np.float32)
        for a, b in zip(signatures(torch.from_numpy(x)), signatures(x)):
            assert np.abs(a.grey - b.grey).max() < 1e-5 and np.abs(a.hist - b.hist).max() < 1e-3
    d = rng.random((2, 1, 192, 192), dtype=np.float32)
    for shift in ((1.3, -0.7), (5.2, 3.9), (-20.0, 0.0), (0.0, 0.4)):
        want = warp_depth(torch.from_numpy(d), shift, (36, 64)).numpy()
        assert np.abs(warp_depth(d, shift, (36, 64)) - want).max() < 1e-4


def test_depth_reuse_decides_the_same_on_numpy_frames():
    base = np.random.default_rng(3).random((1, 3, 400, 800), dtype=np.float32)
    pan = np.ascontiguousarray(np.concatenate([base[:, :, 20:380, 10 + 2 * k:650 + 2 * k] for k in range(12)]))
    want, want_fresh = DepthState(PriorDepth()).depth_for(torch.from_numpy(pan), (192, 192))
    got, got_fresh = DepthState(PriorDepth()).depth_for(pan, (192, 192))
    assert isinstance(got, np.ndarray) and got_fresh == want_fresh and False in got_fresh
    assert np.abs(got - want.numpy()).max() < 1e-4


def test_device_and_model_checks_need_no_torch_where_the_answer_is_known(tmp_path):
    assert not cuda_possible((str(tmp_path / "nvidiactl"),)) or not sys.platform.startswith("linux")
    (tmp_path / "nvidiactl").touch()
    assert cuda_possible((str(tmp_path / "nvidiactl"),))
    assert resolve_device_name("cpu") == "cpu"
    assert resolve_device_name("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    from stream_iqa.nn.registry import _REGISTRY, _import_builtin

    _import_builtin()
    assert set(BUILTIN_MODELS) <= set(_REGISTRY) and all(known_model(n) for n in _REGISTRY)
    assert not known_model("no-such-model")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return build_clip(ClipSpec(scenes=["coffee", "astronaut"], scene_s=1.5, fps=10, size=(640, 360)),
                      tmp_path_factory.mktemp("clip") / "clip.mp4")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, torch_free: bool = True
         ) -> subprocess.CompletedProcess[str]:
    import os

    cmd = [sys.executable, "-c", NO_TORCH, *args] if torch_free else [sys.executable, "-m", "stream_iqa.cli", *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_IQA_")} | (env or {})
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


def test_replay_runs_without_torch_and_answers_as_the_pytorch_backend(clip, tmp_path):
    free = _run(["replay", str(clip), "--fps", "5", "--dump", str(tmp_path / "free.jsonl")], tmp_path)
    assert free.returncode == 0, free.stderr[-2000:]
    ref = _run(["replay", str(clip), "--fps", "5", "--dump", str(tmp_path / "torch.jsonl")], tmp_path,
               env={"STREAM_IQA_MODEL__BACKEND": "torch"}, torch_free=False)
    assert ref.returncode == 0, ref.stderr[-2000:]
    got = [json.loads(line) for line in (tmp_path / "free.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (tmp_path / "torch.jsonl").read_text().splitlines()]
    assert len(got) == len(want) >= 10
    for g, w in zip(got, want):
        assert abs(g["quality"] - w["quality"]) <= 0.05
        assert all(abs(g["distortions"][k] - w["distortions"][k]) <= 1e-3 for k in w["distortions"])
        assert g["depth_fresh"] == w["depth_fresh"]


def test_score_runs_without_torch(tmp_path):
    import cv2
    from skimage import data

    path = tmp_path / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    free = _run(["score", str(path), "--json"], tmp_path)
    assert free.returncode == 0, free.stderr[-2000:]
    ref = _run(["score", str(path), "--json"], tmp_path, env={"STREAM_IQA_MODEL__BACKEND": "torch"}, torch_free=False)
    got, want = json.loads(free.stdout.splitlines()[-1]), json.loads(ref.stdout.splitlines()[-1])
    assert abs(got["quality"] - want["quality"]) <= 0.05 and got["flags"] == want["flags"]


def test_asking_for_the_pytorch_backend_without_torch_is_a_clear_error(clip, tmp_path):
    out = _run(["replay", str(clip)], tmp_path, env={"STREAM_IQA_MODEL__BACKEND": "torch"})
    assert out.returncode != 0
    assert "torch" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_the_service_and_the_python_api_import_and_analyse_without_torch(clip, tmp_path):
    code = f"""
import sys
for name in ("torch", "timm", "torchvision"):
    sys.modules[name] = None
import stream_iqa
import stream_iqa.service.app
report = stream_iqa.analyze({str(clip)!r})
assert report.frames_analyzed > 0, report
print(stream_iqa.create_analyzer().card.name)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "dgiqa-lite"


def test_the_plain_install_is_the_torch_free_worker_and_covers_what_it_imports(clip, tmp_path):
    """pyproject's plain dependencies hold no torch stack, and every third-party module a torch-free replay, `score`
    and the service load comes from one of them (so `pip install stream-iqa` is enough for the CPU worker)."""
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    from stream_iqa.settings import REPO_ROOT

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    plain = {re.split(r"[<>=!~\[ ;]", r)[0].lower() for r in project["dependencies"]}
    torch_stack = {re.split(r"[<>=!~\[ ;]", r)[0].lower() for r in project["optional-dependencies"]["torch"]}
    assert {"torch", "torchvision", "timm"} <= torch_stack and not plain & {"torch", "torchvision", "timm"}
    pinned = {re.split(r"[<>=!~\[ ;]", line)[0].lower()
              for line in (REPO_ROOT / "requirements-worker.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert pinned == plain  # the worker's pins are the plain install's set

    code = NO_TORCH.replace("rc = main(sys.argv[1:])", "rc = main(sys.argv[1:]); import stream_iqa.service.app")
    code += "\n"  # the list of loaded top-level modules, printed on stderr before exit
    code = code.replace("sys.exit(rc)", "print(' '.join(sorted({m.split('.')[0] for m, v in sys.modules.items() "
                                        "if v is not None})), file=sys.stderr)\nsys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, "replay", str(clip)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = out.stderr.strip().splitlines()[-1].split()
    dists = packages_distributions()
    third_party = {d.lower() for m in loaded if m in dists and m not in sys.stdlib_module_names for d in dists[m]}
    # imported only because they happen to be installed: rich.pretty tries `import attr`; setuptools through the
    # editable install's finder (_distutils_hack)
    third_party -= {"stream-iqa", "stream_iqa", "attrs", "setuptools"}
    from importlib.metadata import requires

    def closure(names: set[str]) -> set[str]:  # the plain dependencies and everything they require in turn
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                reqs = requires(name) or []
            except Exception:  # noqa: BLE001 - not installed here: nothing further to follow
                continue
            todo += [re.split(r"[<>=!~\[ ;(]", r)[0].lower() for r in reqs if "extra ==" not in r]
        return seen

    norm = {n.replace("_", "-") for n in closure(plain)} | closure(plain)
    missing = sorted(d for d in third_party if d not in norm and d.replace("_", "-") not in norm)
    assert not missing, f"imported by the torch-free worker but not in pyproject's plain dependencies: {missing}"


def test_a_command_that_needs_the_torch_extra_says_so_without_a_traceback(tmp_path):
    out = _run(["export", "--onnx", str(tmp_path / "m.onnx")], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "pip install 'stream-iqa[torch]'" in out.stderr and "Traceback" not in out.stderr
