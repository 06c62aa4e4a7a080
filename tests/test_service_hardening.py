"""The service against hostile and broken input on a real broker: every input is answered exactly once (a report or
an error record) and committed, whatever it is, and shutdown is bounded whatever the clip threads do."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest
from kafka import KafkaProducer

import stream_iqa.service.app as app
from test_service_kafka import (  # noqa: F401 - fixtures are used by name
    Running, _restore_torch_threads, _serve, _wait_for_log, broker, clip_dir, committed, file_job,
    produce, scorer, settings_for, topics,
)
from stream_iqa.service.kafka_demo import read_topic

pytestmark = pytest.mark.slow
JSON = [("content-type", b"application/json")]


def _outputs(s) -> tuple[dict[int, dict], dict[int, dict]]:
    reports = {r["source"]["offset"]: r for r in read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)}
    errors = {e["source"]["offset"]: e for e in read_topic(s.kafka.bootstrap_servers, s.kafka.errors_topic)}
    return reports, errors


def test_deep_json_and_demuxer_escapes_are_answered_and_committed(broker, clip_dir, scorer, tmp_path, monkeypatch):
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=1)
    (tmp_path / "x.mp4").write_bytes((clip_dir / "short.mp4").read_bytes())
    monkeypatch.chdir(tmp_path)  # an ffconcat list naming x.mp4 would be followed relative to the working directory
    (clip_dir / "list.ffconcat").write_text(f"ffconcat version 1.0\nfile {tmp_path / 'x.mp4'}\n")
    raw = [("content-type", b"video/mp4"), ("clip_id", b"escape"), ("stream_id", b"s")]
    poison = [
        (b"[" * 1500, JSON, "invalid_message"),
        (b'{"clip_id": "deep", "stream_id": "s", "uri": "file:///x", "metadata": ' + b'{"a": ' * 3000 + b"1"
         + b"}" * 3001, JSON, "invalid_message"),
        (b"ffconcat version 1.0\nfile x.mp4\n", raw, "undecodable_video"),
        (file_job(clip_dir / "list.ffconcat", "listed")[0], JSON, "undecodable_video"),
        (b"\xff\xfe not utf-8 \x00", JSON, "invalid_message"),
        (b"{}", [("content-type", b"application/json"), ("clip_id", b"\xff\xfe")], "invalid_message"),
    ]
    produce(s, [("s", v, h) for v, h, _ in poison] + [("s", *file_job(clip_dir / "short.mp4", "good", "s"))])
    run = Running(s, scorer)
    try:
        run.wait(len(poison) + 1)
        run.wait_until(lambda: committed(s) == {0: len(poison) + 1})
    finally:
        run.stop()
    reports, errors = _outputs(s)
    assert list(reports) == [len(poison)] and reports[len(poison)]["clip_id"] == "good"
    assert {k: e["code"] for k, e in errors.items()} == {i: code for i, (_, _, code) in enumerate(poison)}
    assert "not a container format accepted here" in errors[2]["message"]
    assert errors[0]["clip_id"] is None and errors[0]["schema"] == "stream-iqa/error/2"


def test_logs_of_a_failed_message_do_not_carry_the_previous_clips_ids(broker, clip_dir, scorer, capsys):
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("camA", *file_job(clip_dir / "short.mp4", "first", "camA")), ("x", b"{oops", JSON)])
    run = Running(s, scorer)
    try:
        run.wait(2)
    finally:
        run.stop()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("event") == "clip failed"]
    assert failed and failed[0]["offset"] == 1
    assert failed[0].get("stream_id") is None and failed[0].get("clip_id") is None, failed[0]
    assert any(x.get("stream_id") == "camA" for x in lines if x.get("event") == "clip reported")


def test_an_undecodable_batch_is_answered_per_offset_and_other_partitions_go_on(broker, clip_dir, scorer, monkeypatch):
    """A batch kafka-python cannot decode (here: gzip made 'unavailable' after producing, as lz4/zstd/snappy were
    before their libraries were pinned) gets one error record per offset and is skipped; nothing else stalls."""
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=2)
    plain = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, acks="all")
    gz = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, acks="all", compression_type="gzip",
                       linger_ms=200)
    value, headers = file_job(clip_dir / "short.mp4", "p0-first", "cam")
    plain.send(s.kafka.input_topic, partition=0, key=b"cam", value=value, headers=headers).get(30)
    batch = [gz.send(s.kafka.input_topic, partition=0, key=b"cam", value=file_job(clip_dir / "short.mp4", f"gz{i}")[0],
                     headers=JSON) for i in range(2)]
    gz.flush()
    [f.get(30) for f in batch]
    for name, partition in (("p0-last", 0), ("p1", 1)):
        value, headers = file_job(clip_dir / "short.mp4", name, "cam")
        plain.send(s.kafka.input_topic, partition=partition, key=b"cam", value=value, headers=headers).get(30)
    plain.close()
    gz.close()
    import kafka.codec

    monkeypatch.setattr(kafka.codec, "has_gzip", lambda: False)
    run = Running(s, scorer)
    try:
        run.wait(5)
        run.wait_until(lambda: committed(s) == {0: 4, 1: 1})  # the log ends (end_offsets would read the batch)
        undecodable = run.service.metrics.undecodable.labels(s.kafka.input_topic, "0")._value.get()
    finally:
        run.stop()
    reports = read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)
    errors = read_topic(s.kafka.bootstrap_servers, s.kafka.errors_topic)
    assert sorted(r["clip_id"] for r in reports) == ["p0-first", "p0-last", "p1"]
    assert sorted(e["source"]["offset"] for e in errors) == [1, 2] and undecodable == 2
    assert all(e["code"] == "invalid_message" and "cannot be decoded" in e["message"] for e in errors)


@pytest.fixture
def silent_server():
    """Accepts connections on 127.0.0.1 and never answers (the 'hung URL')."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    stop.set()
    for c in held:
        c.close()
    srv.close()


def test_a_hung_url_ends_as_a_timeout_error_and_its_partition_goes_on(broker, clip_dir, scorer, silent_server):
    s = settings_for(broker, clip_dir)
    s = s.model_copy(update={
        "video": s.video.model_copy(update={"allow_urls": True, "read_timeout_s": 1.0}),
        "service": s.service.model_copy(update={"allowed_hosts": ["127.0.0.1"]})})
    broker.create_topics(topics(s), partitions=1)
    job = json.dumps({"clip_id": "hung", "stream_id": "s", "uri": f"http://127.0.0.1:{silent_server}/x.mp4"})
    produce(s, [("s", job.encode(), JSON), ("s", *file_job(clip_dir / "short.mp4", "good", "s"))])
    run = Running(s, scorer)
    try:
        outcomes = run.wait(2, timeout=90)
        run.wait_until(lambda: committed(s) == {0: 2})
        ready = run.service.ready
    finally:
        run.stop()
    assert outcomes[0].error is not None and outcomes[0].error.code == "timeout", outcomes[0]
    assert "video.read_timeout_s" in outcomes[0].error.message and outcomes[1].report is not None and ready


def test_a_clip_thread_stuck_past_its_deadline_is_answered_and_left_behind(broker, clip_dir, scorer, monkeypatch):
    s = settings_for(broker, clip_dir)
    s = s.model_copy(update={"service": s.service.model_copy(update={"clip_timeout_s": 1.0})})
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("s", *file_job(clip_dir / "short.mp4", "stuck", "s")),
                ("s", *file_job(clip_dir / "short.mp4", "next", "s"))])
    monkeypatch.setattr(app, "STUCK_GRACE_S", 0.5)
    release = threading.Event()
    run = Running(s, scorer)
    real = run.service.pipeline.analyze

    def analyze(src, **kw):  # the first clip hangs where no deadline check reaches (as native code would)
        if kw["clip_id"] == "stuck":
            release.wait(60)
        return real(src, **kw)

    run.service.pipeline.analyze = analyze
    try:
        outcomes = run.wait(2, timeout=90)
        run.wait_until(lambda: committed(s) == {0: 2})
        stuck = run.service.metrics.stuck_threads._value.get()
        release.set()  # the stuck thread finishes late: its output must be dropped
        time.sleep(2.0)
    finally:
        run.stop()
    assert outcomes[0].error is not None and outcomes[0].error.code == "timeout" and outcomes[1].report is not None
    assert stuck == 1 and len(run.outcomes) == 2
    reports, errors = _outputs(s)
    assert list(reports) == [1] and list(errors) == [0]


def test_shutdown_is_bounded_when_a_clip_thread_ignores_every_signal(broker, clip_dir, scorer):
    s = settings_for(broker, clip_dir)
    s = s.model_copy(update={"service": s.service.model_copy(update={"drain_timeout_s": 1.0})})
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("s", *file_job(clip_dir / "short.mp4", "hangs", "s"))])
    entered, release = threading.Event(), threading.Event()
    run = Running(s, scorer)

    def analyze(src, **kw):
        entered.set()
        release.wait(120)
        raise RuntimeError("released")

    run.service.pipeline.analyze = analyze
    try:
        assert entered.wait(60)
        t0 = time.monotonic()
        run.service.stop()
        run.thread.join(timeout=30)
        elapsed = time.monotonic() - t0
        assert not run.thread.is_alive() and elapsed < 10.0, elapsed  # 1 s drain + bounded client closes
    finally:
        release.set()
    assert committed(s) == {0: 0} and run.outcomes == []  # abandoned: redelivered to the next worker


def test_a_second_sigterm_abandons_the_clip_at_once(broker, clip_dir):
    s = settings_for(broker, clip_dir)
    s = s.model_copy(update={"video": s.video.model_copy(update={"fps": 10.0})})  # the 60-s clip takes a while
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("cam", *file_job(clip_dir / "long.mp4", "long", "cam"))])
    proc = _serve(s)
    try:
        _wait_for_log(proc, "clip started")
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0 and elapsed < 8.0, elapsed
    assert committed(s) == {0: 0}
    assert read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic, timeout_s=2) == []


@pytest.mark.parametrize("damage,codec", [("crc", "none"), ("payload", "zstd"), ("payload", "lz4"),
                                          ("payload", "snappy"), ("payload", "gzip")])
def test_corrupt_batches_are_answered_and_skipped(broker, clip_dir, scorer, damage, codec):
    """Batches that fail their CRC, or whose compressed payload is garbage (each codec raises its own exception type
    from inside the client's decoder): one error record per offset, then the next good input."""
    from kafka_helpers import produce_corrupt_batch

    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("s", *file_job(clip_dir / "short.mp4", "before", "s"))])
    base = produce_corrupt_batch(s.kafka.bootstrap_servers, s.kafka.input_topic, 0, records=2, damage=damage,
                                 codec=codec)
    produce(s, [("s", *file_job(clip_dir / "short.mp4", "after", "s"))])
    run = Running(s, scorer)
    try:
        outcomes = run.wait(4, timeout=90)
        run.wait_until(lambda: committed(s) == {0: base + 3})
    finally:
        run.stop()
    assert [o.report.clip_id if o.report else o.error.code for o in outcomes] == [
        "before", "invalid_message", "invalid_message", "after"]
    assert [o.source.offset for o in outcomes] == [0, base, base + 1, base + 2]
