"""A clip's outputs: which messages go to which topic, and sending them until the broker has acknowledged them all.

Why apart from the worker loop: *what* is published for a clip — its report (and its frames, where
``kafka.publish_frames`` asks), or else one error record — is the output contract's business and pure; *how* it is
sent is the delivery guarantee: every message sent, then every acknowledgement awaited; on any failure all of them
sent again (a duplicate carries the same idempotency key, so consumers drop it), with backoff, until acknowledged or
the shutdown deadline abandons the clip. Neither depends on polling, offsets or rebalances, which stay in
``service.app``; the clip's offset is committed only after ``Publisher.publish`` returned.

A refusal that no retry can change (the record is over the topic's size limit, the worker may not write the topic)
is raised as ``Undeliverable`` at once, so that the service answers the input another way (an error record in place
of a report) instead of retrying one record for ever while its partition stands still. How long any publish has
been failing is kept (``failing_s``): the service's readiness and liveness read it, so a worker whose outputs cannot
be delivered does not look healthy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from stream_iqa.deadline import Cancelled
from stream_iqa.log import get_logger
from stream_iqa.schema import ClipReport, ErrorRecord, FrameRecord
from stream_iqa.settings import KafkaSettings, ServiceSettings

log = get_logger(__name__)

#: (topic, key, value) of one output message
Message = tuple[str, bytes | None, bytes]


class Abandoned(Cancelled):
    """A clip given up (shutdown deadline passed): its offset is not committed, so the group redelivers it."""


class Undeliverable(Exception):
    """The brokers refused a clip's message for good (``PERMANENT``): retrying the same bytes cannot succeed."""

    def __init__(self, topic: str, cause: BaseException) -> None:
        self.topic, self.cause = topic, cause
        super().__init__(f"{topic} refused the record: {type(cause).__name__}: {' '.join(str(cause).split())[:300]}")


def _permanent_errors() -> tuple[type[BaseException], ...]:
    """kafka-python's refusals of a record or of the worker's right to write a topic. Named one by one rather than
    read off ``retriable = False``: that is also the base class's default, which connection and state errors of a
    producer being replaced inherit, and those must be retried."""
    import kafka.errors as ke

    names = ("MessageSizeTooLargeError", "RecordListTooLargeError", "TopicAuthorizationFailedError",
             "ClusterAuthorizationFailedError", "InvalidTopicError", "InvalidRecordError", "PolicyViolationError")
    return tuple(getattr(ke, n) for n in names if hasattr(ke, n))


PERMANENT: tuple[type[BaseException], ...] = _permanent_errors()


def report_messages(kafka: KafkaSettings, report: ClipReport, frames: Sequence[FrameRecord],
                    stream_key: bytes | None) -> list[Message]:
    """A reported clip's messages: each frame's record to ``frames_topic`` where asked, then the report, all keyed by
    the stream (one partition per stream keeps its reports in order)."""
    messages: list[Message] = []
    if kafka.publish_frames:
        for f in frames:
            body = {"clip_id": report.clip_id, "stream_id": report.stream_id, "idempotency_key": report.idempotency_key,
                    **f.model_dump(mode="json", exclude_none=True)}
            messages.append((kafka.frames_topic, stream_key, _json(body)))
    messages.append((kafka.output_topic, stream_key, report.model_dump_json().encode()))
    return messages


def error_messages(kafka: KafkaSettings, error: ErrorRecord, stream_key: bytes | None) -> list[Message]:
    """A failed clip's one message: its error record to ``errors_topic`` (never a partial report)."""
    return [(kafka.errors_topic, stream_key, error.model_dump_json().encode())]


class Publisher:
    """Sends a clip's messages through the current producer (``producer()``: the service replaces it on reconnect)
    and returns once the broker acknowledged every one; raises ``Abandoned`` once ``abandon`` is set."""

    def __init__(self, producer: Callable[[], Any], kafka: KafkaSettings, service: ServiceSettings,
                 abandon: threading.Event, on_failure: Callable[[str], None] | None = None) -> None:
        self._producer = producer
        self._kafka, self._service = kafka, service
        self._abandon = abandon
        self._on_failure = on_failure or (lambda kind: None)
        self._failing: dict[int, float] = {}  # thread id -> when its current publish first failed
        self._lock = threading.Lock()

    def failing_s(self) -> float:
        """Seconds the longest-failing publish in progress has been failing; 0 when none is."""
        with self._lock:
            since = min(self._failing.values(), default=None)
        return 0.0 if since is None else time.monotonic() - since

    def publish(self, messages: Sequence[Message], idempotency_key: str, retry_refusals: bool = False) -> None:
        """Send all, then wait for every ack; on failure send them all again (duplicates carry the same key).
        A permanent refusal raises ``Undeliverable`` at once, unless ``retry_refusals`` (the last answer an input
        has: the service then keeps trying, and shows it, until someone fixes the topic)."""
        backoff = self._service.reconnect_backoff_s
        headers = [("idempotency-key", idempotency_key.encode()), ("content-type", b"application/json")]
        me = threading.get_ident()
        try:
            while True:
                topic = "?"
                try:
                    producer = self._producer()
                    futures = []
                    for topic, k, v in messages:
                        futures.append((topic, producer.send(topic, key=k, value=v, headers=headers)))
                    for topic, f in futures:
                        f.get(timeout=self._kafka.delivery_timeout_s)
                    return
                except Exception as exc:  # noqa: BLE001 - broker down, timeouts, leader changes: all retried
                    permanent = isinstance(exc, PERMANENT)
                    self._on_failure("refused" if permanent else "retried")
                    with self._lock:
                        self._failing.setdefault(me, time.monotonic())
                    if permanent and not retry_refusals:
                        log.error("the brokers refused an output for good", topic=topic, error=repr(exc))
                        raise Undeliverable(topic, exc) from exc
                    if self._abandon.is_set():
                        raise Abandoned("shutdown deadline passed before the broker acknowledged") from exc
                    log.warning("publish failed; retrying", topic=topic, error=repr(exc), backoff_s=backoff)
                    if self._abandon.wait(backoff):
                        raise Abandoned("shutdown deadline passed before the broker acknowledged") from exc
                    backoff = min(backoff * 2, self._service.reconnect_backoff_max_s)
        finally:
            with self._lock:
                self._failing.pop(me, None)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
