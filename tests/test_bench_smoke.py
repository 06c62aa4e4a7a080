"""Benchmarks run end to end at tiny sizes (no timing asserted): they must not rot between measurement sessions."""

import torch

from stream_iqa.bench.service_speed import make_clips
from stream_iqa.bench.streams import measure
from stream_iqa.settings import Settings


def test_concurrent_streams_bench_counts_every_frame_and_its_latency(tmp_path):
    threads = torch.get_num_threads()
    try:
        paths = make_clips(tmp_path, 2, size=(320, 180), seconds=2.0)
        settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
        for shared in (False, True):
            row = measure(paths, 2, shared, settings)
            assert row["frames"] == 8 and row["latency_p95_ms"] >= row["latency_p50_ms"] > 0
            assert row["peak_rss_mb"] > 0 and row["torch_threads"] >= 1
    finally:
        torch.set_num_threads(threads)
