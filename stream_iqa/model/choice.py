"""What will serve — the device and the model's name — decided without importing torch wherever that can be known.

Why: a CPU worker serving the ONNX graph needs no torch at all, yet ``model.device: auto`` and the name check ran
through torch (``torch.cuda.is_available()``, the registry's model modules), which cost 1.2 s of every replay's
start-up. A machine without NVIDIA device nodes cannot run CUDA, so ``auto`` is ``cpu`` there without asking torch;
where a GPU may exist, torch decides as before.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stream_iqa.errors import DeviceUnavailableError

#: the models ``stream_iqa.nn`` registers itself (a test keeps this equal to the registry's built-ins)
BUILTIN_MODELS: tuple[str, ...] = ("dgiqa", "dgiqa-lite")

#: device nodes the NVIDIA driver creates (and the container toolkit mounts); without them CUDA cannot run on Linux
NVIDIA_NODES: tuple[str, ...] = ("/dev/nvidiactl", "/dev/nvidia0")


def cuda_possible(nodes: tuple[str, ...] = NVIDIA_NODES) -> bool:
    """False only where CUDA certainly cannot run: Linux without the NVIDIA device nodes, or macOS. Elsewhere
    (Windows, or the nodes present) only torch can tell."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(Path(node).exists() for node in nodes)
    return True


def resolve_device_name(device: str | None = "auto") -> str:
    """``auto`` → ``cuda`` where CUDA is available, else ``cpu``; any other name as torch would resolve it. Imports
    torch only when the answer depends on it; ``RuntimeError`` for CUDA asked for and not available."""
    if device is None or device == "auto":
        if not cuda_possible():
            return "cpu"
        try:
            import torch
        except ImportError:  # a torch-free install serves on CPU
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    try:
        from stream_iqa.nn.registry import resolve_device
    except ImportError as exc:
        raise DeviceUnavailableError(f"device {device!r} needs torch, which is not installed ({exc})") from None
    return str(resolve_device(device))


def device_type(device: object) -> str:
    """"cpu", "cuda" or "mps" of a device given as a torch device or by name ("cuda:1")."""
    return str(device).split(":")[0]


def known_model(name: str) -> bool:
    """Whether ``name`` is a model stream-iqa can build: a built-in (no import), else one registered since."""
    if name in BUILTIN_MODELS:
        return True
    from stream_iqa.nn.registry import list_models

    return name in list_models()




def cpu_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


__all__ = ["BUILTIN_MODELS", "cpu_cores", "cuda_possible", "device_type", "known_model", "resolve_device_name"]
