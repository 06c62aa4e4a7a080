"""Kafka test helpers that reach below the clients' public APIs (a plain module, not a conftest; import what you use).

- ``produce_corrupt_batch``: a record batch that kafka-python's consumer cannot read, written straight into a
  partition of the embedded Tansu broker.
- ``batch_codecs``: the compression codec of every record batch stored in a topic, as a consumer fetches it (to show
  that a producer really sent compressed batches, which librdkafka skips when compressing does not shrink them).

What kafka-python 2.3.3's consumer does with a batch it cannot read (observed against Tansu 0.6 with a bad CRC, a
damaged payload of every codec and an lz4 batch with lz4 not importable), which is what a test of the service's
handling has to expect:

- ``poll()`` raises. If that ``poll()`` had already drained records (this partition's before the bad batch, or
  another partition's handled first), it returns them instead and the next ``poll()`` raises (only if the partition
  is still fetchable at that offset; otherwise the error is dropped and comes back with the next fetch); if not, it
  raises at once and other partitions' fetched records wait for the next ``poll()``. The exception is not always a
  ``KafkaError``: a bad CRC gives ``kafka.errors.CorruptRecordError`` ("Record batch for partition TopicPartition(...)
  at offset <batch base offset> failed crc check"), but a compressed payload that passes the CRC and does not
  decompress raises the codec library's own error (``zstandard.ZstdError``, ``RuntimeError`` from lz4,
  ``snappy.UncompressError``, ``zlib.error``) and a missing codec library ``kafka.errors.UnsupportedCodecError``.
- The failing partition and offset: ``consumer._fetcher._next_partition_records.topic_partition`` and its
  ``.next_fetch_offset`` (the first offset not returned), which equals ``consumer.position(tp)`` then.
- The position stays at that offset; the fetcher keeps the dead ``PartitionRecords`` as ``_next_partition_records``.
  The next ``poll()`` after the one that raised busy-loops forever inside ``Fetcher.fetched_records`` (100 % CPU,
  ``timeout_ms`` ignored, never returns), unless before it the caller either seeks the partition to ANOTHER offset
  (``consumer.seek(tp, offset + 1)``: each offset inside the bad batch then raises once more, the first one past it
  reads normally) or pauses it for one ``poll()`` (``pause(tp)``, ``poll()``, ``resume(tp)``: the batch is dropped
  and re-fetched, so the same error is raised again: a retry, not a skip). ``seek(tp, offset)`` to the same offset
  does NOT help (it spins).
"""

from __future__ import annotations

import struct
import time
from typing import NamedTuple

from kafka import KafkaConsumer, TopicPartition
from kafka.client_async import KafkaClient
from kafka.protocol.produce import ProduceRequest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.record.util import calc_crc32c

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
CODEC_NAMES = {v: k for k, v in CODECS.items()}


class Batch(NamedTuple):
    """One stored record batch: its offsets, its codec and its size on the wire (header + records, compressed)."""

    base_offset: int
    last_offset: int
    codec: str
    size_bytes: int


def produce_corrupt_batch(bootstrap: str, topic: str, partition: int, *, records: int = 1, damage: str = "crc",
                          codec: str = "none", value: bytes = b'{"clip_id": "corrupt"}' * 20,
                          headers: list[tuple[str, bytes]] | None = None, timeout_s: float = 10.0) -> int:
    """Append one record batch of ``records`` records to ``topic``/``partition`` that kafka-python cannot read, and
    return its base offset (the batch covers ``base .. base + records - 1``).

    ``damage="crc"`` (default): a valid batch whose CRC-32C field is inverted. The consumer (``check_crcs=True``, the
    default) raises ``kafka.errors.CorruptRecordError`` for it. ``damage="payload"``: bytes 8..24 of the (compressed,
    with ``codec`` other than "none") records section overwritten and the CRC recomputed, so the CRC check passes and
    decoding fails: with ``codec="zstd"`` that is ``zstandard.ZstdError``, ``"lz4"`` ``RuntimeError``, ``"snappy"``
    ``snappy.UncompressError``, ``"gzip"`` ``zlib.error``, ``"none"`` ``CorruptRecordError`` ("Found invalid record
    structure").

    The batch is sent straight through the Produce API (kafka-python's low-level client, ``acks=-1``), since every
    producer computes a correct CRC; no global state of kafka-python is patched, so this is safe to call while a
    Service runs in the same process. A real Kafka broker refuses such a batch (CORRUPT_MESSAGE); Tansu 0.6 stores it
    unchecked and serves it back byte for byte, which is what makes this reproducible. Raises ``RuntimeError`` if the
    broker answers with an error code.
    """
    if damage not in ("crc", "payload"):
        raise ValueError(f"damage must be 'crc' or 'payload', not {damage!r}")
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=CODECS[codec], is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=16 * 1024**2)
    ts = int(time.time() * 1000)
    for i in range(records):
        builder.append(i, timestamp=ts, key=b"corrupt", value=value,
                       headers=headers if headers is not None else [("content-type", b"application/json")])
    buf = builder.build()
    if damage == "crc":
        at = DefaultRecordBatch.CRC_OFFSET
        buf[at:at + 4] = bytes(b ^ 0xFF for b in buf[at:at + 4])
    else:
        start = DefaultRecordBatch.HEADER_STRUCT.size + 8
        buf[start:start + 16] = b"\xaa" * 16
        crc = calc_crc32c(buf[DefaultRecordBatch.ATTRIBUTES_OFFSET:])
        struct.pack_into(">I", buf, DefaultRecordBatch.CRC_OFFSET, crc)

    client = KafkaClient(bootstrap_servers=bootstrap, client_id="produce-corrupt-batch")
    try:
        client.add_topic(topic)
        deadline = time.monotonic() + timeout_s
        while True:
            client.poll(future=client.cluster.request_update(), timeout_ms=int(timeout_s * 1000))
            node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            if node is not None and node != -1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no leader for {topic}/{partition} on {bootstrap}")
            time.sleep(0.1)
        if not client.await_ready(node, timeout_ms=int(timeout_s * 1000)):
            raise RuntimeError(f"could not connect to broker {node} at {bootstrap}")
        version = client.api_version(ProduceRequest, max_version=7)
        request = ProduceRequest[version](transactional_id=None, required_acks=-1, timeout=int(timeout_s * 1000),
                                          topics=[(topic, [(partition, bytes(buf))])])
        response = client.send_and_receive(node, request)
    finally:
        client.close()
    (_topic, [part]), = response.topics
    if part[1] != 0:
        raise RuntimeError(f"broker refused the batch: error code {part[1]} ({response})")
    return int(part[2])


def batch_codecs(bootstrap: str, topic: str, idle_s: float = 1.0, timeout_s: float = 30.0) -> dict[int, list[Batch]]:
    """Per partition, the ``Batch`` (offsets, codec, size) of each record batch of ``topic`` as the broker serves it.

    Reads the raw fetch responses of a private kafka-python consumer (its ``_parse_fetched_data`` replaced on that
    instance only) without decoding a record, so it shows what producers put on the wire (which the records do not)
    and works on corrupt batches too. Stops once no new batch arrived for ``idle_s``.
    """
    raw: dict[tuple[int, int], bytes] = {}
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      max_partition_fetch_bytes=16 * 1024**2, fetch_max_bytes=64 * 1024**2,
                      receive_message_max_bytes=128 * 1024**2)

    def capture(completed_fetch):  # keep the bytes, hand nothing to the consumer: we move the positions ourselves
        key = (completed_fetch.topic_partition.partition, completed_fetch.fetched_offset)
        raw.setdefault(key, bytes(completed_fetch.partition_data[-1] or b""))
        return None

    c._fetcher._parse_fetched_data = capture
    seen: dict[int, dict[int, Batch]] = {}
    try:
        parts = {p: TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())}
        c.assign(list(parts.values()))
        c.seek_to_beginning(*parts.values())
        deadline, last_new = time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() - last_new < idle_s and time.monotonic() < deadline:
            c.poll(timeout_ms=100)
            while raw:
                (partition, _), data = raw.popitem()
                records = MemoryRecords(data)
                while (batch := records.next_batch()) is not None:
                    if batch.base_offset not in seen.setdefault(partition, {}):
                        seen[partition][batch.base_offset] = Batch(batch.base_offset, batch.next_offset - 1,
                                                                   CODEC_NAMES[batch.compression_type],
                                                                   batch.size_in_bytes)
                        last_new = time.monotonic()
                end = max(b.last_offset + 1 for b in seen.get(partition, {}).values()) if seen.get(partition) else 0
                if end > c.position(parts[partition]):
                    c.seek(parts[partition], end)
    finally:
        c.close()
    return {p: [v for _, v in sorted(b.items())] for p, b in sorted(seen.items())}
