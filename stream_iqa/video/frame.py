"""What decode and sample hands to the rest of the pipeline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """One sampled frame, display-oriented (rotation metadata applied).

    ``index`` is the frame's position in the decoded stream (presentation order), ``t`` seconds from the first
    frame's pts, so both survive variable frame rates and map straight onto the contract's ``frame_index``/``t``.
    """

    index: int
    t: float
    rgb: np.ndarray  # uint8 HxWx3
    keyframe: bool
    #: uint8 SxSx3 fragments gathered from the frame at its native resolution, when the model asked for them
    #: (``open_video(fragments=…)``; ``rgb`` may have been downscaled, these never are)
    fragments: np.ndarray | None = None
    #: monotonic clock when the frame left the decoder: per-frame latency is measured from here to its score
    decoded_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """Container/stream metadata read before decoding.

    ``width``/``height`` are the coded (stored) size: the rotation lives in per-frame side data, which PyAV only
    exposes on decoded frames, so a 90°-rotated clip yields frames of ``height``×``width``. ``duration_s``/``fps``
    are None where the container does not say (e.g. some MPEG-TS segments); ``frames`` is 0 when unknown.
    """

    duration_s: float | None
    width: int
    height: int
    fps: float | None
    codec: str
    frames: int


class VideoClip(Protocol):
    """An opened clip; use as a context manager so the decoder is always released."""

    info: ClipInfo
    label: str
    #: seconds of the stream actually delivered so far (compared with ``info.duration_s`` to detect a cut file)
    decoded_duration_s: float
    #: pts jumps the frame times were carried across (``integrity.timestamp_discontinuities``)
    timestamp_discontinuities: int
    #: packets the decoder rejected and skipped (``integrity.damaged_packets``)
    damaged_packets: int

    def frames(self) -> Iterator[SampledFrame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoClip: ...

    def __exit__(self, *exc: object) -> None: ...


def integrity_of(info: ClipInfo, decoded_s: float) -> tuple[bool, float | None]:
    """(truncated, declared duration): the container's declared duration against what was decoded, with a tolerance of
    max(0.5 s, two frame intervals) for rounding, edit lists and a last frame's own duration."""
    declared = info.duration_s
    if not declared:
        return False, None
    tolerance = max(0.5, 2.0 / info.fps if info.fps else 0.0)
    return decoded_s < declared - tolerance, declared


def fit_short_side(width: int, height: int, short_side: int | None) -> tuple[int, int] | None:
    """(width, height) with the shorter side at ``short_side``, aspect kept, even sides (what yuv420 scalers like);
    None when no downscale is needed, since upscaling adds cost and no information."""
    if not short_side or min(width, height) <= short_side:
        return None
    s = short_side / min(width, height)
    return max(2, round(width * s / 2) * 2), max(2, round(height * s / 2) * 2)
