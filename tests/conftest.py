"""Shared fixtures. Tests read real data from ../shared/data and skip (with the reason) where it is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stream_iqa.settings import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may pick up a developer's STREAM_IQA_* settings. The suite's own switches are named outside that
    prefix (``.ci/run`` sets TEST_REQUIRE_CHROMIUM), so that this does not remove them and settings never see them."""
    import os

    for key in list(os.environ):
        if key.startswith("STREAM_IQA_"):
            monkeypatch.delenv(key)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "clive" / "mos.csv").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photographs that ship inside scikit-image."""
    from skimage import data

    return {name: getattr(data, name)() for name in ("chelsea", "coffee", "astronaut")}


@pytest.fixture(scope="session")
def student_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dgiqa-lite checkpoint with an ImageNet trunk and untrained heads (fast to make, exercises every path)."""
    from stream_iqa.nn.checkpoint import save_checkpoint
    from stream_iqa.nn.lite import DGIQALite, LiteConfig

    torch.manual_seed(0)
    model = DGIQALite(LiteConfig(input_size=(128, 128))).eval()
    path = tmp_path_factory.mktemp("ckpt") / "student.safetensors"
    save_checkpoint(path, model.state_dict(), {
        "model": "dgiqa-lite", "version": "test", "arch": model.config.to_dict(), "depth_source": "prior",
        "calibration": {"kind": "piecewise_linear", "x": [0, 50, 100], "y": [0, 40, 100]},
    })
    return path


@pytest.fixture(scope="session")
def default_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped student exported by `stream-iqa export --onnx`, once for every module that reads the fp32 graph
    (the exporter takes ~10-30 s; tests must not write into the graph)."""
    from stream_iqa.cli import main

    path = tmp_path_factory.mktemp("onnx") / "dgiqa-lite.onnx"
    assert main(["export", "--onnx", str(path)]) == 0
    return path
