"""Fragment sampling (stream_iqa.fragments, numpy; stream_iqa.nn.fragments, torch): native pixels, one patch per
cell, deterministic at inference, and the two agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_iqa import fragments
from stream_iqa.nn.fragments import FragmentSpec, cell_offsets, gather_fragments


def test_each_patch_is_native_pixels_centred_in_its_cell():
    spec = FragmentSpec(grid=4, patch=8)
    rgb = torch.rand(2, 3, 100, 160)
    out = gather_fragments(rgb, spec)
    assert out.shape == (2, 3, 32, 32)
    rows, cols = cell_offsets(100, spec), cell_offsets(160, spec)
    assert rows.tolist() == [8, 33, 58, 83] and cols.tolist() == [16, 56, 96, 136]  # centred in 25- and 40-px cells
    for i, r in enumerate(rows.tolist()):
        for j, c in enumerate(cols.tolist()):
            torch.testing.assert_close(out[:, :, i * 8:(i + 1) * 8, j * 8:(j + 1) * 8], rgb[:, :, r:r + 8, c:c + 8],
                                       rtol=0, atol=0)
    torch.testing.assert_close(gather_fragments(rgb, spec), out, rtol=0, atol=0)  # same frame, same fragments


def test_training_offsets_are_random_per_frame_and_stay_inside_their_cells():
    spec = FragmentSpec(grid=7, patch=32)
    g = np.random.default_rng(0)
    draws = torch.stack([torch.from_numpy(cell_offsets(720, spec, g)) for _ in range(200)])
    bounds = torch.linspace(0, 720, 8).round().long()
    assert (draws >= bounds[:-1]).all() and (draws + 32 <= bounds[1:]).all()
    assert draws.unique(dim=0).shape[0] > 150 and draws.float().std(dim=0).min() > 10  # spread over the room in each cell
    rgb = torch.rand(1, 3, 720, 1280).expand(3, -1, -1, -1)
    out = gather_fragments(rgb, spec, np.random.default_rng(1))
    assert out.shape == (3, 3, 224, 224) and not torch.equal(out[0], out[1])  # per frame, not per batch
    again = gather_fragments(rgb, spec, np.random.default_rng(1))
    torch.testing.assert_close(out, again, rtol=0, atol=0)


def test_a_frame_too_small_for_its_cells_is_upscaled_just_enough():
    spec = FragmentSpec(grid=7, patch=32)
    out = gather_fragments(torch.rand(1, 3, 120, 160), spec)  # 160×120: short side 120 < 224
    assert out.shape == (1, 3, 224, 224)
    exact = torch.rand(1, 3, 224, 224)  # cells exactly one patch wide: the frame itself, untouched
    torch.testing.assert_close(gather_fragments(exact, spec), exact, rtol=0, atol=0)
    with pytest.raises(ValueError):
        cell_offsets(100, spec)
    with pytest.raises(ValueError):
        FragmentSpec(grid=0)


@pytest.mark.parametrize("shape", [(8, 65536), (1_036_800, 8), (100, 10_000)])
def test_a_thin_frame_is_not_upscaled_to_gigabytes(shape):
    # A 65,536 x 8 frame (a 50 kB ffv1 file) once took a gigabyte here: the short side went to the fragment size and
    # the long one 28x with it. The fitted long side stops at MAX_FITTED_ASPECT fragment sides.
    spec = FragmentSpec(grid=6, patch=32)
    fit = fragments.fitted_size(*shape, spec)
    assert fit is not None and min(fit) == spec.size and max(fit) == fragments.MAX_FITTED_ASPECT * spec.size
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert fragments.gather(frame, spec).shape == (192, 192, 3)
    assert gather_fragments(torch.from_numpy(frame).permute(2, 0, 1)[None].float(), spec).shape == (1, 3, 192, 192)


def test_up_to_16_to_1_a_small_frame_keeps_its_aspect():
    spec = FragmentSpec(grid=6, patch=32)
    assert fragments.fitted_size(150, 2400, spec) == (192, 3072)
    assert fragments.fitted_size(144, 256, spec) == (192, 341)


def test_the_decoders_numpy_sampler_gives_the_training_samplers_pixels():
    """The decoder gathers fragments from uint8 HxWx3 frames, training from float NCHW batches: same cells, same
    offsets (centred and with one seed), and upscaling small frames within one grey level."""
    spec = FragmentSpec(grid=7, patch=32)
    frame = np.random.default_rng(2).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    batch = torch.from_numpy(frame).permute(2, 0, 1)[None]
    assert np.array_equal(fragments.gather(frame, spec), gather_fragments(batch, spec)[0].permute(1, 2, 0).numpy())
    seeded = fragments.gather(frame, spec, np.random.default_rng(5))
    assert np.array_equal(seeded, gather_fragments(batch, spec, np.random.default_rng(5))[0].permute(1, 2, 0).numpy())
    assert not np.array_equal(seeded, fragments.gather(frame, spec))
    g = np.random.default_rng(5)  # the slice-copy splice gives exactly the pixels of the fancy-index definition
    rows, cols = fragments.patch_index(720, spec, g), fragments.patch_index(1280, spec, g)
    assert np.array_equal(seeded, frame[rows][:, cols])
    small = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    up_np = fragments.gather(small, spec).astype(np.float32)
    up_t = gather_fragments(torch.from_numpy(small).permute(2, 0, 1)[None].float(), spec)[0].permute(1, 2, 0).numpy()
    assert up_np.shape == (224, 224, 3) and np.abs(up_np - up_t).max() <= 1.0


@pytest.mark.parametrize("shape", [(4, 3, 360, 640), (3, 3, 120, 160), (2, 1, 225, 300)])
def test_the_batch_sampler_gives_each_frames_own_fragments(shape):
    """``gather_batch`` (what the ONNX Runtime backend runs on frames sent without fragments) copies each patch once
    for the whole batch; it must give every frame exactly the per-frame ``gather`` result, small frames included."""
    spec = FragmentSpec(grid=6, patch=32)
    batch = np.random.default_rng(7).random(shape, dtype=np.float32)
    per_frame = np.stack([fragments.gather(f.transpose(1, 2, 0), spec).transpose(2, 0, 1) for f in batch])
    out = fragments.gather_batch(batch, spec)
    assert out.shape == shape[:2] + (192, 192) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, per_frame)
