"""Scoring models: ``create_model`` / ``list_models`` over a registry of the teacher (``dgiqa``) and the student
(``dgiqa-lite``).

Names are imported on first use, so that ``stream_iqa.nn.checkpoint`` (a checkpoint's metadata, read by the
torch-free ONNX Runtime worker) can be imported without torch and timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_iqa.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DISTORTIONS": "stream_iqa.nn.api",
    "IQAOutput": "stream_iqa.nn.api",
    "ScoringModel": "stream_iqa.nn.api",
    "create_model": "stream_iqa.nn.registry",
    "list_models": "stream_iqa.nn.registry",
    "register_model": "stream_iqa.nn.registry",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from stream_iqa.nn.api import DISTORTIONS, IQAOutput, ScoringModel
    from stream_iqa.nn.registry import create_model, list_models, register_model


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
