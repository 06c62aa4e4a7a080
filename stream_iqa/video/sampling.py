"""Sampling policies as tiny stateful predicates, shared by both backends so they pick the same frames."""

from __future__ import annotations

import math
from typing import Protocol

# Timestamps are floats from pts × time_base; a grid point 0.5 must still match a frame at 0.49999999.
_EPS = 1e-6


class Sampler(Protocol):
    def take(self, index: int, t: float) -> bool:
        """Whether the frame at stream ``index`` and time ``t`` (seconds, increasing) is sampled."""
        ...


class FpsSampler:
    """N frames per second by timestamp: the first frame at or after each 1/N grid point.

    Works on timestamps, not indices, so variable-frame-rate clips are sampled evenly in time. A frame that covers
    several grid points (a gap in the stream) is taken once; the grid then resumes after it.
    """

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self._next = 0.0

    def take(self, index: int, t: float) -> bool:
        if t + _EPS < self._next:
            return False
        self._next = (math.floor(t * self.fps + _EPS) + 1) / self.fps
        return True


class EveryNSampler:
    """Every Nth frame of the decoded stream, starting with the first."""

    def __init__(self, n: int) -> None:
        self.n = n

    def take(self, index: int, t: float) -> bool:
        return index % self.n == 0


class TakeAll:
    """For the keyframes policy: the decoder already dropped every non-key frame."""

    def take(self, index: int, t: float) -> bool:
        return True


def make_sampler(policy: str, fps: float, every_n: int) -> Sampler:
    if policy == "fps":
        return FpsSampler(fps)
    if policy == "every_n":
        return EveryNSampler(every_n)
    if policy == "keyframes":
        return TakeAll()
    raise ValueError(f"unknown sampling policy {policy!r}")
