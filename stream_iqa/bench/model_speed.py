"""Teacher vs student per frame, measured side by side in one run (this machine is shared and noisy).

    stream-iqa bench-model [--checkpoint stream_iqa/weights/dgiqa-lite/model.safetensors] [--teacher-crops 10]
        [--onnx] [--depth-anything] [--baseline OTHER.safetensors]

Every configuration is timed in interleaved rounds and reported by its best round, so a burst of load from other
processes hurts all of them alike instead of whichever ran at that moment. Weights do not change speed, so the
teacher and Depth Anything run with random weights (their official files cannot be had here).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from stream_iqa.depth.prior import PriorDepth
from stream_iqa.nn.registry import create_model


def best_rate(fns: dict[str, tuple[Callable[[], object], int]], rounds: int, min_time: float,
              sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Items per second for each ``name → (fn, items per call)``, best of interleaved rounds. ``sync`` waits for
    queued device work after each call (``torch.cuda.synchronize`` on GPU), so the clock sees the work done."""
    best = {k: 0.0 for k in fns}
    for fn, _ in fns.values():
        fn()  # warm-up: allocator, oneDNN kernel selection
        if sync:
            sync()
    for _ in range(rounds):
        for name, (fn, items) in fns.items():
            t0, n = time.perf_counter(), 0
            while True:
                fn()
                if sync:
                    sync()
                n += items
                dt = time.perf_counter() - t0
                if dt >= min_time:
                    break
            best[name] = max(best[name], n / dt)
    return best


@torch.inference_mode()
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="student checkpoint (default: the shipped model)")
    ap.add_argument("--teacher-crops", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth-anything", action="store_true", help="also time Depth Anything ViT-S (random weights)")
    ap.add_argument("--onnx", action="store_true", help="also time the student exported to ONNX under ONNX Runtime")
    ap.add_argument("--baseline", default=None,
                    help="also time this student checkpoint in the same rounds and print the ratio (e.g. before a branch)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from stream_iqa.settings import Settings

    ckpt = args.checkpoint or Settings().model.checkpoint
    student = create_model("dgiqa-lite", checkpoint=ckpt)
    teacher = create_model("dgiqa", crops=args.teacher_crops)
    prior = PriorDepth()
    frame = torch.rand(1, 3, 360, 640)  # a 640×360 frame: the prior's budget is quoted at this size
    batch = torch.rand(args.batch, 3, 360, 640)
    depth_b = prior(batch)
    image = torch.rand(1, 3, 384, 512)  # the teacher resizes to shorter side 384 anyway
    depth_i = torch.rand(1, 1, 384, 512)
    fns: dict[str, tuple[Callable[[], None], int]] = {
        f"student score, batch {args.batch} (preprocess + network)": (lambda: student.score(batch, depth_b), args.batch),
        f"student + prior depth, batch {args.batch}": (lambda: student.score(batch, prior(batch)), args.batch),
        "depth prior, 640×360 frame": (lambda: prior(frame), 1),
        f"teacher, official {args.teacher_crops} crops": (lambda: teacher.score(image, depth_i), 1),
    }
    if args.onnx:
        import tempfile
        from pathlib import Path

        from stream_iqa.model.export import export_onnx

        from stream_iqa.model.onnx_runtime import OnnxRuntimeModel

        onnx_path = Path(tempfile.mkdtemp()) / "student.onnx"
        export_onnx(student, onnx_path)
        ort_model = OnnxRuntimeModel(onnx_path, threads=args.threads)
        fns[f"student score, batch {args.batch}, ONNX Runtime"] = (lambda: ort_model.score(batch, depth_b), args.batch)
        fns["student score, batch 1 (PyTorch)"] = (lambda: student.score(batch[:1], depth_b[:1]), 1)
        fns["student score, batch 1, ONNX Runtime"] = (lambda: ort_model.score(batch[:1], depth_b[:1]), 1)
    if args.baseline:
        base = create_model("dgiqa-lite", checkpoint=args.baseline)
        fns[f"baseline student score, batch {args.batch}"] = (lambda: base.score(batch, depth_b), args.batch)
        if args.onnx:
            base_path = onnx_path.with_name("baseline.onnx")
            export_onnx(base, base_path)
            base_ort = OnnxRuntimeModel(base_path, threads=args.threads)
            fns[f"baseline student score, batch {args.batch}, ONNX Runtime"] = (
                lambda: base_ort.score(batch, depth_b), args.batch)
    if args.depth_anything:
        from stream_iqa.depth.depth_anything import DepthAnythingSource

        da = DepthAnythingSource(None, version="v2")  # no checkpoint: random weights, same cost
        fns["Depth Anything V2 ViT-S, 518 px"] = (lambda: da(image), 1)
    rates = best_rate(fns, args.rounds, min_time=1.0 if args.rounds > 1 else 0.3)
    print(f"machine: {platform.machine()} {platform.processor()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; student input {tuple(student.config.input_size)}")
    print("| what | per second | ms per item |")
    print("|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:.2f} | {1000.0 / r:.1f} |")
    s = rates[f"student + prior depth, batch {args.batch}"]
    t = rates[f"teacher, official {args.teacher_crops} crops"]
    print(f"\nstudent (+ prior depth) vs teacher (network only, {args.teacher_crops} crops): {s / t:.0f}× faster per frame")
    if args.onnx:
        o = rates[f"student score, batch {args.batch}, ONNX Runtime"]
        p = rates[f"student score, batch {args.batch} (preprocess + network)"]
        o1, p1 = rates["student score, batch 1, ONNX Runtime"], rates["student score, batch 1 (PyTorch)"]
        print(f"ONNX Runtime vs PyTorch, student: {o / p:.2f}× at batch {args.batch}, {o1 / p1:.2f}× at batch 1")
    if args.baseline:
        b = rates[f"baseline student score, batch {args.batch}"]
        p = rates[f"student score, batch {args.batch} (preprocess + network)"]
        print(f"student vs baseline {args.baseline}: {p / b:.3f}× the baseline's frames/s at batch {args.batch}")
        if args.onnx:
            bo = rates[f"baseline student score, batch {args.batch}, ONNX Runtime"]
            print(f"ONNX Runtime, student vs baseline: {o / bo:.3f}× the baseline's frames/s at batch {args.batch} "
                  "(frames in: resize and, for a two-view student, fragment gathering included)")
    if args.depth_anything:
        da_rate = rates["Depth Anything V2 ViT-S, 518 px"]
        print(f"vs teacher + its per-image Depth Anything pass: {s / (1 / (1 / t + 1 / da_rate)):.0f}× faster per frame")
