"""int8 student for CPU serving: ONNX Runtime static quantisation, calibrated on real training-split photos.

``quantize_onnx(fp32, out)`` takes the file ``stream-iqa export --onnx`` writes and writes an int8 QDQ model with the
same inputs (``rgb``, ``depth``), outputs (``quality``, ``distortions``) and metadata (plus ``quantization`` and
``calibration``), so it is selected by config exactly like the fp32 file::

    model: {backend: onnxruntime, onnx: runs/dgiqa-lite-int8.onnx}

Calibration frames are the *train* split of the natural photos (never val), resized to the model's input size with
the model's own antialiased bilinear filter, with the prior depth map computed on the full-size photo as the pipeline
does. Weights are quantised per output channel (int8, symmetric), activations per tensor (uint8, MinMax ranges).

Variants (``PRESETS``): ``all`` quantises every Conv/MatMul/Gemm; ``trunk`` quantises the convolutions only
(EfficientNet-Lite trunk and depth encoder) except the first one, keeping the depth cross-attention, the statistics
pooling and the quality/flag heads in float; ``pointwise`` (the default) also keeps the 26 depthwise convolutions in
float (per-tensor activation ranges fit them worst); ``dynamic`` is ONNX Runtime's dynamic quantisation (int8
weights, activations quantised on the fly) of MatMul/Gemm, for comparison. The default was picked on training
photos left out of calibration (quality error vs fp32), never on the validation data.

Benchmark (fp32 ONNX vs int8 ONNX vs PyTorch, speed and accuracy on the same data, one run)::

    stream-iqa quantize --bench
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

PRESETS = ("pointwise", "trunk", "all", "dynamic")
DEFAULT_PRESET = "pointwise"
#: activation ranges: the 99.99th percentile of each tensor over the calibration frames (MinMax and entropy ranges
#: gave 3x larger quality errors on training photos left out of calibration)
CALIB_PERCENTILE = 99.99


# ------------------------------------------------------------------------------------------------- calibration data


def real_frames(paths: list[Path], size: tuple[int, int] = (192, 192), fragments: Any = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """RGB (N,3,H,W) and prior depth (N,1,H,W) in [0,1] at ``size``, as ``OnnxRuntimeModel.score`` feeds the graph:
    depth on the full-size photo, both resized with the antialiased bilinear filter. With a ``FragmentSpec`` (a
    two-view graph), also the photos' native fragments (N,3,S,S), gathered before the resize as the decoder does
    (else None)."""
    from stream_iqa.depth.prior import PriorDepth
    from stream_iqa.images import read_rgb, resize_tensor, to_tensor
    from stream_iqa.nn.fragments import gather_fragments

    depth_source = PriorDepth()
    rgbs, depths, frags = [], [], []
    with torch.inference_mode():
        for path in paths:
            rgb = to_tensor(read_rgb(path))
            depth = depth_source(rgb)
            if fragments is not None:
                frags.append(gather_fragments(rgb, fragments))
            rgbs.append(resize_tensor(rgb, size))
            depths.append(resize_tensor(depth.float(), size))
    return (torch.cat(rgbs).numpy().astype(np.float32), torch.cat(depths).numpy().astype(np.float32),
            torch.cat(frags).numpy().astype(np.float32) if frags else None)


def graph_fragments(path: Path) -> Any:
    """The ``FragmentSpec`` an exported graph takes its ``fragments`` input with, or None (a single-view graph)."""
    from stream_iqa.fragments import FragmentSpec

    raw = _metadata(path).get("fragments")
    return FragmentSpec(*json.loads(raw)) if raw else None


def calibration_paths(data_root: Path, n: int) -> list[Path]:
    """``n`` photos of the natural *train* split, spread evenly over it (all five source collections)."""
    from stream_iqa.data.mos import natural_split

    train = natural_split(Path(data_root) / "natural")["train"]
    if n >= len(train):
        return list(train)
    idx = np.linspace(0, len(train) - 1, n).round().astype(int)
    return [train[i] for i in idx]


class FrameReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over real frames, ``batch`` at a time (with their native
    fragments for a two-view graph)."""

    def __init__(self, rgb: np.ndarray, depth: np.ndarray, batch: int = 8, fragments: np.ndarray | None = None
                 ) -> None:
        self.rgb, self.depth, self.batch, self.fragments = rgb, depth, batch, fragments
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.rgb), self.batch):
            feed = {"rgb": self.rgb[i:i + self.batch], "depth": self.depth[i:i + self.batch]}
            if self.fragments is not None:
                feed["fragments"] = self.fragments[i:i + self.batch]
            yield feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


# ------------------------------------------------------------------------------------------------------ quantisation


def _metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _excluded_convs(path: Path, depthwise: bool) -> list[str]:
    """Convolutions kept in float: the first (it sees raw pixels) and, if asked, the depthwise ones."""
    import onnx

    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    return [n.name for i, n in enumerate(convs)
            if i == 0 or (depthwise and next((a.i for a in n.attribute if a.name == "group"), 1) > 1)]


def quantize_onnx(fp32: Path, out: Path, rgb: np.ndarray | None = None, depth: np.ndarray | None = None,
                  preset: str = DEFAULT_PRESET, calibration_note: str = "", fragments: np.ndarray | None = None
                  ) -> dict[str, str]:
    """Write the int8 version of ``fp32`` to ``out``; return its metadata. ``rgb``/``depth`` (and ``fragments`` for
    a two-view graph): calibration frames (required for the static presets)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if preset not in PRESETS:
        raise ValueError(f"unknown quantisation preset {preset!r} (one of {', '.join(PRESETS)})")
    fp32, out = Path(fp32), Path(out)
    meta = _metadata(fp32)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # shape inference + graph optimisation, as ONNX Runtime recommends before quantising
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - the raw export quantises too, only less well fused
            pre = fp32
        if preset == "dynamic":
            # the exporter's stored intermediate shapes trip the dynamic quantiser's strict shape inference: drop
            # them (they are re-inferred)
            import onnx

            proto = onnx.load(str(fp32))
            del proto.graph.value_info[:]
            pre = Path(tmp) / "novi.onnx"
            onnx.save(proto, str(pre))
            quantize_dynamic(str(pre), str(out), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                             weight_type=QuantType.QInt8)
            meta.update(quantization="int8-dynamic (MatMul/Gemm weights)", calibration="none")
        else:
            if rgb is None or depth is None or not len(rgb):
                raise ValueError("static quantisation needs calibration frames")
            if (fragments is None) == bool(meta.get("fragments")):
                raise ValueError(f"{fp32} {'takes' if fragments is None else 'has no'} a fragments input: calibrate "
                                 "with real_frames(..., fragments=graph_fragments(fp32))")
            ops = ["Conv", "MatMul", "Gemm"] if preset == "all" else ["Conv"]
            exclude = [] if preset == "all" else _excluded_convs(pre, depthwise=preset == "pointwise")
            # Unsigned weights (U8U8), not the usual signed ones: x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8
            # activations by s8 weights with pairwise sums that saturate at int16. On an AMD EPYC with AVX2 only that
            # moved a flag probability of this student by 0.23 (tests/test_quantize.py allows 0.2; earlier machines
            # stayed within 0.075). 7-bit weights (reduce_range) were tried too: 8.9 quality points off fp32 there,
            # over the 7 allowed. A graph must score the same on whatever CPU serves it.
            quantize_static(
                str(pre), str(out), FrameReader(rgb, depth, fragments=fragments), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                op_types_to_quantize=ops, nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": CALIB_PERCENTILE},
            )
            note = calibration_note or f"{len(rgb)} frames"
            meta.update(quantization=f"int8-static ({preset}: QDQ, per-channel weights)", calibration=note)
    _set_metadata(out, meta)
    return meta


def quantize_from_data(fp32: Path, out: Path, data_root: Path, frames: int = 64,
                       preset: str = DEFAULT_PRESET) -> dict[str, str]:
    """``quantize_onnx`` calibrated on ``frames`` photos of the natural train split under ``data_root``."""
    if preset == "dynamic":
        return quantize_onnx(fp32, out, preset=preset)
    size = tuple(json.loads(_metadata(fp32)["input_size"]))
    paths = calibration_paths(data_root, frames)
    rgb, depth, frags = real_frames(paths, size, graph_fragments(fp32))
    return quantize_onnx(fp32, out, rgb, depth, preset=preset, fragments=frags,
                         calibration_note=f"{len(paths)} frames (natural train split, prior depth)")


# --------------------------------------------------------------------------------------------------------- benchmark


def _run_batched(fn: Any, rgb: np.ndarray, depth: np.ndarray, frags: np.ndarray | None, batch: int = 16
                 ) -> tuple[np.ndarray, np.ndarray]:
    qs, ps = [], []
    for i in range(0, len(rgb), batch):
        q, p = fn(rgb[i:i + batch], depth[i:i + batch], None if frags is None else frags[i:i + batch])
        qs.append(np.asarray(q, np.float64))
        ps.append(np.asarray(p, np.float64))
    return np.concatenate(qs), np.concatenate(ps)


def bench(data_root: Path, frames: int = 64, presets: tuple[str, ...] = PRESETS, threads: int = 2,
          out_dir: Path | None = None) -> dict[str, Any]:
    """fp32 ONNX vs int8 ONNX (each preset) vs PyTorch in one run: throughput at batch 8 and 1, and accuracy on the
    same data (CLIVE SROCC, per-flag AUROC on the synthetic natural val split, max |Δquality| vs fp32)."""
    from stream_iqa.data.mos import load_mos_dataset, natural_split, split_items
    from stream_iqa.depth.prior import PriorDepth
    from stream_iqa.model.export import ExportableStudent, export_onnx
    from stream_iqa.model.onnx_runtime import OnnxGraphSession
    from stream_iqa.bench.model_speed import best_rate
    from stream_iqa.iqa_metrics import auroc, correlation_report
    from stream_iqa.nn import create_model
    from stream_iqa.model.served import DISTORTIONS
    from stream_iqa.settings import DEFAULT_CHECKPOINT
    from stream_iqa.train.dataset import build_synthetic, cache_key, cached
    from stream_iqa.synthesis.degradations import SYNTHESIS_VERSION

    torch.set_num_threads(threads)
    data_root = Path(data_root)
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="stream-iqa-int8-"))
    student = create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT, device="cpu")
    size = tuple(student.config.input_size)
    fp32 = out_dir / "dgiqa-lite.onnx"
    export_onnx(student, fp32)
    spec = student.fragment_spec
    paths = calibration_paths(data_root, frames)
    cal_rgb, cal_depth, cal_frags = real_frames(paths, size, spec)
    files = {"fp32": fp32}
    for preset in presets:
        files[preset] = out_dir / f"dgiqa-lite-int8-{preset}.onnx"
        quantize_onnx(fp32, files[preset], cal_rgb, cal_depth, preset=preset, fragments=cal_frags)
    runners = {k: OnnxGraphSession(p, threads=threads) for k, p in files.items()}
    wrapper = ExportableStudent(student).eval()

    def torch_fn(r: np.ndarray, d: np.ndarray, f: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            q, p = wrapper(torch.from_numpy(r), torch.from_numpy(d), None if f is None else torch.from_numpy(f))
        return q.numpy(), p.numpy()

    fns = {"pytorch": torch_fn, **{k: r.score for k, r in runners.items()}}

    # accuracy data: CLIVE (the model card's 20 % hash subset; the shipped model trained on all of CLIVE, so this
    # measures int8-vs-fp32 consistency, not held-out accuracy) and the synthetic natural *val* set of the card
    meta = json.loads((Path(DEFAULT_CHECKPOINT).parent / "model.json").read_text()) \
        if Path(DEFAULT_CHECKPOINT).suffix else {}
    cfg = meta.get("training", {}).get("config", {})
    _, clive_val = split_items(load_mos_dataset("clive", data_root / "clive"),
                               float(cfg.get("clive_val_fraction", 0.2)) or 0.2, seed=int(cfg.get("split_seed", 0)))
    clive_rgb, clive_depth, clive_f = real_frames([i.path for i in clive_val], size, spec)
    mos = np.asarray([i.mos for i in clive_val])
    depth = PriorDepth()
    val_nat = natural_split(data_root / "natural")["val"]
    n_var, seed = int(cfg.get("val_variants", 8)), 10_000 + int(cfg.get("seed", 0))
    key = cache_key(size=size, depth=depth.name, synthesis=SYNTHESIS_VERSION, p=[str(p) for p in val_nat], n=n_var)
    from stream_iqa.settings import Settings

    syn = cached(Settings().data.cache_dir / f"syn-val-{key}.npz",
                 lambda: build_synthetic(val_nat, depth, size, n_var, seed, desc="synth val"))
    syn_rgb = syn.rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    syn_depth = syn.depth[:, None].astype(np.float32) / 255.0
    syn_f = None  # the synthetic set is stored at the input size: its fragments come from those pixels
    if spec is not None:
        from stream_iqa.nn.fragments import gather_fragments

        syn_f = gather_fragments(torch.from_numpy(syn_rgb), spec).numpy()

    results: dict[str, Any] = {"threads": threads, "calibration_frames": len(paths), "clive_n": len(clive_val),
                               "syn_val_n": len(syn), "models": {}}
    base: dict[str, Any] = {}
    for name, fn in fns.items():
        qc, _ = _run_batched(fn, clive_rgb, clive_depth, clive_f)
        qs, ps = _run_batched(fn, syn_rgb, syn_depth, syn_f)
        row = {"clive_srocc": correlation_report(qc, mos)["srocc"],
               **{f"auroc_{k}": auroc(ps[:, j], syn.flags[:, j]) for j, k in enumerate(DISTORTIONS)}}
        if name == "fp32":
            base = {"qc": qc, "qs": qs, "ps": ps}
        row["_q"], row["_p"] = np.concatenate([qc, qs]), ps
        row["size_mb"] = round(files[name].stat().st_size / 1e6, 2) if name in files else None
        results["models"][name] = row
    for name, row in results["models"].items():
        q, p = row.pop("_q"), row.pop("_p")
        row["max_abs_dq"] = float(np.abs(q - np.concatenate([base["qc"], base["qs"]])).max())
        row["mean_abs_dq"] = float(np.abs(q - np.concatenate([base["qc"], base["qs"]])).mean())
        row["max_abs_dflag"] = float(np.abs(p - base["ps"]).max())

    for b in (8, 1):
        r, d, f = clive_rgb[:b], clive_depth[:b], None if clive_f is None else clive_f[:b]
        fps = best_rate({k: (lambda fn=fn: fn(r, d, f), b) for k, fn in fns.items()}, rounds=3, min_time=2.0)
        for name, v in fps.items():
            results["models"][name][f"fps_b{b}"] = round(v, 1)
    return results


def format_table(res: dict[str, Any]) -> str:
    from stream_iqa.model.served import DISTORTIONS

    m = res["models"]
    ref = m["fp32"]
    head = ("| model | MB | frames/s b8 | × fp32 b8 | frames/s b1 | × fp32 b1 | CLIVE SROCC (Δ) | "
            + " | ".join(f"AUROC {k} (Δ)" for k in DISTORTIONS) + " | max/mean abs Δquality | max abs Δflag |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in m.items():
        cells = [name, "" if r["size_mb"] is None else f"{r['size_mb']:.1f}",
                 f"{r['fps_b8']:.1f}", f"{r['fps_b8'] / ref['fps_b8']:.2f}",
                 f"{r['fps_b1']:.1f}", f"{r['fps_b1'] / ref['fps_b1']:.2f}",
                 f"{r['clive_srocc']:.4f} ({r['clive_srocc'] - ref['clive_srocc']:+.4f})"]
        cells += [f"{r[f'auroc_{k}']:.4f} ({r[f'auroc_{k}'] - ref[f'auroc_{k}']:+.4f})" for k in DISTORTIONS]
        cells += [f"{r['max_abs_dq']:.2f} / {r['mean_abs_dq']:.2f}", f"{r['max_abs_dflag']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", action="store_true", help="fp32 vs int8 vs PyTorch: speed and accuracy, one run")
    ap.add_argument("--data", type=Path, default=None, help="data root (default: settings data.root)")
    ap.add_argument("--calibration-frames", type=int, default=64)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.bench:
        ap.error("nothing to do (use --bench; `stream-iqa export --onnx PATH --int8` writes an int8 model)")
    from stream_iqa.settings import Settings

    root = args.data or Settings().data.root
    res = bench(root, args.calibration_frames, tuple(p for p in args.presets.split(",") if p), args.threads)
    print(format_table(res))
    print(f"calibration: {res['calibration_frames']} natural train photos; CLIVE n={res['clive_n']} (model trained "
          f"on all of CLIVE: consistency, not held out); flags: synthetic natural val n={res['syn_val_n']}; "
          f"threads={res['threads']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
