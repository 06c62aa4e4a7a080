"""Per-stream depth reuse (stream_iqa.depth.state) on real content: skimage photos panned slowly and cut hard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_iqa.depth import PriorDepth
from stream_iqa.depth.base import DepthSource
from stream_iqa.bench.depth_reuse import measure_reuse
from stream_iqa.depth.state import (
    DepthReuseSettings,
    DepthState,
    estimate_shift,
    signatures,
    warp_depth,
    thumbnail_size,
)

W, H = 320, 180  # crop window; the photos are 451–600 px wide, so a 2 px/frame pan lasts 60+ frames


class CountingDepth(DepthSource):
    """PriorDepth that records how many frames each call to the source carried."""

    name = "counting"

    def __init__(self, inner: DepthSource | None = None) -> None:
        self.inner = inner or PriorDepth()
        self.calls: list[int] = []

    def _estimate(self, rgb: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(rgb.shape[0]))
        return self.inner._estimate(rgb)


class GreyDepth(DepthSource):
    """A 'depth' that is the image's luma: it moves exactly with the content, so warping can be checked against it."""

    name = "grey"

    def _estimate(self, rgb: torch.Tensor) -> torch.Tensor:
        return 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]


def crop(img: np.ndarray, x: int, y: int = 40, w: int = W, h: int = H) -> np.ndarray:
    return img[y : y + h, x : x + w]


def pan(img: np.ndarray, n: int, step: int = 2, x0: int = 0) -> list[np.ndarray]:
    """A slow horizontal pan: the crop window moves ``step`` px right per frame."""
    return [crop(img, x0 + i * step) for i in range(n)]


def stack(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255.0)


def run(state: DepthState, frames: list[np.ndarray], batch: int = 8) -> list[bool]:
    fresh: list[bool] = []
    for i in range(0, len(frames), batch):
        depth, f = state.depth_for(stack(frames[i : i + batch]))
        assert depth.shape == (len(f), 1, frames[i].shape[0], frames[i].shape[1])
        assert float(depth.min()) >= 0.0 and float(depth.max()) <= 1.0
        fresh += f
    return fresh


def test_slow_pan_refreshes_every_k_and_counts(photos):
    src = CountingDepth()
    state = DepthState(src, DepthReuseSettings(refresh_every=8))
    fresh = run(state, pan(photos["astronaut"], 24))
    assert [i for i, f in enumerate(fresh) if f] == [0, 8, 16]
    assert state.frames == 24 and state.fresh == 3
    assert state.reuse_ratio == pytest.approx(21 / 24)
    assert state.reasons == {"first": 1, "age": 2}
    assert src.calls == [1, 1, 1]  # one call per batch, each for its one fresh frame


@pytest.mark.parametrize(("a", "b"), [("astronaut", "coffee"), ("coffee", "chelsea"), ("chelsea", "astronaut")])
def test_hard_cut_forces_fresh_map_on_the_cut_frame(photos, a, b):
    frames = pan(photos[a], 5) + pan(photos[b], 6)
    state = DepthState(CountingDepth(), DepthReuseSettings(refresh_every=8))
    fresh = run(state, frames, batch=11)
    assert [i for i, f in enumerate(fresh) if f] == [0, 5]
    assert state.reasons["cut"] == 1


def test_large_sudden_shift_forces_refresh_small_pans_reuse(photos):
    img = photos["coffee"]
    # 3 px/frame pan, then a jump of 60 px (19 % of the width, 12 thumbnail px), then the pan goes on
    frames = [crop(img, 3 * i) for i in range(4)] + [crop(img, 69 + 3 * i) for i in range(4)]
    state = DepthState(PriorDepth(), DepthReuseSettings(refresh_every=8))
    fresh = run(state, frames)
    assert fresh == [True, False, False, False, True, False, False, False]
    assert state.reasons == {"first": 1, "motion": 1}


def test_accumulated_pan_beyond_threshold_refreshes(photos):
    # 8 px/frame = 1.6 thumbnail px: small step by step, but past 6.4 px since the map's frame within 5 frames
    state = DepthState(PriorDepth(), DepthReuseSettings(refresh_every=100))
    fresh = run(state, pan(photos["astronaut"], 10, step=8))
    assert fresh[0] and any(fresh[1:6]) and not all(fresh[1:6])
    assert set(state.reasons) == {"first", "motion"}


def test_disabled_computes_every_frame(photos):
    src = CountingDepth()
    state = DepthState(src, DepthReuseSettings(enabled=False))
    fresh = run(state, pan(photos["chelsea"], 12), batch=6)
    assert all(fresh) and state.fresh == state.frames == 12 and state.reuse_ratio == 0.0
    assert src.calls == [6, 6]


def test_one_batched_call_per_batch_with_fresh_frames(photos):
    src = CountingDepth()
    state = DepthState(src, DepthReuseSettings(refresh_every=8))
    frames = pan(photos["astronaut"], 5) + pan(photos["coffee"], 11)  # fresh: 0, 5 (cut), 13 (age)
    fresh = run(state, frames, batch=16)
    assert [i for i, f in enumerate(fresh) if f] == [0, 5, 13]
    assert src.calls == [3]

    src = CountingDepth()
    state = DepthState(src, DepthReuseSettings(refresh_every=10))
    fresh = run(state, pan(photos["chelsea"], 16), batch=4)  # fresh: 0, 10 → batches 0 and 2; 1 and 3 reuse
    assert [i for i, f in enumerate(fresh) if f] == [0, 10]
    assert src.calls == [1, 1]


def test_reused_maps_match_the_stored_map_and_in_batch_maps(photos):
    """Without warp a reused frame gets exactly the map of its reference frame, across and within batches."""
    frames = pan(photos["coffee"], 12)
    state = DepthState(PriorDepth(), DepthReuseSettings(refresh_every=6, warp=False))
    d1, f1 = state.depth_for(stack(frames[:4]))
    d2, f2 = state.depth_for(stack(frames[4:]))
    assert f1 == [True, False, False, False] and f2 == [False, False, True, False, False, False, False, False]
    assert torch.equal(d1[1], d1[0]) and torch.equal(d2[0], d1[0])  # from the stored map
    assert torch.equal(d2[3], d2[2]) and torch.equal(d2[7], d2[2])  # from the map computed in this batch
    assert torch.allclose(d2[2], PriorDepth()(stack(frames[6:7]))[0], atol=1e-6)


def test_shift_estimate_and_warp_direction(photos):
    img = photos["astronaut"]
    a, b = crop(img, 40, 60), crop(img, 50, 55)  # camera moves 10 px right, 5 px up: content moves left and down
    sa, sb = signatures(stack([a, b]))
    dx, dy = estimate_shift(sa, sb)
    th, tw = thumbnail_size((H, W))
    assert dx == pytest.approx(-10 * tw / W, abs=0.3) and dy == pytest.approx(5 * th / H, abs=0.3)

    grey = GreyDepth()
    da, db = grey(stack([a])), grey(stack([b]))
    warped = warp_depth(da, (dx, dy), (th, tw))
    inner = (..., slice(10, -10), slice(15, -15))
    err_warped = float((warped - db)[inner].abs().mean())
    err_static = float((da - db)[inner].abs().mean())
    assert err_warped < 0.3 * err_static
    # the border the content left is filled by replication of the last known column/row, not zeros
    assert torch.allclose(warped[..., :, -1], warped[..., :, -6], atol=1e-6)  # right edge: content moved left
    assert torch.allclose(warped[..., 0, :], warped[..., 2, :], atol=1e-6)  # top edge: content moved down

    # and DepthState applies it: the reused map follows the content
    state = DepthState(grey, DepthReuseSettings(refresh_every=8))
    depth, fresh = state.depth_for(stack([a, b]))
    assert fresh == [True, False]
    assert float((depth[1:] - db)[inner].abs().mean()) < 0.3 * err_static
    state = DepthState(grey, DepthReuseSettings(refresh_every=8, warp=False))
    depth, _ = state.depth_for(stack([a, b]))
    assert torch.equal(depth[1], depth[0])


def test_frame_and_map_size_changes_force_refresh(photos):
    img = photos["astronaut"]
    state = DepthState(PriorDepth(), DepthReuseSettings(refresh_every=8))
    _, f = state.depth_for(stack(pan(img, 3)))
    assert f == [True, False, False]
    small = [crop(img, 6 + 2 * i, w=256, h=144) for i in range(3)]
    d, f = state.depth_for(stack(small))
    assert f == [True, False, False] and d.shape == (3, 1, 144, 256)
    d, f = state.depth_for(stack(small), size=(72, 128))
    assert f == [True] + [False, False] and d.shape == (3, 1, 72, 128)
    assert state.reasons == {"first": 1, "resize": 2}


def test_reset_forgets_map_and_counters(photos):
    state = DepthState(PriorDepth(), DepthReuseSettings(refresh_every=8))
    run(state, pan(photos["chelsea"], 5))
    assert state.frames == 5 and state.fresh == 1
    state.reset()
    assert state.frames == 0 and state.fresh == 0 and state.reuse_ratio == 0.0 and not state.reasons
    _, f = state.depth_for(stack(pan(photos["chelsea"], 2, x0=10)))
    assert f == [True, False] and state.reasons == {"first": 1}


def test_rejects_bad_input():
    state = DepthState(PriorDepth())
    with pytest.raises(ValueError):
        state.depth_for(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError):
        DepthReuseSettings(refresh_every=0)


def test_measure_reuse_with_shipped_model(photos):
    """Reuse on a 40-frame clip (pan, cut, pan) with the shipped model changes quality little and no flags."""
    from stream_iqa.nn.registry import create_model
    from stream_iqa.settings import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"shipped checkpoint not found at {DEFAULT_CHECKPOINT}")
    model = create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT)
    frames = pan(photos["astronaut"], 20, step=3) + pan(photos["coffee"], 20, step=3)
    result = measure_reuse(frames, PriorDepth(), model, DepthReuseSettings(refresh_every=8))
    print("measure_reuse:", result)
    assert result["frames"] == 40
    assert result["depth_fraction"] <= 0.25
    assert result["mean_abs_dq"] <= 1.0
    assert result["max_abs_dq"] <= 5.0
    assert result["flag_changes"] == 0


def test_depth_states_keep_the_most_recent_streams_and_forget_dropped_ones():
    from stream_iqa.depth.state import DepthStates

    made: list[DepthState] = []

    def new() -> DepthState:
        made.append(DepthState(PriorDepth()))
        return made[-1]

    states = DepthStates(new, capacity=2)
    a, b = states.get("a"), states.get("b")
    assert states.get("a") is a and len(made) == 2  # a stream seen again gets its own state back
    states.get("c")  # evicts b, the least recently used
    assert "b" not in states and "a" in states and states.peek("c") is made[-1] and len(states) == 2
    assert states.get("b") is not b  # an evicted stream starts afresh
    states.drop(["a", "never-seen"])
    assert "a" not in states and len(states) == 2
    with pytest.raises(ValueError, match="capacity"):
        DepthStates(new, capacity=0)
