"""decord backend for local files: random access by index, handy when the sampled indices are known up front.

Metadata and limits come from a PyAV probe (header only, no decoding), so both backends raise the same errors and
report the same ClipInfo; timestamps come from decord's own pts table and go through the same samplers, so both
backends pick the same frames. decord applies rotation metadata itself.

decord reads a file its own way, and where that way is not faithful the file is handed to PyAV instead
(``DecordUnsuitable``, caught by ``open_video``): more than one video stream (decord picks one itself, not the one
probed and limited), a pts table that does not increase (concatenated MPEG-TS: it sorts the pts while the
pictures stay in file order, so pictures got other frames' times), one that starts before zero (an mp4 edit list's
hidden pre-roll frames, timed and shown) or far from it, key-frame sampling (its key indices are in decode order:
wrong with open GOPs), and any file it cannot open (no declared duration, a cut upload), which PyAV may still
analyse or report as truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import cv2
import numpy as np

from stream_iqa.fragments import FragmentSpec, gather

from .decode import check_stream, open_container, overstates_duration
from .errors import TooLargeError, TooLongError, UndecodableVideoError, VideoError
from .frame import SampledFrame, fit_short_side
from .sampling import make_sampler
from stream_iqa.settings import VideoSettings
from .source import Source
from stream_iqa.deadline import Deadline

_BATCH = 16  # frames per get_batch: bounds memory at 16 RGB frames whatever the sampling rate
#: a first pts further than this from 0 s is no clip's (an unset start time read as a huge number)
_MAX_START_S = 1e6


class DecordUnsuitable(Exception):
    """decord would not read this file faithfully (``reason``); PyAV decodes it instead."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DecordClip:
    """A local file read with ``decord.VideoReader``; same interface as :class:`PyAVClip`."""

    def __init__(
        self, source: Source, settings: VideoSettings, size: tuple[int, int] | None = None,
        short_side: int | None = None, deadline: Deadline | None = None, fragments: FragmentSpec | None = None,
    ) -> None:
        if source.path is None:
            raise ValueError("the decord backend reads local files only")
        self.label = source.label
        self.settings = settings
        self.size = size
        self.deadline = deadline or Deadline.none()
        self.fragments = fragments
        self._short_side = short_side if size is None else None
        self.damaged_packets = 0  # decord decodes whole or, at open, hands the file to PyAV
        self.timestamp_discontinuities = 0  # a pts table that does not increase is handed to PyAV
        if settings.sampling == "keyframes":
            raise DecordUnsuitable("key-frame sampling (decord's key indices are in decode order)")
        # the probe opens the file under video.allowed_formats, so decord (whose FFmpeg has no allow-list) only
        # ever sees a container of an accepted format
        container = open_container(source, self.deadline)
        try:
            stream, self.info = check_stream(source, container, settings)
            overstated = overstates_duration(container, stream)
            if len(container.streams.video) > 1:
                raise DecordUnsuitable(f"{len(container.streams.video)} video streams (decord picks its own)")
            if size is None and short_side is not None and fragments is None:
                # decord rotates, then scales into the box it is given: the box must be the displayed frame's,
                # and only a decoded frame carries the rotation (one frame, decoded here by PyAV)
                size = fit_short_side(*_displayed(container, stream, self.info), short_side)
        except StopIteration:
            raise DecordUnsuitable("PyAV decodes no first frame to read its rotation from") from None
        finally:
            container.close()
        import decord  # deferred: only the decord backend pays for importing it

        kwargs: dict[str, int] = {"num_threads": settings.threads}
        self._scaled = size is not None and fragments is None  # fragments need native frames: resized here
        if self._scaled:
            assert size is not None
            kwargs.update(width=size[0], height=size[1])
        try:
            self._reader: decord.VideoReader | None = decord.VideoReader(str(source.path), ctx=decord.cpu(0), **kwargs)
        except Exception as exc:  # decord raises DECORDError/RuntimeError with multi-line C++ traces
            raise DecordUnsuitable(f"decord cannot open it ({_first_line(exc)})") from None
        self._times, step = self._timeline(self._reader)
        #: the pts table's extent: decord opens only files it can index whole (a cut one goes to PyAV)
        self.decoded_duration_s = float(self._times[-1]) + step
        if overstated and self.info.duration_s is not None and self.decoded_duration_s < self.info.duration_s:
            self.info = replace(self.info, duration_s=self.decoded_duration_s)  # a longer audio track's length

    def _timeline(self, vr: object) -> tuple[np.ndarray, float]:
        """Frame times from 0 and the frame interval, from decord's pts table, or ``DecordUnsuitable``."""
        n = len(vr)  # type: ignore[arg-type]
        if n == 0:
            raise DecordUnsuitable("decord finds no frames")
        starts = np.asarray(vr.get_frame_timestamp(np.arange(n)))[:, 0].astype(np.float64)  # type: ignore[attr-defined]
        if not np.isfinite(starts).all() or not 0.0 <= starts[0] <= _MAX_START_S:
            raise DecordUnsuitable(f"its frame times start at {starts[0]:g} s (edit-list pre-roll, or no start time)")
        if n > 1 and not (np.diff(starts) > 0).all():
            raise DecordUnsuitable("its frame times do not increase (concatenated segments whose pts restart)")
        times = starts - starts[0]
        return times, float(times[1] - times[0]) if n > 1 else 0.0

    def close(self) -> None:
        self._reader = None  # decord has no close(); dropping the last reference frees the demuxer

    def __enter__(self) -> DecordClip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self) -> Iterator[SampledFrame]:
        """Same frames as the PyAV backend; the duration limit is checked on the pts table before decoding."""
        if self._reader is None:
            raise ValueError("clip is closed")
        try:
            yield from self._frames(self._reader)
        except VideoError:
            raise
        except Exception as exc:
            raise UndecodableVideoError(self.label, f"decord failed ({_first_line(exc)})") from None

    def _frames(self, vr: object) -> Iterator[SampledFrame]:
        s = self.settings
        times = self._times
        if times[-1] > s.max_duration_s:
            raise TooLongError(self.label, f"duration {times[-1]:.1f} s exceeds max_duration_s={s.max_duration_s:g}")
        keys = set(int(i) for i in vr.get_key_indices())  # type: ignore[attr-defined]
        sampler = make_sampler(s.sampling, s.fps, s.every_n)
        picked = [i for i in range(len(times)) if sampler.take(i, float(times[i]))]
        scaled = self._scaled  # decord's scaler gave the size (an explicit one, or the short side fitted)
        for lo in range(0, len(picked), _BATCH):
            self.deadline.check()
            chunk = picked[lo : lo + _BATCH]
            batch = vr.get_batch(chunk).asnumpy()  # type: ignore[attr-defined]
            for i, rgb in zip(chunk, batch):
                self.deadline.check()
                if not scaled and rgb.shape[0] * rgb.shape[1] > s.max_pixels:  # a resolution change mid-stream
                    raise TooLargeError(self.label, f"frame {rgb.shape[1]}x{rgb.shape[0]} exceeds "
                                                    f"max_pixels={s.max_pixels}")
                frags = gather(rgb, self.fragments) if self.fragments is not None else None
                # fitted to the frame as decoded: display orientation, rotation applied
                want = (fit_short_side(rgb.shape[1], rgb.shape[0], self._short_side) if self._short_side
                        else self.size)
                if not scaled and want is not None and (rgb.shape[1], rgb.shape[0]) != tuple(want):
                    rgb = cv2.resize(rgb, tuple(want), interpolation=cv2.INTER_AREA)
                yield SampledFrame(index=i, t=float(times[i]), rgb=np.ascontiguousarray(rgb), keyframe=i in keys,
                                   fragments=frags)


def _displayed(container: object, stream: object, info: object) -> tuple[int, int]:
    """(width, height) of the frame as shown: the stored size, turned a quarter where the first frame says so."""
    frame = next(container.decode(stream))  # type: ignore[attr-defined]
    quarter_turn = int(round((frame.rotation or 0) / 90.0)) % 2
    w, h = info.width, info.height  # type: ignore[attr-defined]
    return (h, w) if quarter_turn else (w, h)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
