"""decord backend for local files: random access by index, handy when the sampled indices are known up front.

Metadata and limits come from a PyAV probe (header only, no decoding), so both backends raise the same errors and
report the same ClipInfo; timestamps come from decord's own pts table and go through the same samplers, so both
backends pick the same frames. decord applies rotation metadata itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from stream_iqa.fragments import FragmentSpec, gather

from .decode import check_stream, open_container
from .errors import TooLongError, UndecodableVideoError, VideoError
from .frame import SampledFrame, fit_short_side
from .sampling import make_sampler
from stream_iqa.settings import VideoSettings
from .source import Source
from stream_iqa.deadline import Deadline

_BATCH = 16  # frames per get_batch: bounds memory at 16 RGB frames whatever the sampling rate


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
        #: decord's frame index comes from the container's own tables, so only frames actually read count here
        self.decoded_duration_s = 0.0
        self.damaged_packets = 0  # decord decodes whole or refuses
        self.timestamp_discontinuities = 0  # decord's own timestamps; it refuses a file whose pts restart
        # the probe opens the file under video.allowed_formats, so decord (whose FFmpeg has no allow-list) only
        # ever sees a container of an accepted format
        container = open_container(source, self.deadline)
        try:
            _, self.info = check_stream(source, container, settings)
        finally:
            container.close()
        if size is None:
            # decord scales in stored orientation; fitting the short side is orientation-independent
            size = fit_short_side(self.info.width, self.info.height, short_side)
            self.size = size
        import decord  # deferred: only the decord backend pays for importing it

        kwargs: dict[str, int] = {"num_threads": settings.threads}
        if size is not None and fragments is None:  # fragments need native frames: those are resized here instead
            kwargs.update(width=size[0], height=size[1])
        try:
            self._reader: decord.VideoReader | None = decord.VideoReader(str(source.path), ctx=decord.cpu(0), **kwargs)
        except Exception as exc:  # decord raises DECORDError/RuntimeError with multi-line C++ traces
            raise UndecodableVideoError(self.label, f"decord cannot open it ({_first_line(exc)})") from None

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
        n = len(vr)  # type: ignore[arg-type]
        if n == 0:
            raise UndecodableVideoError(self.label, "no decodable video frames")
        starts = np.asarray(vr.get_frame_timestamp(np.arange(n)))[:, 0]  # type: ignore[attr-defined]
        times = starts - starts[0]
        if times[-1] > s.max_duration_s:
            raise TooLongError(self.label, f"duration {times[-1]:.1f} s exceeds max_duration_s={s.max_duration_s:g}")
        keys = set(int(i) for i in vr.get_key_indices())  # type: ignore[attr-defined]
        if s.sampling == "keyframes":
            picked = sorted(keys)
        else:
            sampler = make_sampler(s.sampling, s.fps, s.every_n)
            picked = [i for i in range(n) if sampler.take(i, float(times[i]))]
        step = float(times[1] - times[0]) if n > 1 else 0.0
        for lo in range(0, len(picked), _BATCH):
            self.deadline.check()
            chunk = picked[lo : lo + _BATCH]
            batch = vr.get_batch(chunk).asnumpy()  # type: ignore[attr-defined]
            self.decoded_duration_s = float(times[chunk[-1]]) + step
            for i, rgb in zip(chunk, batch):
                frags = None
                if self.fragments is not None:
                    frags = gather(rgb, self.fragments)
                    # the size this frame would have had from decord's scaler (display orientation, as decoded)
                    want = (fit_short_side(rgb.shape[1], rgb.shape[0], self._short_side) if self._short_side
                            else self.size)
                    if want is not None and (rgb.shape[1], rgb.shape[0]) != tuple(want):
                        rgb = cv2.resize(rgb, tuple(want), interpolation=cv2.INTER_AREA)
                yield SampledFrame(index=i, t=float(times[i]), rgb=np.ascontiguousarray(rgb), keyframe=i in keys,
                                   fragments=frags)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
