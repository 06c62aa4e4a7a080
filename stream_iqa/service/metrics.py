"""Prometheus metrics and the HTTP endpoints operators and Kubernetes probe: ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz`` answers whether the process is alive and its loop is turning (liveness: restart me if not);
``/readyz`` whether it is connected to the brokers and can take work (readiness: route lag to me). They differ on
purpose: a worker waiting for a broker that is down is healthy but not ready, and restarting it would not help.

Each service gets its own registry, so tests can run several services in one process.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ServiceMetrics:
    """All metric names start with ``stream_iqa_`` (stable: dashboards and alerts use them)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.clips = Counter("stream_iqa_clips", "Clips finished, by outcome (report or error).", ["outcome"], registry=r)
        self.frames = Counter("stream_iqa_frames_analyzed", "Frames scored by the model.", registry=r)
        self.errors = Counter("stream_iqa_errors", "Error records published, by contract code.", ["code"], registry=r)
        self.stage_seconds = Histogram(
            "stream_iqa_stage_seconds", "Wall time per clip in each stage (decode overlaps depth and model).",
            ["stage"], buckets=_STAGE_BUCKETS, registry=r)
        self.clip_seconds = Histogram(
            "stream_iqa_clip_seconds", "Per clip: from taking the message to the broker's ack of its report.",
            buckets=_STAGE_BUCKETS, registry=r)
        self.frames_per_second = Gauge(
            "stream_iqa_frames_per_second", "Frames scored per second over the last clips (moving average).", registry=r)
        self.in_flight = Gauge("stream_iqa_in_flight_clips", "Clips being analysed now.", registry=r)
        self.depth = Counter("stream_iqa_depth_maps", "Depth maps by origin: computed or reused.", ["origin"], registry=r)
        self.depth_reuse_ratio = Gauge(
            "stream_iqa_depth_reuse_ratio", "Share of frames that reused a depth map, since start.", registry=r)
        self.lag = Gauge("stream_iqa_consumer_lag", "Messages behind the log end, per assigned input partition.",
                         ["topic", "partition"], registry=r)
        self.ready = Gauge("stream_iqa_ready", "1 when connected to the brokers and taking work.", registry=r)
        self.rebalances = Counter("stream_iqa_rebalances", "Partition revocations and assignments.", ["kind"], registry=r)
        self.join_stalls = Counter(
            "stream_iqa_group_join_stalls", "Group joins not completed within kafka.join_timeout_s; each replaced the "
            "consumer.", registry=r)
        self.publish_failures = Counter(
            "stream_iqa_publish_failures", "Failed attempts to publish an output: retried (broker down, timeouts) or "
            "refused for good (too large, not authorised: the input is answered with an error record instead).",
            ["kind"], registry=r)
        self.commits = Counter("stream_iqa_offset_commits", "Offset commits, by result.", ["result"], registry=r)
        self.undecodable = Counter(
            "stream_iqa_undecodable_records", "Input records kafka-python could not decode (codec, corrupt batch), "
            "each answered by an error record and skipped.", ["topic", "partition"], registry=r)
        self.poll_failures = Counter(
            "stream_iqa_poll_failures", "poll() failures that name no partition (the worker is not ready meanwhile).",
            registry=r)
        self.truncated = Counter(
            "stream_iqa_truncated_clips", "Clips that decoded shorter than their container declares.", registry=r)
        self.stuck_threads = Gauge(
            "stream_iqa_stuck_clip_threads", "Clip threads still running after their clip was ended by its deadline "
            "(stuck in native code); /healthz fails once there are more than service.max_in_flight.", registry=r)
        self._fps_ewma: float | None = None
        self._depth_computed = 0
        self._depth_reused = 0
        self._lock = threading.Lock()

    def observe_clip(self, frames: int, depth_computed: int, timings: dict[str, float], seconds: float) -> None:
        self.frames.inc(frames)
        for stage, value in timings.items():
            self.stage_seconds.labels(stage).observe(value)
        with self._lock:
            self._depth_computed += depth_computed
            self._depth_reused += frames - depth_computed
            self.depth.labels("computed").inc(depth_computed)
            self.depth.labels("reused").inc(frames - depth_computed)
            total = self._depth_computed + self._depth_reused
            self.depth_reuse_ratio.set(self._depth_reused / total if total else 0.0)
            if seconds > 0:
                fps = frames / seconds
                self._fps_ewma = fps if self._fps_ewma is None else 0.8 * self._fps_ewma + 0.2 * fps
                self.frames_per_second.set(self._fps_ewma)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/metrics``, ``/healthz``, ``/readyz`` on a background thread (stdlib server: three paths need no framework)."""

    def __init__(self, metrics: ServiceMetrics, host: str, port: int, alive: Callable[[], bool],
                 ready: Callable[[], bool]) -> None:
        handler = _handler(metrics, alive, ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(metrics: ServiceMetrics, alive: Callable[[], bool], ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"loop stalled\n")
            elif path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found: /metrics, /healthz, /readyz\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds would flood the logs
            return

    return Handler


class Heartbeat:
    """The loop's last turn, for liveness: stale when the main loop has not come round for ``stale_s`` seconds."""

    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self._t = time.monotonic()

    def beat(self) -> None:
        self._t = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._t < self.stale_s
