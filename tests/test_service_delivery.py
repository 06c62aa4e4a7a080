"""Delivery when the world around a worker fails: a topic that refuses an output for good, a clip stuck on a
partition that moved away, a partition handed straight back, lag before the first commit.

The service runs its real loop here against an in-process cluster (consumer, producer and input log faked, the
pipeline faked so no model runs): each case was found by driving it so, and each wedged a partition or a worker, ran
a clip twice at once or misreported lag, without any health signal showing it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import kafka
import pytest
from kafka.errors import MessageSizeTooLargeError, TopicAuthorizationFailedError
from kafka.structs import TopicPartition

import stream_iqa.service.app as app
from stream_iqa.pipeline import ClipAnalysis
from stream_iqa.schema import Distortions, FrameRecord, ModelInfo
from stream_iqa.service.app import Service
from stream_iqa.settings import Settings
from stream_iqa.temporal import build_report

Rec = namedtuple("Rec", "topic partition offset key value headers")
TOPIC = "in"


class Cluster:
    """The input log, the committed offsets and what was published; ``refuse(topic, value)`` may return an exception
    for a send to fail with."""

    def __init__(self, partitions: int = 1) -> None:
        self.log: dict[TopicPartition, list[Rec]] = {TopicPartition(TOPIC, p): [] for p in range(partitions)}
        self.committed: dict[TopicPartition, int] = {}
        self.published: list[tuple[str, bytes]] = []
        self.sends: list[tuple[str, bytes]] = []
        self.consumers: list[Any] = []
        self.lock = threading.Lock()
        self.refuse: Callable[[str, bytes], BaseException | None] = lambda topic, value: None

    def add(self, partition: int, clip_id: str, headers: list | None = None) -> None:
        tp = TopicPartition(TOPIC, partition)
        if headers is None:
            headers = [("content-type", b"video/mp4"), ("clip_id", clip_id.encode()), ("stream_id", b"s")]
        self.log[tp].append(Rec(TOPIC, partition, len(self.log[tp]), b"s", clip_id.encode(), headers))

    def outputs(self, topic: str) -> list[dict]:
        with self.lock:
            return [json.loads(v) for t, v in self.published if t == topic]


class _Future:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc

    def get(self, timeout: float | None = None) -> None:
        if self.exc is not None:
            raise self.exc


def _fakes(cluster: Cluster) -> tuple[type, type]:
    class Producer:
        def __init__(self, **opts: Any) -> None: ...

        def send(self, topic: str, key: bytes | None = None, value: bytes = b"", headers: list | None = None) -> _Future:
            exc = cluster.refuse(topic, value)
            with cluster.lock:
                cluster.sends.append((topic, value))
                if exc is None:
                    cluster.published.append((topic, value))
            return _Future(exc)

        def close(self, timeout: float | None = None) -> None: ...

    class Consumer:
        def __init__(self, **opts: Any) -> None:
            self.listener: Any = None
            self.held: set[TopicPartition] = set()
            self.pos: dict[TopicPartition, int] = {}
            self._paused: set[TopicPartition] = set()
            self.revoke: list[TopicPartition] | None = None
            self.assign: list[TopicPartition] | None = None
            self._coordinator = SimpleNamespace(coordinator_id=1)
            self._client = SimpleNamespace(connected=lambda node: True)
            cluster.consumers.append(self)

        def subscribe(self, topics: list[str], listener: Any) -> None:
            self.listener, self.assign = listener, list(cluster.log)

        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
            if self.revoke is not None:
                tps, self.revoke = self.revoke, None
                self.listener.on_partitions_revoked(list(tps))
                self.held -= set(tps)
                self._paused -= set(tps)
            if self.assign is not None:
                tps, self.assign = self.assign, None
                for tp in tps:
                    self.held.add(tp)
                    self.pos[tp] = cluster.committed.get(tp, 0)
                self.listener.on_partitions_assigned(list(tps))
            out = {}
            for tp in sorted(self.held - self._paused):
                records = cluster.log[tp][self.pos[tp]:self.pos[tp] + (max_records or 500)]
                if records:
                    out[tp] = records
                    self.pos[tp] += len(records)
            if not out:
                time.sleep(min(timeout_ms, 20) / 1000)
            return out

        def assignment(self) -> set[TopicPartition]:
            return set(self.held)

        def paused(self) -> set[TopicPartition]:
            return set(self._paused)

        def pause(self, *tps: TopicPartition) -> None:
            self._paused |= set(tps)

        def resume(self, *tps: TopicPartition) -> None:
            self._paused -= set(tps)

        def seek(self, tp: TopicPartition, offset: int) -> None:
            self.pos[tp] = offset

        def position(self, tp: TopicPartition) -> int:
            return self.pos[tp]

        def highwater(self, tp: TopicPartition) -> int:
            return len(cluster.log[tp])

        def commit(self, offsets: dict, timeout_ms: int | None = None) -> None:
            with cluster.lock:
                for tp, meta in offsets.items():
                    cluster.committed[tp] = meta.offset

        def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None: ...

    return Consumer, Producer


class FakePipeline:
    """Per clip id: ``sleep`` seconds (deadline-checked) or ``hang`` on an Event (stuck where no check reaches)."""

    def __init__(self, plan: dict[str, dict] | None = None) -> None:
        self.plan = plan or {}
        self.calls: list[str] = []
        self.active = self.most_active = 0
        self.lock = threading.Lock()

    def warm_up(self) -> None: ...

    def new_depth_state(self) -> object:
        return object()

    def close(self) -> None: ...

    def analyze(self, src: Any, *, clip_id: str, stream_id: str | None = None, source: Any = None,
                deadline: Any = None, **_: Any) -> ClipAnalysis:
        with self.lock:
            self.calls.append(clip_id)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            plan = self.plan.get(clip_id, {})
            if "hang" in plan:
                plan["hang"].wait()
            end = time.monotonic() + plan.get("sleep", 0.0)
            while time.monotonic() < end:
                if deadline is not None:
                    deadline.check()
                time.sleep(0.01)
            frames = [FrameRecord(frame_index=i, t=i / 4, quality=50.0, depth_fresh=True,
                                  distortions=Distortions(low_light=0.01, haze=0.01, flare=0.01)) for i in range(4)]
            report = build_report(frames, clip_id=clip_id, stream_id=stream_id, duration_s=1.0, source=source,
                                  model=ModelInfo(name="m", version="1"),
                                  thresholds={"low_light": 0.5, "haze": 0.5, "flare": 0.5})
            return ClipAnalysis(report=report, frames=frames, timings={"decode": 0.0, "depth": 0.0, "model": 0.0})
        finally:
            with self.lock:
                self.active -= 1


def _settings(**service: Any) -> Settings:
    svc = {"metrics_enabled": False, "poll_timeout_ms": 50, "reconnect_backoff_s": 0.05,
           "reconnect_backoff_max_s": 0.2, "max_in_flight": 2, "allowed_roots": ["/tmp"], **service}
    return Settings.load(model={"device": "cpu"}, depth={"source": "prior"},
                         kafka={"group_id": "g", "input_topic": TOPIC, "delivery_timeout_s": 0.5}, service=svc)


@pytest.fixture
def run(monkeypatch) -> Iterator[Callable[..., Service]]:
    """Start a Service on a cluster (its loop on a thread); stopped, and hung clips released, at the end."""
    monkeypatch.setattr(app, "STUCK_GRACE_S", 0.5)
    started: list[tuple[Service, threading.Thread]] = []
    hangs: list[threading.Event] = []

    def start(cluster: Cluster, pipeline: FakePipeline, **service: Any) -> Service:
        consumer, producer = _fakes(cluster)
        monkeypatch.setattr(kafka, "KafkaConsumer", consumer)
        monkeypatch.setattr(kafka, "KafkaProducer", producer)
        hangs.extend(p["hang"] for p in pipeline.plan.values() if "hang" in p)
        svc = Service(_settings(**service), pipeline=pipeline)
        thread = threading.Thread(target=svc.run, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        started.append((svc, thread))
        return svc

    yield start
    for svc, thread in started:
        svc.stop()
        thread.join(20)
    for hang in hangs:
        hang.set()


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
REPORTS, ERRORS = "stream-iqa.reports", "stream-iqa.errors"


def test_a_report_the_topic_refuses_for_good_is_answered_by_an_error_record(run):
    """Was retried for ever (76 sends in 15 s) while nothing after it was analysed or committed, /healthz 200."""
    cluster = Cluster()
    for clip in ("ok-0", "huge", "ok-2"):
        cluster.add(0, clip)
    cluster.refuse = lambda topic, value: (MessageSizeTooLargeError("1500000 bytes is over max_request_size")
                                           if topic == REPORTS and b'"huge"' in value else None)
    svc = run(cluster, FakePipeline())
    wait_for(lambda: cluster.committed.get(TP0) == 3)
    assert [r["clip_id"] for r in cluster.outputs(REPORTS)] == ["ok-0", "ok-2"]
    [error] = cluster.outputs(ERRORS)
    assert (error["clip_id"], error["code"], error["source"]["offset"]) == ("huge", "internal", 1)
    assert "could not be published" in error["message"] and "MessageSizeTooLargeError" in error["message"]
    assert sum(1 for t, v in cluster.sends if t == REPORTS and b'"huge"' in v) == 1  # refused once, not retried
    assert svc.metrics.publish_failures.labels("refused")._value.get() == 1


def test_an_errors_topic_that_refuses_writes_holds_the_offset_and_the_worker_shows_it(run):
    """The error record is an input's last answer: it is retried, its offset is not committed, and the worker stops
    being ready (then alive), until the topic takes it. It used to stay ready and alive."""
    cluster = Cluster()
    cluster.add(0, "ok-0")
    cluster.add(0, "no-type", headers=[])  # no content-type: invalid_message, an error record
    cluster.add(0, "ok-2")
    denied = threading.Event()
    denied.set()
    cluster.refuse = lambda topic, value: (TopicAuthorizationFailedError(ERRORS)
                                           if topic == ERRORS and denied.is_set() else None)
    svc = run(cluster, FakePipeline(), clip_timeout_s=1.5)
    wait_for(lambda: cluster.committed.get(TP0) == 1)
    wait_for(lambda: not svc._ready)  # failing for longer than kafka.delivery_timeout_s
    wait_for(lambda: not svc._alive())  # ... and than service.clip_timeout_s
    assert cluster.committed[TP0] == 1 and cluster.outputs(ERRORS) == []
    denied.clear()  # the ACL is granted
    wait_for(lambda: cluster.committed.get(TP0) == 3)
    assert [e["code"] for e in cluster.outputs(ERRORS)] == ["invalid_message"]
    wait_for(lambda: svc._ready and svc._alive())


def test_a_stuck_clip_of_a_revoked_partition_frees_its_slot_and_is_counted(run):
    """With max_in_flight 1 the worker never started another clip on any partition, and reported no stuck thread."""
    cluster = Cluster(partitions=2)
    cluster.add(0, "stuck")
    for i in range(3):
        cluster.add(1, f"p1-{i}")
    pipeline = FakePipeline({"stuck": {"hang": threading.Event()}})
    svc = run(cluster, pipeline, clip_timeout_s=0.5, max_in_flight=1)
    wait_for(lambda: cluster.consumers and pipeline.calls == ["stuck"])
    consumer = cluster.consumers[0]
    consumer.revoke = [TP0, TP1]  # the group rebalances: partition 0 moves to another worker
    wait_for(lambda: consumer.revoke is None)
    consumer.assign = [TP1]
    wait_for(lambda: cluster.committed.get(TP1) == 3)
    assert [r["clip_id"] for r in cluster.outputs(REPORTS)] == ["p1-0", "p1-1", "p1-2"]
    assert cluster.outputs(ERRORS) == []  # the moved clip is its new owner's to answer
    assert svc.metrics.stuck_threads._value.get() == 1 and TP0 not in cluster.committed


def test_a_partition_handed_straight_back_carries_on_with_its_clip(run):
    """kafka-python revokes everything at a rebalance and often assigns it back: the clip in hand was analysed a
    second time beside itself, against "at most one clip per partition at a time", and reported twice."""
    cluster = Cluster()
    cluster.add(0, "long")
    cluster.add(0, "next")
    pipeline = FakePipeline({"long": {"sleep": 1.5}})
    run(cluster, pipeline)
    wait_for(lambda: pipeline.calls == ["long"])
    consumer = cluster.consumers[0]
    consumer.revoke, consumer.assign = [TP0], [TP0]
    wait_for(lambda: cluster.committed.get(TP0) == 2)
    assert pipeline.calls == ["long", "next"] and pipeline.most_active == 1
    assert [r["clip_id"] for r in cluster.outputs(REPORTS)] == ["long", "next"]


def test_lag_counts_the_records_in_hand_before_the_first_commit(run):
    """It read the fetch position (all 10 records fetched) until the first commit, so a full backlog showed lag 0."""
    cluster = Cluster()
    for i in range(10):
        cluster.add(0, f"c{i}")
    svc = run(cluster, FakePipeline({"c0": {"sleep": 2.0}}), lag_interval_s=0.05, max_in_flight=1)
    lag = svc.metrics.lag.labels(TOPIC, "0")
    wait_for(lambda: lag._value.get() == 10)
    assert TP0 not in cluster.committed
    wait_for(lambda: cluster.committed.get(TP0, 0) >= 1)
    wait_for(lambda: lag._value.get() <= 10 - cluster.committed[TP0])


def test_a_partition_back_after_another_worker_moved_on_leaves_its_old_clip(run):
    """The group's offset moved past the clip in hand while the partition was away: taking the clip up again
    committed 1 behind the other worker's 3, and would have redelivered what it did."""
    cluster = Cluster()
    for clip in ("long", "b", "c", "d", "e"):
        cluster.add(0, clip)
    pipeline = FakePipeline({"long": {"sleep": 1.5}})
    run(cluster, pipeline)
    wait_for(lambda: pipeline.calls == ["long"])
    consumer = cluster.consumers[0]
    consumer.revoke = [TP0]
    wait_for(lambda: consumer.revoke is None)
    seen: list[int] = []
    real_commit = consumer.commit

    def commit(offsets: dict, timeout_ms: int | None = None) -> None:
        seen.extend(meta.offset for meta in offsets.values())
        real_commit(offsets, timeout_ms)

    consumer.commit = commit
    with cluster.lock:
        cluster.committed[TP0] = 3  # another worker analysed 0..2 meanwhile
    consumer.assign = [TP0]
    wait_for(lambda: cluster.committed.get(TP0) == 5)
    assert seen == sorted(seen) and min(seen) > 3 and pipeline.calls == ["long", "d", "e"]
