"""Device batches shared by concurrent clips: one model call for frames of several streams.

A GPU worker analyses several clips at once (``service.max_in_flight``); each clip alone sends batches of
``engine.batch_size`` frames, which leave a large GPU mostly idle per call. ``SharedBatcher`` collects the model
requests of all clip threads for up to ``engine.max_wait_ms`` (or until ``engine.shared_batch_size`` frames), runs
them as one batch and hands each caller its rows. Depth stays per clip (a stream's depth state is sequential by
nature); only the network call is shared.

Frames of different clips differ in size, so each request is first brought to the model's own input size — the same
resize the model's ``preprocess`` would do, so results do not depend on who shared the batch (a test pins that).
Models without a fixed input size (the multi-crop teacher) are called per request. Requests are torch tensors, or
numpy arrays for a model on host arrays (the ONNX Runtime backend); nothing here imports torch for the latter.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream_iqa.images import resize_array, resize_tensor
from stream_iqa.log import get_logger
from stream_iqa.model.served import IQAOutput
from stream_iqa.model.scorer import Scorer

log = get_logger(__name__)


@dataclass
class _Request:
    rgb: Any  # torch tensor or numpy array, (N,3,H,W)
    depth: Any
    fragments: Any | None = None
    future: Future[IQAOutput] = field(default_factory=Future)


class SharedBatcher:
    """Thread-safe ``score(rgb, depth)`` that merges concurrent callers' frames into one model call."""

    def __init__(self, scorer: Scorer, batch_size: int, max_wait_ms: float) -> None:
        self.scorer = scorer
        self.batch_size = batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        card = scorer.model.card  # read once: a PyTorch student builds its card on each access
        self.input_size = card.input_size
        self.fragments = card.fragments
        self.calls = 0  # model calls made
        self.requests = 0  # requests served (calls < requests when batches were shared)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="shared-batcher", daemon=True)
        self._thread.start()

    def score(self, rgb: Any, depth: Any, fragments: Any | None = None) -> IQAOutput:
        request = _Request(rgb, depth.astype(np.float32) if isinstance(depth, np.ndarray) else depth.float(),
                           fragments)
        self._queue.put(request)
        return request.future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _fit(self, x: Any) -> Any:
        if self.input_size is None or tuple(x.shape[-2:]) == self.input_size:
            return x
        if isinstance(x, np.ndarray):
            return resize_array(x, self.input_size)
        return resize_tensor(x, self.input_size)

    def _fragments(self, batch: list[_Request]) -> Any | None:
        """Every request's native fragments in one batch; gathered per request from its own frames where a caller
        sent none (after ``_fit`` they would no longer be native)."""
        spec = self.fragments
        if spec is None:
            return None
        if isinstance(batch[0].rgb, np.ndarray):
            from stream_iqa.fragments import gather_batch as gather
        else:
            from stream_iqa.nn.fragments import gather_fragments as gather
        return _cat([r.fragments if r.fragments is not None else gather(r.rgb, spec) for r in batch])

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, frames = [first], first.rgb.shape[0]
        deadline = time.monotonic() + self.max_wait_s
        while frames < self.batch_size and self.input_size is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                nxt = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            frames += nxt.rgb.shape[0]
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            try:
                with self.scorer.inference():
                    if self.input_size is None:
                        outs = [self.scorer.model.score(r.rgb, r.depth, r.fragments) for r in batch]
                    else:
                        rgb = _cat([self._fit(r.rgb) for r in batch])
                        depth = _cat([self._fit(r.depth) for r in batch])
                        out = self.scorer.model.score(rgb, depth, self._fragments(batch))
                        outs, start = [], 0
                        for r in batch:
                            n = r.rgb.shape[0]
                            outs.append(IQAOutput(
                                quality=out.quality[start:start + n],
                                distortions=None if out.distortions is None else out.distortions[start:start + n]))
                            start += n
                self.calls += 1 if self.input_size is not None else len(batch)
                self.requests += len(batch)
                for r, o in zip(batch, outs):
                    r.future.set_result(o)
            except BaseException as exc:  # noqa: BLE001 - every caller must be released, with the cause
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)


def _cat(parts: list[Any]) -> Any:
    """Concatenate along the batch axis, numpy arrays or torch tensors."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)
