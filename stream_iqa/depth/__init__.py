"""Depth sources behind one interface (``DepthSource``): the weight-free prior and Depth Anything.

``create_depth_source`` is the single place that turns ``DepthSettings`` into a source, so commands, the service and
training agree on what ``auto`` means. Depth Anything is imported lazily: it pulls in a ViT and its checkpoint, which
a deployment running on the prior should never pay for.
"""

from __future__ import annotations

from typing import Any

from stream_iqa.depth.base import DepthSource, minmax_per_image
from stream_iqa.depth.prior import PriorDepth
from stream_iqa.errors import ConfigError
from stream_iqa.settings import DepthSettings

__all__ = ["DepthSource", "PriorDepth", "create_depth_source", "minmax_per_image"]

_CHECKPOINT_SETTING = "STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT"


def create_depth_source(settings: DepthSettings, device: Any = "cpu") -> DepthSource:
    """The depth source ``settings`` asks for, moved to ``device``.

    ``prior`` → ``PriorDepth``; ``depth-anything`` → ``DepthAnythingSource`` (its checkpoint is required);
    ``auto`` → Depth Anything when a checkpoint is configured, else the prior.
    """
    checkpoint = settings.depth_anything_checkpoint
    if settings.source == "prior" or (settings.source == "auto" and checkpoint is None):
        return PriorDepth().to(device)
    if checkpoint is None:
        raise ConfigError(
            f"depth source 'depth-anything' needs a checkpoint: set {_CHECKPOINT_SETTING} "
            "(or depth.depth_anything_checkpoint in the config file) to a local Depth Anything ViT-S .pth"
        )
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"Depth Anything checkpoint {checkpoint} not found (set by {_CHECKPOINT_SETTING}); nothing is downloaded"
        )
    from stream_iqa.depth.depth_anything import DepthAnythingSource

    source = DepthAnythingSource(
        checkpoint, version=settings.depth_anything_version, input_size=settings.depth_anything_input
    )
    return source.to(device)
