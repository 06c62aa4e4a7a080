"""What depth reuse costs in scores: the same frames scored with fresh depth on every frame and with ``DepthState``'s
reuse, side by side (tests/test_depth_state.py holds the shipped model to it). A measuring tool, so it lives with the
benchmarks: the depth stage itself never imports the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from stream_iqa.depth.base import DepthSource
from stream_iqa.depth.state import DepthState
from stream_iqa.nn.api import DISTORTIONS, IQAOutput
from stream_iqa.settings import DepthReuseSettings


class _ScoresFrames(Protocol):
    def score(self, rgb: torch.Tensor, depth: torch.Tensor, fragments: torch.Tensor | None = None) -> IQAOutput: ...


def measure_reuse(
    frames: Sequence[np.ndarray] | Sequence[Any] | torch.Tensor,
    depth_source: DepthSource,
    model: _ScoresFrames,
    settings: DepthReuseSettings | None = None,
    batch_size: int = 8,
) -> dict[str, float | int]:
    """Score ``frames`` with fresh depth on every frame and with reuse, and report what reuse changed.

    ``frames``: uint8 HxWx3 arrays, objects with an ``.rgb`` array (``SampledFrame``), or a float (N,3,H,W) tensor in
    [0, 1], in stream order. Frames go through in batches of ``batch_size`` as the scoring engine would send them, so
    the reuse side also exercises the batched in-order decisions. Flags are probabilities ≥ the model's
    ``flag_thresholds`` (0.5 where it has none). Returns ``depth_fraction`` (share of frames that computed depth),
    ``mean_abs_dq`` / ``max_abs_dq`` (quality points), ``flag_changes`` (frames whose set of flags differs), ``frames``.
    """
    rgb = _as_tensor(frames)
    thresholds_map = getattr(model, "flag_thresholds", None) or {}
    thresholds = torch.tensor([float(thresholds_map.get(k, 0.5)) for k in DISTORTIONS])
    state = DepthState(depth_source, settings)
    q_fresh, q_reuse, flag_changes = [], [], 0
    with torch.inference_mode():
        for start in range(0, rgb.shape[0], batch_size):
            batch = rgb[start : start + batch_size]
            a = model.score(batch, depth_source(batch))
            b = model.score(batch, state.depth_for(batch)[0])
            q_fresh.append(a.quality.float().cpu())
            q_reuse.append(b.quality.float().cpu())
            if a.distortions is not None and b.distortions is not None:
                fa = a.distortions.float().cpu() >= thresholds[: a.distortions.shape[1]]
                fb = b.distortions.float().cpu() >= thresholds[: b.distortions.shape[1]]
                flag_changes += int((fa != fb).any(dim=1).sum())
    dq = (torch.cat(q_fresh) - torch.cat(q_reuse)).abs()
    return {
        "frames": int(rgb.shape[0]),
        "depth_fraction": state.fresh / state.frames,
        "mean_abs_dq": float(dq.mean()),
        "max_abs_dq": float(dq.max()),
        "flag_changes": flag_changes,
    }


def _as_tensor(frames: Sequence[Any] | torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) float in [0, 1] from a tensor, uint8 arrays or ``SampledFrame``-like objects."""
    if isinstance(frames, torch.Tensor):
        return frames.float()
    arrays = [getattr(f, "rgb", f) for f in frames]
    if not arrays:
        raise ValueError("measure_reuse needs at least one frame")
    stacked = np.stack([np.asarray(a) for a in arrays])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(255.0)
