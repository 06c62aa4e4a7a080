"""A seeded fuzz run on the real broker: a few hundred inputs drawn at random (valid file jobs and raw clips, random
bytes, deep and odd JSON, wrong headers, demuxer and path escapes, cut and corrupted clips), each produced with a
random compression codec. Every input must be answered by exactly one report or error record, committed offsets
must reach the log ends, no answer may be an ``internal`` error (that would be a bug of ours), and the service must
still be running, healthy and ready afterwards. FUZZ_SEED=N reruns another draw."""

from __future__ import annotations

import json
import os
import random
import urllib.request

import pytest
from kafka import KafkaProducer

from test_service_kafka import (  # noqa: F401 - fixtures are used by name
    Running, _restore_torch_threads, broker, clip_dir, committed, end_offsets, scorer, settings_for, topics,
)
from stream_iqa.service.kafka_demo import read_topic

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
N = 240
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
JSON_H = ("content-type", b"application/json")


def _draw(rng: random.Random, clip_dir, outside) -> tuple[str, bytes | None, list[tuple[str, bytes]]]:
    """(expected: 'report' | 'error', value, headers)."""
    good = (clip_dir / "short.mp4").read_bytes()
    cid = f"c{rng.randrange(10**6)}".encode()
    kind = rng.choice(["file", "raw", "random", "deep", "odd", "headers", "escape", "cut", "corrupt"])
    if kind == "file":
        job = {"clip_id": cid.decode(), "stream_id": f"s{rng.randrange(9)}", "uri": (clip_dir / "short.mp4").as_uri()}
        if rng.random() < 0.3:
            job["metadata"] = {"camera": rng.choice(["ü", "", "x" * 300]), "n": rng.randrange(100)}
        return "report", json.dumps(job).encode(), [JSON_H]
    if kind == "raw":
        ctype = rng.choice([b"video/mp4", b"application/octet-stream", b"video/quicktime", b"Video/MP4; codecs=avc1"])
        return "report", good, [("content-type", ctype), ("clip_id", cid), ("stream_id", b"raw")]
    if kind == "random":
        ctype = rng.choice([b"application/json", b"video/mp4", b"application/octet-stream", b"text/plain", None])
        value = rng.randbytes(rng.choice([0, 1, 7, 512, 40_000]))
        headers = [("content-type", ctype)] if ctype else []
        return "error", value, headers + ([("clip_id", cid)] if rng.random() < 0.5 else [])
    if kind == "deep":
        depth = rng.choice([200, 1500, 20_000])
        value = rng.choice([b"[" * depth, b'{"a":' * depth + b"1" + b"}" * depth, b"[" * depth + b"]" * depth])
        return "error", value, [JSON_H]
    if kind == "odd":
        value = rng.choice([b"null", b"1e999", b'"clip"', b"[]", b"{}", b'{"clip_id": 5, "stream_id": "s", "uri": "x"}',
                            b'{"clip_id": "a", "stream_id": "s", "uri": "file:///etc/passwd"}',
                            b'{"clip_id": "a", "stream_id": "s", "uri": "gopher://h/x"}',
                            b'{"clip_id": "a", "stream_id": "s", "uri": "http://127.0.0.1:1/x.mp4"}',
                            b'{"clip_id": "a", "stream_id": "s", "uri": "file:///a/../etc/passwd"}',
                            b'{"clip_id": "a", "stream_id": "s", "uri": "file:///a%00b"}',
                            b'{"clip_id": "a", "stream_id": "s", "url": "file:///x"}',
                            b'{"clip_id": "' + b"x" * 1000 + b'", "stream_id": "s", "uri": "file:///x"}',
                            b'\xef\xbb\xbf{"clip_id": "bom"}', b'{"clip_id": "\\ud800", "stream_id": "s"}'])
        return "error", value, [JSON_H]
    if kind == "headers":
        value = rng.choice([good, json.dumps({"clip_id": "h", "stream_id": "s", "uri": "x"}).encode()])
        headers = rng.choice([
            [],  # no content-type
            [("content-type", b"video/mp4")],  # raw bytes without ids
            [("content-type", b"video/mp4"), ("clip_id", b"x" * 300), ("stream_id", b"s")],
            [("content-type", b"\xff\xfe"), ("clip_id", b"\xff")],
            [("content-type", b"image/png"), ("clip_id", cid), ("stream_id", b"s")],
        ])
        return "error", value, headers
    if kind == "escape":
        choice = rng.randrange(4)
        if choice == 0:
            value, headers = b"ffconcat version 1.0\nfile short.mp4\n", [("content-type", b"video/mp4")]
        elif choice == 1:
            value = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nshort.mp4\n#EXT-X-ENDLIST\n"
            headers = [("content-type", b"video/mp4")]
        elif choice == 2:
            value, headers = json.dumps({"clip_id": "l", "stream_id": "s",
                                         "uri": (clip_dir / "list.ffconcat").as_uri()}).encode(), [JSON_H]
        else:
            value, headers = json.dumps({"clip_id": "o", "stream_id": "s",
                                         "uri": (clip_dir / "outside.mp4").as_uri()}).encode(), [JSON_H]
        return "error", value, headers + [("clip_id", cid), ("stream_id", b"esc")]
    if kind == "cut":  # the moov atom of this mp4 is at the end: any cut loses the index
        value = good[: rng.randrange(1, len(good) - 64)]
        return "error", value, [("content-type", b"video/mp4"), ("clip_id", cid), ("stream_id", b"cut")]
    corrupt = bytearray(good)
    for _ in range(rng.choice([1, 50, 5000])):
        corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
    return "either", bytes(corrupt), [("content-type", b"video/mp4"), ("clip_id", cid), ("stream_id", b"bad")]


def test_random_inputs_in_every_codec_are_each_answered_exactly_once(broker, clip_dir, scorer, tmp_path,
                                                                       monkeypatch):
    rng = random.Random(SEED)
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=4)
    monkeypatch.chdir(clip_dir)  # relative names inside an ffconcat list or playlist would resolve here
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.mp4").write_bytes((clip_dir / "short.mp4").read_bytes())
    (clip_dir / "list.ffconcat").write_text(f"ffconcat version 1.0\nfile {outside / 'x.mp4'}\n")
    if not (clip_dir / "outside.mp4").exists():
        (clip_dir / "outside.mp4").symlink_to(outside / "x.mp4")  # a symlink out of the allowed root

    producers = {c: KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, acks="all", compression_type=c,
                                  linger_ms=20, max_request_size=4_000_000) for c in CODECS}
    expected: dict[tuple[int, int], str] = {}
    futures = []
    for i in range(N):
        want, value, headers = _draw(rng, clip_dir, outside)
        key = rng.choice([None, b"", f"k{rng.randrange(20)}".encode(), rng.randbytes(8)])
        producer = producers[rng.choice(CODECS)]
        futures.append((want, producer.send(s.kafka.input_topic, key=key, value=value, headers=headers)))
    for p in producers.values():
        p.flush()
    for want, f in futures:
        meta = f.get(30)
        expected[(meta.partition, meta.offset)] = want
    for p in producers.values():
        p.close()
    ends = end_offsets(s)
    assert sum(ends.values()) == N and len(expected) == N

    run = Running(s, scorer)
    try:
        run.wait(N, timeout=400)
        run.wait_until(lambda: committed(s) == ends, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{run.service.metrics_port}/healthz", timeout=5) as r:
            healthy = r.status == 200
        run.wait_until(lambda: run.service.ready, timeout=30)
        alive = run.thread.is_alive()
    finally:
        run.stop()
    answers: dict[tuple[int, int], list[dict]] = {}
    for topic in (s.kafka.output_topic, s.kafka.errors_topic):
        for out in read_topic(s.kafka.bootstrap_servers, topic):
            answers.setdefault((out["source"]["partition"], out["source"]["offset"]), []).append(out)
    assert set(answers) == set(expected)
    assert [k for k, v in answers.items() if len(v) != 1] == []  # exactly once
    got = {k: ("error" if "code" in v[0] else "report") for k, v in answers.items()}
    wrong = {k: (expected[k], answers[k][0].get("code"), answers[k][0].get("message"))
             for k in expected if expected[k] != "either" and got[k] != expected[k]}
    assert wrong == {}, wrong
    internal = [v[0]["message"] for v in answers.values() if v[0].get("code") == "internal"]
    assert internal == [], internal
    assert healthy and alive and len(run.outcomes) == N
