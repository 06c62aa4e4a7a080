"""The Python API: analyse a clip or score images in a line, or load the model once and reuse it.

    import stream_iqa

    report = stream_iqa.analyze("clip.mp4")                # a ClipReport: quality, low-light/haze/flare segments
    scores = stream_iqa.score_images(["a.jpg", "photos/"])  # ImageScore per image: quality, probabilities, flags

    analyzer = stream_iqa.create_analyzer(model={"device": "cpu"}, video={"fps": 2.0})
    for path in paths:
        print(analyzer.analyze(path).model_dump_json())

The same ``Pipeline`` as ``stream-iqa replay`` and the Kafka service (one code path for one job), in the manner of
pyiqa's ``create_metric``: settings come as ``Settings.load`` takes them — keyword sections (``model={...}``), a YAML
``config``, ``STREAM_IQA_*`` variables — or as a ready ``Settings``. Bad input raises ``VideoError`` (its ``code`` is
the contract's), bad settings ``ConfigError`` (an unknown model name, a device that is not there), a missing model
file ``FileNotFoundError`` and a damaged one ``CheckpointError``, each naming the setting to change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_iqa.depth.state import DepthStates
from stream_iqa.model.card import ModelCard
from stream_iqa.pipeline import Pipeline
from stream_iqa.schema import ClipReport, FrameRecord, ImageScore, ModelInfo
from stream_iqa.model.scorer import ImageInput, score_each
from stream_iqa.settings import Settings
from stream_iqa.video.source import VideoInput

if TYPE_CHECKING:
    from stream_iqa.nn.registry import create_model, list_models

__all__ = ["Analyzer", "analyze", "create_analyzer", "create_model", "list_models", "score_images"]


def __getattr__(name: str) -> Any:
    """``create_model`` and ``list_models`` are the PyTorch registry's, imported on first use, so that analysing
    with the ONNX graph needs no torch."""
    if name in ("create_model", "list_models"):
        from stream_iqa.nn import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'stream_iqa.api' has no attribute {name!r}")

#: depth states kept per stream by one Analyzer (least recently used dropped), as the service keeps them
STREAMS_KEPT = 64


class Analyzer:
    """Settings, model and depth source loaded once; ``analyze`` clips and ``score_images`` with them.

    Consecutive segments of one stream (the same ``stream_id``) reuse depth maps across calls, as in the service.
    One analyzer serves one thread at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pipeline = Pipeline(settings)
        #: depth memory per ``stream_id``, as in the service
        self.streams = DepthStates(self.pipeline.new_depth_state, STREAMS_KEPT)

    @property
    def card(self) -> ModelCard:
        """What the loaded model says about itself: name, version, input size, fragments, thresholds, depth source."""
        return self.pipeline.scorer.model.card

    @property
    def model_info(self) -> ModelInfo:
        """The model's name and version, as every report carries them."""
        return self.pipeline.model_info

    @property
    def flag_thresholds(self) -> dict[str, float]:
        """The per-flag thresholds the model was shipped with: a probability at or above one is that flag."""
        return self.pipeline.scorer.flag_thresholds

    def analyze(self, video: VideoInput, *, clip_id: str | None = None, stream_id: str | None = None,
                on_frame: Callable[[FrameRecord], None] | None = None) -> ClipReport:
        """One clip (a path, a URL where ``video.allow_urls`` lets it, or the file's bytes) → its report.

        ``clip_id`` defaults to the file's name (``clip`` for bytes); ``on_frame`` is called with each frame's record
        as it is scored (the per-frame dump)."""
        if clip_id is None:
            clip_id = "clip" if isinstance(video, (bytes, bytearray, memoryview)) else (Path(str(video)).name or "clip")
        state = self.streams.get(stream_id) if stream_id is not None else self.pipeline.new_depth_state()
        return self.pipeline.analyze(video, clip_id=clip_id, stream_id=stream_id, depth_state=state,
                                     on_frame=on_frame).report

    def score_images(self, images: ImageInput | Iterable[ImageInput]) -> list[ImageScore]:
        """Each image (files, folders expanded in sorted order, or RGB uint8 arrays) → its quality, flag
        probabilities and flags, in input order. An unreadable file keeps its place with ``error`` set."""
        return list(score_each(self.pipeline.scorer, images, self.settings.video.max_image_pixels))


def create_analyzer(settings: Settings | None = None, *, config: str | Path | None = None,
                    **sections: Any) -> Analyzer:
    """An ``Analyzer`` from ``settings``, or from ``config`` (YAML), keyword sections (``model={"device": "cpu"}``)
    and ``STREAM_IQA_*`` variables, validated together."""
    return Analyzer(_settings(settings, config, sections))


def analyze(video: VideoInput, *, clip_id: str | None = None, stream_id: str | None = None,
            settings: Settings | None = None, config: str | Path | None = None, **sections: Any) -> ClipReport:
    """One clip → its ``ClipReport``, loading the model for this call (use ``create_analyzer`` for many clips)."""
    return create_analyzer(settings, config=config, **sections).analyze(video, clip_id=clip_id, stream_id=stream_id)


def score_images(images: ImageInput | Iterable[ImageInput], *, settings: Settings | None = None,
                 config: str | Path | None = None, **sections: Any) -> list[ImageScore]:
    """Images → one ``ImageScore`` each, in input order, loading the model for this call."""
    return create_analyzer(settings, config=config, **sections).score_images(images)


def _settings(settings: Settings | None, config: str | Path | None, sections: dict[str, Any]) -> Settings:
    if settings is not None:
        if config is not None or sections:
            raise TypeError("pass either settings=Settings(...) or config/sections, not both")
        return settings
    return Settings.load(config, **sections)
