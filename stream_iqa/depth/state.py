"""Per-stream depth reuse: compute depth on a few sampled frames and carry it across the ones in between.

Why
    Depth is the expensive half of scoring with a learned source (a ViT costs more than the scorer itself), yet on
    ordinary footage the scene geometry changes far more slowly than the sampling rate. ``DepthState`` keeps the last
    depth map of a stream and hands it out again — shifted by the estimated global camera translation — until one of
    three things says it has gone stale:

    * **age**: ``refresh_every`` sampled frames have passed since the map was computed (bounds the drift that
      zoom, parallax and moving objects cause, which a pure translation cannot follow);
    * **scene cut**: the luma histogram of a 64-px-wide grey thumbnail differs from the one of the frame the map
      was computed on by more than ``scene_cut_threshold`` (a different scene has unrelated geometry);
    * **motion**: the global translation, from phase correlation of the same thumbnails, exceeds
      ``motion_threshold`` thumbnail pixels either since the previous frame (a whip pan or a jump) or since the
      map's frame (the warped map would be mostly replicated border).

    The signature is computed batched in torch on the frames' device and only the 64×36 thumbnail goes to the CPU,
    so the per-frame overhead is a fraction of a millisecond next to a depth source's milliseconds to seconds.
    Frames given as numpy arrays (the torch-free ONNX Runtime worker) get the same signatures and warps in numpy
    and OpenCV, to float rounding.

Decisions are made frame by frame *in order* within a batch, but all frames that need fresh depth are sent to the
depth source in one batched call, and reused frames may refer to a map that is computed in that same call.

What the cut detector does not catch: two different scenes with nearly identical brightness distributions (e.g. two
similar grey interiors). Age still bounds how long a wrong map survives; lower ``refresh_every`` where that matters.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from stream_iqa.depth.base import DepthSource
from stream_iqa.settings import DepthReuseSettings

if TYPE_CHECKING:
    import torch

#: width of the grey thumbnail the signature is computed on; height follows the frame's aspect ratio (36 at 16:9)
THUMB_WIDTH = 64
#: luma histogram bins; 32 keeps each bin populated on a 2304-pixel thumbnail, so noise barely moves the histogram
HIST_BINS = 32


@dataclass(frozen=True, slots=True)
class FrameSignature:
    """What the reuse decision needs from one frame: a windowed-ready grey thumbnail and its luma histogram."""

    grey: np.ndarray  # float32 (h, THUMB_WIDTH) in [0, 1]
    hist: np.ndarray  # float64 (HIST_BINS,), sums to 1
    frame_size: tuple[int, int]  # (H, W) of the full frame


def thumbnail_size(frame_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the signature thumbnail: 64 px wide, aspect kept, at least 8 px high for phase correlation."""
    h, w = frame_size
    return max(8, round(THUMB_WIDTH * h / w)), THUMB_WIDTH


def signatures(frames_rgb: Any) -> list[FrameSignature]:
    """Grey thumbnails and luma histograms for a batch (N,3,H,W) in [0, 1] (a torch tensor or a numpy array).

    Area-averaging to the thumbnail first and converting to luma second costs the same as the reverse but touches
    three small planes instead of one full-size one; the average also suppresses noise and compression artefacts
    that would otherwise jitter both the histogram and the phase correlation.
    """
    size = (int(frames_rgb.shape[-2]), int(frames_rgb.shape[-1]))
    thumb = thumbnail_size(size)
    # An integer box average first, to within 2x of the thumbnail: adaptive pooling with a non-integer ratio costs
    # several times more per input pixel, and the two together are the same area average up to edge weighting.
    factor = min(size[0] // (2 * thumb[0]), size[1] // (2 * thumb[1]))
    if isinstance(frames_rgb, np.ndarray):
        small = _area_thumbnails(np.asarray(frames_rgb, dtype=np.float32), factor, thumb)
        grey_np = np.clip(0.299 * small[:, 0] + 0.587 * small[:, 1] + 0.114 * small[:, 2], 0.0, 1.0)
    else:
        import torch.nn.functional as F

        x = frames_rgb.float()
        if factor > 1:
            x = F.avg_pool2d(x, factor)
        small = F.adaptive_avg_pool2d(x, thumb)
        grey = (0.299 * small[:, 0] + 0.587 * small[:, 1] + 0.114 * small[:, 2]).clamp(0.0, 1.0)
        grey_np = grey.cpu().numpy()
    grey_np = grey_np.astype(np.float32, copy=False)
    out = []
    for g in grey_np:
        counts = np.bincount(np.minimum((g * HIST_BINS).astype(np.int64), HIST_BINS - 1).ravel(), minlength=HIST_BINS)
        out.append(FrameSignature(grey=np.ascontiguousarray(g), hist=counts / counts.sum(), frame_size=size))
    return out


def _area_thumbnails(x: np.ndarray, factor: int, thumb: tuple[int, int]) -> np.ndarray:
    """torch's ``avg_pool2d(factor)`` (the remainder rows and columns dropped) then ``adaptive_avg_pool2d(thumb)``
    on (N,C,H,W) numpy: the whole-block average by OpenCV's area resize, then each thumbnail cell the mean of the
    rows ``floor(i·H/h) … ceil((i+1)·H/h)`` (and likewise columns), from an integral image."""
    if factor > 1:
        h, w = x.shape[-2] // factor, x.shape[-1] // factor
        x = np.stack([np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in frame])
                      for frame in x[:, :, : h * factor, : w * factor]])
    rows, cols = _adaptive_bins(x.shape[-2], thumb[0]), _adaptive_bins(x.shape[-1], thumb[1])
    integral = np.zeros(x.shape[:-2] + (x.shape[-2] + 1, x.shape[-1] + 1), dtype=np.float64)
    integral[..., 1:, 1:] = x.cumsum(axis=-2, dtype=np.float64).cumsum(axis=-1)
    (r0, r1), (c0, c1) = rows, cols
    sums = (integral[..., r1[:, None], c1[None, :]] - integral[..., r0[:, None], c1[None, :]]
            - integral[..., r1[:, None], c0[None, :]] + integral[..., r0[:, None], c0[None, :]])
    return (sums / ((r1 - r0)[:, None] * (c1 - c0)[None, :])).astype(np.float32)


def _adaptive_bins(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each of ``out`` adaptive-pooling cells over ``n`` pixels, as torch cuts them."""
    i = np.arange(out)
    return (i * n) // out, -((-(i + 1) * n) // out)


def histogram_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Symmetric chi-square distance 0.5·Σ(p−q)²/(p+q) of two normalised histograms, in [0, 1].

    Chosen over L1 because it down-weights differences in heavily populated bins (a pan shifting some mass between
    neighbouring mid-tones) relative to mass appearing where there was none (a new scene), which widens the gap
    between pans and cuts.
    """
    s = p + q
    mask = s > 0
    return float(0.5 * np.sum((p[mask] - q[mask]) ** 2 / s[mask]))


_WINDOWS: dict[tuple[int, int], np.ndarray] = {}


def estimate_shift(reference: FrameSignature, current: FrameSignature) -> tuple[float, float]:
    """Global translation (dx, dy) in thumbnail pixels such that ``current(x) ≈ reference(x − d)``.

    Phase correlation with a Hann window (against the wrap-around edges of the FFT) finds a pure translation with
    sub-pixel accuracy in ~0.1 ms at this size; it is blind to zoom and rotation, which the age limit covers.
    Shifts beyond half the thumbnail alias, so anything that large reads as "some big shift" — which is all the
    motion test needs, because it refreshes long before that.
    """
    shape = reference.grey.shape
    window = _WINDOWS.get(shape)
    if window is None:
        window = _WINDOWS.setdefault(shape, cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F))
    (dx, dy), _response = cv2.phaseCorrelate(reference.grey, current.grey, window)
    return float(dx), float(dy)


def warp_depth(depth: Any, shift: tuple[float, float], thumb_size: tuple[int, int]) -> Any:
    """Translate (N,1,h,w) maps (torch or numpy) by ``shift`` (thumbnail pixels), replicating edges into the
    uncovered border.

    The thumbnail shift is scaled per axis to the map's resolution; bilinear sampling keeps sub-pixel shifts smooth,
    and ``padding_mode="border"`` is the edge replication (the nearest known depth is the best guess for content
    that just entered the frame).
    """
    dx, dy = shift
    if dx == 0.0 and dy == 0.0:
        return depth
    n, _, h, w = depth.shape
    if isinstance(depth, np.ndarray):
        # A pure translation's bilinear sampling is separable: resample the columns, then the rows.
        out = _shift_axis(depth, dx * w / thumb_size[1], axis=-1)
        return _shift_axis(out, dy * h / thumb_size[0], axis=-2)
    import torch
    import torch.nn.functional as F

    # Output pixel x samples input x − d; with align_corners=False a shift of d pixels is 2d/size in grid units.
    tx = -2.0 * (dx * w / thumb_size[1]) / w
    ty = -2.0 * (dy * h / thumb_size[0]) / h
    # The sampling grid of a pure translation is separable: built from two 1-D ramps it costs O(h + w) to fill,
    # where ``F.affine_grid`` pays a (h·w)×3 by 3×2 product for the same result.
    gx = (torch.arange(w, dtype=depth.dtype, device=depth.device) * 2.0 + 1.0) / w - 1.0 + tx
    gy = (torch.arange(h, dtype=depth.dtype, device=depth.device) * 2.0 + 1.0) / h - 1.0 + ty
    grid = torch.stack((gx.expand(h, w), gy.unsqueeze(1).expand(h, w)), dim=-1).expand(n, h, w, 2)
    return F.grid_sample(depth, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _shift_axis(x: np.ndarray, d: float, axis: int) -> np.ndarray:
    """out[i] = x(i − d) along ``axis``, linear between pixels, the source position clamped to the edge pixels
    (``grid_sample``'s border padding)."""
    if d == 0.0:
        return x
    n = x.shape[axis]
    pos = np.clip(np.arange(n, dtype=np.float64) - d, 0.0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = n
    frac = frac.reshape(shape)
    return (np.take(x, lo, axis=axis) * (1.0 - frac) + np.take(x, hi, axis=axis) * frac).astype(np.float32)


class DepthState:
    """The depth memory of one stream: decides per frame whether to compute depth or reuse (and warp) the last map.

    One instance per stream (per partition in the service): the state is only meaningful for consecutive frames of
    the same footage, so call ``reset()`` when the stream is reassigned or restarted. Not thread-safe.
    """

    def __init__(self, source: DepthSource, settings: DepthReuseSettings | None = None) -> None:
        self.source = source
        self.settings = settings or DepthReuseSettings()
        self.frames = 0
        self.fresh = 0
        #: why each fresh map was computed: "first", "disabled", "age", "cut", "motion", "resize"
        self.reasons: Counter[str] = Counter()
        self._map: Any = None  # (1,1,h,w) of the reference frame, torch or numpy as the frames are
        self._ref: FrameSignature | None = None  # signature of the frame the map was computed on
        self._prev: FrameSignature | None = None  # signature of the last frame seen
        self._age = 0  # sampled frames since the reference frame

    @property
    def reuse_ratio(self) -> float:
        """Share of frames so far that reused a map instead of computing depth (0 before any frame)."""
        return 1.0 - self.fresh / self.frames if self.frames else 0.0

    def reset(self) -> None:
        """Forget the map and the counters, e.g. on partition revocation or when a stream restarts."""
        self.frames = 0
        self.fresh = 0
        self.reasons.clear()
        self._map = self._ref = self._prev = None
        self._age = 0

    def depth_for(
        self, frames_rgb: torch.Tensor | np.ndarray, size: tuple[int, int] | None = None
    ) -> tuple[Any, list[bool]]:
        """Depth (N,1,h,w) in [0, 1] for consecutive frames (N,3,H,W) in [0, 1], and which ones were computed fresh.
        Torch tensors in, torch tensors out; numpy arrays in, numpy arrays out.

        ``size`` is the depth map size, as for ``DepthSource.__call__`` (default: the frames' size). At most one
        call to the depth source is made, for exactly the frames that need fresh depth.
        """
        if frames_rgb.ndim != 4 or frames_rgb.shape[1] != 3:
            raise ValueError(f"depth_for expects (N,3,H,W) RGB, got shape {tuple(frames_rgb.shape)}")
        n = int(frames_rgb.shape[0])
        if n == 0:
            raise ValueError("depth_for needs at least one frame")
        h, w = (size[0], size[1]) if size is not None else (frames_rgb.shape[-2], frames_rgb.shape[-1])
        size = (int(h), int(w))

        if not self.settings.enabled:
            depth = self.source(frames_rgb, size)
            self._count(["disabled"] * n)
            return depth, [True] * n

        sigs = signatures(frames_rgb)
        # Per frame: (reason or None, reference) where reference is -1 for the stored map or the batch index of a
        # frame computed fresh in this batch, plus the shift to apply from that reference.
        plan: list[tuple[str | None, int, tuple[float, float]]] = []
        ref_index = -1
        map_size = None if self._map is None else (int(self._map.shape[-2]), int(self._map.shape[-1]))
        for i, sig in enumerate(sigs):
            reason, shift = self._decide(sig, size, map_size)
            if reason is not None:
                self._ref, self._age, ref_index, map_size, shift = sig, 0, i, size, (0.0, 0.0)
            self._age += 1
            self._prev = sig
            plan.append((reason, ref_index, shift))

        fresh_idx = [i for i, (reason, _, _) in enumerate(plan) if reason is not None]
        computed = self.source(frames_rgb[fresh_idx], size) if fresh_idx else None
        slot = {b: k for k, b in enumerate(fresh_idx)}
        thumb = thumbnail_size(sigs[0].frame_size)
        out = []
        for i, (reason, ref, shift) in enumerate(plan):
            if reason is not None:
                assert computed is not None
                out.append(computed[slot[i] : slot[i] + 1])
                continue
            base = self._map if ref < 0 else computed[slot[ref] : slot[ref] + 1]  # type: ignore[index]
            assert base is not None
            out.append(warp_depth(base, shift, thumb) if self.settings.warp else base)
        if fresh_idx:
            assert computed is not None
            self._map = computed[-1:].copy() if isinstance(computed, np.ndarray) else computed[-1:].clone()
        self._count([reason for reason, _, _ in plan])
        fresh = [reason is not None for reason, _, _ in plan]
        if isinstance(out[0], np.ndarray):
            return np.concatenate(out, axis=0), fresh
        import torch

        return torch.cat(out, dim=0), fresh

    def _decide(
        self, sig: FrameSignature, size: tuple[int, int], map_size: tuple[int, int] | None
    ) -> tuple[str | None, tuple[float, float]]:
        """Why ``sig``'s frame needs fresh depth (None = reuse), and the shift from the map's frame when reused."""
        s = self.settings
        ref, prev = self._ref, self._prev
        if ref is None or map_size is None or prev is None:
            return "first", (0.0, 0.0)
        if sig.frame_size != ref.frame_size or sig.frame_size != prev.frame_size or map_size != size:
            return "resize", (0.0, 0.0)
        if self._age >= s.refresh_every:
            return "age", (0.0, 0.0)
        if histogram_distance(ref.hist, sig.hist) > s.scene_cut_threshold:
            return "cut", (0.0, 0.0)
        step = estimate_shift(prev, sig)
        if math.hypot(*step) > s.motion_threshold:
            return "motion", (0.0, 0.0)
        total = estimate_shift(ref, sig)
        if math.hypot(*total) > s.motion_threshold:
            return "motion", (0.0, 0.0)
        return None, total

    def _count(self, reasons: Sequence[str | None]) -> None:
        self.frames += len(reasons)
        for reason in reasons:
            if reason is not None:
                self.fresh += 1
                self.reasons[reason] += 1


class DepthStates:
    """Each stream's ``DepthState``, kept across its consecutive segments and bounded to the ``capacity`` streams
    used most recently (least recently used first out), so a worker that sees many streams holds a fixed memory.

    Why one class: the service (a stream per Kafka key) and ``stream_iqa.Analyzer`` (a ``stream_id`` per call) keep
    the same memory; ``new`` makes a fresh state (``Pipeline.new_depth_state``). Thread-safe: the service's clip
    threads ask for states while the poll thread drops those of revoked partitions."""

    def __init__(self, new: Callable[[], DepthState], capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._new = new
        self.capacity = capacity
        self._states: OrderedDict[str, DepthState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> DepthState:
        """The stream's state (a fresh one for a stream not seen, or evicted), now the most recently used."""
        with self._lock:
            state = self._states.pop(stream_id, None) or self._new()
            self._states[stream_id] = state
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)
            return state

    def drop(self, stream_ids: Iterable[str]) -> None:
        """Forget these streams (their next segment starts from a fresh map), e.g. when their partition is revoked."""
        with self._lock:
            for stream_id in stream_ids:
                self._states.pop(stream_id, None)

    def __contains__(self, stream_id: object) -> bool:
        with self._lock:
            return stream_id in self._states

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def peek(self, stream_id: str) -> DepthState | None:
        """The stream's state without touching its recency (for reports and tests), or None."""
        with self._lock:
            return self._states.get(stream_id)
