"""What a scoring model says about itself: one frozen, typed card that every backend carries as ``model.card``.

Why: the pipeline, ``score``, the exporter, the batcher and the CLI each need a little of it (the name and version a
report records, the size frames are resized to, the fragment geometry the decoder gathers, the flag thresholds, the
depth source the heads were trained with, the weights hash an ONNX graph must match). Read through ``getattr`` probes
on whatever object served, with a stand-in namespace for the ONNX backend, a missing field silently became a default.
Here it is parsed once — from a checkpoint's ``model.json`` or an exported graph's metadata — into one shape, as
torchvision's ``Weights.meta`` and timm's ``pretrained_cfg`` travel with their weights. Torch-free, so the ONNX
Runtime path and ``import stream_iqa`` can read it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stream_iqa.fragments import FragmentSpec
from stream_iqa.nn.checkpoint import CheckpointError
from stream_iqa.schema import DISTORTION_TYPES


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType({str(k): float(v) for k, v in mapping.items()})


@dataclass(frozen=True)
class ModelCard:
    """A model's identity, preprocessing and decision metadata (see the module docstring)."""

    name: str
    version: str
    #: "torch" (a PyTorch module) or "onnxruntime" (an exported graph)
    backend: str = "torch"
    #: the (H, W) every frame is resized to for the whole view, or None for a model that reads frames at their own
    #: resolution (the teacher's crops). Depth is computed straight at this size, as training did
    #: (``build_synthetic``: ``depth_source(image, size=input_size)``): a full-size map would only be shrunk again
    input_size: tuple[int, int] | None = None
    #: the native-resolution fragments of the quality view, or None (a single-view model)
    fragments: FragmentSpec | None = None
    #: per-channel normalisation the network applies after the resize (it does its own preprocessing)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    #: the flags the model predicts, in its head order (empty: quality only, e.g. the teacher)
    distortions: tuple[str, ...] = ()
    #: per-flag decision thresholds, fixed on development photos when the model was trained
    flag_thresholds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    #: the kind of score calibration applied to the raw quality ("identity", "piecewise_linear", …)
    calibration: str = "identity"
    #: the depth source the depth-guided heads were trained with (None: unknown or not depth-guided)
    depth_source: str | None = None
    #: SHA-256 of the tensors the card belongs to: an exported graph records it, so a stale graph is refused
    tensors_sha256: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "flag_thresholds", _frozen(self.flag_thresholds))
        object.__setattr__(self, "distortions", tuple(self.distortions))
        if self.input_size is not None:
            object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        unknown = set(self.flag_thresholds) - set(self.distortions)
        if unknown:
            raise ValueError(f"model card {self.name!r}: thresholds for {sorted(unknown)}, which it does not predict")

    def thresholds(self) -> dict[str, float]:
        """Every contract flag's threshold: the model's own, 0.5 for a flag it records none for."""
        return {k: 0.5 for k in DISTORTION_TYPES} | dict(self.flag_thresholds)

    @classmethod
    def from_checkpoint_meta(cls, meta: Mapping[str, Any], backend: str = "torch") -> ModelCard:
        """From a checkpoint's ``model.json`` (``stream_iqa.nn.checkpoint``)."""
        arch = meta.get("arch", {})
        pre = meta.get("preprocess", {})
        size = pre.get("input_size") or arch.get("input_size")
        frag = arch.get("fragments")
        distortions = tuple(meta.get("distortions", DISTORTION_TYPES))
        return cls(
            name=str(meta.get("model", "unknown")), version=str(meta.get("version", "0")), backend=backend,
            input_size=tuple(size) if size else None, fragments=FragmentSpec(*frag) if frag else None,
            mean=_triple(pre.get("mean") or arch.get("mean")), std=_triple(pre.get("std") or arch.get("std")),
            distortions=distortions,
            flag_thresholds={k: v for k, v in meta.get("flag_thresholds", {}).items() if k in distortions},
            calibration=str(meta.get("calibration", {}).get("kind", "identity")),
            depth_source=meta.get("depth_source"), tensors_sha256=meta.get("tensors_sha256"),
        )

    def to_onnx_metadata(self) -> dict[str, str]:
        """The card as an ONNX graph's custom metadata (strings only), read back by ``from_onnx_metadata``."""
        meta = {"model": self.name, "version": self.version, "distortions": json.dumps(list(self.distortions)),
                # "score_calibration": an int8 graph keeps "calibration" for its quantisation set (model.quantize)
                "flag_thresholds": json.dumps(dict(self.flag_thresholds)), "score_calibration": self.calibration,
                "tensors_sha256": self.tensors_sha256 or ""}
        if self.input_size is not None:
            meta["input_size"] = json.dumps(list(self.input_size))
        if self.fragments is not None:
            meta["fragments"] = json.dumps([self.fragments.grid, self.fragments.patch])
        if self.mean is not None and self.std is not None:
            meta["normalisation"] = json.dumps({"mean": list(self.mean), "std": list(self.std)})
        if self.depth_source:
            meta["depth_source"] = self.depth_source
        return meta

    @classmethod
    def from_onnx_metadata(cls, meta: Mapping[str, str]) -> ModelCard:
        """From an exported graph's custom metadata (``stream-iqa export``). Graphs exported before the card keep
        their fields under the same keys; what they lack stays unset."""
        if "input_size" not in meta:
            raise ValueError("the ONNX graph records no input_size: not a graph `stream-iqa export` wrote")
        frag = json.loads(meta.get("fragments", "null"))
        norm = json.loads(meta.get("normalisation", "null")) or {}
        distortions = tuple(json.loads(meta.get("distortions", json.dumps(list(DISTORTION_TYPES)))))
        return cls(
            name=meta.get("model", "dgiqa-lite"), version=meta.get("version", ""), backend="onnxruntime",
            input_size=tuple(json.loads(meta["input_size"])), fragments=FragmentSpec(*frag) if frag else None,
            mean=_triple(norm.get("mean")), std=_triple(norm.get("std")), distortions=distortions,
            flag_thresholds=json.loads(meta.get("flag_thresholds", "{}")),
            calibration=meta.get("score_calibration", "identity"), depth_source=meta.get("depth_source") or None,
            tensors_sha256=meta.get("tensors_sha256") or None,
        )


def _triple(values: Any) -> tuple[float, float, float] | None:
    return (float(values[0]), float(values[1]), float(values[2])) if values else None


def checked_card(meta: Mapping[str, Any], where: str) -> tuple[dict[str, float], dict[str, Any]]:
    """A checkpoint's flag thresholds and calibration, checked, from its metadata (``where`` names the file); the
    tensors' hash must be recorded, or they could not be checked. What both backends read of ``model.json``."""
    if not meta.get("tensors_sha256"):
        raise CheckpointError(f"{where} records no tensors_sha256, so its tensors cannot be checked; re-save the "
                              "checkpoint (stream_iqa.nn.checkpoint.save_checkpoint writes it)")
    return (checked_thresholds(meta.get("flag_thresholds", {}), where),
            checked_calibration(meta.get("calibration", {"kind": "identity"}), where))


def checked_thresholds(thresholds: Any, where: str) -> dict[str, float]:
    """Flag thresholds: a mapping of known flags to probabilities in [0, 1] (NaN would never fire, -1 always)."""
    if not isinstance(thresholds, dict) or set(thresholds) - set(DISTORTION_TYPES):
        raise CheckpointError(f"{where}: flag_thresholds must map flags ({', '.join(DISTORTION_TYPES)}) to "
                              f"probabilities, got {thresholds!r:.200}")
    bad = {k: v for k, v in thresholds.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0}
    if bad:
        raise CheckpointError(f"{where}: flag thresholds must be probabilities in [0, 1], got {bad!r:.200}")
    return {k: float(v) for k, v in thresholds.items()}


def checked_calibration(cal: Any, where: str) -> dict[str, Any]:
    """Identity, or a piecewise-linear map with at least two finite points, x strictly increasing and y never
    decreasing (a calibration must keep the order of scores)."""
    kind = cal.get("kind", "identity") if isinstance(cal, dict) else None
    if kind == "identity":
        return cal
    if kind != "piecewise_linear":
        raise CheckpointError(f"{where}: unknown calibration {cal!r:.200} (identity or piecewise_linear)")
    xs, ys = cal.get("x"), cal.get("y")
    try:
        xs, ys = [float(v) for v in xs], [float(v) for v in ys]
    except (TypeError, ValueError):
        raise CheckpointError(f"{where}: calibration x and y must be lists of numbers") from None
    if (len(xs) < 2 or len(xs) != len(ys) or not all(map(math.isfinite, xs + ys))
            or any(b <= a for a, b in zip(xs, xs[1:])) or any(b < a for a, b in zip(ys, ys[1:]))):
        raise CheckpointError(f"{where}: calibration needs >= 2 finite points, x increasing and y not decreasing")
    return {**cal, "x": xs, "y": ys}
