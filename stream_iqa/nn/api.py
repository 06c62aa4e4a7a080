"""What every scoring model exposes, so the pipeline, ``score``, ``eval`` and ``bench`` treat teacher and student alike.

Models take frames as float RGB in [0, 1] at any size plus a depth map in [0, 1] (near = 1) and do their own
preprocessing (resize, crops, normalisation): like torchvision's weights objects, the checkpoint knows its transform.
"""

from __future__ import annotations

import torch

from stream_iqa.fragments import FragmentSpec
from stream_iqa.model.card import ModelCard
from stream_iqa.model.served import DISTORTIONS, IQAOutput, ServedModel


class ScoringModel(torch.nn.Module):
    """Base class: subclasses implement ``score``; ``forward`` stays the raw network for training and export."""

    #: registry name and version recorded in reports
    model_name: str = "abstract"
    version: str = "0"
    #: the fragments the model wants from the decoder, or None (it reads whole frames only)
    fragment_spec: "FragmentSpec | None" = None
    compile_buckets: tuple[int, ...] = ()
    #: PyTorch models take torch tensors on their device (``ServedModel.host_arrays``)
    host_arrays: bool = False

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


__all__ = ["DISTORTIONS", "IQAOutput", "ScoringModel", "ServedModel"]
