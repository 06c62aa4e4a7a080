"""Grid mini-patch sampling (FAST-VQA's "fragments") of a frame at its own resolution — numpy only.

Resizing a whole frame to the network's input destroys the fine-scale distortions people judge quality by (noise,
compression blocks, slight defocus): a 1280×720 frame shrunk to 192² loses them all. Fragments keep them: the frame
is cut into a ``grid × grid`` lattice of cells, one ``patch × patch`` square of native pixels is taken from each cell,
and the squares are spliced into one ``grid·patch`` square image. The lattice keeps a coarse view of the layout, so
the network still sees where things are. (Wu et al., "FAST-VQA: Efficient End-to-end Video Quality Assessment with
Fragment Sampling", ECCV 2022.)

Inference is deterministic — each patch is centred in its cell, so one frame always gives one score — and training
draws a random offset inside each cell (an augmentation that never resamples pixels). A frame whose cells are
smaller than a patch is first upscaled just enough (bilinear), as FAST-VQA does; that is the only resampling.

This module is the sampler the decoder runs on every sampled frame (``video.open_video(fragments=…)``), so it needs
numpy and OpenCV only; ``stream_iqa.nn.fragments`` applies the same offsets to torch batches for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FragmentSpec:
    grid: int = 7
    patch: int = 32

    def __post_init__(self) -> None:
        if self.grid < 1 or self.patch < 1:
            raise ValueError(f"fragment grid and patch must be positive, got {self.grid} and {self.patch}")

    @property
    def size(self) -> int:
        """Side of the spliced fragment image."""
        return self.grid * self.patch


def cell_offsets(length: int, spec: FragmentSpec, rng: np.random.Generator | None = None) -> np.ndarray:
    """Start of the patch in each of the ``grid`` cells along one axis of ``length`` pixels (``length`` ≥ grid·patch).

    Cells split the axis as evenly as integers allow; without ``rng`` each patch is centred in its cell, with it the
    patch lies anywhere inside its cell (uniformly), never across a cell border."""
    if length < spec.size:
        raise ValueError(f"axis of {length} px is shorter than the {spec.size} px the fragments need")
    bounds = np.floor(np.linspace(0, length, spec.grid + 1) + 0.5).astype(np.int64)
    starts, room = bounds[:-1], bounds[1:] - bounds[:-1] - spec.patch
    if rng is None:
        return starts + room // 2
    return starts + rng.integers(0, room + 1)


#: the longest side ``fitted_size`` gives, in fragment sides: 16:1 frames keep their aspect, stranger ones do not
MAX_FITTED_ASPECT = 16


def fitted_size(height: int, width: int, spec: FragmentSpec) -> tuple[int, int] | None:
    """(height, width) to upscale a frame to (aspect kept) when its shorter side is under ``spec.size``; None when
    the frame is large enough as it is.

    The longer side is capped at ``MAX_FITTED_ASPECT`` fragment sides: an 8-px-tall, 65,536-px-wide frame (a 50 kB
    file, well within ``video.max_pixels``) would otherwise be upscaled to 1.8 million × 224 px, a gigabyte per frame.
    Past 16:1 such a frame is stretched along its short side only as far as the cap allows."""
    short = min(height, width)
    if short >= spec.size:
        return None
    scale, cap = spec.size / short, MAX_FITTED_ASPECT * spec.size
    return (min(cap, max(spec.size, round(height * scale))), min(cap, max(spec.size, round(width * scale))))


def patch_index(length: int, spec: FragmentSpec, rng: np.random.Generator | None = None) -> np.ndarray:
    """Pixel indices along one axis that, taken in order, splice the ``grid`` patches together."""
    return (cell_offsets(length, spec, rng)[:, None] + np.arange(spec.patch)).reshape(-1)


def gather(rgb: np.ndarray, spec: FragmentSpec, rng: np.random.Generator | None = None) -> np.ndarray:
    """An H×W×C frame (any dtype) at native resolution → its ``grid·patch`` square H×W×C fragment image."""
    h, w = rgb.shape[:2]
    fit = fitted_size(h, w, spec)
    if fit is not None:
        import cv2

        rgb = cv2.resize(rgb, (fit[1], fit[0]), interpolation=cv2.INTER_LINEAR)
        h, w = fit
    out = np.empty((spec.size, spec.size) + rgb.shape[2:], dtype=rgb.dtype)
    for dst_y, dst_x, src_y, src_x in splice_slices(cell_offsets(h, spec, rng), cell_offsets(w, spec, rng), spec):
        out[dst_y, dst_x] = rgb[src_y, src_x]
    return out


def gather_batch(rgb: np.ndarray, spec: FragmentSpec) -> np.ndarray:
    """Centred fragments (``gather``) of each frame of an (N, C, H, W) batch, as (N, C, S, S): for models given whole
    frames without the decoder's native fragments. Frames of one batch share their size, so the centred offsets are
    the same for all of them and each of the grid² patches is one slice copy over the whole batch (per frame, the
    same copies cost 8x as many calls at batch 8)."""
    h, w = rgb.shape[-2:]
    if fitted_size(h, w, spec) is not None:  # too small: each frame is upscaled first, as ``gather`` does
        return np.ascontiguousarray(np.stack([gather(f.transpose(1, 2, 0), spec).transpose(2, 0, 1) for f in rgb]))
    out = np.empty(rgb.shape[:-2] + (spec.size, spec.size), dtype=rgb.dtype)
    for dst_y, dst_x, src_y, src_x in splice_slices(cell_offsets(h, spec), cell_offsets(w, spec), spec):
        out[..., dst_y, dst_x] = rgb[..., src_y, src_x]
    return out


def splice_slices(rows: np.ndarray, cols: np.ndarray, spec: FragmentSpec
                  ) -> Iterator[tuple[slice, slice, slice, slice]]:
    """(out rows, out cols, frame rows, frame cols) of each of the grid² patches, given the patches' starts along
    each axis (``cell_offsets``). Copying grid² slices is several times faster than a fancy-index gather, which walks
    every selected row of the full-width frame once per axis; the result equals
    ``rgb[patch_index(h)][:, patch_index(w)]``."""
    p = spec.patch
    for i, r in enumerate(rows.tolist()):
        for j, c in enumerate(cols.tolist()):
            yield slice(i * p, (i + 1) * p), slice(j * p, (j + 1) * p), slice(r, r + p), slice(c, c + p)


__all__ = ["MAX_FITTED_ASPECT", "FragmentSpec", "cell_offsets", "fitted_size", "gather", "gather_batch", "patch_index", "splice_slices"]
