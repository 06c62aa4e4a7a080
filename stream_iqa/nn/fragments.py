"""Fragments (``stream_iqa.fragments``) of torch batches: the same cells and offsets, for training and for models
given whole frames without the decoder's native fragments.

Measured on CLIVE (frozen ImageNet Lite0 features + ridge, 540/157 split, see the model v2 issue): whole frame at
192² 0.688 SROCC, 7×7 fragments of 32 px (224²) 0.783. The shipped grid, 6×6 × 32 px, is models/README.md's pick.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stream_iqa.fragments import FragmentSpec, cell_offsets, fitted_size, splice_slices

__all__ = ["FragmentSpec", "cell_offsets", "fit_for_fragments", "gather_fragments"]


def fit_for_fragments(rgb: torch.Tensor, spec: FragmentSpec) -> torch.Tensor:
    """Upscale (bilinear, aspect kept) a batch whose shorter side is under ``spec.size``; others are returned as they
    are, since only a frame too small for its cells has to be resampled."""
    fit = fitted_size(rgb.shape[-2], rgb.shape[-1], spec)
    if fit is None:
        return rgb
    return F.interpolate(rgb, size=fit, mode="bilinear", align_corners=False)


def gather_fragments(rgb: torch.Tensor, spec: FragmentSpec, rng: np.random.Generator | None = None) -> torch.Tensor:
    """(N, C, H, W) frames at native resolution → (N, C, grid·patch, grid·patch) fragments.

    Without ``rng`` the result depends on the frame alone (inference); with it, every frame of the batch gets its
    own random offsets (training)."""
    rgb = fit_for_fragments(rgb, spec)
    h, w = rgb.shape[-2:]
    out = rgb.new_empty(rgb.shape[:-2] + (spec.size, spec.size))
    frames = [(slice(None), cell_offsets(h, spec), cell_offsets(w, spec))] if rng is None else [
        (k, cell_offsets(h, spec, rng), cell_offsets(w, spec, rng)) for k in range(rgb.shape[0])]  # per-frame offsets
    for k, rows, cols in frames:
        for dst_y, dst_x, src_y, src_x in splice_slices(rows, cols, spec):
            out[k, :, dst_y, dst_x] = rgb[k, :, src_y, src_x]
    return out
