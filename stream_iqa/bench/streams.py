"""Several streams through one engine: throughput and per-frame latency at 1, 4 and 16 concurrent streams.

    stream-iqa bench-streams [--streams 1,4,16] [--shared off|on]

Each stream is a clip analysed on its own thread through one ``Pipeline`` (one model, one depth source), as the
service does with ``service.max_in_flight`` = streams; torch's threads are split between the streams the way the
service splits them. Per-frame latency is ``FrameRecord.latency_ms`` (decoder → score: queueing, depth, model and
any shared-batch wait). Peak RSS is the process's high-water mark after each step (it never goes down).
Clips: photo pans (scikit-image / scikit-learn photos), 640x360 H.264, 10 fps, 10 s; never bikes.mp4 or carphone.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from stream_iqa.bench.service_speed import make_clips
from stream_iqa.model.batcher import SharedBatcher
from stream_iqa.pipeline import Pipeline
from stream_iqa.model.scorer import load_scorer
from stream_iqa.settings import Settings


def measure(paths: list[Path], n: int, shared: bool, settings: Settings) -> dict:
    scorer = load_scorer(settings)
    # the cores split between streams exactly as the service splits them between concurrent clips
    batcher = SharedBatcher(scorer, settings.engine.shared_batch_size, settings.engine.max_wait_ms) if shared else None
    pipeline = Pipeline(settings, scorer=scorer, batcher=batcher, clips_at_once=n)
    pipeline.warm_up()
    latencies: list[float] = []
    frames = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def stream(i: int) -> None:
        barrier.wait()
        analysis = pipeline.analyze(paths[i % len(paths)], clip_id=f"s{i}", depth_state=pipeline.new_depth_state())
        with lock:
            latencies.extend(f.latency_ms or 0.0 for f in analysis.frames)
            frames[0] += len(analysis.frames)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if batcher is not None:
        batcher.close()
    lat = np.array(latencies)
    return {"streams": n, "shared_batches": shared, "wall_s": round(wall, 3), "frames": frames[0],
            "frames_per_s": round(frames[0] / wall, 1), "latency_p50_ms": round(float(np.percentile(lat, 50)), 1),
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--shared", choices=["off", "on", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.streams.split(",")]
    settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.shared]
    threads0 = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        paths = make_clips(Path(tmp), max(counts), size=(640, 360), seconds=args.seconds)
        for n in counts:
            for shared in modes:
                torch.set_num_threads(threads0)
                rows.append(measure(paths, n, shared, settings))
    print("| streams | shared batches | torch threads | wall s | frames/s | latency p50 ms | p95 ms | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['streams']} | {'on' if r['shared_batches'] else 'off'} | {r['torch_threads']} | {r['wall_s']} | "
              f"{r['frames_per_s']} | {r['latency_p50_ms']} | {r['latency_p95_ms']} | {r['peak_rss_mb']} |")
    return 0
