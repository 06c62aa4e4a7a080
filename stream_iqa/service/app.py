"""``stream-iqa serve``: the Kafka worker. One application object, ``Service``, around the same ``Pipeline`` as replay.

Threads and who owns what:

* the **main loop** owns the KafkaConsumer (not thread-safe): it polls, hands records to clip threads, commits
  offsets and handles rebalances. It keeps polling while clips run (partitions with waiting work are paused), so a
  long clip never costs the group its membership.
* **clip threads** (``service.max_in_flight``) run ``Pipeline.analyze`` and publish the report (or error record) with
  ``acks=all``, retrying until the broker acknowledges. At most one clip per partition runs at a time, so a stream's
  segments are analysed in order and its depth state is used by one thread at a time.
* the **health thread** serves ``/metrics``, ``/healthz``, ``/readyz``.

Delivery is at least once: an input offset is committed only after its output is acknowledged, in offset order per
partition (``OffsetTracker``). After a crash or a rebalance the unfinished tail is redelivered; outputs carry an
``idempotency_key`` (same input → same key) so consumers can drop the duplicates.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import structlog
from kafka import ConsumerRebalanceListener

from stream_iqa.deadline import Cancelled, Deadline
from stream_iqa.depth.state import DepthState, DepthStates
from stream_iqa.log import get_logger
from stream_iqa.pipeline import Pipeline
from stream_iqa.schema import ClipReport, ErrorRecord, Source
from stream_iqa.model.scorer import Scorer
from stream_iqa.service.jobs import clip_id_hint, headers_of, input_policy, parse_job
from stream_iqa.service.metrics import HealthServer, Heartbeat, ServiceMetrics
from stream_iqa.service.offsets import OffsetTracker
from stream_iqa.service.publisher import Message, Publisher, Undeliverable, error_messages, report_messages
from stream_iqa.settings import Settings
from stream_iqa.video.errors import ClipTimeoutError, InputError, InvalidMessageError

log = get_logger(__name__)

#: how long past service.clip_timeout_s a clip thread may go on before the main loop answers the clip for it
STUCK_GRACE_S = 10.0


class ServiceStartError(RuntimeError):
    """The service cannot start (a port taken, …): a one-line message naming the setting to change."""


class Undecodable(NamedTuple):
    """Stands in for an input record kafka-python could not decode (unknown codec, corrupt batch), so that it is
    answered like any other input: one error record, then its offset is done."""

    topic: str
    partition: int
    offset: int
    cause: str
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes]] = []


@dataclass
class _Clip:
    """One input in hand: its thread's future and deadline. ``settle()`` is won once, by the clip thread or by the
    main loop's watchdog (a thread stuck past its deadline), so an input is never answered twice."""

    record: Any
    deadline: Deadline
    future: Future[bool] = field(default_factory=Future)
    started: float = field(default_factory=time.monotonic)
    thread: threading.Thread | None = None
    _settled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self) -> bool:
        with self._lock:
            won, self._settled = not self._settled, True
            return won


@dataclass
class Outcome:
    """What one input message became (passed to the ``on_report`` / ``on_error`` callbacks)."""

    source: Source
    report: ClipReport | None = None
    error: ErrorRecord | None = None


def idempotency_key(topic: str, partition: int, offset: int) -> str:
    """Same input message → same key, on every worker and every redelivery."""
    return hashlib.sha256(f"{topic}\x00{partition}\x00{offset}".encode()).hexdigest()[:32]


class Service:
    """The Kafka worker. ``run()`` blocks until ``stop()`` (or SIGTERM/SIGINT) and returns an exit code.

    ``on_report`` / ``on_error`` are called from clip threads after the broker acknowledged the output (hooks for
    embedding programs and tests, in the manner of Quix Streams' callbacks). The service analyses with ``pipeline``
    (the one replay and the Python API use; default: ``Pipeline.for_concurrent_clips`` for ``service.max_in_flight``
    clips), or builds one around ``scorer`` (model + depth source), which may be shared between services in one
    process to load the model once; each service keeps its own settings.
    """

    def __init__(self, settings: Settings, scorer: Scorer | None = None,
                 on_report: Callable[[Outcome], None] | None = None,
                 on_error: Callable[[Outcome], None] | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None and scorer is not None:
            raise ValueError("pass a pipeline or a scorer, not both (the pipeline has its scorer)")
        self.settings = settings
        self.pipeline = pipeline or Pipeline.for_concurrent_clips(settings, settings.service.max_in_flight,
                                                                  scorer=scorer)
        self.on_report, self.on_error = on_report, on_error
        self.metrics = ServiceMetrics()
        self._stop = threading.Event()  # stop taking work, drain
        self._abandon = threading.Event()  # give up in-flight publishing (deadline passed / second signal)
        self._publisher = Publisher(lambda: self._producer, settings.kafka, settings.service, self._abandon,
                                    on_failure=lambda kind: self.metrics.publish_failures.labels(kind).inc())
        self._wake = threading.Event()  # a clip finished: the loop should commit and start the next at once
        self._heartbeat = Heartbeat(stale_s=max(30.0, settings.kafka.request_timeout_ms / 1000 * 2))
        self._ready = False
        self._consumer: Any = None
        self._producer: Any = None
        self._tracker = OffsetTracker()
        self._policy = input_policy(settings)
        self._backlog: dict[Any, deque[Any]] = {}
        self._running: dict[Any, _Clip] = {}  # partition → the clip in hand
        self._detached: list[_Clip] = []  # clips of revoked partitions: finish, never commit
        self._reattach: dict[Any, _Clip] = {}  # partition handed back -> its detached clip, until the first fetch
        self._stuck: list[threading.Thread] = []  # clip threads that outlived their deadline (native code)
        self._poll_failing = False
        #: each stream's depth state across its consecutive segments on this worker (``service.depth_states``)
        self._depth = DepthStates(self.pipeline.new_depth_state, settings.service.depth_states)
        self._streams_of: dict[Any, set[str]] = {}  # partition → the streams seen on it (clip threads add)
        self._streams_lock = threading.Lock()
        self._health: HealthServer | None = None
        self._last_lag = 0.0
        self._assignment: frozenset[Any] = frozenset()
        self._unjoined_since: float | None = None  # waiting for a group assignment since (monotonic); None: joined

    # ------------------------------------------------------------------------------------------------------ public
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def assignment(self) -> frozenset[Any]:
        """The input partitions this worker holds now (updated by the rebalance callbacks)."""
        return self._assignment

    @property
    def metrics_port(self) -> int | None:
        return self._health.port if self._health else None

    def stop(self) -> None:
        """Stop taking work and drain (what SIGTERM does); safe from any thread."""
        self._stop.set()

    def run(self, install_signals: bool = True) -> int:
        if install_signals and threading.current_thread() is threading.main_thread():
            self._install_signals()
        svc = self.settings.service
        if svc.metrics_enabled and self._health is None:
            try:
                self._health = HealthServer(self.metrics, svc.metrics_host, svc.metrics_port,
                                            alive=self._alive, ready=lambda: self._ready).start()
            except OSError as exc:
                raise ServiceStartError(
                    f"cannot serve /metrics on {svc.metrics_host}:{svc.metrics_port} ({exc.strerror or exc}); "
                    "set STREAM_IQA_SERVICE__METRICS_PORT (0 picks a free port) or service.metrics_enabled: false"
                ) from None
            log.info("http endpoints up", port=self._health.port, paths=["/metrics", "/healthz", "/readyz"])
        try:
            self.pipeline.warm_up()
            if not self._connect():
                return 0
            while not self._stop.is_set():
                self._turn()
            self._drain()
            return 0
        finally:
            self._close()

    # ------------------------------------------------------------------------------------------------- the loop
    def _turn(self) -> None:
        self._heartbeat.beat()
        # While clips run, sleep on the clips' completion (not in poll: kafka-python's poll cannot be woken early, and
        # a short busy poll steals the GIL and cores from the analysis — measured 40 % slower clips at 10 ms), then
        # fetch without waiting; records for idle partitions are picked up within poll_timeout_ms. Idle, poll waits
        # and new records end the wait as soon as they arrive. Heartbeats run on kafka-python's own thread.
        timeout = self.settings.service.poll_timeout_ms
        if self._running or self._detached:
            self._wake.wait(timeout / 1000)
            self._wake.clear()
            timeout = 0
        try:
            batches = self._consumer.poll(timeout_ms=timeout, max_records=self.settings.kafka.max_poll_records)
        except Exception as exc:  # noqa: BLE001 - kafka-python raises many kinds; the loop must survive them all
            self._poll_failed(exc)
            return
        if self._poll_failing:
            self._poll_failing = False
            log.info("poll works again")
        for tp, records in batches.items():
            if tp in self._consumer.assignment():
                if records and tp in self._reattach:
                    self._take_up(tp, records[0].offset)
                self._backlog.setdefault(tp, deque()).extend(records)
        self._collect()
        self._watchdog()
        if self._join_stalled():
            return
        self._dispatch()
        self._commit()
        self._flow_control()
        self._update_ready()
        self._update_lag()

    def _poll_failed(self, exc: Exception) -> None:
        """A record batch that cannot be decoded is pinned on its partition and offset and skipped, one offset at a
        time, each answered by an error record; any other poll failure makes the worker not ready, is counted and
        logged, and is retried after a backoff that a signal cuts short."""
        where = _undecodable_at(self._consumer, exc)
        if where is not None:
            tp, offset = where
            log.error("input record cannot be decoded; answering it with an error record and skipping it",
                      topic=tp.topic, partition=tp.partition, offset=offset, error=repr(exc))
            self.metrics.undecodable.labels(tp.topic, str(tp.partition)).inc()
            self._backlog.setdefault(tp, deque()).append(Undecodable(tp.topic, tp.partition, offset, repr(exc)))
            self._consumer.seek(tp, offset + 1)
            return
        self.metrics.poll_failures.inc()
        if not self._poll_failing:
            log.error("poll failed; not ready, retrying", error=repr(exc))
        self._poll_failing = True
        self._ready = False
        self.metrics.ready.set(0)
        self._stop.wait(self.settings.service.reconnect_backoff_s)

    def _dispatch(self) -> None:
        """Start the next waiting record of each idle partition, up to max_in_flight clips at once."""
        for tp, backlog in self._backlog.items():
            if len(self._running) + len(self._detached) >= self.settings.service.max_in_flight:
                return
            if backlog and tp not in self._running:
                record = backlog.popleft()
                try:
                    self._tracker.start(tp, record.offset)
                except ValueError:  # a record fetched twice (position reset): it is already in hand
                    log.warning("skipping a record already taken", topic=tp.topic, partition=tp.partition,
                                offset=record.offset)
                    continue
                self.metrics.in_flight.inc()
                clip = _Clip(record, Deadline(self.settings.service.clip_timeout_s, cancel=self._abandon,
                                              label=f"{record.topic}/{record.partition}@{record.offset}"))
                self._running[tp] = self._start(clip, self._process)

    def _start(self, clip: _Clip, work: Callable[[_Clip], bool]) -> _Clip:
        """Run ``work(clip)`` on a daemon thread of its own, its result or exception in ``clip.future``. A thread per
        clip, not a pool: one stuck in native code must neither hold a pool slot for ever nor keep the process
        from exiting at the shutdown deadline."""

        def run() -> None:
            try:
                clip.future.set_result(work(clip))
            except BaseException as exc:  # noqa: BLE001 - handed to the main loop through the future
                clip.future.set_exception(exc)
            finally:
                self._wake.set()

        record = clip.record
        clip.thread = threading.Thread(target=run, daemon=True, name=f"clip-{record.partition}-{record.offset}")
        clip.thread.start()
        return clip

    def _collect(self) -> None:
        for tp, clip in list(self._running.items()):
            if clip.future.done():
                del self._running[tp]
                self.metrics.in_flight.dec()
                exc = clip.future.exception()
                if exc is None:
                    self._tracker.finish(tp, clip.record.offset)
                elif isinstance(exc, Cancelled):  # shutdown: not committed, redelivered
                    log.info("clip abandoned; it will be redelivered", topic=tp.topic, partition=tp.partition,
                             offset=clip.record.offset)
                else:  # cannot happen (_process answers every failure), but must never freeze the partition
                    log.error("clip thread failed after answering; committing its offset", topic=tp.topic,
                              partition=tp.partition, offset=clip.record.offset, error=repr(exc))
                    self._tracker.finish(tp, clip.record.offset)
        for clip in [c for c in self._detached if c.future.done()]:
            self._detached.remove(clip)
            self.metrics.in_flight.dec()
        self._stuck = [t for t in self._stuck if t.is_alive()]
        self.metrics.stuck_threads.set(len(self._stuck))

    def _watchdog(self) -> None:
        """A clip thread past its deadline plus a grace period is stuck where no check reaches (native code): the
        loop answers the clip with a ``timeout`` error record itself and leaves the thread behind, counted."""
        limit = self.settings.service.clip_timeout_s + STUCK_GRACE_S
        now = time.monotonic()
        for tp, clip in list(self._running.items()):
            if clip.future.done() or now - clip.started < limit or not clip.settle():
                continue
            record = clip.record
            where = f"{record.topic}/{record.partition}@{record.offset}"
            log.error("clip thread stuck past its deadline; answering with a timeout error and leaving it",
                      topic=record.topic, partition=record.partition, offset=record.offset)
            if clip.thread is not None:
                self._stuck.append(clip.thread)
            error = ErrorRecord(clip_id=clip_id_hint(headers_of(record.headers), record.value), code="timeout",
                                message=ClipTimeoutError(where, f"not finished within {limit:g} s; the analysis "
                                                         "thread is stuck and was left behind").message,
                                source=Source(topic=record.topic, partition=record.partition, offset=record.offset),
                                idempotency_key=idempotency_key(record.topic, record.partition, record.offset))
            outcome = Outcome(source=error.source, error=error)
            self._running[tp] = self._start(_Clip(record, clip.deadline),
                                            lambda c, o=outcome: self._answer(o, [], c.record, time.monotonic()))
        # a clip of a partition revoked meanwhile: nothing to answer (its new owner redelivers it), but stuck it held
        # a max_in_flight slot for ever, uncounted
        for clip in [c for c in self._detached if not c.future.done() and now - c.started >= limit]:
            record = clip.record
            log.error("detached clip thread stuck past its deadline; leaving it", topic=record.topic,
                      partition=record.partition, offset=record.offset)
            self._detached.remove(clip)
            self.metrics.in_flight.dec()
            if clip.thread is not None:
                self._stuck.append(clip.thread)

    def clip_threads_alive(self) -> bool:
        """Whether a clip thread still runs (after ``run()`` returned: stuck in native code past the deadline)."""
        return any(c.thread is not None and c.thread.is_alive() for c in [*self._running.values(), *self._detached]) \
            or any(t.is_alive() for t in self._stuck)

    def _alive(self) -> bool:
        """Liveness: the loop turns, not more clip threads are stuck than clips may run at once, and no output has
        been failing to publish for longer than a clip may take (an errors topic the worker may not write, a topic
        that does not exist): a restart will not mend those, but a restarting pod is seen where a silent one is not."""
        return (self._heartbeat.alive() and len(self._stuck) <= self.settings.service.max_in_flight
                and self._publisher.failing_s() <= self.settings.service.clip_timeout_s)

    def _commit(self, only: list[Any] | None = None, timeout_ms: int | None = None) -> None:
        from kafka.structs import OffsetAndMetadata

        offsets = {tp: off for tp, off in self._tracker.committable().items() if only is None or tp in only}
        if not offsets or self._consumer is None:  # None: stopped while a replacement consumer was connecting
            return
        try:
            self._consumer.commit({tp: OffsetAndMetadata(off, None, -1) for tp, off in offsets.items()},
                                  timeout_ms=timeout_ms or self.settings.kafka.request_timeout_ms)
        except Exception as exc:  # noqa: BLE001 - retried on the next turn; at-least-once either way
            self.metrics.commits.labels("failed").inc()
            log.warning("offset commit failed; will retry", error=repr(exc), offsets={str(k): v for k, v in offsets.items()})
            return
        for tp, off in offsets.items():
            self._tracker.committed(tp, off)
        self.metrics.commits.labels("ok").inc()
        log.debug("offsets committed", offsets={f"{tp.topic}/{tp.partition}": off for tp, off in offsets.items()})

    def _flow_control(self) -> None:
        """Pause partitions that already have work waiting (memory stays bounded, polling goes on); resume the rest."""
        assigned = self._consumer.assignment()
        paused = self._consumer.paused()
        busy = {tp for tp in assigned if self._backlog.get(tp) or self._stop.is_set()}
        if to_pause := [tp for tp in busy if tp not in paused]:
            self._consumer.pause(*to_pause)
        if to_resume := [tp for tp in paused if tp not in busy and tp in assigned]:
            self._consumer.resume(*to_resume)

    def _update_ready(self) -> None:
        # ready = a member of the group (its join completed, partitions or none assigned) that knows the group
        # coordinator and holds a live connection to it (kafka-python keeps both on private attributes; readiness
        # must never crash the loop, so any surprise there reads as not ready)
        try:
            coordinator_id = self._consumer._coordinator.coordinator_id
            connected = coordinator_id is not None and self._consumer._client.connected(coordinator_id)
        except Exception:  # noqa: BLE001
            connected = False
        joined = self._unjoined_since is None
        # an output retried for longer than one delivery timeout: the brokers take no output from this worker
        delivering = self._publisher.failing_s() <= self.settings.kafka.delivery_timeout_s
        ready = bool(connected) and joined and delivering and not self._stop.is_set()
        if ready != self._ready:
            log.info("readiness changed", ready=ready, connected=bool(connected), joined=joined, delivering=delivering)
        self._ready = ready
        self.metrics.ready.set(1 if ready else 0)

    def _join_stalled(self) -> bool:
        """A group join that has not completed within ``kafka.join_timeout_s`` is given up: the consumer is closed
        and a fresh one joins. Seen once in CI: a rejoin begun 2 ms after a broker restart never completed, no error
        was raised, the coordinator connection stayed up, and a worker that looked ready consumed nothing for
        minutes. Nothing is lost by the replacement: the revocation that began the rejoin already committed what was
        done and detached the clips in hand (they publish, and are redelivered); a first join holds nothing yet."""
        since = self._unjoined_since
        waited = time.monotonic() - since if since is not None else 0.0
        if since is None or waited < self.settings.kafka.join_timeout_s:
            return False
        self.metrics.join_stalls.inc()
        log.error("group join not completed; replacing the consumer", waited_s=round(waited, 1),
                  join_timeout_s=self.settings.kafka.join_timeout_s, group=self.settings.kafka.group_id,
                  join_state=_join_state(self._consumer))
        if self._assignment:  # cannot happen (a rejoin starts with a revocation), but must never strand a partition
            self._revoked(list(self._assignment))
        self._ready = False
        self.metrics.ready.set(0)
        self._close_consumer()
        self._connect(consumer_only=True)
        return True

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < self.settings.service.lag_interval_s:
            return
        self._last_lag = now
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)  # from the last fetch response: no request, never blocks
            if high is None:
                continue
            done = self._tracker.committed_offset(tp)  # what this worker committed (KEDA's notion of lag)
            if done is None:  # nothing committed here yet: the first record not answered, fetched or not
                try:
                    position = self._consumer.position(tp)
                except Exception:  # noqa: BLE001 - no position yet (the group is still joining)
                    continue
                in_hand = [r.offset for r in self._backlog.get(tp, ())]
                if tp in self._running:
                    in_hand.append(self._running[tp].record.offset)
                done = min([position, *in_hand])
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - done))

    # --------------------------------------------------------------------------------------------- one clip
    def _process(self, clip: _Clip) -> bool:
        """Analyse one input and publish its report or error record; True once the broker acknowledged.

        Every failure of the input, of any exception type, ends as one error record (and a done offset); only
        ``Cancelled`` (shutdown) leaves, publishing nothing, so the input is redelivered. Log context is bound
        afresh for each input, so no field of an earlier clip leaks into this one's lines."""
        record = clip.record
        started = time.monotonic()
        structlog.contextvars.clear_contextvars()
        with structlog.contextvars.bound_contextvars(topic=record.topic, partition=record.partition,
                                                     offset=record.offset, clip_id=None, stream_id=None):
            try:
                outcome, messages = self._analyse(clip)
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - even the error record failed (unencodable text…): a bare one
                log.exception("could not build the answer of an input; publishing a bare internal error")
                outcome, messages = _bare_error(record, exc), []
            if not clip.settle():  # the watchdog answered it meanwhile
                log.warning("clip finished after its deadline was answered; dropping its output")
                return True
            return self._answer(outcome, messages, record, started)

    def _analyse(self, clip: _Clip) -> tuple[Outcome, list[Message]]:
        record = clip.record
        source = Source(topic=record.topic, partition=record.partition, offset=record.offset)
        where = f"{record.topic}/{record.partition}@{record.offset}"
        key = idempotency_key(record.topic, record.partition, record.offset)
        outcome = Outcome(source=source)
        messages: list[Message] = []
        clip_id: str | None = None
        stream_key = record.key
        try:
            headers = headers_of(record.headers)
            clip_id = clip_id_hint(headers, record.value)
            if isinstance(record, Undecodable):
                raise InvalidMessageError(where, f"the record batch holding this input cannot be decoded "
                                                 f"({record.cause}); skipped")
            job = parse_job(record.value, headers, record.key, self.settings, where, self._policy)
            clip_id, stream_key = job.clip_id, job.stream_id.encode()
            structlog.contextvars.bind_contextvars(clip_id=job.clip_id, stream_id=job.stream_id)
            log.info("clip started")
            analysis = self.pipeline.analyze(
                job.input, clip_id=job.clip_id, stream_id=job.stream_id, source=source,
                depth_state=self._depth_state(job.stream_id, record), name=job.label, policy=self._policy,
                deadline=clip.deadline)
            report = analysis.report.model_copy(update={"idempotency_key": key})
            outcome.report = report
            messages = report_messages(self.settings.kafka, report, analysis.frames, stream_key)
            self.metrics.observe_clip(len(analysis.frames), analysis.depth_computed, analysis.timings,
                                      time.monotonic() - clip.started)
            if report.integrity is not None and report.integrity.truncated:
                self.metrics.truncated.inc()
        except Cancelled:
            raise
        except InputError as exc:
            outcome.report = None
            outcome.error = ErrorRecord(clip_id=clip_id, code=exc.code, message=exc.message, source=source,
                                        idempotency_key=key)
        except Exception as exc:  # noqa: BLE001 - one bad input must never stop the service or its partition
            log.exception("internal error while analysing a clip")
            outcome.report = None
            detail = " ".join(str(exc).split())[:500] or "no detail"
            outcome.error = ErrorRecord(clip_id=clip_id, code="internal", source=source, idempotency_key=key,
                                        message=f"{where}: {type(exc).__name__}: {detail}")
        if outcome.error is not None:
            messages = error_messages(self.settings.kafka, outcome.error, stream_key)
            log.warning("clip failed", code=outcome.error.code, message=outcome.error.message)
        return outcome, messages

    def _answer(self, outcome: Outcome, messages: list[Message], record: Any,
                started: float) -> bool:
        """Publish (retried until acknowledged, or ``Abandoned``), count, and call the embedding program back; True
        once the broker acknowledged."""
        key = idempotency_key(record.topic, record.partition, record.offset)
        if outcome.error is not None and not messages:
            messages = error_messages(self.settings.kafka, outcome.error, record.key)
        if outcome.report is None:  # an error record is the input's last answer: retried, refusals too
            self._publisher.publish(messages, key, retry_refusals=True)
        else:
            try:
                self._publisher.publish(messages, key)
            except Undeliverable as exc:  # over the topic's size limit, no right to write it: answer with an error
                where = f"{record.topic}/{record.partition}@{record.offset}"
                error = ErrorRecord(clip_id=outcome.report.clip_id, code="internal", source=outcome.source,
                                    idempotency_key=key, message=f"{where}: the report could not be published ({exc})")
                outcome = Outcome(source=outcome.source, error=error)
                messages = error_messages(self.settings.kafka, error, messages[-1][1])
                self._publisher.publish(messages, key, retry_refusals=True)
        seconds = time.monotonic() - started
        self.metrics.clip_seconds.observe(seconds)
        if outcome.report is not None:
            self.metrics.clips.labels("report").inc()
            log.info("clip reported", seconds=round(seconds, 3), frames=outcome.report.frames_analyzed,
                     segments=[s.type for s in outcome.report.segments])
            callback = self.on_report
        else:
            assert outcome.error is not None
            self.metrics.clips.labels("error").inc()
            self.metrics.errors.labels(outcome.error.code).inc()
            callback = self.on_error
        if callback is not None:
            try:
                callback(outcome)
            except Exception:  # noqa: BLE001 - the output is acknowledged: a failing hook must not undo that
                log.exception("on_report/on_error callback failed")
        return True

    def _depth_state(self, stream_id: str, record: Any) -> DepthState:
        """The stream's depth state, kept across its consecutive segments on this worker (LRU-bounded), and noted
        under its partition so that a revocation forgets it."""
        from kafka.structs import TopicPartition

        with self._streams_lock:
            self._streams_of.setdefault(TopicPartition(record.topic, record.partition), set()).add(stream_id)
        return self._depth.get(stream_id)

    # -------------------------------------------------------------------------------------------- lifecycle
    def _connect(self, consumer_only: bool = False) -> bool:
        """Create consumer and producer (or a fresh consumer beside the producer), retrying with backoff while the
        brokers are unreachable."""
        from kafka import KafkaConsumer, KafkaProducer

        k, svc = self.settings.kafka, self.settings.service
        backoff = svc.reconnect_backoff_s
        while not self._stop.is_set():
            self._heartbeat.beat()
            try:
                opts = k.client_options()
                if not consumer_only:
                    self._producer = KafkaProducer(
                        **opts, acks="all", retries=5, linger_ms=5, max_request_size=max(1024**2, k.max_message_bytes))
                self._consumer = KafkaConsumer(
                    **opts, group_id=k.group_id, enable_auto_commit=False, auto_offset_reset=k.auto_offset_reset,
                    max_poll_records=k.max_poll_records, max_poll_interval_ms=k.max_poll_interval_ms,
                    session_timeout_ms=k.session_timeout_ms, heartbeat_interval_ms=k.heartbeat_interval_ms,
                    max_partition_fetch_bytes=max(1024**2, k.max_message_bytes),
                    fetch_max_bytes=max(50 * 1024**2, k.max_message_bytes),
                    # a fetch response always carries the first batch whole, however large: the frame limit must
                    # exceed the largest message the brokers accept, or one oversized message stalls the partition
                    receive_message_max_bytes=2 * max(50 * 1024**2, k.max_message_bytes))
                self._consumer.subscribe([k.input_topic], listener=_Rebalance(self))
                self._unjoined_since = time.monotonic()
                log.info("connected", bootstrap=k.bootstrap_servers, group=k.group_id, topic=k.input_topic)
                return True
            except Exception as exc:  # noqa: BLE001 - NoBrokersAvailable and friends
                if consumer_only:
                    self._close_consumer()
                else:
                    self._close_clients()
                log.warning("brokers unreachable; retrying", error=repr(exc), backoff_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, svc.reconnect_backoff_max_s)
        return False

    def _drain(self) -> None:
        """Stop taking work; let in-flight clips finish until the deadline (or a second signal), committing as they
        do; abandon the rest. Abandoned clips stop at their next check and are not waited for: the deadline bounds
        the process's exit whatever their threads do."""
        deadline = time.monotonic() + self.settings.service.drain_timeout_s
        in_flight = len(self._running) + len(self._detached)
        log.info("draining", in_flight=in_flight, deadline_s=self.settings.service.drain_timeout_s)
        self._ready = False
        self.metrics.ready.set(0)
        self._backlog.clear()
        while (self._running or self._detached) and time.monotonic() < deadline and not self._abandon.is_set():
            self._heartbeat.beat()
            try:  # keep the membership (and heartbeats) alive while the last clips finish; everything is paused
                self._flow_control()
                self._consumer.poll(timeout_ms=100)
            except Exception:  # noqa: BLE001
                self._abandon.wait(0.1)
            self._collect()
            self._commit()
        if self._running or self._detached:
            log.warning("abandoning clips in flight (they will be redelivered)",
                        abandoned=len(self._running) + len(self._detached),
                        reason="second signal" if self._abandon.is_set() else "drain deadline passed")
            self._abandon.set()
        self._collect()
        self._commit(timeout_ms=5000)

    def _close(self) -> None:
        self._abandon.set()  # clip threads still running stop at their next check; none is waited for
        self.pipeline.close()
        self._close_clients()
        if self._health is not None:
            self._health.stop()
            self._health = None
        log.info("stopped")

    def _close_clients(self) -> None:
        self._close_consumer()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=3)
        self._producer = None

    def _close_consumer(self) -> None:
        # bounded: with the brokers gone, an unbounded close waits forever for a LeaveGroup
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close(autocommit=False, timeout_ms=3000)
        self._consumer = None

    def _install_signals(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            if self._stop.is_set():  # a second signal: stop waiting
                self._abandon.set()
            log.info("signal received; draining", signal=signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # ------------------------------------------------------------------------------------------- rebalance
    def _revoked(self, revoked: list[Any]) -> None:
        self.metrics.rebalances.labels("revoked").inc()
        self._collect()
        self._commit(only=list(revoked))  # what is done is committed before the partitions move on
        for tp in revoked:
            self._backlog.pop(tp, None)
            self._reattach.pop(tp, None)
            if tp in self._running:
                self._detached.append(self._running.pop(tp))
            with self._streams_lock:
                streams = self._streams_of.pop(tp, set())
            self._depth.drop(streams)
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(tp.topic, str(tp.partition))
        self._tracker.drop(list(revoked))
        self._assignment = self._assignment - set(revoked)
        if self._unjoined_since is None:
            self._unjoined_since = time.monotonic()  # a rejoin has begun: not ready until it completes
        log.info("partitions revoked", partitions=[f"{tp.topic}/{tp.partition}" for tp in revoked])

    def _assigned(self, assigned: list[Any]) -> None:
        self.metrics.rebalances.labels("assigned").inc()
        self._assignment = self._assignment | set(assigned)
        # kafka-python's rebalance revokes every partition and often hands it straight back: a clip of it still in
        # hand is taken up again (``_reattach``) rather than started a second time beside itself, but only once the
        # first fetch shows the group is still at that clip's offset (another worker may have moved it on meanwhile,
        # and committing behind it would redeliver what that worker did)
        for tp in assigned:
            clip = next((c for c in self._detached if not c.future.done()
                         and (c.record.topic, c.record.partition) == (tp.topic, tp.partition)), None)
            if clip is not None:
                self._reattach[tp] = clip
        self._unjoined_since = None
        log.info("partitions assigned", partitions=[f"{tp.topic}/{tp.partition}" for tp in assigned])

    def _take_up(self, tp: Any, first_offset: int) -> None:
        """The first records fetched for a partition handed back with a clip in hand: carry on with the clip if the
        group is still at it (the record fetched anew is then skipped as "already taken", and the clip's offset is
        committed when it finishes); otherwise leave it detached."""
        clip = self._reattach.pop(tp, None)
        if clip is None or clip.future.done() or tp in self._running or clip not in self._detached:
            return
        if first_offset != clip.record.offset:
            log.info("partition back but the group moved past its clip in hand; leaving that clip", topic=tp.topic,
                     partition=tp.partition, offset=clip.record.offset, group_at=first_offset)
            return
        self._detached.remove(clip)
        self._tracker.start(tp, clip.record.offset)
        self._running[tp] = clip
        log.info("partition back with its clip in hand; carrying on with it", topic=tp.topic,
                 partition=tp.partition, offset=clip.record.offset)


def _bare_error(record: Any, exc: BaseException) -> Outcome:
    """An ``internal`` error record carrying nothing from the input but its coordinates: it always serialises."""
    source = Source(topic=record.topic, partition=record.partition, offset=record.offset)
    message = f"{record.topic}/{record.partition}@{record.offset}: {type(exc).__name__} while answering this input"
    return Outcome(source=source, error=ErrorRecord(
        clip_id=None, code="internal", message=message, source=source,
        idempotency_key=idempotency_key(record.topic, record.partition, record.offset)))


def _undecodable_at(consumer: Any, exc: BaseException) -> tuple[Any, int] | None:
    """The partition and offset whose records kafka-python failed to decode, when ``exc`` is such a failure.

    Decoding (decompression, CRC checks, record parsing) happens in the fetcher's ``_unpack_records`` generator, so
    its frame in the traceback tells a decode failure from any other poll error, and the fetcher keeps the failing
    partition's records as next in line, positioned at the first record it could not return. Both are kafka-python
    internals (2.3): if they change, this returns None and the failure is handled as unattributable (not ready,
    counted, logged) rather than misattributed.
    """
    if not any(frame.f_code.co_name == "_unpack_records" for frame, _ in traceback.walk_tb(exc.__traceback__)):
        return None
    try:
        fetcher = consumer._fetcher
        meta = getattr(fetcher, "_next_in_line_exception_metadata", None)
        if meta is not None and meta.partition is not None:
            return meta.partition, int(meta.fetched_offset)
        part = fetcher._next_partition_records
        if part is None:
            return None
        return part.topic_partition, int(part.next_fetch_offset)
    except (AttributeError, TypeError, ValueError):
        return None


def _join_state(consumer: Any) -> dict[str, Any]:
    """What kafka-python's coordinator says of the join, for the log line of a stalled one (private attributes of
    kafka-python 2.3: each read on its own, and a surprise reads as such, never as an exception)."""
    state: dict[str, Any] = {}
    coordinator = getattr(consumer, "_coordinator", None)
    for name, read in (("state", lambda c: str(c.state)), ("generation", lambda c: str(c._generation)),
                       ("coordinator_id", lambda c: c.coordinator_id), ("rejoin_needed", lambda c: c.rejoin_needed),
                       ("join_in_flight", lambda c: c.join_future is not None)):
        try:
            state[name] = read(coordinator)
        except Exception as exc:  # noqa: BLE001
            state[name] = f"unreadable ({type(exc).__name__})"
    return state


class _Rebalance(ConsumerRebalanceListener):
    """kafka-python calls these from inside ``poll()``, i.e. on the main loop's thread."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: list[Any]) -> None:
        self.service._revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[Any]) -> None:
        self.service._assigned(list(assigned))
