"""The one depth interface every consumer (student, teacher, synthesiser, per-stream reuse) talks to.

A depth source maps RGB frames to *relative inverse depth* in [0, 1] with near = 1, min-max scaled per image, at a
requested size. Sources differ in cost by four orders of magnitude (a physical prior vs a ViT), which is why the
pipeline reuses maps across frames and why checkpoints record the source they were trained with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F


class DepthSource(ABC):
    #: registry name, recorded in checkpoints ("prior", "depth-anything-v2", …)
    name: str = "abstract"

    @abstractmethod
    def _estimate(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) RGB in [0,1] → (N,1,h,w) inverse depth, any non-negative scale, any size."""

    @torch.inference_mode()
    def __call__(self, rgb: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(N,3,H,W) float RGB in [0,1] → (N,1,h,w) float32 in [0,1], near = 1; ``size`` defaults to (H,W)."""
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"depth source expects (N,3,H,W) RGB, got shape {tuple(rgb.shape)}")
        out = self._estimate(rgb.float())
        size = size or (rgb.shape[-2], rgb.shape[-1])
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return minmax_per_image(out)

    def to(self, device: torch.device | str) -> "DepthSource":
        return self


def minmax_per_image(d: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale each map of (N,1,H,W) to [0,1]; a constant map becomes all zeros (no depth information)."""
    flat = d.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return ((d - lo) / (hi - lo).clamp_min(eps)).clamp(0.0, 1.0)
