"""Depth Anything ViT-S: official layouts, pos-embed resampling, transform and loader (random weights only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stream_iqa.depth.depth_anything import (
    DepthAnything,
    DepthAnythingSource,
    interpolate_pos_embed,
    load_depth_anything,
    reference_input_size,
)

MANIFESTS = Path(__file__).resolve().parents[2] / "shared" / "manifests"


@pytest.fixture(scope="module")
def net() -> DepthAnything:
    torch.manual_seed(0)
    return DepthAnything("v2").eval()


def _rgb(h: int = 140, w: int = 196) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_official_layout_matches_manifest(version: str) -> None:
    path = MANIFESTS / f"depth_anything_{version}_vits_state_dict.json"
    if not path.is_file():
        pytest.skip("shared manifests not present")
    manifest = json.loads(path.read_text())
    model = DepthAnything(version)  # type: ignore[arg-type]
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.official_state_dict().items()]
    assert ours == manifest["entries"]
    assert len(ours) == 239
    # mask_token (384 values) lives only in the official file
    assert sum(p.numel() for p in model.parameters()) + 384 == manifest["num_params"] == 24_785_089


def _official_pos_embed(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Direct transcription of DINOv2's formula, which names the image's (H, W) as (w, h)."""
    n = pos_embed.shape[1] - 1
    dim = pos_embed.shape[-1]
    w0, h0 = height // 14 + 0.1, width // 14 + 0.1
    sqrt_n = math.sqrt(n)
    patches = pos_embed[:, 1:].reshape(1, int(sqrt_n), int(sqrt_n), dim).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, scale_factor=(w0 / sqrt_n, h0 / sqrt_n), mode="bicubic", antialias=False)
    return torch.cat((pos_embed[:, :1], patches.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


@pytest.mark.parametrize("hw", [(364, 504), (518, 700), (266, 266), (140, 196), (700, 518)])
def test_pos_embed_follows_the_official_formula(hw: tuple[int, int]) -> None:
    pos_embed = torch.randn(1, 1370, 384, generator=torch.Generator().manual_seed(0))
    ours = interpolate_pos_embed(pos_embed, (hw[0] // 14, hw[1] // 14))
    assert torch.equal(ours, _official_pos_embed(pos_embed, *hw))


def test_pos_embed_is_untouched_at_the_build_size() -> None:
    pos_embed = torch.randn(1, 1370, 384)
    assert interpolate_pos_embed(pos_embed, (37, 37)) is pos_embed


def test_encoder_matches_timm_at_518(net: DepthAnything) -> None:
    # At 518² no resampling happens, so our tapped tokens must equal timm's own intermediate features.
    x = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ours = net._encode(x, (37, 37))
        ref = net.pretrained.forward_intermediates(
            x, indices=list(net.taps), norm=True, output_fmt="NLC", intermediates_only=True
        )
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b)


def test_forward_on_a_non_square_input(net: DepthAnything) -> None:
    with torch.inference_mode():
        out = net(torch.randn(2, 3, 140, 196))
    assert out.shape == (2, 1, 140, 196)
    assert (out >= 0).all()
    with pytest.raises(ValueError, match="multiples of 14"):
        net(torch.randn(1, 3, 140, 200))


def test_versions_tap_different_blocks(net: DepthAnything) -> None:
    v1 = DepthAnything("v1").eval()
    v1.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 140, 196)
    with torch.inference_mode():
        assert not torch.equal(v1(x), net(x))
    with pytest.raises(ValueError, match="version"):
        DepthAnything("v3")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hw", "input_size", "expected"),
    [
        ((480, 640), 518, (518, 686)),
        ((640, 480), 518, (686, 518)),
        ((1080, 1920), 518, (518, 924)),
        ((518, 518), 518, (518, 518)),
        ((140, 196), 140, (140, 196)),
        ((100, 100), 510, (518, 518)),  # 510 rounds down to 504 < 510, so it is rounded up instead
    ],
)
def test_reference_input_size(hw: tuple[int, int], input_size: int, expected: tuple[int, int]) -> None:
    assert reference_input_size(hw, input_size) == expected


def test_source_returns_normalised_depth_at_the_requested_size() -> None:
    source = DepthAnythingSource(None, "v2", input_size=140).to("cpu")
    assert source.name == "depth-anything-v2"
    depth = source(_rgb())
    assert depth.shape == (1, 1, 140, 196)
    assert depth.min() >= 0 and depth.max() <= 1
    assert source(_rgb(), size=(35, 49)).shape == (1, 1, 35, 49)


def test_checkpoint_round_trip(tmp_path: Path, net: DepthAnything) -> None:
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(net.official_state_dict(), path)
    loaded = load_depth_anything(path, "v2").eval()
    x = torch.randn(1, 3, 140, 196)
    with torch.inference_mode():
        assert torch.equal(loaded(x), net(x))
    source = DepthAnythingSource(path, "v1", input_size=140)
    assert source.name == "depth-anything-v1"
    assert source.net.taps == (8, 9, 10, 11)


def test_missing_checkpoint_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT"):
        DepthAnythingSource(tmp_path / "absent.pth", "v2")


def test_corrupt_or_mismatched_checkpoint_is_a_value_error(tmp_path: Path, net: DepthAnything) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="cannot read"):
        load_depth_anything(corrupt, "v2")
    state = net.official_state_dict()
    state["pretrained.pos_embed"] = torch.zeros(1, 257, 384)  # a ViT built at 224
    state["backbone.patch_embed.proj.weight"] = torch.zeros(1)
    del state["depth_head.projects.0.weight"]
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(ValueError) as info:
        load_depth_anything(wrong, "v2")
    message = str(info.value)
    for key in ("depth_head.projects.0.weight", "backbone.patch_embed.proj.weight", "pretrained.pos_embed"):
        assert key in message
