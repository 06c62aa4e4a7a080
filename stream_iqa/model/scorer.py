"""Loading the configured model and depth source once, and scoring still images with them.

``load_scorer`` is the one place that turns settings into a ready model + depth source, so ``score``, ``eval`` and
the video pipeline cannot disagree about devices, checkpoints or depth.

The ONNX Runtime backend on CPU is chosen before torch is imported, and serves numpy arrays end to end
(``Scorer.host_arrays``): a worker serving it never imports torch, and runs where torch is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from stream_iqa.errors import ConfigError
from stream_iqa.depth import create_depth_source
from stream_iqa.depth.base import DepthSource
from stream_iqa.model.choice import cpu_cores, device_type, resolve_device_name
from stream_iqa.model.card import checked_card
from stream_iqa.nn.checkpoint import file_sha256, meta_label, read_meta  # torch-free: metadata and hashes only
from stream_iqa.model.served import DISTORTIONS, ServedModel, to_host
from stream_iqa.schema import ImageScore
from stream_iqa.settings import Settings
from stream_iqa.images import read_rgb, to_array, to_tensor
from stream_iqa.log import get_logger

log = get_logger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Scorer:
    model: ServedModel
    depth: DepthSource
    #: where the model runs: a torch device, or its name ("cpu" for the ONNX Runtime backend, which needs no torch)
    device: Any = "cpu"
    precision: str = "fp32"

    @property
    def device_type(self) -> str:
        """"cpu", "cuda" or "mps", whichever way ``device`` is given."""
        return device_type(self.device)

    @property
    def host_arrays(self) -> bool:
        """Whether frames go in as numpy arrays (the ONNX Runtime backend) rather than torch tensors."""
        return self.model.host_arrays

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        """What a model call runs under: for a PyTorch model ``torch.inference_mode`` and ``autocast``; nothing for
        a model on numpy arrays (torch is not imported)."""
        if self.host_arrays:
            return contextlib.nullcontext()
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(self.autocast())
        return stack

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for depth and model: fp16/bf16 on CUDA, bf16 on CPU (CPU fp16 is not worth it), else off.
        Scores are computed in float32 at the end either way (``score`` casts before sigmoid and calibration)."""
        if self.precision not in ("fp16", "bf16") or self.host_arrays:
            return contextlib.nullcontext()
        import torch

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]
        if self.device_type == "cpu" and dtype is torch.float16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)

    def depth_size(self, rgb: Any) -> tuple[int, int]:
        """Size at which depth is computed for frames ``rgb`` (N,3,H,W): the model's input size if it has one."""
        return self.model.card.input_size or (int(rgb.shape[-2]), int(rgb.shape[-1]))

    @property
    def flag_thresholds(self) -> dict[str, float]:
        """The model's per-flag decision thresholds (its ``model.json``; 0.5 for a model that records none)."""
        return self.model.card.thresholds()

    def frames(self, img: np.ndarray) -> Any:
        """One uint8 HxWx3 image as the model takes it: (1,3,H,W) in [0,1], a numpy array or a tensor on the
        model's device."""
        if self.host_arrays:
            return to_array(img)
        return to_tensor(img).to(self.device)

    def score_rgb(self, rgb: Any, path: str | None = None) -> ImageScore:
        """One (1,3,H,W) [0,1] image (``frames``) → its quality, flag probabilities and the flags decided at the
        thresholds."""
        with self.inference():
            if not self.host_arrays:
                rgb = rgb.to(self.device)
            out = self.model.score(rgb, self.depth(rgb, self.depth_size(rgb)))
        quality = round(float(to_host(out.quality)[0]), 2)
        if out.distortions is None:
            return ImageScore(path=path, quality=quality)
        probs = dict(zip(DISTORTIONS, to_host(out.distortions)[0].tolist()))
        thresholds = self.flag_thresholds
        return ImageScore(path=path, quality=quality,
                          distortions={k: round(float(v), 4) for k, v in probs.items()},
                          flags={k: bool(v >= thresholds[k]) for k, v in probs.items()})


def load_onnx_model(settings: Settings, device: str = "cpu") -> Any | None:
    """The ONNX Runtime model to serve, or None for PyTorch. ``backend: onnxruntime`` insists (a missing file is an
    error naming the setting); ``auto`` takes the graph only where it is the same model and faster: CPU, fp32, the
    student, and a graph whose recorded weights hash is the checkpoint's (a stale export would silently score with
    other weights). The graph is read once, by the session that will serve it."""
    from stream_iqa.model.onnx_runtime import OnnxRuntimeModel

    cfg = settings.model
    path = cfg.onnx if cfg.onnx is not None else (cfg.checkpoint.with_suffix(".onnx") if cfg.checkpoint else None)
    if cfg.backend == "onnxruntime":
        model = OnnxRuntimeModel.from_settings(cfg, device, path)
        beside = cfg.checkpoint is not None and cfg.checkpoint.is_file() and path is not None \
            and path.resolve().parent == cfg.checkpoint.resolve().parent
        if beside:  # a graph of its own (STREAM_IQA_MODEL__ONNX elsewhere) is the operator's to vouch for
            edited = edited_since_export(read_meta(cfg.checkpoint), path)
            if edited:
                raise ConfigError(f"{edited}: export it again (`stream-iqa export --onnx {path}`) or set "
                                  "STREAM_IQA_MODEL__ONNX to another graph")
        return model
    if cfg.backend != "auto" or device_type(device) != "cpu" or cfg.precision != "fp32" or cfg.name != "dgiqa-lite":
        return None
    if path is None or not path.is_file() or cfg.checkpoint is None or not cfg.checkpoint.is_file():
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        model = OnnxRuntimeModel.from_settings(cfg, device, path)
        meta = read_meta(cfg.checkpoint)
    except Exception as exc:  # noqa: BLE001 - auto falls back to the always-available PyTorch path
        log.warning("ONNX graph unusable, using PyTorch", onnx=str(path), error=str(exc))
        return None
    checked_card(meta, meta_label(cfg.checkpoint))  # a broken card is the checkpoint's fault: refused, not served
    stale = graph_differs(model, meta, path)
    if stale:
        log.warning(f"ONNX graph {stale}; using PyTorch (re-export with `stream-iqa export --onnx PATH`)",
                    onnx=str(path), checkpoint=str(cfg.checkpoint), setting="STREAM_IQA_MODEL__ONNX")
        return None
    return model


def graph_differs(model: Any, meta: dict[str, Any], path: Path) -> str:
    """How the graph at ``path`` is not the checkpoint whose metadata is ``meta`` ('' when it is): exported from
    other weights (the weights hash its card records), edited since the export (the file hash the checkpoint
    records, ``onnx_sha256``, where it records one), or scoring with other thresholds or another calibration (a
    checkpoint whose thresholds were fitted again without a new export)."""
    if not model.card.tensors_sha256 or model.card.tensors_sha256 != meta.get("tensors_sha256"):
        return "was exported from other weights than the checkpoint"
    edited = edited_since_export(meta, path)
    if edited:
        return edited
    arch = meta.get("arch") if isinstance(meta.get("arch"), dict) else {}
    card = model.card
    graph_arch = ([*card.input_size] if card.input_size else None,
                  [card.fragments.grid, card.fragments.patch] if card.fragments else [])
    if (list(arch.get("input_size") or []) or None, list(arch.get("fragments") or [])) != graph_arch:
        return (f"takes input_size {graph_arch[0]} and fragments {graph_arch[1]}, the checkpoint's arch "
                f"{arch.get('input_size')} and {arch.get('fragments')}")
    thresholds = {k: float(v) for k, v in (meta.get("flag_thresholds") or {}).items()}
    graph = dict(model.card.flag_thresholds)
    if any(abs(graph.get(k, -1.0) - v) > 1e-6 for k, v in thresholds.items()):
        return f"has flag thresholds {graph}, the checkpoint {thresholds}"
    kind = (meta.get("calibration") or {}).get("kind", "identity")
    if model.card.calibration != kind:
        return f"calibrates scores by {model.card.calibration!r}, the checkpoint by {kind!r}"
    return ""



def edited_since_export(meta: dict[str, Any], path: Path) -> str:
    """'' unless the checkpoint records a hash for a graph of this name (``onnx_sha256``, written by ``stream-iqa
    export``) and the file's differs: then how."""
    recorded = (meta.get("onnx_sha256") or {}).get(path.name)
    if recorded is not None and recorded != file_sha256(path):
        return f"{path} is not the graph exported from the checkpoint (its SHA-256 differs from onnx_sha256)"
    return ""


def model_threads(settings: Settings, clips_at_once: int = 1) -> int:
    """Intra-op threads for the model on CPU: ``model.threads`` when set, else the cores divided by
    max(2, clips analysed at once). The divisor is at least 2 because every clip's decoder runs beside its model
    (its own thread plus FFmpeg's): with the model taking every core, replay oversubscribed them and its spinning
    thread pools burned ~50 % more CPU for nothing, and lost 1.4x wall time as soon as the machine was shared
    (BENCHMARKS.md, "Replay threads")."""
    return settings.model.threads or max(1, cpu_cores() // max(2, clips_at_once))


def split_cpu_threads(scorer: Scorer, settings: Settings, clips_at_once: int = 1) -> None:
    """Give an already loaded CPU model its share of the cores (``model_threads``): torch's intra-op pool is
    process-wide; ONNX Runtime's is fixed per session, so a new count means a new session."""
    if scorer.device_type != "cpu" or settings.model.threads:
        return
    threads = model_threads(settings, clips_at_once)
    if not scorer.host_arrays:
        import torch

        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            log.info("model threads set", threads=threads, clips_at_once=clips_at_once, cores=cpu_cores())
    if hasattr(scorer.model, "set_threads"):
        scorer.model.set_threads(threads)


def load_scorer(settings: Settings) -> Scorer:
    device = resolve_device_name(settings.model.device)
    model = load_onnx_model(settings, device)
    if model is None:
        model, device = _load_torch_model(settings, device)
    depth = create_depth_source(settings.depth, device)
    trained_with = model.card.depth_source
    if trained_with and trained_with != depth.name:
        # Legal (both give inverse depth in [0,1]) but the heads learned the statistics of one source.
        log.warning("depth source differs from training", trained_with=trained_with, using=depth.name,
                    setting="STREAM_IQA_DEPTH__SOURCE")
    return Scorer(model=model, depth=depth, device=device, precision=settings.model.precision)


def _load_torch_model(settings: Settings, device_name: str) -> tuple[ServedModel, Any]:
    """The PyTorch model on its device (torch, timm and the registry are imported only here)."""
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(
            f"the PyTorch backend needs torch, which cannot be imported ({exc}); without torch only the ONNX graph "
            "serves, on CPU: set STREAM_IQA_MODEL__BACKEND=onnxruntime (or auto) and STREAM_IQA_MODEL__DEVICE=cpu, "
            "with STREAM_IQA_MODEL__ONNX naming a graph exported from the checkpoint"
        ) from None

    from stream_iqa.nn.fuse import optimize_for_inference
    from stream_iqa.nn.lite import DGIQALite
    from stream_iqa.nn.registry import create_model

    device = torch.device(device_name)
    if device.type == "cpu" and settings.model.threads:
        torch.set_num_threads(settings.model.threads)
    kwargs: dict[str, Any] = {}
    if settings.model.name.startswith("dgiqa") and not settings.model.name.startswith("dgiqa-lite"):
        kwargs = {"crops": settings.model.teacher_crops, "seed": settings.model.teacher_seed}
    checkpoint = settings.model.checkpoint
    if checkpoint is None:  # the registry would build fresh weights: every score and flag would be noise
        raise ConfigError(
            f"no checkpoint for model {settings.model.name!r}: set STREAM_IQA_MODEL__CHECKPOINT (or --checkpoint) to "
            "a trained one (leave it unset for the shipped student); untrained weights are never served")
    if settings.model.name == "dgiqa" and checkpoint.suffix == ".safetensors":
        raise ConfigError(
            f"model 'dgiqa' needs the official DGIQA .pth, but STREAM_IQA_MODEL__CHECKPOINT is {checkpoint} "
            "(the default student checkpoint)"
        )
    model = create_model(settings.model.name, checkpoint=checkpoint, device=device, **kwargs)
    if isinstance(model, DGIQALite):
        optimize_for_inference(model)  # BN folded + channels_last: ~2x the frames/s of eager on CPU, same scores
        if settings.model.compile != "off":
            from stream_iqa.nn.compiled import compile_network

            compile_network(model, mode=settings.model.compile)
    elif device.type == "cuda" and isinstance(model, torch.nn.Module):
        model = model.to(memory_format=torch.channels_last)  # NHWC convolutions are the fast path on tensor cores
    return model, device  # type: ignore[return-value]


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given; folders expanded to their images in sorted order (the contract's input order)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield p


#: an image file or folder of images, or an RGB uint8 array (H, W, 3)
ImageInput = Union[str, Path, np.ndarray]


def score_each(scorer: Scorer, images: ImageInput | Iterable[ImageInput],
               max_pixels: int | None = None) -> Iterator[ImageScore]:
    """One record per image in input order (folders expanded to their images, sorted); an unreadable file keeps its
    place with ``error`` set, as does a folder with no image in it, or a file whose header declares more than
    ``max_pixels``, and scoring goes on. An array that is not RGB uint8 (H, W, 3) is a caller's mistake:
    ``ValueError``, as is an empty one (no pixels)."""
    items = [images] if isinstance(images, (str, Path, np.ndarray)) else images
    for item in items:
        if isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8 or 0 in item.shape[:2]:
                raise ValueError(f"an image array must be RGB uint8 of shape (H, W, 3), not {item.dtype} "
                                 f"{tuple(item.shape)}")
            yield scorer.score_rgb(scorer.frames(item))
            continue
        if not isinstance(item, (str, Path)):
            raise TypeError(f"an image is a path or an RGB uint8 array, not {type(item).__name__}")
        paths = list(expand_paths([item]))
        if not paths:  # a folder without images: say so in its place rather than print nothing and succeed
            yield ImageScore(path=str(item), error=f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            continue
        for path in paths:
            try:
                rgb = scorer.frames(read_rgb(path, max_pixels))
            except (ValueError, OSError) as exc:
                yield ImageScore(path=str(path), error=str(exc))
                continue
            yield scorer.score_rgb(rgb, path=str(path))
