"""What a clip publishes, and the delivery guarantee: every message acknowledged, or all sent again, or abandoned."""

from __future__ import annotations

import json
import threading

import pytest

from stream_iqa.schema import ClipReport, Distortions, ErrorRecord, FrameRecord, ModelInfo, Source
from stream_iqa.service.publisher import Abandoned, Publisher, error_messages, report_messages
from stream_iqa.settings import Settings
from stream_iqa.temporal import build_report


class _Future:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def get(self, timeout: float) -> None:
        if self.fail:
            raise TimeoutError("no ack")


class _Producer:
    """Fails the first ``failures`` sends, then acknowledges; records every send."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes | None, bytes, list]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list) -> _Future:
        self.sent.append((topic, key, value, headers))
        self.failures -= 1
        return _Future(self.failures >= 0)


def _settings(**kafka: object) -> Settings:
    return Settings.load(kafka=kafka, service={"reconnect_backoff_s": 0.01, "reconnect_backoff_max_s": 0.02})


def _frame(i: int) -> FrameRecord:
    return FrameRecord(frame_index=i, t=i / 4, quality=50.0,
                       distortions=Distortions(low_light=0.1, haze=0.2, flare=0.3), depth_fresh=True)


@pytest.fixture()
def report() -> ClipReport:
    frames = [_frame(i) for i in range(4)]
    report = build_report(frames, clip_id="c", stream_id="cam-1", duration_s=1.0,
                          model=ModelInfo(name="m", version="1"), thresholds={"low_light": 0.5, "haze": 0.5,
                                                                               "flare": 0.5})
    return report.model_copy(update={"idempotency_key": "k" * 32})


def test_a_report_goes_to_the_output_topic_keyed_by_stream_and_frames_only_where_asked(report):
    kafka = _settings().kafka
    plain = report_messages(kafka, report, [_frame(0)], b"cam-1")
    assert [(t, k) for t, k, _ in plain] == [(kafka.output_topic, b"cam-1")]
    assert ClipReport.model_validate_json(plain[0][2]) == report


def test_frames_are_published_before_their_report_with_the_clips_ids(report):
    kafka = _settings(publish_frames=True).kafka
    msgs = report_messages(kafka, report, [_frame(0), _frame(1)], b"cam-1")
    assert [t for t, _, _ in msgs] == [kafka.frames_topic] * 2 + [kafka.output_topic]
    body = json.loads(msgs[1][2])
    assert (body["clip_id"], body["stream_id"], body["idempotency_key"]) == ("c", "cam-1", "k" * 32)
    assert FrameRecord.model_validate({k: v for k, v in body.items()
                                       if k not in ("clip_id", "stream_id", "idempotency_key")}) == _frame(1)
    # every frame carries the clip's key (it joins them to the report): (key, frame_index) tells them apart, as
    # docs/SERVICE.md tells consumers that drop duplicates
    pairs = [(b["idempotency_key"], b["frame_index"]) for b in map(json.loads, (m[2] for m in msgs[:2]))]
    assert len(set(pairs)) == 2 and {k for k, _ in pairs} == {report.idempotency_key}


def test_an_error_is_one_message_on_the_errors_topic():
    error = ErrorRecord(clip_id="c", code="invalid_message", message="bad", source=Source(topic="in", partition=0,
                                                                                         offset=3))
    (topic, key, value), = error_messages(_settings().kafka, error, b"k")
    assert topic == _settings().kafka.errors_topic and key == b"k"
    assert ErrorRecord.model_validate_json(value) == error


def test_a_failed_send_sends_every_message_again_with_the_same_key_until_acknowledged():
    producer = _Producer(failures=1)
    s = _settings()
    Publisher(lambda: producer, s.kafka, s.service, threading.Event()).publish(
        [("a", b"k", b"1"), ("b", b"k", b"2")], "idem")
    assert [t for t, *_ in producer.sent] == ["a", "b", "a", "b"]  # the first round failed on "a": both again
    assert all(("idempotency-key", b"idem") in h for *_, h in producer.sent)


def test_the_producer_is_read_at_each_attempt_so_a_reconnect_is_used():
    first, second = _Producer(failures=10), _Producer(failures=0)
    current = [first]
    s = _settings()
    abandon = threading.Event()

    def producer() -> _Producer:
        p = current[0]
        current[0] = second  # the service reconnected after the first attempt
        return p

    Publisher(producer, s.kafka, s.service, abandon).publish([("a", None, b"1")], "idem")
    assert len(first.sent) == 1 and len(second.sent) == 1


def test_a_set_abandon_event_gives_the_clip_up_instead_of_retrying_forever():
    producer = _Producer(failures=1000)
    s = _settings()
    abandon = threading.Event()
    abandon.set()
    with pytest.raises(Abandoned):
        Publisher(lambda: producer, s.kafka, s.service, abandon).publish([("a", None, b"1")], "idem")
    assert len(producer.sent) == 1


class _Refusing:
    """Refuses ``refusals`` sends for good (the record is over the topic's limit), then acknowledges."""

    def __init__(self, refusals: int, exc: Exception) -> None:
        self.refusals, self.exc, self.sent = refusals, exc, 0

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list) -> object:
        self.sent += 1
        self.refusals -= 1
        if self.refusals >= 0:
            raise self.exc  # kafka-python checks the size before sending: send itself raises
        return _Future(False)


@pytest.mark.parametrize("exc", ["MessageSizeTooLargeError", "TopicAuthorizationFailedError"])
def test_a_refusal_for_good_is_raised_at_once_not_retried(exc: str):
    import kafka.errors

    from stream_iqa.service.publisher import Undeliverable

    s = _settings()
    failures: list[str] = []
    producer = _Refusing(1, getattr(kafka.errors, exc)("no"))
    publisher = Publisher(lambda: producer, s.kafka, s.service, threading.Event(), on_failure=failures.append)
    with pytest.raises(Undeliverable, match=f"reports refused the record: {exc}") as err:
        publisher.publish([("reports", None, b"1")], "idem")
    assert err.value.topic == "reports" and producer.sent == 1 and failures == ["refused"]
    assert publisher.failing_s() == 0.0  # nothing is failing once the call returned


def test_the_last_answer_is_retried_through_refusals_and_how_long_it_fails_is_seen():
    import kafka.errors

    s = _settings()
    producer = _Refusing(3, kafka.errors.TopicAuthorizationFailedError("errors"))
    failures: list[str] = []
    publisher = Publisher(lambda: producer, s.kafka, s.service, threading.Event(), on_failure=failures.append)
    seen: list[float] = []
    real_send = producer.send

    def send(*args: object, **kw: object) -> object:
        seen.append(publisher.failing_s())
        return real_send(*args, **kw)

    producer.send = send  # type: ignore[method-assign]
    publisher.publish([("errors", None, b"1")], "idem", retry_refusals=True)
    assert producer.sent == 4 and failures == ["refused"] * 3
    assert seen[0] == 0.0 and all(b > a > 0 for a, b in zip(seen[1:], seen[2:]))  # failing since the first refusal
    assert publisher.failing_s() == 0.0
