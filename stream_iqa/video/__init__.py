"""Decode and sample: the first stage of the pipeline (see docs/ARCHITECTURE.md).

>>> with open_video("clip.mp4", VideoSettings(fps=2)) as clip:
...     for f in clip.frames():
...         f.index, f.t, f.rgb.shape

Every failure is a :class:`VideoError` whose ``code`` is in the output contract's closed set.
"""

from __future__ import annotations

from collections.abc import Iterator

from .decode import PyAVClip
from .errors import ErrorCode, VideoError, video_error
from .frame import ClipInfo, SampledFrame, VideoClip
from stream_iqa.settings import VideoSettings
from .source import InputPolicy, VideoInput, resolve_source
from stream_iqa.deadline import Deadline
from stream_iqa.fragments import FragmentSpec
from stream_iqa.log import get_logger

__all__ = [
    "ClipInfo",
    "ErrorCode",
    "InputPolicy",
    "SampledFrame",
    "VideoClip",
    "VideoError",
    "VideoInput",
    "VideoSettings",
    "open_video",
    "sample_frames",
    "video_error",
]


log = get_logger(__name__)

def open_video(
    src: VideoInput,
    settings: VideoSettings | None = None,
    *,
    size: tuple[int, int] | None = None,
    short_side: int | None = None,
    name: str | None = None,
    policy: InputPolicy | None = None,
    deadline: Deadline | None = None,
    fragments: FragmentSpec | None = None,
) -> VideoClip:
    """Vet and open ``src`` (path, http(s) URL if allowed, or bytes of a self-contained segment).

    ``size`` = (width, height) of the returned frames, resized by the decoder's scaler; ``short_side`` instead
    downscales (never upscales) so the shorter side has that length, aspect kept; ``name`` labels bytes input
    in errors; ``policy`` says where the input and anything it names may be read from (default: anywhere, as for
    replay); ``deadline`` bounds fetching and decoding; ``fragments``: also gather these native-resolution fragments
    of every sampled frame (``SampledFrame.fragments``, before any downscaling). decord is used only when asked for and the input is a local
    file (not a playlist).
    """
    settings = settings or VideoSettings()
    source = resolve_source(src, settings, name, policy)
    if settings.backend == "decord" and source.path is not None and not source.playlists:
        from .decord_backend import DecordClip, DecordUnsuitable

        try:
            return DecordClip(source, settings, size, short_side, deadline, fragments)
        except DecordUnsuitable as exc:  # correct frames and times first: PyAV reads every file faithfully
            log.info("decord would not read this file faithfully; decoding it with PyAV", clip=source.label,
                     reason=exc.reason)
    return PyAVClip(source, settings, size, short_side, deadline, fragments)


def sample_frames(
    src: VideoInput,
    settings: VideoSettings | None = None,
    *,
    size: tuple[int, int] | None = None,
    short_side: int | None = None,
    name: str | None = None,
    policy: InputPolicy | None = None,
    deadline: Deadline | None = None,
    fragments: FragmentSpec | None = None,
) -> Iterator[SampledFrame]:
    """Open, sample and close in one generator (closed also when the consumer stops early)."""
    with open_video(src, settings, size=size, short_side=short_side, name=name, policy=policy,
                    deadline=deadline, fragments=fragments) as clip:
        yield from clip.frames()
