"""Temporal analysis: per-frame distortion probabilities -> distortion segments -> the ClipReport.

Pure numpy, no model code, so the same functions serve ``replay`` and the Kafka service. The steps, each a knob in
``TemporalSettings``:

1. **Smoothing** (``smooth``): a two-sided exponential moving average over *timestamps*. A single noisy frame should
   not open or close a segment; a one-sided (causal) EMA would also delay every boundary by about a half-life, and a
   clip is analysed whole, so the forward and backward passes are averaged (symmetric, no lag). The decay uses the
   real time between samples (``alpha = 1 - 2**(-dt / half_life)``), so variable frame rate and keyframe sampling are
   smoothed by seconds, not by frame counts.
2. **Hysteresis**: a segment opens when the smoothed probability reaches ``enter`` and closes when it falls below
   ``exit`` (< ``enter``), so a probability hovering near the threshold does not chatter into many segments.
   **Boundaries from the frames themselves**: each such run then extends over the neighbouring frames whose own
   (unsmoothed) probability is at least ``exit``. Smoothing decides *whether* there is a segment (one noisy frame
   cannot open one); the frames decide *where* it starts and ends. Without this a smoothed step crosses a high
   ``enter`` late and falls below ``exit`` early: at a 0.90 threshold, frames flagged at 0.99 over 13.5–16 s gave a
   segment of 14.75–15.75 s. For the same reason the default half-life is 0.25 s: at 0.5 s, a 2-s event whose every
   frame scores 1.0 peaks at 0.81 smoothed (2 frames/s), under a 0.86 threshold, and was never reported; a one-frame
   blip is still no segment (the minimum duration drops it) and a one-frame dropout still splits none (the merge gap).
3. **Time spans** (``frame_cells``): each sampled frame stands for the instants nearer to it than to its neighbours,
   i.e. from the midpoint with the previous frame to the midpoint with the next. So a segment ends at the timestamp of
   its last frame plus half the local sampling interval (and starts half an interval before its first frame). The
   first frame's cell starts at 0 and the last frame's cell ends at the clip duration, so the cells tile the clip: an
   all-flagged clip gives exactly [0, duration]. Everything is capped to [0, duration].
4. **Gap merging**, then **minimum duration**: spans of one type separated by at most ``merge_gap_s`` are joined
   (a brief dropout inside one dark scene is one event), and what is still shorter than ``min_duration_s`` is dropped
   (blips). Merging comes first so that two close short runs may together form a real segment.

Segments of one type never overlap (cells are disjoint and merging only joins); different types may.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from stream_iqa.schema import (
    DISTORTION_TYPES,
    ClipReport,
    Distortions,
    FrameRecord,
    ModelInfo,
    QualitySummary,
    Segment,
    Source,
)
from stream_iqa.settings import TemporalSettings

__all__ = ["TemporalSettings", "aggregate_quality", "build_report", "distortion_share", "find_segments", "frame_cells",
           "smooth"]

# Report precision: milliseconds for times, 0.01 for quality, 1e-4 for probabilities and shares.
_TIME_DP, _QUALITY_DP, _PROB_DP = 3, 2, 4


def _check_times(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"timestamps must be 1-D, got shape {t.shape}")
    if t.size and (not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0)):
        raise ValueError("timestamps must be finite and non-decreasing (sort frames by pts first)")
    return t


def smooth(t: np.ndarray, p: np.ndarray, half_life_s: float) -> np.ndarray:
    """Two-sided EMA of ``p`` (shape (N,) or (N, K), smoothed along axis 0) over timestamps ``t`` (N,).

    Each pass starts from the first sample it sees (no pull towards 0 at the clip edges); frames with equal
    timestamps get ``alpha = 0`` between them, i.e. the later one is ignored by the forward pass and the earlier one
    by the backward pass, and the average treats them alike.
    """
    t = _check_times(t)
    p = np.asarray(p, dtype=np.float64)
    if p.shape[:1] != t.shape:
        raise ValueError(f"{p.shape[0] if p.ndim else 0} probabilities for {t.size} timestamps")
    if half_life_s <= 0 or t.size < 2:
        return p.copy()
    alpha = 1.0 - np.exp2(-np.diff(t) / half_life_s)  # weight of the new sample after each gap
    alpha = alpha.reshape(-1, *([1] * (p.ndim - 1)))
    fwd, bwd = np.empty_like(p), np.empty_like(p)
    fwd[0], bwd[-1] = p[0], p[-1]
    for i in range(1, len(p)):
        fwd[i] = fwd[i - 1] + alpha[i - 1] * (p[i] - fwd[i - 1])
    for i in range(len(p) - 2, -1, -1):
        bwd[i] = bwd[i + 1] + alpha[i] * (p[i] - bwd[i + 1])
    return (fwd + bwd) / 2.0


def frame_cells(t: np.ndarray, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the span each frame stands for: midpoints between neighbours; the first cell starts at 0 and the
    last ends at ``duration_s`` (when unknown: the last timestamp plus half the previous interval). Capped to
    [0, duration]."""
    t = _check_times(t)
    if t.size == 0:
        return t.copy(), t.copy()
    mid = (t[1:] + t[:-1]) / 2.0
    if duration_s is not None:
        cap = float(duration_s)
    else:
        cap = float(t[-1] + (t[-1] - t[-2]) / 2.0) if t.size > 1 else float(t[-1])
    lo = np.concatenate([[0.0], mid])
    hi = np.concatenate([mid, [cap]])
    return np.clip(lo, 0.0, cap), np.clip(hi, 0.0, cap)


def _hysteresis_runs(s: np.ndarray, enter: float, exit_: float) -> list[tuple[int, int]]:
    """Inclusive frame-index runs in which the signal is 'on': on at >= enter, off again below exit."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, v in enumerate(s):
        if start is None and v >= enter:
            start = i
        elif start is not None and v < exit_:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(s) - 1))
    return runs


def _extend_runs(runs: list[tuple[int, int]], raw: np.ndarray, exit_: float) -> list[tuple[int, int]]:
    """Each run widened over the adjacent frames whose raw value is >= ``exit_`` (runs may then touch or overlap;
    the caller merges them)."""
    out: list[tuple[int, int]] = []
    for a, b in runs:
        while a > 0 and raw[a - 1] >= exit_:
            a -= 1
        while b < len(raw) - 1 and raw[b + 1] >= exit_:
            b += 1
        out.append((a, b))
    return out


def find_segments(
    t: np.ndarray,
    probs: np.ndarray,
    settings: TemporalSettings,
    thresholds: Mapping[str, float],
    duration_s: float | None = None,
) -> list[Segment]:
    """Segments from per-frame timestamps ``t`` (N,) and raw probabilities ``probs`` (N, 3) in ``DISTORTION_TYPES``
    order. ``thresholds`` are the model's flag thresholds (enter defaults). Sorted by start, then type. Times and
    confidences are not rounded here (``build_report`` rounds for output)."""
    t = _check_times(t)
    probs = np.asarray(probs, dtype=np.float64)
    if t.size == 0 and probs.size == 0:
        return []
    if probs.shape != (t.size, len(DISTORTION_TYPES)):
        raise ValueError(f"probs must have shape ({t.size}, {len(DISTORTION_TYPES)}), got {probs.shape}")
    levels = settings.thresholds(thresholds)
    smoothed = smooth(t, probs, settings.half_life_s)
    lo, hi = frame_cells(t, duration_s)
    segments: list[Segment] = []
    for k, kind in enumerate(DISTORTION_TYPES):
        merged: list[list[int]] = []  # [first frame, last frame]
        enter, exit_ = levels[kind]
        for a, b in _extend_runs(_hysteresis_runs(smoothed[:, k], enter, exit_), probs[:, k], exit_):
            if merged and lo[a] - hi[merged[-1][1]] <= settings.merge_gap_s:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        for a, b in merged:
            start, end = float(lo[a]), float(hi[b])
            if end - start >= settings.min_duration_s:
                conf = float(np.clip(smoothed[a : b + 1, k].mean(), 0.0, 1.0))
                segments.append(Segment(type=kind, start=start, end=end, confidence=conf))
    return sorted(segments, key=lambda s: (s.start, DISTORTION_TYPES.index(s.type)))


def aggregate_quality(q: Sequence[float] | np.ndarray) -> QualitySummary:
    """Mean, minimum and 10th percentile (linear interpolation) of per-frame quality. Raises ``ValueError`` on no
    frames: a clip with nothing analysed has no quality and should produce an ``ErrorRecord`` instead."""
    q = np.asarray(q, dtype=np.float64).ravel()
    if q.size == 0:
        raise ValueError("no quality scores to aggregate")
    return QualitySummary(mean=float(q.mean()), min=float(q.min()), p10=float(np.percentile(q, 10)))


def distortion_share(segments: Sequence[Segment], duration_s: float) -> Distortions:
    """Per type, the fraction of the clip covered by its segments (they do not overlap within a type, so lengths
    add). A zero-length clip has zero shares."""
    share = dict.fromkeys(DISTORTION_TYPES, 0.0)
    if duration_s > 0:
        for s in segments:
            share[s.type] += (s.end - s.start) / duration_s
    return Distortions(**{k: min(max(v, 0.0), 1.0) for k, v in share.items()})


def build_report(
    frames: Sequence[FrameRecord],
    *,
    clip_id: str,
    stream_id: str,
    duration_s: float,
    model: ModelInfo,
    thresholds: Mapping[str, float],
    settings: TemporalSettings | None = None,
    source: Source | None = None,
) -> ClipReport:
    """The ClipReport of one clip from its per-frame records (any order; sorted by ``t``), rounded for output:
    times to ms, quality to 0.01, probabilities and shares to 1e-4. Raises ``ValueError`` without frames."""
    if not frames:
        raise ValueError(f"clip {clip_id!r}: no frames analysed")
    settings = settings or TemporalSettings()
    ordered = sorted(frames, key=lambda f: (f.t, f.frame_index))
    t = np.array([f.t for f in ordered])
    probs = np.array([[getattr(f.distortions, k) for k in DISTORTION_TYPES] for f in ordered])
    segments = find_segments(t, probs, settings, thresholds, duration_s)
    share = distortion_share(segments, duration_s)
    quality = aggregate_quality([f.quality for f in ordered])
    return ClipReport(
        clip_id=clip_id,
        stream_id=stream_id,
        duration_s=round(duration_s, _TIME_DP),
        frames_analyzed=len(ordered),
        quality=QualitySummary(**{k: round(v, _QUALITY_DP) for k, v in quality.model_dump().items()}),
        segments=[
            Segment(
                type=s.type,
                start=round(s.start, _TIME_DP),
                end=round(s.end, _TIME_DP),
                confidence=round(s.confidence, _PROB_DP),
            )
            for s in segments
        ],
        model=model,
        source=source,
        distortion_share=Distortions(**{k: round(v, _PROB_DP) for k, v in share.model_dump().items()}),
    )
