"""What every served model exposes, without torch: the output tuple, the protocol, and the distortion order.

Why a module of its own: the pipeline, the service and ``score`` need only this interface, and the ONNX Runtime worker
serves with numpy arrays alone (``stream_iqa.model.onnx_runtime``), so importing the interface must not import torch
(1.2 s and ~300 MB of a CPU worker's start-up). ``stream_iqa.nn.api`` re-exports it beside the PyTorch base class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from stream_iqa.model.card import ModelCard
from stream_iqa.schema import DISTORTION_TYPES

if TYPE_CHECKING:
    import numpy as np
    import torch

    Array = np.ndarray | torch.Tensor
else:
    Array = Any

#: the distortion types the flags cover, in head order: the output contract's list, defined there once
DISTORTIONS: tuple[str, ...] = DISTORTION_TYPES


class IQAOutput(NamedTuple):
    """A model's answer for N frames, as arrays of the kind it was given (torch tensors or numpy arrays)."""

    quality: Array  # (N,) calibrated quality on 0–100, higher is better
    distortions: Array | None  # (N, len(DISTORTIONS)) independent probabilities, or None (teacher)


class ServedModel(Protocol):
    """What the pipeline, the batcher and ``score`` need of whatever serves: a PyTorch ``ScoringModel`` or the ONNX
    Runtime backend (``stream_iqa.model.onnx_runtime.OnnxRuntimeModel``). Everything else they know comes from
    ``card``."""

    @property
    def card(self) -> ModelCard: ...

    #: True for a model that takes numpy arrays on the host (the ONNX Runtime backend on CPU): the pipeline then
    #: never builds a torch tensor, so a worker serving it runs without torch installed
    host_arrays: bool

    #: the batch sizes a compiled network was captured for (``stream_iqa.nn.compiled``); empty: any size, eager
    compile_buckets: tuple[int, ...]

    def score(self, rgb: Array, depth: Array, fragments: Array | None = None) -> IQAOutput: ...


def to_host(x: Array) -> np.ndarray:
    """A model output (torch tensor on any device, or numpy array) as a float32 numpy array."""
    import numpy as np

    if hasattr(x, "detach"):  # a torch tensor: no torch import needed to recognise one
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


__all__ = ["DISTORTIONS", "IQAOutput", "ServedModel", "to_host"]
