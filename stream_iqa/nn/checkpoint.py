"""Checkpoints that carry their own metadata: ``NAME.safetensors`` (tensors) beside ``NAME.json`` (everything else).

The JSON holds what a loader or a reader of a report needs without the training code: architecture config,
preprocessing (input size, normalisation), the depth source it was trained with, score calibration, training data and
command, metrics and version. It also records the SHA-256 of the tensor file, so a JSON paired with the wrong tensors
is refused rather than silently producing other scores. Safetensors rather than pickle: loading runs no code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by the functions that read or write tensors, so that metadata reads need none
    import torch

FORMAT = "stream-iqa/checkpoint/1"
SETTING = "STREAM_IQA_MODEL__CHECKPOINT"


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be used (corrupt, mismatched, or for another model)."""


def meta_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def meta_label(path: str | Path) -> str:
    """How errors name a checkpoint's metadata file: ``model.json (beside model.safetensors)``."""
    return f"{meta_path(Path(path)).name} (beside {Path(path).name})"


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(path))
    full = {"format": FORMAT, **meta, "tensors_sha256": file_sha256(path)}
    meta_path(path).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    mp = meta_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: set {SETTING} to a local .safetensors file")
    if not mp.is_file():
        raise FileNotFoundError(f"checkpoint metadata {mp} not found beside {path.name} (it holds the model config)")
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {mp} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint metadata {mp} holds a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{mp} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def record_export(checkpoint: str | Path, graph: str | Path) -> bool:
    """Note the SHA-256 of an ONNX graph exported from ``checkpoint`` in its metadata (``onnx_sha256``, by file
    name), where the graph lies beside it (where ``model.backend: auto`` looks): a graph edited or replaced after
    the export is then refused. Elsewhere the checkpoint is left alone (it may be a read-only installed copy).
    True when recorded."""
    checkpoint, graph = Path(checkpoint), Path(graph)
    if graph.resolve().parent != checkpoint.resolve().parent:
        return False
    meta = read_meta(checkpoint)
    meta["onnx_sha256"] = {**(meta.get("onnx_sha256") or {}), graph.name: file_sha256(graph)}
    meta_path(checkpoint).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return True


def load_checkpoint(path: str | Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and metadata; ``verify`` checks the tensor file against the hash in the metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path)
    if verify and meta.get("tensors_sha256") not in (None, file_sha256(path)):
        raise CheckpointError(f"{path} does not match the hash recorded in {meta_path(path).name}: corrupt or mismatched")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    return tensors, meta


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (the hash checkpoints record, and teachers' records)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_torch_state_dict(path: str | Path, what: str, setting: str) -> dict[str, torch.Tensor]:
    """A bare official ``.pth`` state dict, read without running pickled code (``weights_only``).

    ``what`` names the expected file in the messages and ``setting`` the variable that points at it, so a user who
    gave the wrong path knows what to change.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found: set {setting} to a local file (nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and weights_only errors all mean the same thing to the user
        raise CheckpointError(f"cannot read {path} as a PyTorch state dict (.pth): {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a bare state dict (a mapping of names to tensors)")
    return state


def layout_problems(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], show: int = 5) -> str:
    """A few missing, unexpected and mis-shaped keys ('' when the layouts match), instead of torch's full dump,
    which for a wrong file runs to hundreds of lines."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {tuple(got[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if k in got and got[k].shape != v.shape]
    parts = [
        f"{len(items)} {label} (e.g. {', '.join(items[:show])})"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
        if items
    ]
    return "; ".join(parts)
