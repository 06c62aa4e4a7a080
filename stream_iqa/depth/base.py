"""The one depth interface every consumer (student, teacher, synthesiser, per-stream reuse) talks to.

A depth source maps RGB frames to *relative inverse depth* in [0, 1] with near = 1, min-max scaled per image, at a
requested size. Sources differ in cost by four orders of magnitude (a physical prior vs a ViT), which is why the
pipeline reuses maps across frames and why checkpoints record the source they were trained with.

Frames come as torch tensors (any device) or as numpy arrays (the torch-free ONNX Runtime worker), and the map comes
back as the same kind. A source written for both (the prior overrides ``_estimate_host``) computes numpy in numpy;
any other source is handed numpy frames through torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


class DepthSource(ABC):
    #: registry name, recorded in checkpoints ("prior", "depth-anything-v2", …)
    name: str = "abstract"

    @abstractmethod
    def _estimate(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) RGB in [0,1] → (N,1,h,w) inverse depth, any non-negative scale, any size."""

    def _estimate_host(self, rgb: np.ndarray) -> np.ndarray:
        """``_estimate`` of float32 numpy frames; by default through torch, for sources written in torch only."""
        import torch

        with torch.inference_mode():
            return self._estimate(torch.from_numpy(rgb)).float().numpy()

    def __call__(self, rgb: Any, size: tuple[int, int] | None = None) -> Any:
        """(N,3,H,W) float RGB in [0,1] → (N,1,h,w) float32 in [0,1], near = 1; ``size`` defaults to (H,W)."""
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"depth source expects (N,3,H,W) RGB, got shape {tuple(rgb.shape)}")
        size = tuple(size or (rgb.shape[-2], rgb.shape[-1]))
        if isinstance(rgb, np.ndarray):
            out = self._estimate_host(np.ascontiguousarray(rgb, dtype=np.float32))
            if tuple(out.shape[-2:]) != size:
                out = resize_bilinear(out, size)
            return minmax_per_image(out)
        return self._call_torch(rgb, size)

    def _call_torch(self, rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            out = self._estimate(rgb.float())
            if tuple(out.shape[-2:]) != tuple(size):
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            return minmax_per_image(out)

    def to(self, device: Any) -> "DepthSource":
        return self


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N,C,h,w) float32 → (N,C,*size), bilinear with pixel centres aligned (torch's ``align_corners=False``)."""
    import cv2

    n, c = x.shape[:2]
    out = np.empty((n, c) + tuple(size), dtype=np.float32)
    for i in range(n):
        for j in range(c):
            out[i, j] = cv2.resize(x[i, j], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return out


def minmax_per_image(d: Any, eps: float = 1e-6) -> Any:
    """Scale each map of (N,1,H,W) to [0,1]; a constant map becomes all zeros (no depth information). Numpy arrays
    or torch tensors."""
    if isinstance(d, np.ndarray):
        lo = d.min(axis=(1, 2, 3), keepdims=True)
        hi = d.max(axis=(1, 2, 3), keepdims=True)
        return np.clip((d - lo) / np.maximum(hi - lo, eps), 0.0, 1.0).astype(np.float32, copy=False)
    flat = d.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return ((d - lo) / (hi - lo).clamp_min(eps)).clamp(0.0, 1.0)
