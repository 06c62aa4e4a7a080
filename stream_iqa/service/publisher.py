"""A clip's outputs: which messages go to which topic, and sending them until the broker has acknowledged them all.

Why apart from the worker loop: *what* is published for a clip — its report (and its frames, where
``kafka.publish_frames`` asks), or else one error record — is the output contract's business and pure; *how* it is
sent is the delivery guarantee: every message sent, then every acknowledgement awaited; on any failure all of them
sent again (a duplicate carries the same idempotency key, so consumers drop it), with backoff, until acknowledged or
the shutdown deadline abandons the clip. Neither depends on polling, offsets or rebalances, which stay in
``service.app``; the clip's offset is committed only after ``Publisher.publish`` returned.
"""

from __future__ import annotations

import json
import threading
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
                 abandon: threading.Event) -> None:
        self._producer = producer
        self._kafka, self._service = kafka, service
        self._abandon = abandon

    def publish(self, messages: Sequence[Message], idempotency_key: str) -> None:
        """Send all, then wait for every ack; on failure send them all again (duplicates carry the same key)."""
        backoff = self._service.reconnect_backoff_s
        headers = [("idempotency-key", idempotency_key.encode()), ("content-type", b"application/json")]
        while True:
            try:
                producer = self._producer()
                futures = [producer.send(topic, key=k, value=v, headers=headers) for topic, k, v in messages]
                for f in futures:
                    f.get(timeout=self._kafka.delivery_timeout_s)
                return
            except Exception as exc:  # noqa: BLE001 - broker down, timeouts, leader changes: all retried
                if self._abandon.is_set():
                    raise Abandoned("shutdown deadline passed before the broker acknowledged") from exc
                log.warning("publish failed; retrying", error=repr(exc), backoff_s=backoff)
                if self._abandon.wait(backoff):
                    raise Abandoned("shutdown deadline passed before the broker acknowledged") from exc
                backoff = min(backoff * 2, self._service.reconnect_backoff_max_s)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
