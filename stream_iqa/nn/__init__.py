"""Scoring models: ``create_model`` / ``list_models`` over a registry of the teacher (``dgiqa``) and the student
(``dgiqa-lite``)."""

from stream_iqa.nn.api import DISTORTIONS, IQAOutput, ScoringModel
from stream_iqa.nn.registry import create_model, list_models, register_model

__all__ = ["DISTORTIONS", "IQAOutput", "ScoringModel", "create_model", "list_models", "register_model"]
