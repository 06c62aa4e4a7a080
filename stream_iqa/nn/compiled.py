"""``model.compile``: the student's network under ``torch.compile``, with batches padded to a few fixed sizes.

Why buckets: a compiled graph is specialised to its input shapes, and ``mode="reduce-overhead"`` records a CUDA graph
per shape. Video batches come in every size from 1 to the batch limit (the last frames of a clip, shared batches of
concurrent streams), which would mean a recompile per new size. Padding each batch up to the next power of two caps
that at a handful of graphs, all captured by ``Pipeline.warm_up`` before a service reports ready; the padded rows
repeat the last frame and are dropped from the outputs.

Only the network is compiled: resizing happens before it (frame sizes vary) and the calibration after it, in
``DGIQALite.score`` as always, so compiled and eager scoring share every line except the network call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: batch sizes a compiled student runs at; larger batches run at their own size (one graph each)
BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)


def bucket_for(n: int, buckets: tuple[int, ...] = BUCKETS) -> int:
    return next((b for b in buckets if b >= n), n)


def _pad(t: torch.Tensor, size: int) -> torch.Tensor:
    n = t.shape[0]
    if n == size:
        return t
    return torch.cat([t, t[-1:].expand(size - n, *t.shape[1:])], dim=0)


def compile_network(model: nn.Module, mode: str = "default", backend: str = "inductor",
                    buckets: tuple[int, ...] = BUCKETS) -> nn.Module:
    """Replace ``model.forward`` (in place) by a compiled, bucket-padded version; ``model.score`` is unchanged.

    ``mode``: torch.compile's mode (``"reduce-overhead"`` adds CUDA graphs). ``backend="eager"`` skips code generation
    (the tests use it to check the padding and slicing on any machine in seconds)."""
    compiled: Callable[..., Any] = torch.compile(model.forward, mode=mode, backend=backend, dynamic=False)

    def forward(x: torch.Tensor, depth: torch.Tensor, frags: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        size = bucket_for(n, buckets)
        extra = () if frags is None else (_pad(frags, size),)
        quality, distortions = compiled(_pad(x, size), _pad(depth, size), *extra)
        # clone: with CUDA graphs the outputs live in the graph's memory and the next replay overwrites them
        return quality[:n].clone(), distortions[:n].clone()

    model.forward = forward  # type: ignore[method-assign]
    model.compile_buckets = tuple(buckets)  # read by Pipeline.warm_up
    return model
