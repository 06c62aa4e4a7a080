"""A small timm-style model registry: ``create_model(name, checkpoint=None, device=…)``.

Builders register under stable names (``dgiqa``, ``dgiqa-lite``, variants by suffix). A builder receives
``checkpoint`` (a local path or None) and keyword overrides and returns an ``nn.Module`` with weights loaded; the
registry only moves it to the device and sets eval mode. Nothing here ever downloads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stream_iqa.errors import DeviceUnavailableError, UnknownModelError

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def deco(fn: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceUnavailableError(f"{device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceUnavailableError(f"device {device!r} is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {device!r} requested but CUDA is not available (set STREAM_IQA_MODEL__DEVICE=cpu)")
    return dev


def create_model(
    name: str, checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu",
    pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """The model ``name`` in eval mode on ``device``: trained weights from ``checkpoint``, or with ``pretrained`` the
    weights that ship with stream-iqa (``dgiqa-lite`` only: the official DGIQA's cannot be redistributed, so it needs
    ``checkpoint``); neither gives fresh weights to train."""
    _import_builtin()
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    if pretrained and checkpoint is None:
        checkpoint = shipped_checkpoint(name)
    target = resolve_device(device)  # before building: a device that is not there fails before any weights load
    model = _REGISTRY[name](checkpoint=Path(checkpoint) if checkpoint is not None else None, **kwargs)
    return model.to(target).eval()


def shipped_checkpoint(name: str) -> Path:
    """The checkpoint that ships with stream-iqa for ``name``; a clear error for a model whose weights do not."""
    from stream_iqa.settings import DEFAULT_CHECKPOINT

    if name != "dgiqa-lite":
        raise ValueError(f"no weights ship for {name!r} (only for 'dgiqa-lite'); pass checkpoint=PATH to a local "
                         "copy of the official DGIQA .pth")
    return DEFAULT_CHECKPOINT


def _import_builtin() -> None:
    # Importing the model modules runs their @register_model decorators.
    from stream_iqa.nn import dgiqa, lite  # noqa: F401
