"""DGIQA teacher: checkpoint layout, loaders and the official inference recipe (random weights, no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stream_iqa.nn.dgiqa import (
    CROP,
    DGIQA,
    build_dgiqa,
    convert_official_state_dict,
    crop_positions,
    load_official_dgiqa,
    official_preprocess,
)

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "manifests" / "dgiqa_state_dict.json"


@pytest.fixture(scope="module")
def model() -> DGIQA:
    torch.manual_seed(0)
    return DGIQA(crops=2, seed=0).eval()


@pytest.fixture(scope="module")
def perturbed() -> DGIQA:
    """Random weights with non-default BN statistics, so a loader that skipped buffers would be caught."""
    torch.manual_seed(3)
    net = DGIQA().eval()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0.0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return net


def _crop_pair(n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, CROP, CROP, generator=g), torch.randn(n, 3, CROP, CROP, generator=g)


@pytest.mark.skipif(not MANIFEST.is_file(), reason="shared manifests not present")
def test_state_dict_matches_official_manifest(model: DGIQA) -> None:
    manifest = json.loads(MANIFEST.read_text())
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert ours == manifest["entries"]
    assert len(ours) == 482
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"] == 102_878_829


def test_forward_gives_one_probability_per_crop(model: DGIQA) -> None:
    with torch.inference_mode():
        out = model(*_crop_pair(2))
    assert out.shape == (2,)
    assert ((out > 0) & (out < 1)).all()


def test_score_is_deterministic_in_range_and_batch_independent(model: DGIQA) -> None:
    g = torch.Generator().manual_seed(2)
    rgb = torch.rand(2, 3, 60, 80, generator=g)  # smaller than a crop: upsampled to a 384 short side like upstream
    depth = torch.rand(2, 1, 30, 40, generator=g)  # another size: resized to the image first
    batch = model.score(rgb, depth)
    assert batch.distortions is None
    assert batch.quality.shape == (2,)
    assert ((batch.quality > 0) & (batch.quality < 100)).all()
    # a second call on one image of the batch: same seed, same crops, same score
    assert torch.equal(model.score(rgb[1:], depth[1:]).quality, batch.quality[1:])


def test_crop_positions_are_seeded_and_inside_the_image() -> None:
    positions = crop_positions((384, 600), 20, seed=0)
    assert positions == crop_positions((384, 600), 20, seed=0)
    assert positions != crop_positions((384, 600), 20, seed=1)
    assert all(0 <= y <= 384 - CROP and 0 <= x <= 600 - CROP for y, x in positions)


def test_official_preprocess_quantises_depth_like_uint8() -> None:
    rgb = torch.rand(1, 3, 384, 512)
    depth = torch.rand(1, 1, 384, 512) * 7 + 3  # any scale: min-max scaled first
    rgb_out, depth_out = official_preprocess(rgb, depth)
    assert rgb_out.shape == depth_out.shape == (1, 3, 384, 512)  # short side already 384: no resize
    levels = depth_out * 255
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    assert torch.equal(depth_out[:, 0], depth_out[:, 2])
    assert official_preprocess(torch.rand(1, 3, 100, 300), torch.rand(1, 1, 100, 300))[0].shape == (1, 3, 384, 1152)


def test_convert_official_state_dict_renames_whole_prefixes_only() -> None:
    t = torch.zeros(1)
    converted = convert_official_state_dict(
        {
            "module.tsb1.conv1.weight": t,
            "module.tsb4_depth.norm.bias": t,
            "module.cross_spatialattention.norm1.weight": t,
            "module.spatialattention.norm1_spatial.weight": t,
            "module.backbone.layers_0.blocks.1.attn_mask": t,
            "module.backbone.layers_0.blocks.0.attn.relative_position_index": t,
            "module.fc.weight": t,
        }
    )
    assert list(converted) == [
        "tcb1.conv1.weight",
        "tcb4_depth.norm.bias",
        "depth_guided_cross_attention.norm1.weight",
        "refinement_attention.norm1_spatial.weight",
        "fc.weight",
    ]


@pytest.mark.parametrize("legacy", [False, True], ids=["official", "legacy-names"])
def test_checkpoint_round_trip(tmp_path: Path, perturbed: DGIQA, legacy: bool) -> None:
    state = perturbed.state_dict()
    if legacy:
        state = {f"module.{_legacy_name(k)}": v for k, v in state.items()}
        state["module.backbone.layers_0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
        state["module.depth_backbone.layers_0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    path = tmp_path / "DGIQA_test.pth"
    torch.save(state, path)
    loaded = load_official_dgiqa(path).eval()
    with torch.inference_mode():
        assert torch.equal(loaded(*_crop_pair()), perturbed(*_crop_pair()))


def _legacy_name(key: str) -> str:
    head, dot, rest = key.partition(".")
    old = {"depth_guided_cross_attention": "cross_spatialattention", "refinement_attention": "spatialattention"}
    return old.get(head, head.replace("tcb", "tsb")) + dot + rest


def test_missing_checkpoint_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="STREAM_IQA_MODEL__CHECKPOINT"):
        load_official_dgiqa(tmp_path / "absent.pth")


def test_corrupt_or_foreign_checkpoint_is_a_value_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"definitely not a zip archive")
    with pytest.raises(ValueError, match="cannot read"):
        load_official_dgiqa(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"pretrained.pos_embed": torch.zeros(1, 1370, 384)}, foreign)
    with pytest.raises(ValueError, match=r"482 missing .*pretrained\.pos_embed"):
        load_official_dgiqa(foreign)


def test_builder_without_checkpoint_gives_random_weights() -> None:
    net = build_dgiqa(None, crops=3, seed=7)
    assert isinstance(net, DGIQA)
    assert (net.crops, net.seed, net.model_name) == (3, 7, "dgiqa")


def test_registry_creates_dgiqa_in_eval_mode() -> None:
    pytest.importorskip("stream_iqa.nn.lite", reason="the registry imports the student module too")
    from stream_iqa.nn.registry import create_model

    net = create_model("dgiqa", crops=4, seed=1)
    assert isinstance(net, DGIQA)
    assert not net.training
    assert (net.crops, net.seed) == (4, 1)
