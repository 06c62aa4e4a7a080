"""What every scoring model exposes, so the pipeline, ``score``, ``eval`` and ``bench`` treat teacher and student alike.

Models take frames as float RGB in [0, 1] at any size plus a depth map in [0, 1] (near = 1) and do their own
preprocessing (resize, crops, normalisation): like torchvision's weights objects, the checkpoint knows its transform.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from stream_iqa.fragments import FragmentSpec
from stream_iqa.model.card import ModelCard
from stream_iqa.schema import DISTORTION_TYPES

#: the distortion types the flags cover, in head order: the output contract's list, defined there once
DISTORTIONS: tuple[str, ...] = DISTORTION_TYPES


class IQAOutput(NamedTuple):
    quality: torch.Tensor  # (N,) calibrated quality on 0–100, higher is better
    distortions: torch.Tensor | None  # (N, len(DISTORTIONS)) independent probabilities, or None (teacher)


class ServedModel(Protocol):
    """What the pipeline, the batcher and ``score`` need of whatever serves: a PyTorch ``ScoringModel`` or the ONNX
    Runtime backend (``stream_iqa.model.onnx_runtime.OnnxRuntimeModel``). Everything else they know comes from ``card``."""

    @property
    def card(self) -> ModelCard: ...

    @property
    def device(self) -> torch.device: ...

    #: the batch sizes a compiled network was captured for (``stream_iqa.nn.compiled``); empty: any size, eager
    compile_buckets: tuple[int, ...]

    def score(self, rgb: torch.Tensor, depth: torch.Tensor,
              fragments: torch.Tensor | None = None) -> IQAOutput: ...


class ScoringModel(torch.nn.Module):
    """Base class: subclasses implement ``score``; ``forward`` stays the raw network for training and export."""

    #: registry name and version recorded in reports
    model_name: str = "abstract"
    version: str = "0"
    #: the fragments the model wants from the decoder, or None (it reads whole frames only)
    fragment_spec: "FragmentSpec | None" = None
    compile_buckets: tuple[int, ...] = ()

    def score(self, rgb: torch.Tensor, depth: torch.Tensor,
              fragments: torch.Tensor | None = None) -> IQAOutput:  # pragma: no cover - interface
        """``fragments``: native-resolution fragments of the frames (``stream_iqa.fragments``) for models with a
        fragment view (``fragment_spec``); other models ignore them."""
        raise NotImplementedError

    @property
    def card(self) -> ModelCard:
        """What the model says about itself (``stream_iqa.model.card``); subclasses with trained metadata extend it."""
        return ModelCard(name=self.model_name, version=str(self.version), fragments=self.fragment_spec)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
