"""``stream-iqa export --onnx PATH``: the student as one ONNX graph, for ONNX Runtime / TensorRT serving.

The graph is the whole ``score`` path after resizing: inputs ``rgb`` (N,3,H,W) in [0,1] and ``depth`` (N,1,H,W) in
[0,1] at the model's input size (192x192 for the shipped model), dynamic batch, and for a two-view model
``fragments`` (N,3,S,S) in [0,1], the native-resolution fragments (``stream_iqa.fragments``, geometry in the
metadata's ``fragments``); outputs ``quality`` (N,) on the
calibrated 0-100 scale and ``distortions`` (N,3) probabilities in the order ``low_light, haze, flare``. Normalisation,
sigmoids and the piecewise-linear calibration are inside the graph, so a serving stack needs only to resize frames.
The checkpoint's metadata (name, version, thresholds, input size) travels in the model's ``metadata_props``: an
ONNX file knows its own preprocessing, as a checkpoint does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stream_iqa.errors import ConfigError
from stream_iqa.fragments import FragmentSpec
from stream_iqa.images import resize_frames_and_depth
from stream_iqa.model_card import ModelCard
from stream_iqa.nn.api import IQAOutput
from stream_iqa.nn.fragments import gather_fragments
from stream_iqa.nn.lite import DGIQALite


class _PiecewiseLinear(nn.Module):
    """Monotone piecewise-linear map as a sum of clamped ramps: y0 + Σ slope_i·clamp(x − x_i, 0, x_{i+1} − x_i).

    Equal to ``stream_iqa.nn.lite._interp`` on [x_0, x_n] (clamped outside), but made of element-wise ops only, so it
    exports to any ONNX opset (``searchsorted`` does not)."""

    def __init__(self, xs: list[float], ys: list[float]) -> None:
        super().__init__()
        x = torch.tensor(xs, dtype=torch.float32)
        y = torch.tensor(ys, dtype=torch.float32)
        width = (x[1:] - x[:-1]).clamp_min(1e-9)
        self.register_buffer("x0", x[:-1])
        self.register_buffer("width", width)
        self.register_buffer("slope", (y[1:] - y[:-1]) / width)
        self.y0 = float(ys[0])

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        ramps = torch.minimum(torch.clamp(v.unsqueeze(-1) - self.x0, min=0.0), self.width)
        return self.y0 + (ramps * self.slope).sum(-1)


class ExportableStudent(nn.Module):
    """``DGIQALite.score`` at the model's input size, as a traceable module (normalise → network → scales): what
    ``export_onnx`` traces into the graph."""

    def __init__(self, model: DGIQALite) -> None:
        super().__init__()
        self.model = model.eval()
        cal = model.calibration
        kind = cal.get("kind", "identity")
        if kind == "identity":
            self.calibrate: nn.Module = nn.Identity()
        elif kind == "piecewise_linear":
            self.calibrate = _PiecewiseLinear(cal["x"], cal["y"])
        else:
            raise ValueError(f"unknown calibration kind {kind!r}")

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, fragments: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = (rgb - self.model.mean) / self.model.std
        f = None if fragments is None else (fragments - self.model.mean) / self.model.std
        q_logit, d_logits = self.model(x, depth, f)
        quality = self.calibrate(torch.sigmoid(q_logit) * 100.0).clamp(0.0, 100.0)
        return quality, torch.sigmoid(d_logits)


def export_onnx(model: DGIQALite, path: Path, opset: int = 18) -> dict[str, Any]:
    """Write ``path`` (ONNX, dynamic batch) and return the metadata stored in it."""
    import onnx

    wrapper = ExportableStudent(model).cpu().eval()
    h, w = model.config.input_size
    spec = model.fragment_spec
    example: tuple[torch.Tensor, ...] = (torch.rand(2, 3, h, w), torch.rand(2, 1, h, w))
    names = ["rgb", "depth"]
    if spec is not None:
        example += (torch.rand(2, 3, spec.size, spec.size),)
        names.append("fragments")
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            wrapper, example, str(path), input_names=names, output_names=["quality", "distortions"],
            dynamic_shapes={n: {0: batch} for n in names}, opset_version=opset, dynamo=True,
        )
    # the card travels in the graph: `model.backend: auto` uses a graph only for its own checkpoint (tensors_sha256)
    meta = model.card.to_onnx_metadata() | {
        "inputs": "rgb (N,3,H,W) and depth (N,1,H,W) in [0,1], resized (bilinear, antialiased) to input_size"
                  + ("; fragments (N,3,S,S) in [0,1], grid x patch native pixels (stream_iqa.fragments)" if spec else "")}
    proto = onnx.load(str(path))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))  # weights inline: one self-contained file (the student is far below protobuf's 2 GB)
    sidecar = path.with_name(path.name + ".data")  # the exporter's external-data file, now folded into the graph
    if sidecar.exists():
        sidecar.unlink()
    return meta


class OnnxGraphSession:
    """One ONNX Runtime session over the exported graph (CPU by default): inputs already at the model's size.
    ``OnnxRuntimeModel`` wraps it with the resize and fragment gathering, as the served backend."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0) -> None:
        self.path = path
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        self.session = self._session(threads)
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
        try:
            #: the exporter's model card, read back from the graph's metadata
            self.card = ModelCard.from_onnx_metadata(self.meta)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        assert self.card.input_size is not None
        self.input_size: tuple[int, int] = self.card.input_size
        #: the graph's fragment geometry, or None for a single-view graph (v1)
        self.fragment_spec: FragmentSpec | None = self.card.fragments

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        return ort.InferenceSession(str(self.path), opts, providers=self.providers)

    def set_threads(self, threads: int) -> None:
        """ONNX Runtime fixes its thread pool when the session is made, so a new thread count means a new session
        (the service splits the cores between concurrent clips after loading the model)."""
        if threads != self.threads:
            self.session, self.threads = self._session(threads), threads

    def score(self, rgb: np.ndarray, depth: np.ndarray, fragments: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        feed = {"rgb": rgb.astype(np.float32), "depth": depth.astype(np.float32)}
        if self.fragment_spec is not None:
            if fragments is None:
                raise ValueError(f"{self.path} reads quality from fragments: pass them")
            feed["fragments"] = fragments.astype(np.float32)
        quality, distortions = self.session.run(None, feed)
        return quality, distortions


class OnnxRuntimeModel:
    """The exported student behind the same ``score(rgb, depth) -> IQAOutput`` as the PyTorch model, so the pipeline,
    the service and ``score`` use it unchanged (``model.backend: onnxruntime``). Frames are resized to the graph's
    input size with the same antialiased bilinear filter as ``DGIQALite.preprocess``."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0) -> None:
        self.runner = OnnxGraphSession(path, providers=providers, threads=threads)
        self.path = path
        self.card: ModelCard = self.runner.card
        self.device = torch.device("cpu")
        self.compile_buckets: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, model_settings: Any, device: torch.device, path: Path | None = None) -> OnnxRuntimeModel:
        path = path or model_settings.onnx
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(
                f"model.backend is 'onnxruntime' but the ONNX file {path} does not exist: set STREAM_IQA_MODEL__ONNX "
                "(make one with `stream-iqa export --onnx PATH`)"
            )
        if model_settings.name != "dgiqa-lite":
            raise ConfigError(f"the onnxruntime backend runs an exported dgiqa-lite, not {model_settings.name!r}")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else None
        return cls(Path(path), providers=providers, threads=model_settings.threads)

    def set_threads(self, threads: int) -> None:
        self.runner.set_threads(threads)

    def score(self, rgb: torch.Tensor, depth: torch.Tensor, fragments: torch.Tensor | None = None) -> IQAOutput:
        size = self.runner.input_size
        rgb, depth = rgb.float().cpu(), depth.float().cpu()
        frags = None
        spec = self.card.fragments
        if spec is not None:  # before the resize: fragments are native pixels
            frags = (fragments if fragments is not None else gather_fragments(rgb, spec)).float().cpu().numpy()
        rgb, depth = resize_frames_and_depth(rgb, depth, size)
        quality, distortions = self.runner.score(rgb.numpy(), depth.numpy(), frags)
        return IQAOutput(quality=torch.from_numpy(quality), distortions=torch.from_numpy(distortions))
