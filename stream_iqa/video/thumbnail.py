"""One frame at a time stamp, for thumbnails (the HTML report): vetted and opened like every input
(``resolve_source``, ``open_container``: the container formats of ``video.allowed_formats`` only, no demuxer that
opens other files), converted like the frames the model scores (``frame_to_rgb``, rotation applied).

Seeks to the nearest key frame at or before ``t`` and decodes forward, so the cost is one GOP rather than the clip
prefix. ``t`` is measured as the pipeline measures it: from the first frame's pts, which is the stream's
``start_time`` in ordinary files.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from stream_iqa.settings import VideoSettings

from .decode import frame_to_rgb, open_container
from .errors import VideoError
from .source import resolve_source

#: frames decoded forward from the key frame before giving up on reaching ``t`` (a GOP is rarely longer)
MAX_DECODE_FRAMES = 3000


def frame_at(video: Path, t: float, settings: VideoSettings | None = None) -> np.ndarray | None:
    """The RGB uint8 frame shown at ``t`` seconds, or ``None`` where the input is refused or cannot be decoded there
    (a thumbnail is decoration: its absence must never fail the report that wanted it)."""
    try:
        source = resolve_source(Path(video), settings or VideoSettings())
        with open_container(source) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            time_base = stream.time_base
            if time_base is None:
                return None
            first_pts = stream.start_time or 0
            target = first_pts + int(round(t / float(time_base)))
            container.seek(target, stream=stream, backward=True, any_frame=False)
            chosen: av.VideoFrame | None = None
            for i, frame in enumerate(container.decode(stream)):
                if frame.pts is None:  # no timing to steer by: take the first decodable frame after the seek
                    chosen = chosen or frame
                    break
                if frame.pts <= target or chosen is None:
                    chosen = frame
                if frame.pts >= target:
                    if abs(frame.pts - target) < abs((chosen.pts or 0) - target):
                        chosen = frame
                    break
                if i >= MAX_DECODE_FRAMES:
                    break
            return frame_to_rgb(chosen, None) if chosen is not None else None
    except (VideoError, av.FFmpegError, OSError, ValueError, RuntimeError):
        return None
