"""stream-iqa: no-reference quality moderation of video streams with a distilled DGIQA.

    import stream_iqa
    report = stream_iqa.analyze("clip.mp4")          # ClipReport
    scores = stream_iqa.score_images("photos/")       # [ImageScore]
    analyzer = stream_iqa.create_analyzer(model={"device": "cpu"})   # load once, analyse many
    model = stream_iqa.create_model("dgiqa-lite", pretrained=True)   # the network itself (torch)

Names are imported on first use, so ``import stream_iqa`` (and the contract in ``stream_iqa.schema``) stays cheap for
programs that only parse reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_iqa.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "analyze": "stream_iqa.api",
    "create_analyzer": "stream_iqa.api",
    "score_images": "stream_iqa.api",
    "Analyzer": "stream_iqa.api",
    "create_model": "stream_iqa.nn.registry",
    "list_models": "stream_iqa.nn.registry",
    "ModelCard": "stream_iqa.model.card",
    "Settings": "stream_iqa.settings",
    "ClipReport": "stream_iqa.schema",
    "FrameRecord": "stream_iqa.schema",
    "ImageScore": "stream_iqa.schema",
    "ErrorRecord": "stream_iqa.schema",
    "VideoError": "stream_iqa.video.errors",
    "ConfigError": "stream_iqa.errors",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from stream_iqa.api import Analyzer, analyze, create_analyzer, score_images
    from stream_iqa.errors import ConfigError
    from stream_iqa.model.card import ModelCard
    from stream_iqa.nn.registry import create_model, list_models
    from stream_iqa.schema import ClipReport, ErrorRecord, FrameRecord, ImageScore
    from stream_iqa.settings import Settings
    from stream_iqa.video.errors import VideoError


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
