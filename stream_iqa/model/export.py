"""``stream-iqa export --onnx PATH``: the student as one ONNX graph, for ONNX Runtime / TensorRT serving.

The graph is the whole ``score`` path after resizing: inputs ``rgb`` (N,3,H,W) in [0,1] and ``depth`` (N,1,H,W) in
[0,1] at the model's input size (192x192 for the shipped model), dynamic batch, and for a two-view model
``fragments`` (N,3,S,S) in [0,1], the native-resolution fragments (``stream_iqa.fragments``, geometry in the
metadata's ``fragments``); outputs ``quality`` (N,) on the
calibrated 0-100 scale and ``distortions`` (N,3) probabilities in the order ``low_light, haze, flare``. Normalisation,
sigmoids and the piecewise-linear calibration are inside the graph, so a serving stack needs only to resize frames.
The checkpoint's metadata (name, version, thresholds, input size) travels in the model's ``metadata_props``: an
ONNX file knows its own preprocessing, as a checkpoint does (``stream_iqa.model.card``). Serving the graph is
``stream_iqa.model.onnx_runtime``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

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
