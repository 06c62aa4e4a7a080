"""The one path from a video to its report: decode → sample → depth (reused per stream) → model → temporal → report.

``replay`` and the Kafka service differ only in where clips come from and where reports go; both call
``Pipeline.analyze``. The model and depth source are loaded once per process (``Pipeline(settings)``); decoding runs
ahead of inference on its own thread through a bounded queue, so the two overlap and a slow model cannot make the
decoder buffer a whole clip in memory.

Frames become torch tensors on the model's device for a PyTorch model, and stay numpy arrays for the ONNX Runtime
backend (``Scorer.host_arrays``), so a CPU worker serving the graph never imports torch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stream_iqa.deadline import Deadline
from stream_iqa.depth.state import DepthState
from stream_iqa.fragments import FragmentSpec
from stream_iqa.log import get_logger
from stream_iqa.model.served import DISTORTIONS, to_host
from stream_iqa.schema import ClipReport, Distortions, FrameRecord, Integrity, ModelInfo, Source
from stream_iqa.model.scorer import Scorer, load_scorer, model_threads, split_cpu_threads
from stream_iqa.settings import Settings
from stream_iqa.temporal import build_report
from stream_iqa.video import InputPolicy, SampledFrame, VideoInput, open_video, video_error
from stream_iqa.video.frame import integrity_of

if TYPE_CHECKING:
    from stream_iqa.model.batcher import SharedBatcher

log = get_logger(__name__)

_DONE = object()


@dataclass
class ClipAnalysis:
    report: ClipReport
    frames: list[FrameRecord]
    #: wall seconds per stage: decode (on the decode thread, overlapping the others), depth, model. On CUDA the depth and
    #: model figures include kernel time only where a result is read back (once per batch), so their sum is exact but
    #: the split between them is approximate.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def depth_computed(self) -> int:
        return sum(1 for f in self.frames if f.depth_fresh)


class Pipeline:
    """Settings, model and depth source, loaded once; ``analyze`` per clip."""

    def __init__(self, settings: Settings, scorer: Scorer | None = None, batcher: SharedBatcher | None = None,
                 clips_at_once: int = 1) -> None:
        """``clips_at_once``: clips this process analyses concurrently (the service's ``max_in_flight``); on CPU the
        model gets its share of the cores, the rest is left to the decoders (``model.scorer.model_threads``)."""
        self.settings = settings
        if scorer is None:  # the thread count is known before the model loads: one ONNX Runtime session, not two
            threads = {"threads": model_threads(settings, clips_at_once)}  # CPU pools only; ignored on CUDA
            scorer = load_scorer(settings.model_copy(update={"model": settings.model.model_copy(update=threads)}))
        else:
            split_cpu_threads(scorer, settings, clips_at_once)
        self.scorer = scorer
        self.batcher = batcher  # model calls shared with other clips analysed at once (stream_iqa.model.batcher)
        card = self.scorer.model.card
        self.model_info = ModelInfo(name=card.name, version=card.version)
        self.thresholds: dict[str, float] = card.thresholds()
        #: the model's quality view: the decoder gathers these fragments from every sampled frame at native resolution
        self.fragment_spec: FragmentSpec | None = card.fragments

    @classmethod
    def for_concurrent_clips(cls, settings: Settings, clips_at_once: int, scorer: Scorer | None = None) -> Pipeline:
        """A pipeline for ``clips_at_once`` clips analysed at a time (the service's ``max_in_flight``): the model gets
        its share of the cores, and where ``engine.shared_batches`` says so (``auto``: on CUDA) one batcher merges
        the clips' frames into shared model calls. ``close()`` stops that batcher."""
        pipe = cls(settings, scorer=scorer, clips_at_once=clips_at_once)
        eng = settings.engine
        shared = eng.shared_batches == "on" or (eng.shared_batches == "auto" and pipe.scorer.device_type == "cuda")
        if shared and clips_at_once > 1:
            from stream_iqa.model.batcher import SharedBatcher

            pipe.batcher = SharedBatcher(pipe.scorer, eng.shared_batch_size, eng.max_wait_ms)
        return pipe

    def close(self) -> None:
        """Stop the shared batcher, if any (the model stays loaded; a pipeline without one has nothing to stop)."""
        if self.batcher is not None:
            self.batcher.close()

    def warm_up(self) -> None:
        """One throw-away batch at the engine's batch size, so the first real clip does not pay for first-call
        allocations and kernel selection (a service calls this before it reports ready)."""
        cfg = self.settings.engine
        side = cfg.analysis_short_side
        sizes = [cfg.batch_size]
        buckets = self.scorer.model.compile_buckets
        if buckets:  # a compiled network: capture every batch size it will meet now, not on the first clips
            most = max(cfg.batch_size, cfg.shared_batch_size if self.batcher is not None else 0)
            sizes = sorted({b for b in buckets if b <= most} | {most})
        for n in sizes:
            frames = np.zeros((n, side, side * 16 // 9, 3), dtype=np.uint8)
            rgb, _ = self._inputs(frames, None)
            with self.scorer.inference():
                self.scorer.model.score(rgb, self.scorer.depth(rgb, self.scorer.depth_size(rgb)))

    def new_depth_state(self) -> DepthState:
        """Per-stream depth reuse: one per stream (the service keeps one per stream_id), reset on a new stream."""
        return DepthState(self.scorer.depth, self.settings.depth_reuse)

    def analyze(
        self,
        src: VideoInput,
        *,
        clip_id: str,
        stream_id: str | None = None,
        source: Source | None = None,
        depth_state: DepthState | None = None,
        name: str | None = None,
        on_frame: Callable[[FrameRecord], None] | None = None,
        policy: InputPolicy | None = None,
        deadline: Deadline | None = None,
    ) -> ClipAnalysis:
        """Analyse one clip. Raises ``VideoError`` (with a contract code) for input that cannot be analysed, and
        ``Cancelled`` when ``deadline``'s cancel event is set. ``policy``: where the input (and anything it names)
        may be read from; default anywhere, as for replay."""
        cfg = self.settings.engine
        deadline = deadline or Deadline.none()
        records: list[FrameRecord] = []
        timings = {"decode": 0.0, "depth": 0.0, "model": 0.0}
        with open_video(src, self.settings.video, short_side=cfg.analysis_short_side, name=name or clip_id,
                        policy=policy, deadline=deadline, fragments=self.fragment_spec) as clip:
            batch: list[SampledFrame] = []
            last_t = 0.0
            for frame in _prefetch(clip.frames(), cfg.prefetch, timings, deadline):
                if batch and frame.rgb.shape != batch[0].rgb.shape:  # resolution change mid-stream
                    records += self._score(batch, depth_state, on_frame, timings)
                    batch = []
                batch.append(frame)
                last_t = frame.t
                if len(batch) >= cfg.batch_size:
                    records += self._score(batch, depth_state, on_frame, timings)
                    batch = []
            if batch:
                records += self._score(batch, depth_state, on_frame, timings)
            info, decoded_s = clip.info, clip.decoded_duration_s
            jumps, damaged = clip.timestamp_discontinuities, clip.damaged_packets
        if not records:
            raise video_error("undecodable_video", name or clip_id, "no frame could be decoded")
        # undeclared (a live stream, a header with no or a nonsense length): what decoding delivered, else the last
        # sampled frame's end
        duration = info.duration_s or decoded_s or last_t + (1.0 / info.fps if info.fps else 0.0)
        duration = max(duration, last_t)
        report = build_report(
            records, clip_id=clip_id, stream_id=stream_id or clip_id, duration_s=duration, model=self.model_info,
            thresholds=self.thresholds, settings=self.settings.temporal, source=source,
        )
        truncated, declared = integrity_of(info, decoded_s)
        if truncated:
            log.warning("clip is shorter than its container declares", clip_id=clip_id, declared_s=declared,
                        decoded_s=round(decoded_s, 3))
        report = report.model_copy(update={"integrity": Integrity(
            truncated=truncated, declared_duration_s=declared, decoded_duration_s=round(decoded_s, 3),
            timestamp_discontinuities=jumps, damaged_packets=damaged)})
        return ClipAnalysis(report=report, frames=records, timings=timings)

    def _inputs(self, frames: np.ndarray, fragments: np.ndarray | None) -> tuple[Any, Any]:
        """uint8 (N,H,W,3) frames and fragments → float (N,3,H,W) in [0,1] as the model takes them: numpy on the
        host for the ONNX Runtime backend, torch tensors on the model's device otherwise."""
        if self.scorer.host_arrays:
            def to_model(x: np.ndarray) -> np.ndarray:
                return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)

            return to_model(frames), None if fragments is None else to_model(fragments)
        import torch

        device = self.scorer.device
        pin = self.scorer.device_type == "cuda"  # lets the copies run asynchronously with host work

        def to_device(x: np.ndarray) -> torch.Tensor:
            host = torch.from_numpy(x)
            host = host.pin_memory() if pin else host
            return host.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)

        return to_device(frames), None if fragments is None else to_device(fragments)

    def _score(self, batch: list[SampledFrame], depth_state: DepthState | None,
               on_frame: Callable[[FrameRecord], None] | None, timings: dict[str, float]) -> list[FrameRecord]:
        # frames arrive already downscaled by the decoder (open_video(short_side=engine.analysis_short_side))
        native = np.stack([f.fragments for f in batch]) if self.fragment_spec is not None else None
        rgb, frags = self._inputs(np.stack([f.rgb for f in batch]), native)
        t0 = time.perf_counter()
        with self.scorer.inference():
            size = self.scorer.depth_size(rgb)
            if depth_state is not None:
                depth, fresh = depth_state.depth_for(rgb, size=size)
            else:
                depth, fresh = self.scorer.depth(rgb, size), [True] * len(batch)
            t1 = time.perf_counter()
            out = (self.batcher or self.scorer.model).score(rgb, depth, frags)
        quality = to_host(out.quality)
        probs = to_host(out.distortions) if out.distortions is not None else np.zeros((len(batch), 3))
        t2 = time.perf_counter()
        timings["depth"] += t1 - t0
        timings["model"] += t2 - t1
        records = []
        for f, q, p, fr in zip(batch, quality, probs, fresh):
            rec = FrameRecord(frame_index=f.index, t=round(f.t, 4), quality=round(float(q), 2),
                              distortions=Distortions(**{k: round(float(v), 4) for k, v in zip(DISTORTIONS, p)}),
                              depth_fresh=bool(fr), latency_ms=round(1000.0 * max(0.0, t2 - f.decoded_at), 2))
            records.append(rec)
            if on_frame is not None:
                on_frame(rec)
        return records


def _prefetch(frames: Iterator[SampledFrame], depth: int, timings: dict[str, float] | None = None,
              deadline: Deadline | None = None) -> Iterator[SampledFrame]:
    """Run the decoder on its own thread, ``depth`` frames ahead; its errors are re-raised here, in order.
    ``timings["decode"]`` accumulates the decode thread's busy time (waits on a full queue excluded). Waiting for
    the next frame checks ``deadline`` several times a second, so a decoder stuck in native code cannot hold the
    clip past it (the daemon thread is left to finish on its own)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Hand one item over unless the consumer has gone; never blocks forever on a full queue."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            it = iter(frames)
            while True:
                t0 = time.perf_counter()
                f = next(it, _DONE)
                if timings is not None:
                    timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t0
                if f is _DONE:
                    break
                if not put(f):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(exc)

    worker = threading.Thread(target=produce, name="decode", daemon=True)
    worker.start()
    deadline = deadline or Deadline.none()
    try:
        while True:
            deadline.check()
            try:
                item = q.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=2)
        close = getattr(frames, "close", None)
        if close is not None and not worker.is_alive():
            close()


__all__ = ["ClipAnalysis", "Pipeline"]
