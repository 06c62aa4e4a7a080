"""A group join that never completes (seen once in CI after a broker restart: revoked, then no assignment and no error
for minutes while the worker looked ready) must not leave a worker that consumes nothing: it is not ready while it
joins, and after ``kafka.join_timeout_s`` it replaces its consumer.

kafka-python stands in for itself through a fake here, because the stall cannot be provoked on demand against a real
broker; the fake only replays the listener calls kafka-python makes (revoke on a rejoin, assign when it completes)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import kafka
import pytest
from kafka import TopicPartition

from stream_iqa.errors import ConfigError
from stream_iqa.model.scorer import Scorer, load_scorer
from stream_iqa.service.app import Service
from stream_iqa.settings import Settings

TP = TopicPartition("in", 0)


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return load_scorer(Settings.load(model={"device": "cpu"}, depth={"source": "prior"}))


class FakeProducer:
    def __init__(self, **opts: Any) -> None:
        self.closed = False

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class FakeConsumer:
    """Consumer 0 joins, then (once ``stall`` is set) is revoked and never assigned again; later ones join at once."""

    made: list[FakeConsumer] = []
    stall = threading.Event()

    def __init__(self, **opts: Any) -> None:
        self.opts, self.index, self.closed = opts, len(FakeConsumer.made), False
        self.listener: Any = None
        self.held: set[TopicPartition] = set()
        self.revoked_at: float | None = None
        self._coordinator = SimpleNamespace(coordinator_id=1, state="REBALANCING", _generation="Generation 3",
                                            rejoin_needed=True, join_future=object())
        self._client = SimpleNamespace(connected=lambda node: not self.closed)
        FakeConsumer.made.append(self)

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.topics, self.listener = topics, listener

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if self.revoked_at is None and not self.held and (self.index > 0 or not FakeConsumer.stall.is_set()):
            self.listener.on_partitions_revoked([])  # kafka-python's first join revokes nothing, then assigns
            self.held = {TP}
            self.listener.on_partitions_assigned([TP])
        elif self.index == 0 and FakeConsumer.stall.is_set() and self.revoked_at is None:
            self.revoked_at = time.monotonic()
            lost, self.held = list(self.held), set()
            self.listener.on_partitions_revoked(lost)  # the rejoin begins ... and never completes
        time.sleep(min(timeout_ms, 50) / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.held)

    def paused(self) -> set[TopicPartition]:
        return set()

    def pause(self, *tps: TopicPartition) -> None: ...

    def resume(self, *tps: TopicPartition) -> None: ...

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.closed = True


def test_a_join_that_never_completes_replaces_the_consumer_and_is_not_ready_meanwhile(scorer, monkeypatch):
    monkeypatch.setattr(kafka, "KafkaConsumer", FakeConsumer)
    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    FakeConsumer.made, FakeConsumer.stall = [], threading.Event()
    s = Settings.load(model={"device": "cpu"}, depth={"source": "prior"},
                      kafka={"group_id": "g", "input_topic": "in", "join_timeout_s": 5, "session_timeout_ms": 1500,
                             "heartbeat_interval_ms": 500},
                      service={"metrics_enabled": False, "poll_timeout_ms": 50, "reconnect_backoff_s": 0.1})
    service = Service(s, scorer=scorer)
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: service.ready and service.assignment == {TP})
        first = FakeConsumer.made[0]
        FakeConsumer.stall.set()
        wait_for(lambda: first.revoked_at is not None)
        readiness = []
        while len(FakeConsumer.made) == 1 and time.monotonic() - first.revoked_at < 10:
            readiness.append(service.ready)
            time.sleep(0.05)
        replaced_after = time.monotonic() - first.revoked_at
        wait_for(lambda: service.ready and service.assignment == {TP})
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert len(FakeConsumer.made) == 2 and first.closed  # the stalled consumer was closed, a fresh one joined
    assert 5 <= replaced_after < 8, replaced_after  # after join_timeout_s, not before
    assert readiness and not any(readiness[2:]), "a worker whose join is pending must not report ready"
    second = FakeConsumer.made[1]
    assert second.opts["group_id"] == "g" and second.topics == ["in"]
    assert service.metrics.join_stalls._value.get() == 1


def test_a_join_timeout_shorter_than_a_rebalance_is_refused_naming_the_setting():
    with pytest.raises(ConfigError, match="STREAM_IQA_KAFKA__JOIN_TIMEOUT_S"):
        Settings.load(kafka={"join_timeout_s": 10, "session_timeout_ms": 10_000})
    assert Settings.load(kafka={"join_timeout_s": 13, "session_timeout_ms": 10_000}).kafka.join_timeout_s == 13


def wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
