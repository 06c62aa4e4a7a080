"""A clip's wall-clock budget and its cancellation, checked cooperatively by every stage that can block.

Python threads cannot be killed, so a clip ends early only where its own code looks: the fetcher between reads (and
in its socket timeouts), the decoder between packets, the pipeline between frames. One ``Deadline`` object carries
both reasons to stop, and the two must stay apart because they mean opposite things for delivery: a *timeout* is the
input's fault (an error record is published and the offset committed), a *cancellation* is the worker's (shutdown:
nothing is published, the offset is not committed, another worker redelivers the clip).
"""

from __future__ import annotations

import threading
import time


class Cancelled(Exception):
    """The worker gave the clip up (shutdown deadline, second signal): publish nothing, commit nothing."""


class Deadline:
    """``seconds`` from now (``None``: no time limit), or sooner if ``cancel`` is set.

    ``check()`` raises :class:`Cancelled` or ``ClipTimeoutError`` (contract code ``timeout``); ``remaining()`` bounds
    blocking calls (socket timeouts, queue waits) so that none outlives the budget.
    """

    def __init__(self, seconds: float | None = None, cancel: threading.Event | None = None, label: str = "clip") -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.cancel = cancel
        self.label = label

    @classmethod
    def none(cls) -> Deadline:
        return cls()

    @property
    def expired(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.started >= self.seconds

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def remaining(self, cap: float | None = None) -> float | None:
        """Seconds left (never below a small positive floor, so it can be a timeout), at most ``cap``."""
        if self.seconds is None:
            return cap
        left = max(0.001, self.seconds - (time.monotonic() - self.started))
        return left if cap is None else min(left, cap)

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled(f"{self.label}: given up by the worker (shutting down)")
        if self.expired:
            from stream_iqa.video.errors import ClipTimeoutError  # here: stream_iqa.video imports this module

            assert self.seconds is not None
            raise ClipTimeoutError(self.label, f"not finished within the clip deadline of {self.seconds:g} s "
                                               "(service.clip_timeout_s)")
