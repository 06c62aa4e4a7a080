"""The prepared GPU check: run it whenever a GPU is available and record its table, with the GPU's name, in
BENCHMARKS.md.

    stream-iqa gpu-check [--json OUT.json]

Reports, on the current CUDA device (or on CPU with ``--device cpu``, for a smoke run):
1. student frames/s at batch 1/8/32/128, fp32 and fp16 (autocast), BN folded and channels_last (the serving path),
   and fp16 under ``model.compile`` (default ``reduce-overhead``: CUDA graphs), from a 1080p frame batch already on the
   device (the resize to 192² included);
2. teacher seconds per image (official 10-crop inference, random weights: weights do not change the cost);
3. Depth Anything V2 ViT-S milliseconds per frame at 518 px (random weights);
4. end-to-end replay frames/s and real-time factor on a 1080p H.264 clip built from real photos (decode on CPU).
Timings synchronise the device before reading the clock; each figure is the best of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip
from stream_iqa.bench.model_speed import best_rate
from stream_iqa.nn import create_model
from stream_iqa.nn.compiled import compile_network
from stream_iqa.nn.fuse import optimize_for_inference
from stream_iqa.settings import DEFAULT_CHECKPOINT, Settings


def _timed(fn: Callable[[], object], device: torch.device, rounds: int, min_time: float) -> float:
    """Best seconds per call (``best_rate`` with the device synchronised after each call)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    return 1.0 / best_rate({"fn": (fn, 1)}, rounds, min_time, sync=sync)["fn"]


def run(device: torch.device, batches: list[int], rounds: int, min_time: float, clip_s: float,
        frame: tuple[int, int] = (1080, 1920), compile_mode: str | None = None) -> dict:
    out: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
                 "torch": torch.__version__, "student": {}, "frame": list(frame)}
    # the serving path: BN folded, channels_last (what load_scorer gives the PyTorch backend)
    student = optimize_for_inference(create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT, device=device))
    variants = [("fp32", None, student), ("fp16", torch.float16, student)]
    if compile_mode:  # model.compile: the same network compiled, batches padded to power-of-two buckets
        compiled = compile_network(copy.deepcopy(student), mode=compile_mode)
        variants.append((f"fp16_compiled_{compile_mode}", torch.float16, compiled))
    for precision, dtype, model in variants:
        if dtype is torch.float16 and device.type != "cuda":
            continue
        for b in batches:
            rgb = torch.rand(b, 3, *frame, device=device)
            depth = torch.rand(b, 1, *frame, device=device)

            def call(rgb: torch.Tensor = rgb, depth: torch.Tensor = depth, dtype: torch.dtype | None = dtype,
                     model: torch.nn.Module = model) -> None:
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    model.score(rgb, depth)

            out["student"][f"{precision}_b{b}_fps"] = round(b / _timed(call, device, rounds, min_time), 1)
            del rgb, depth
    teacher = create_model("dgiqa", crops=10, device=device)
    image, depth_i = torch.rand(1, 3, 384, 512, device=device), torch.rand(1, 1, 384, 512, device=device)
    with torch.inference_mode():
        out["teacher_s_per_image"] = round(_timed(lambda: teacher.score(image, depth_i), device, rounds, min_time), 4)
    teacher = None  # free its memory before the next measurement
    from stream_iqa.depth.depth_anything import DepthAnythingSource

    da = DepthAnythingSource(None, version="v2").to(device)
    with torch.inference_mode():
        out["depth_anything_ms"] = round(1000 * _timed(lambda: da(image), device, rounds, min_time), 2)
    da = None
    with tempfile.TemporaryDirectory() as tmp:
        clip = build_clip(ClipSpec(scenes=["china"], scene_s=clip_s, size=(frame[1], frame[0]), fps=25,
                                   spans=[Span("haze", 0.25 * clip_s, 0.75 * clip_s)]), Path(tmp) / "clip.mp4")
        from stream_iqa.pipeline import Pipeline

        settings = Settings.load(model={"device": str(device), "precision": "fp16" if device.type == "cuda" else "fp32"},
                                 depth={"source": "prior"})
        pipeline = Pipeline(settings)
        pipeline.warm_up()
        t0 = time.perf_counter()
        report = pipeline.analyze(clip, clip_id="gpu-check", depth_state=pipeline.new_depth_state()).report
        wall = time.perf_counter() - t0
        out["replay_1080p"] = {"seconds": round(wall, 3), "frames": report.frames_analyzed,
                               "frames_per_s": round(report.frames_analyzed / wall, 1),
                               "x_real_time": round(report.duration_s / wall, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--clip-seconds", type=float, default=20.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compile", default="reduce-overhead", help="also time the student under model.compile with this "
                    "mode, fp16 ('none' to skip; compiling takes a minute or two)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    result = run(device, [int(b) for b in args.batches.split(",")], args.rounds, args.min_time, args.clip_seconds,
                 compile_mode=None if args.compile == "none" else args.compile)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0
