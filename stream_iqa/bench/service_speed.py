"""Throughput and latency through a real broker, against replay on the same clips, in one run.

    stream-iqa bench-service [--clips 16] [--out BENCH.json]

1. replay: ``Pipeline.analyze`` on every clip in turn, in this process (the floor the service adds to);
2. the service with 1 worker, then 2 workers (separate ``stream-iqa serve`` processes, one consumer group), on an
   input topic of 4 partitions. Workers are started and hold their partitions before the jobs are published, so the
   model load and the group join are not timed; the clock runs from the first publish to the last report's broker
   timestamp. Per-clip latency = the report's timestamp minus its job's (both stamped by the producers). Workers on
   one machine split its cores (``model.threads`` = cores / workers), as an operator would configure them.

Overhead = (service wall with 1 worker) / (replay wall) - 1: what Kafka, JSON, commits and acks cost per clip.
Clips are photo pans (scikit-image / scikit-learn photos, 1280x720 H.264, 10 fps, 10 s each: live-stream-sized
segments), never bikes.mp4 or carphone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip
from stream_iqa.pipeline import Pipeline
from stream_iqa.service.broker import EmbeddedBroker
from stream_iqa.settings import Settings

_SCENES = ["china", "coffee", "astronaut", "chelsea", "flower"]


def make_clips(root: Path, n: int, size: tuple[int, int] = (1280, 720), seconds: float = 10.0) -> list[Path]:
    kinds = [None, "low_light", "haze", None]
    paths = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        spec = ClipSpec(scenes=[_SCENES[i % len(_SCENES)]], scene_s=seconds, size=size, seed=i,
                        spans=[Span(kind, 0.25 * seconds, 0.75 * seconds)] if kind else [])
        paths.append(build_clip(spec, root / f"clip{i:02d}.mp4"))
    return paths


def time_replay(paths: list[Path], settings: Settings) -> dict:
    pipeline = Pipeline(settings)
    pipeline.warm_up()  # as the service does before it reports ready
    frames = 0
    t0 = time.perf_counter()
    for p in paths:
        frames += pipeline.analyze(p, clip_id=p.name, depth_state=pipeline.new_depth_state()).report.frames_analyzed
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "clips_per_s": len(paths) / wall, "frames_per_s": frames / wall, "frames": frames}


def _env(settings: Settings, tag: str, bootstrap: str, root: Path) -> dict[str, str]:
    env = {**os.environ, "STREAM_IQA_LOG__FORMAT": "json", "STREAM_IQA_LOG__LEVEL": "INFO",
           "STREAM_IQA_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAM_IQA_KAFKA__GROUP_ID": f"bench-{tag}",
           "STREAM_IQA_KAFKA__INPUT_TOPIC": f"in-{tag}", "STREAM_IQA_KAFKA__OUTPUT_TOPIC": f"out-{tag}",
           "STREAM_IQA_KAFKA__ERRORS_TOPIC": f"err-{tag}", "STREAM_IQA_SERVICE__ALLOWED_ROOTS": json.dumps([str(root)]),
           "STREAM_IQA_SERVICE__METRICS_PORT": "0", "STREAM_IQA_SERVICE__MAX_IN_FLIGHT": "1",
           "STREAM_IQA_MODEL__DEVICE": settings.model.device, "STREAM_IQA_DEPTH__SOURCE": settings.depth.source}
    return env


def time_service(paths: list[Path], settings: Settings, broker: EmbeddedBroker, workers: int, root: Path) -> dict:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    tag = uuid.uuid4().hex[:8]
    broker.create_topics([f"in-{tag}", f"out-{tag}", f"err-{tag}"], partitions=4)
    procs, assigned = [], threading.Semaphore(0)

    def watch(proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "partitions assigned" and rec.get("partitions"):
                assigned.release()

    env = _env(settings, tag, broker.bootstrap, root)
    # workers on one machine share its cores: each gets its share of torch threads (oversubscribed OpenMP teams spin)
    env["STREAM_IQA_MODEL__THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    for _ in range(workers):
        proc = subprocess.Popen([sys.executable, "-m", "stream_iqa.cli", "serve"], env=env, text=True,
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        threading.Thread(target=watch, args=(proc,), daemon=True).start()
        procs.append(proc)
    try:
        deadline = time.monotonic() + 180
        # every worker holds partitions, and the group is stable (a late joiner triggers one more rebalance)
        for _ in range(workers):
            assert assigned.acquire(timeout=max(1.0, deadline - time.monotonic())), "workers did not join the group"
        time.sleep(3.0 if workers > 1 else 0.5)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        sent: dict[str, int] = {}
        for i, p in enumerate(paths):
            body = json.dumps({"clip_id": p.name, "stream_id": f"s{i}", "uri": p.as_uri()}).encode()
            meta = producer.send(f"in-{tag}", key=f"s{i}".encode(), value=body,
                                 headers=[("content-type", b"application/json")]).get(30)
            sent[p.name] = meta.timestamp
        producer.close()
        first = min(sent.values())
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        parts = [TopicPartition(f"out-{tag}", i) for i in range(4)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        done: dict[str, tuple[int, int]] = {}
        deadline = time.monotonic() + 600
        while len(done) < len(paths) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    rep = json.loads(r.value)
                    done[rep["clip_id"]] = (r.timestamp, rep["frames_analyzed"])
        consumer.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert len(done) == len(paths), f"{len(done)} of {len(paths)} reports"
    wall = (max(t for t, _ in done.values()) - first) / 1000
    lat = np.array([(done[k][0] - sent[k]) / 1000 for k in done])
    frames = sum(f for _, f in done.values())
    return {"workers": workers, "wall_s": wall, "clips_per_s": len(paths) / wall, "frames_per_s": frames / wall,
            "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--size", default="1280x720", help="clip frame size WxH")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        size = tuple(int(v) for v in args.size.split("x"))
        paths = make_clips(root, args.clips, size=size, seconds=args.seconds)  # type: ignore[arg-type]
        replay = time_replay(paths, settings)
        one = time_service(paths, settings, broker, 1, root)
        two = time_service(paths, settings, broker, 2, root)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "clips": args.clips, "clip": f"{args.size} H.264, 10 fps, {args.seconds:g} s, 2 frames/s sampled", "replay": replay,
              "service_1": one, "service_2": two, "overhead_1_worker": one["wall_s"] / replay["wall_s"] - 1}
    print(f"{'run':<22}{'wall s':>8}{'clips/s':>9}{'frames/s':>10}{'p50 s':>8}{'p95 s':>8}")
    print(f"{'replay (in process)':<22}{replay['wall_s']:>8.2f}{replay['clips_per_s']:>9.2f}{replay['frames_per_s']:>10.1f}")
    for row in (one, two):
        print(f"{'service, ' + str(row['workers']) + ' worker(s)':<22}{row['wall_s']:>8.2f}{row['clips_per_s']:>9.2f}"
              f"{row['frames_per_s']:>10.1f}{row['latency_p50_s']:>8.2f}{row['latency_p95_s']:>8.2f}")
    print(f"service overhead over replay (1 worker): {100 * result['overhead_1_worker']:+.1f} %")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0
