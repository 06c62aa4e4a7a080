"""The weight-free depth prior: output contract, batching, the haze cue, and the settings → source factory."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from stream_iqa.depth import PriorDepth, create_depth_source
from stream_iqa.settings import DepthSettings

SIZE = (240, 320)  # (H, W)


def _tensor(img: np.ndarray) -> torch.Tensor:
    img = cv2.resize(img, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def test_output_contract_on_real_photo() -> None:
    out = PriorDepth()(_tensor(data.astronaut()))
    assert out.shape == (1, 1, *SIZE) and out.dtype == torch.float32
    assert float(out.min()) == 0.0 and float(out.max()) == pytest.approx(1.0)
    assert torch.isfinite(out).all()
    resized = PriorDepth()(_tensor(data.astronaut()), size=(90, 160))
    assert resized.shape == (1, 1, 90, 160)


def test_batch_matches_single_images() -> None:
    prior = PriorDepth()
    images = [_tensor(data.astronaut()), _tensor(data.coffee()), _tensor(data.chelsea())]
    batch = prior(torch.cat(images))
    singles = torch.cat([prior(x) for x in images])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)
    assert not torch.allclose(batch[0], batch[1])  # content matters, not only the row position


def test_lower_rows_are_nearer_on_average() -> None:
    out = PriorDepth()(_tensor(data.coffee()))[0, 0]
    assert out[-SIZE[0] // 4 :].mean() > out[: SIZE[0] // 4].mean()


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_hazier_side_reads_farther(name: str) -> None:
    """Fog thickening towards one side must lower the inverse depth there, whichever side it is.

    Both mirror images are tested, so content that happens to be nearer on one side cannot pass the test alone.
    """
    rgb = _tensor(getattr(data, name)())
    w = SIZE[1]
    ramp = torch.linspace(0.0, 1.0, w).view(1, 1, 1, w)
    for far_right in (True, False):
        distance = ramp if far_right else ramp.flip(-1)
        t = torch.exp(-2.5 * distance)
        hazy = rgb * t + 0.85 * (1 - t)
        depth = PriorDepth()(hazy)[0, 0]
        left, right = depth[:, : w // 3].mean(), depth[:, -w // 3 :].mean()
        assert (right < left) if far_right else (left < right), (name, far_right, float(left), float(right))


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError):
        PriorDepth()(torch.rand(1, 1, 32, 32))


def test_factory_picks_the_prior_without_checkpoint() -> None:
    assert isinstance(create_depth_source(DepthSettings(source="prior"), "cpu"), PriorDepth)
    assert isinstance(create_depth_source(DepthSettings(source="auto"), "cpu"), PriorDepth)


def test_factory_depth_anything_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT"):
        create_depth_source(DepthSettings(source="depth-anything"), "cpu")
    with pytest.raises(FileNotFoundError, match="STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT"):
        create_depth_source(
            DepthSettings(source="depth-anything", depth_anything_checkpoint=tmp_path / "missing.pth"), "cpu"
        )


def test_factory_builds_depth_anything_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` with a checkpoint goes to Depth Anything with the configured version and input size."""
    checkpoint = tmp_path / "depth_anything_vits14.pth"
    checkpoint.write_bytes(b"")
    calls: list[tuple[Path, str, int]] = []

    class FakeSource(PriorDepth):
        name = "depth-anything-fake"

        def __init__(self, path: Path, version: str = "v2", input_size: int = 518) -> None:
            super().__init__()
            calls.append((path, version, input_size))

    module = types.ModuleType("stream_iqa.depth.depth_anything")
    module.DepthAnythingSource = FakeSource  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stream_iqa.depth.depth_anything", module)

    settings = DepthSettings(
        source="auto", depth_anything_checkpoint=checkpoint, depth_anything_version="v1", depth_anything_input=364
    )
    source = create_depth_source(settings, "cpu")
    assert isinstance(source, FakeSource)
    assert calls == [(checkpoint, "v1", 364)]
