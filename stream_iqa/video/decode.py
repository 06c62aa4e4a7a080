"""PyAV backend: open (path, URL, bytes), check limits from metadata, decode, sample, convert, rotate.

Only sampled frames are converted to RGB (the conversion, not the decode, dominates at low sampling rates), and the
optional resize runs inside that same swscale call. Every FFmpeg error is translated into a VideoError.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from fractions import Fraction

import av
import av.error
import numpy as np

from .errors import (
    NotFoundError,
    NoVideoStreamError,
    TooLargeError,
    TooLongError,
    UndecodableVideoError,
    VideoError,
)
from stream_iqa.fragments import FragmentSpec, gather

from .frame import ClipInfo, SampledFrame, fit_short_side
from .sampling import make_sampler
from stream_iqa.settings import VideoSettings
from .source import Source
from stream_iqa.deadline import Deadline


def open_container(source: Source, deadline: Deadline | None = None) -> av.container.InputContainer:
    """``av.open`` under the source's allow-lists, FFmpeg's exceptions mapped to contract codes (missing → not_found,
    a demuxer not on ``video.allowed_formats`` or anything else → undecodable, a vetted-out reference → its refusal)."""
    target, kwargs = source.open_args(deadline)
    try:
        # metadata_errors: a corrupt or hostile file's tags are not UTF-8, and PyAV decodes them strictly on open
        return av.open(target, mode="r", metadata_errors="replace", **kwargs)
    except VideoError:
        raise
    except (av.error.FileNotFoundError, av.error.HTTPNotFoundError) as exc:
        _raise_refusal(source)
        raise NotFoundError(source.label, _cause(exc)) from None
    except av.error.ArgumentError:
        # what FFmpeg answers for a demuxer off format_whitelist (an ffconcat list, a playlist, an image pattern…)
        _raise_refusal(source)
        raise UndecodableVideoError(source.label, "not a container format accepted here (video.allowed_formats: "
                                    f"{', '.join(source.settings.allowed_formats)})") from None
    except (av.FFmpegError, OSError) as exc:
        _raise_refusal(source)
        raise UndecodableVideoError(source.label, f"cannot open container ({_cause(exc)})") from None


def _raise_refusal(source: Source) -> None:
    """A vetting refusal inside FFmpeg surfaces as a generic I/O error: report the refusal instead."""
    if source.refused:
        raise source.refused[0]


def _cause(exc: BaseException) -> str:
    """FFmpeg's own words without the repeated file name PyAV appends."""
    strerror = getattr(exc, "strerror", None)
    return strerror or str(exc) or type(exc).__name__


def check_stream(
    source: Source, container: av.container.InputContainer, settings: VideoSettings
) -> tuple[av.video.stream.VideoStream, ClipInfo]:
    """The first video stream and its metadata, after the limits that metadata can answer (pixels, duration)."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        what = f"only {', '.join(kinds)} streams" if kinds else "no streams at all (empty or zero-frame container)"
        raise NoVideoStreamError(source.label, f"no video stream: {what}")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None:  # a codec id FFmpeg has no decoder for (a corrupt or exotic sample description)
        raise UndecodableVideoError(source.label, "video stream has no decoder (unknown or corrupt codec)")
    width, height = ctx.width, ctx.height
    if width <= 0 or height <= 0:
        raise UndecodableVideoError(source.label, "video stream has no frame size (corrupt or zero-frame stream)")
    if width * height > settings.max_pixels:
        raise TooLargeError(
            source.label, f"frame {width}x{height} exceeds max_pixels={settings.max_pixels}"
        )
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    if duration is not None and duration > settings.max_duration_s:
        raise TooLongError(
            source.label, f"duration {duration:.1f} s exceeds max_duration_s={settings.max_duration_s:g}"
        )
    frames = stream.frames or 0
    if duration is not None and duration <= 0 and frames == 0:
        raise UndecodableVideoError(source.label, "video stream has zero duration and no frames")
    rate = stream.average_rate or stream.guessed_rate
    info = ClipInfo(
        duration_s=duration,
        width=width,
        height=height,
        fps=float(rate) if rate else None,
        codec=ctx.name,
        frames=frames,
    )
    return stream, info


def frame_to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 HxWx3, display-oriented; ``size`` is the (width, height) wanted after rotation.

    The resize happens in swscale together with the colour conversion (one pass); rotation is a numpy rot90 of the
    result, since ``frame.rotation`` is counter-clockwise degrees as in FFmpeg's display matrix.
    """
    k = int(round((frame.rotation or 0) / 90.0)) % 4
    if size is not None:
        w, h = size if k % 2 == 0 else (size[1], size[0])
        rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
    else:
        rgb = frame.to_ndarray(format="rgb24")
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))
    return rgb


class PyAVClip:
    """A clip opened with PyAV. Opening checks the limits; :meth:`frames` decodes and samples.

    Use as a context manager (or call :meth:`close`): an unclosed container keeps FFmpeg buffers and decoder
    threads alive, which is what makes a long-running service grow.
    """

    def __init__(
        self, source: Source, settings: VideoSettings, size: tuple[int, int] | None = None,
        short_side: int | None = None, deadline: Deadline | None = None, fragments: FragmentSpec | None = None,
    ) -> None:
        self.label = source.label
        self.settings = settings
        self.size = size
        self.short_side = short_side
        self.fragments = fragments
        self.deadline = deadline or Deadline.none()
        self._source = source
        self._span = _Span()
        self._container = open_container(source, self.deadline)
        try:
            self._stream, self.info = check_stream(source, self._container, settings)
        except BaseException:
            self._container.close()
            raise

    def close(self) -> None:
        self._container.close()

    @property
    def decoded_duration_s(self) -> float:
        """Seconds of the stream the demuxer delivered (first packet to the end of the last), the measure of a file
        cut short against ``info.duration_s``."""
        return self._span.seconds(self._stream.time_base)

    def _target(self, frame: av.VideoFrame) -> tuple[int, int] | None:
        """Output size: explicit ``size``, else the display-oriented frame fitted to ``short_side`` (per frame, since
        rotation is only known on decoded frames)."""
        if self.size is not None or self.short_side is None:
            return self.size
        quarter_turn = int(round((frame.rotation or 0) / 90.0)) % 2
        w, h = (frame.height, frame.width) if quarter_turn else (frame.width, frame.height)
        return fit_short_side(w, h, self.short_side)

    def __enter__(self) -> PyAVClip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self) -> Iterator[SampledFrame]:
        """Sampled frames in presentation order; raises VideoError (too_long, too_large, undecodable_video)."""
        try:
            yield from self._decode()
        except VideoError:
            raise
        except (av.FFmpegError, OSError) as exc:
            _raise_refusal(self._source)
            raise UndecodableVideoError(self.label, f"decoding failed ({_cause(exc)})") from None

    def _decode(self) -> Iterator[SampledFrame]:
        s = self.settings
        stream = self._stream
        ctx = stream.codec_context
        stream.thread_type = "AUTO"
        ctx.thread_count = s.threads
        keyframes_only = s.sampling == "keyframes"
        if keyframes_only:
            ctx.skip_frame = "NONKEY"
        sampler = make_sampler(s.sampling, s.fps, s.every_n)
        time_base = stream.time_base
        step = 1.0 / self.info.fps if self.info.fps else 0.0
        packet_pts: list[int] = []  # keyframes only, sorted: recovers each key frame's index in the full stream
        first_pts: int | None = None
        span = self._span
        decoded = 0
        t = -step
        for packet in self._container.demux(stream):
            self.deadline.check()
            if packet.pts is not None:
                span.add(packet.pts, packet.duration or 0)
            if keyframes_only and packet.pts is not None:
                bisect.insort(packet_pts, packet.pts)
            for frame in packet.decode():
                if frame.pts is not None and time_base is not None:
                    if first_pts is None:
                        first_pts = frame.pts
                    t = float((frame.pts - first_pts) * time_base)
                else:  # no pts at all (rare raw streams): assume the nominal rate
                    t = t + step
                if t > s.max_duration_s:
                    raise TooLongError(
                        self.label, f"passed max_duration_s={s.max_duration_s:g} at t={t:.1f} s while decoding"
                    )
                if frame.width * frame.height > s.max_pixels:
                    raise TooLargeError(
                        self.label, f"frame {frame.width}x{frame.height} exceeds max_pixels={s.max_pixels}"
                    )
                if keyframes_only:
                    # Closed GOPs: every frame shown before this key frame was demuxed before it.
                    index = bisect.bisect_left(packet_pts, frame.pts) if frame.pts is not None else decoded
                else:
                    index = decoded
                decoded += 1
                if sampler.take(index, t):
                    target = self._target(frame)
                    native = frame_to_rgb(frame, None) if self.fragments is not None else None
                    rgb = frame_to_rgb(frame, target) if target is not None or native is None else native
                    yield SampledFrame(
                        index=index, t=t, rgb=rgb, keyframe=bool(frame.key_frame),
                        fragments=None if native is None else gather(native, self.fragments),
                    )
        if decoded == 0:
            _raise_refusal(self._source)
            raise UndecodableVideoError(self.label, "no decodable video frames")


class _Span:
    """First pts to the end of the last packet: how much of the stream the demuxer delivered. Kept in pts integers
    on the per-packet path; converted to seconds once, when asked."""

    def __init__(self) -> None:
        self.lo: int | None = None
        self.hi: int | None = None

    def add(self, pts: int, duration: int) -> None:
        self.lo = pts if self.lo is None or pts < self.lo else self.lo
        end = pts + duration
        self.hi = end if self.hi is None or end > self.hi else self.hi

    def seconds(self, time_base: Fraction | None) -> float:
        if self.lo is None or self.hi is None or time_base is None:
            return 0.0
        return float((self.hi - self.lo) * time_base)
