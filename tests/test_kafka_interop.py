"""Interop with a second, independent Kafka client: librdkafka (confluent-kafka) produces jobs with every compression
codec (none, gzip, snappy, lz4, zstd) to the service, which consumes with kafka-python, and reads the reports back.

Why: librdkafka and Java producers commonly set ``compression.type`` lz4, zstd or snappy. kafka-python decodes those
only with the codec libraries installed (lz4, zstandard, python-snappy: runtime pins in requirements.txt); without
them ``poll()`` raises ``UnsupportedCodecError`` for every such batch (tests/kafka_helpers.py: what kafka-python's
fetcher does after such an error).

Two things about librdkafka that shape this test:
- it sends a batch uncompressed when compressing does not shrink it. H.264 is incompressible, so the raw segments here
  are Motion-JPEG in mp4 (valid mp4 files that every codec shrinks by a few per cent), and ``batch_codecs`` checks
  what really went over the wire: every batch of partition i carries codec i.
- against Tansu 0.6, a librdkafka consumer's JoinGroup is answered only after half of ``session.timeout.ms``
  (~23 s at the default 45 s), hence 6 s here.
Seen working against Tansu 0.6 with librdkafka 2.16 (not only what this test uses): acks all/1/0, every codec,
``api.version.request=false`` with a 2.8 fallback, ``enable.idempotence=true``, a committed transaction.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CorruptRecordError

from kafka_helpers import batch_codecs, produce_corrupt_batch
from stream_iqa.synthesis.clips import ClipSpec, build_clip, render_frames, write_clip
from stream_iqa.schema import ClipReport
from stream_iqa.service.kafka_demo import read_topic
from test_service_kafka import (  # noqa: F401 - fixtures are used by name
    Running,
    _restore_torch_threads,
    broker,
    committed,
    file_job,
    scorer,
    settings_for,
    topics,
)

pytestmark = pytest.mark.slow
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]  # input partition i gets codec i
MIB = 1024**2


def write_mjpeg(frames: list[np.ndarray], path: Path, fps: int = 10) -> Path:
    """Motion-JPEG in mp4: a real, decodable segment that general-purpose compressors still shrink a little."""
    return write_clip(frames, path, fps, codec="mjpeg")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("interop-clips")
    build_clip(ClipSpec(scenes=["coffee"], scene_s=1.0), d / "short.mp4")  # for the JSON file jobs
    write_mjpeg(render_frames(ClipSpec(scenes=["china"], scene_s=1.0)), d / "segment.mp4")
    # > 1 MiB after zstd: kafka-python once decompressed zstd with a 1 MiB output limit
    write_mjpeg(render_frames(ClipSpec(scenes=["coffee", "china"], scene_s=5.0, size=(640, 480))), d / "big.mp4")
    return d


def video_job(data: bytes, clip_id: str, stream_id: str) -> tuple[bytes, list]:
    return data, [("content-type", b"video/mp4"), ("clip_id", clip_id.encode()), ("stream_id", stream_id.encode())]


def rdkafka_produce(bootstrap: str, topic: str, partition: int, codec: str, batches: list[list[tuple[str, bytes, list]]]
                    ) -> None:
    """Each inner list as one batch (flushed before the next) from a librdkafka producer with ``compression.type``."""
    errors: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": "all", "linger.ms": 100,
                         "message.max.bytes": 8 * MIB, "enable.idempotence": False})
    for batch in batches:
        for key, value, headers in batch:
            producer.produce(topic, value=value, key=key.encode(), partition=partition, headers=headers,
                             on_delivery=lambda err, _msg: errors.append(err) if err else None)
        assert producer.flush(30) == 0
    assert errors == [], errors


def rdkafka_read(bootstrap: str, topic: str, n: int, timeout_s: float = 60.0) -> list:
    """The first ``n`` messages of ``topic``, read by a librdkafka consumer in a group of its own."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"interop-reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
    finally:
        consumer.close()
    return out


def test_every_compression_codec_from_librdkafka_is_consumed_and_answered(broker, clips, scorer):
    s = settings_for(broker, clips, max_message_bytes=8 * MIB)
    bootstrap, topic = s.kafka.bootstrap_servers, s.kafka.input_topic
    broker.create_topics(topics(s), partitions=len(CODECS))
    segment, big = (clips / "segment.mp4").read_bytes(), (clips / "big.mp4").read_bytes()
    assert len(big) > 1.1 * MIB
    layout: dict[int, list[list[str]]] = {}  # partition -> its batches -> their clip ids
    for p, codec in enumerate(CODECS):
        cam = f"cam-{codec}"
        layout[p] = [[f"{codec}-json-0", f"{codec}-json-1"], [f"{codec}-segment"]]
        batches = [[(cam, *file_job(clips / "short.mp4", clip_id, cam)) for clip_id in layout[p][0]],
                   [(cam, *video_job(segment, layout[p][1][0], cam))]]
        if codec == "zstd":
            layout[p].append(["zstd-big"])
            batches.append([(cam, *video_job(big, "zstd-big", cam))])
        rdkafka_produce(bootstrap, topic, p, codec, batches)
    # librdkafka writes raw snappy; kafka-python (like the Java client) writes xerial-framed snappy: that too
    p = CODECS.index("snappy")
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="snappy", acks="all")
    producer.send(topic, key=b"cam-snappy", partition=p, value=segment,
                  headers=video_job(segment, "snappy-xerial-segment", "cam-snappy")[1]).get(30)
    producer.close()
    layout[p].append(["snappy-xerial-segment"])
    expected = {clip_id: p for p, batches in layout.items() for batch in batches for clip_id in batch}
    assert len(expected) == 3 * len(CODECS) + 2

    # what went over the wire: every batch of partition i compressed with codec i, the big one > 1 MiB in zstd
    wire = batch_codecs(bootstrap, topic)
    assert {p: [b.codec for b in batches] for p, batches in wire.items()} == {
        p: [CODECS[p]] * len(batches) for p, batches in layout.items()}
    assert wire[CODECS.index("zstd")][-1].size_bytes > MIB
    # true log ends, from the batches themselves: Tansu's high watermark is the last batch's base offset + 1 (for
    # librdkafka's get_watermark_offsets as for kafka-python's end_offsets), and test_service_kafka.end_offsets reads
    # with kafka-python's default 1 MB frame limit, which the big batch exceeds
    ends = {p: batches[-1].last_offset + 1 for p, batches in wire.items()}
    assert ends == {p: sum(map(len, batches)) for p, batches in layout.items()}

    run = Running(s, scorer)
    try:
        outcomes = run.wait(len(expected), timeout=120)
        run.wait_until(lambda: committed(s) == ends)
    finally:
        run.stop()
    assert all(o.report is not None for o in outcomes), [o for o in outcomes if o.report is None]
    assert read_topic(bootstrap, s.kafka.errors_topic, timeout_s=1) == []

    messages = rdkafka_read(bootstrap, s.kafka.output_topic, len(expected))
    reports = {}
    for msg in messages:
        report = ClipReport.model_validate_json(msg.value())
        key = dict(msg.headers() or []).get("idempotency-key")
        assert key and key.decode() == report.idempotency_key
        assert report.source is not None and report.source.topic == topic and report.frames_analyzed > 0
        reports[report.clip_id] = report
    assert len(messages) == len(expected) and set(reports) == set(expected)  # each exactly once
    assert {k: r.source.partition for k, r in reports.items()} == expected
    assert reports["zstd-big"].frames_analyzed == 20  # the 10 s segment was decoded whole (2 frames/s)


def test_produce_corrupt_batch_makes_kafka_python_raise_for_that_partition_and_offset(broker):
    """The helper the service's corrupt-batch tests use, and the fetcher behaviour they rely on (kafka_helpers.py)."""
    topic = f"corrupt-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=2)
    assert produce_corrupt_batch(broker.bootstrap, topic, 1, records=2) == 0
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(topic, b"after", partition=1).get(30)
    producer.close()
    assert [b.codec for b in batch_codecs(broker.bootstrap, topic)[1]] == ["none", "none"]
    seen: list = []

    def consume() -> None:  # on a thread: a kafka-python change that made poll() spin must fail, not hang
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        tp = TopicPartition(topic, 1)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        try:
            for _ in range(20):
                try:
                    records = consumer.poll(timeout_ms=500)
                except CorruptRecordError as exc:
                    failing = consumer._fetcher._next_partition_records
                    seen.append((failing.topic_partition, failing.next_fetch_offset, consumer.position(tp), str(exc)))
                    consumer.seek(tp, failing.next_fetch_offset + 1)  # skip it; seek to the same offset would spin
                    continue
                seen.extend(r.value for rs in records.values() for r in rs)
                if b"after" in seen:
                    return
        finally:
            consumer.close()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), f"poll() did not return: {seen}"
    tp = TopicPartition(topic, 1)
    assert [x[:3] for x in seen[:2]] == [(tp, 0, 0), (tp, 1, 1)]  # each offset of the bad batch raises once
    assert "failed crc check" in seen[0][3] and seen[2:] == [b"after"]
