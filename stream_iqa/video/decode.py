"""PyAV backend: open (path, URL, bytes), check limits from metadata, decode, sample, convert, rotate.

Only sampled frames are converted to RGB (the conversion, not the decode, dominates at low sampling rates), and the
optional resize runs inside that same swscale call. Every FFmpeg error is translated into a VideoError.
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Iterator
from dataclasses import replace
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
from stream_iqa.log import get_logger

log = get_logger(__name__)

#: a forward pts jump this far past the expected next frame is a discontinuity (a splice, a restarted encoder), not a
#: pause of the camera: larger than any real gap between frames we expect, far smaller than a concatenation's jump
MAX_PTS_GAP_S = 10.0
#: frame rates a camera may have, from one frame in 100 s (time-lapse) to 1000 (slow motion); a stream declaring a
#: rate outside it has no known rate
_PLAUSIBLE_FPS = (Fraction(1, 100), Fraction(1000))
#: rebase step when neither the nominal rate nor an observed interval is known
_FALLBACK_STEP = 1.0 / 25.0
#: discontinuities logged one by one per clip; the report carries the full count
_LOGGED_JUMPS = 5


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
    duration = video_duration(container, stream)
    if duration is not None and duration > settings.max_duration_s:
        raise TooLongError(
            source.label, f"duration {duration:.1f} s exceeds max_duration_s={settings.max_duration_s:g}"
        )
    frames = max(stream.frames or 0, 0)
    if duration is not None and not duration > 0:
        if frames == 0:
            raise UndecodableVideoError(source.label, "video stream has zero duration and no frames")
        duration = None  # a negative (crafted) or zero declared length says nothing: decoding measures it
    rate = nominal_rate(stream)
    info = ClipInfo(
        duration_s=duration,
        width=width,
        height=height,
        fps=float(rate) if rate else None,
        codec=ctx.name,
        frames=frames,
    )
    return stream, info


def nominal_rate(stream: av.video.stream.VideoStream) -> Fraction | None:
    """Frames per second of the stream, the frame interval the timeline steps by across a timestamp jump: FFmpeg's
    guess (from the frames' own timestamps) first, the average (frames over the stream's duration) second, and
    neither where it is no camera's rate. Not the average first: a recording paused for a minute averages 5/16 fps
    for 5-fps video, and a header can declare anything (FLV's ``framerate`` of -5 ran the timeline backwards)."""
    for rate in (stream.guessed_rate, stream.average_rate):
        if rate is not None and rate.denominator > 0 and _PLAUSIBLE_FPS[0] <= rate <= _PLAUSIBLE_FPS[1]:
            return Fraction(rate)
    return None


def video_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """Seconds of the video stream itself, first frame to the end of the last, as the metadata declares it.

    The stream's own duration where the container has one (mp4, ts); else Matroska's per-track ``DURATION`` tag
    (FFmpeg and mkvmerge write it); else the container's duration, which spans every stream (a longer audio track
    makes it longer) and may include a start offset, so the offset of the video's first frame is taken off it. The
    latter is only an upper bound: :meth:`PyAVClip._settle` brings it down to what decoding found.
    """
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    start = _start_s(stream)
    tagged = _tag_seconds(stream.metadata.get("DURATION"))
    if tagged is not None:  # an end timestamp, like Matroska's segment duration
        return tagged - start if tagged > start else tagged
    if container.duration is None:
        return None
    total = container.duration / av.time_base
    origin = 0.0 if _counts_from_zero(container) else (container.start_time or 0) / av.time_base
    extent = total - max(0.0, start - origin)
    return extent if extent > 0 else total


def overstates_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> bool:
    """Whether :func:`video_duration` fell back on a container-wide figure that another stream may have stretched:
    then the decoded extent, not the figure, is the video's length once decoding has reached the end. A lone video
    stream keeps its figure, so a cut single-stream file is still reported as truncated."""
    if stream.duration is not None or _tag_seconds(stream.metadata.get("DURATION")) is not None:
        return False
    return container.duration is not None and len(container.streams) > 1


def _start_s(stream: av.video.stream.VideoStream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _counts_from_zero(container: av.container.InputContainer) -> bool:
    """Matroska's segment duration runs from timestamp 0, not from the first frame (FFmpeg passes it on as is), so a
    clip cut from a longer recording declares its end time; other demuxers count from ``start_time``."""
    return "matroska" in (container.format.name or "")


def _tag_seconds(value: str | None) -> float | None:
    """``HH:MM:SS.fraction`` (a Matroska ``DURATION`` tag) in seconds; None when absent or malformed."""
    if not value:
        return None
    try:
        hours, minutes, seconds = value.strip().split(":")
        total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
    return total if math.isfinite(total) and total > 0 else None


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
        self._overstated = overstates_duration(self._container, self._stream)
        step = 1.0 / self.info.fps if self.info.fps else 0.0
        # key frames lie a GOP apart, however long: only a backward jump is a discontinuity there
        gap = math.inf if settings.sampling == "keyframes" else MAX_PTS_GAP_S
        # kept: once the container is closed, the stream's fields read freed memory (decoded_duration_s gave 30720)
        self._time_base = self._stream.time_base
        self._timeline = _Timeline(self._time_base, step, gap, self.label)
        self.damaged_packets = 0
        #: where key frames sit among all the frames, for key-frame sampling (which decodes key frames only)
        self._keys: _KeyframeClock | None = None

    def close(self) -> None:
        self._container.close()

    @property
    def decoded_duration_s(self) -> float:
        """Seconds of the stream the demuxer delivered (first packet to the end of the last), the measure of a file
        cut short against ``info.duration_s``. Across timestamp discontinuities the packets' pts no longer measure
        anything, so the frame timeline's extent counts instead."""
        if self._keys is not None and self._keys.jumps:
            return self._keys.extent_s(self._time_base)
        if self._timeline.discontinuities:
            return self._timeline.end
        return self._span.seconds(self._time_base)

    @property
    def timestamp_discontinuities(self) -> int:
        """How many times the frame timeline was re-based over a pts jump (see :class:`_Timeline`)."""
        return self._timeline.discontinuities + (self._keys.jumps if self._keys is not None else 0)

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
        timeline = self._timeline
        start = stream.start_time  # an mp4 edit list's pre-roll packets lie before it, and are never shown
        keys = None
        if keyframes_only:
            gap = int(MAX_PTS_GAP_S / self._time_base) if self._time_base else None
            keys = self._keys = _KeyframeClock(start, gap)
        span = self._span
        decoded = 0
        for packet in self._container.demux(stream):
            self.deadline.check()
            if packet.pts is not None and (start is None or packet.pts >= start):
                span.add(packet.pts, packet.duration or 0)
            if keys is not None:
                keys.add(packet)
                if keys.origin is not None:  # time 0 where decoding every frame would put it
                    timeline.starts_at(keys.origin)
            for frame in self._decoded(packet):
                placed = keys.place(frame.pts) if keys is not None else None
                t = timeline.at(frame.pts if placed is None else placed[0])
                if t > s.max_duration_s:
                    raise TooLongError(
                        self.label, f"passed max_duration_s={s.max_duration_s:g} at t={t:.1f} s while decoding"
                    )
                if frame.width * frame.height > s.max_pixels:
                    raise TooLargeError(
                        self.label, f"frame {frame.width}x{frame.height} exceeds max_pixels={s.max_pixels}"
                    )
                index = decoded if placed is None else placed[1]
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
        self._settle()

    def _decoded(self, packet: av.Packet) -> list[av.VideoFrame]:
        """The packet's frames; none for a packet the decoder rejects as invalid data, which is skipped and counted,
        as FFmpeg's own tools go on past it. One damaged key frame, or the partial last packet of a cut-off upload
        (with single-threaded decoding), used to refuse the whole clip as undecodable."""
        try:
            return packet.decode()
        except av.error.InvalidDataError as exc:
            self.damaged_packets += 1
            # a lost first key frame: the clip still starts where the stream does, not at the first frame decoded
            # (the stream's start time, not the packet's pts: with an edit list they differ by the decoder delay)
            start = self._stream.start_time if self._stream.start_time is not None else packet.pts
            if start is not None:
                self._timeline.starts_at(start)
            if self.damaged_packets <= _LOGGED_JUMPS:
                log.warning("video packet rejected by the decoder; skipped", clip=self.label, pts=packet.pts,
                            error=_cause(exc), damaged_packets=self.damaged_packets)
            return []

    def _settle(self) -> None:
        """Decoding reached the end of the stream: where the declared duration cannot be the video's (pts that
        restarted, or a container-wide figure another stream stretched), report what was decoded instead, so that a
        longer audio track is not read as a cut file. A stream's own duration is kept: against it, a short decode is
        a real truncation."""
        declared, decoded = self.info.duration_s, self.decoded_duration_s
        if decoded <= 0 or declared is None:
            return
        if self.timestamp_discontinuities or (self._overstated and decoded < declared):
            self.info = replace(self.info, duration_s=decoded)


class _Timeline:
    """Frame times in seconds from the first frame, kept monotonic across pts discontinuities.

    Concatenated MPEG-TS segments (DVR and HLS recordings) restart their pts mid-file, and a splice can jump it far
    ahead; measured from the first pts alone, the second part would repeat the first part's times (or sit a minute
    later), and the fps sampler, which skips frames behind its grid, would drop it. So a frame whose pts does not
    advance (backwards, or repeating a time) or lands more than ``max_gap_s`` past the expected next frame
    continues the timeline one frame interval after the last time (a running offset), and the jump is counted and
    logged. Frames without a pts (rare raw streams) are assumed to follow at the nominal rate.
    """

    def __init__(self, time_base: Fraction | None, step: float, max_gap_s: float, label: str) -> None:
        self.time_base = time_base
        self.step = step
        self.max_gap_s = max_gap_s
        self.label = label
        self.discontinuities = 0
        self._origin: int | None = None
        self._offset = 0.0
        self._last: float | None = None
        self._interval = step  # the nominal frame interval, else the last one seen

    @property
    def end(self) -> float:
        """The end of the last frame on the timeline (0 before any)."""
        return 0.0 if self._last is None else self._last + self._gap()

    def starts_at(self, pts: int) -> None:
        """Put time 0 at ``pts`` if no frame has been placed yet (the first frames could not be decoded)."""
        if self._origin is None and self._last is None:
            self._origin = pts

    def at(self, pts: int | None) -> float:
        if pts is None or self.time_base is None:
            t = 0.0 if self._last is None else self._last + self.step
        else:
            if self._origin is None:  # the first pts; after frames without one, it carries on from them
                self._origin = pts
                self._offset = 0.0 if self._last is None else self._last + self._gap()
            t = float((pts - self._origin) * self.time_base) + self._offset
            if self._last is not None and self._jumped(t):
                t = self._rebase(t)
        if self._last is not None and t > self._last and not self.step:
            self._interval = t - self._last
        self._last = t
        return t

    def _gap(self) -> float:
        return self._interval or _FALLBACK_STEP

    def _jumped(self, t: float) -> bool:
        """Not after the previous frame (two frames cannot share an instant: a restarted clock whose key frames
        repeat a time), or far past where the next one was due."""
        assert self._last is not None
        return t <= self._last or t > self._last + self._gap() + self.max_gap_s

    def _rebase(self, t: float) -> float:
        assert self._last is not None
        expected = self._last + self._gap()
        self._offset += expected - t
        self.discontinuities += 1
        if self.discontinuities <= _LOGGED_JUMPS:
            log.warning("video timestamps jump; the timeline continues from the previous frame", clip=self.label,
                        at_s=round(expected, 3), jump_s=round(t - expected, 3), discontinuities=self.discontinuities)
        return expected


class _KeyframeClock:
    """Key-frame sampling decodes key frames only, so the frames alone cannot say where they sit: which frame of
    the clip each is (its index) and when, across a pts restart. Every packet is still demuxed, so this keeps its
    decode timestamps, which only ever increase within a recording: one that goes back (a concatenated segment's
    restarted clock) or leaps more than ``max_gap`` ticks ahead (a splice) is a discontinuity, carried across by an
    offset added to every pts after it. A key frame's index is then the number of shown packets presented before
    it (closed GOPs: every frame shown before a key frame was demuxed before it), and its time its offset pts.
    Shown are the packets from the first key frame on (a recording cut mid-GOP starts with frames nothing can decode)
    presented at or after it, and never before ``start`` (an mp4 edit list's pre-roll): ``origin``, time 0, is the
    later of the two, where decoding every frame puts its first frame."""

    def __init__(self, start: int | None, max_gap: int | None) -> None:
        self.start = start
        self.max_gap = max_gap
        self.jumps = 0
        self._offset = 0
        self._last_dts: int | None = None
        self._end: int | None = None
        self.origin: int | None = None  # offset pts of the first frame shown; None before the first key frame
        self._shown: list[int] = []  # offset pts of the packets shown, sorted
        self._keys: collections.deque[tuple[int, int]] = collections.deque()  # (pts, offset pts) of key packets

    def add(self, packet: av.Packet) -> None:
        step = packet.duration or 1
        if packet.dts is not None:
            dts = packet.dts + self._offset
            last = self._last_dts
            if last is not None and (dts <= last or (self.max_gap is not None and dts > last + step + self.max_gap)):
                self._offset += last + step - dts
                dts = last + step
                self.jumps += 1
            self._last_dts = dts
        if packet.pts is None:
            return
        pts = packet.pts + self._offset
        if packet.is_keyframe:
            self._keys.append((packet.pts, pts))
            if self.origin is None:
                self.origin = pts if self.start is None else max(pts, self.start)
        if self.origin is not None and pts >= self.origin:
            bisect.insort(self._shown, pts)
            if self._end is None or pts >= self._shown[-1]:  # the last frame's own duration, not a paused one's
                self._end = pts + step

    def place(self, pts: int | None) -> tuple[int, int] | None:
        """(offset pts, index) of the decoded key frame whose pts is ``pts``; None when no key packet matches
        (key packets the decoder dropped are passed over)."""
        while pts is not None and self._keys:
            raw, offset_pts = self._keys.popleft()
            if raw == pts:
                return offset_pts, bisect.bisect_left(self._shown, offset_pts)
        return None

    def extent_s(self, time_base: Fraction | None) -> float:
        """Seconds from the first shown packet to the end of the last, on the offset clock."""
        if not self._shown or self._end is None or time_base is None:
            return 0.0
        return float((self._end - self._shown[0]) * time_base)


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
