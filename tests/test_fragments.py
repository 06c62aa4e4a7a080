"""Fragment sampling (stream_iqa.nn.fragments): native pixels, one patch per cell, deterministic at inference."""

from __future__ import annotations

import pytest
import torch

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
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([cell_offsets(720, spec, g) for _ in range(200)])
    bounds = torch.linspace(0, 720, 8).round().long()
    assert (draws >= bounds[:-1]).all() and (draws + 32 <= bounds[1:]).all()
    assert draws.unique(dim=0).shape[0] > 150 and draws.float().std(dim=0).min() > 10  # spread over the room in each cell
    rgb = torch.rand(1, 3, 720, 1280).expand(3, -1, -1, -1)
    out = gather_fragments(rgb, spec, torch.Generator().manual_seed(1))
    assert out.shape == (3, 3, 224, 224) and not torch.equal(out[0], out[1])  # per frame, not per batch
    again = gather_fragments(rgb, spec, torch.Generator().manual_seed(1))
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
