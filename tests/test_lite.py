import json

import pytest
import torch

from stream_iqa.nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stream_iqa.nn.lite import DGIQALite, LiteConfig, lite_from_checkpoint
from stream_iqa.nn.registry import create_model, list_models


def test_registry_lists_teacher_and_student():
    assert {"dgiqa", "dgiqa-lite"} <= set(list_models())
    with pytest.raises(KeyError, match="unknown model"):
        create_model("no-such-model")


def test_forward_shapes_any_frame_size_and_batch():
    model = DGIQALite(LiteConfig(input_size=(96, 160)), pretrained_trunk=False).eval()
    x, d = model.preprocess(torch.rand(3, 3, 180, 320), torch.rand(3, 1, 45, 80))
    assert x.shape == (3, 3, 96, 160) and d.shape == (3, 1, 96, 160)
    q, f = model(x, d)
    assert q.shape == (3,) and f.shape == (3, 3)


def test_input_size_must_fit_the_trunk_stride():
    with pytest.raises(ValueError, match="multiples of 32"):
        DGIQALite(LiteConfig(input_size=(100, 100)), pretrained_trunk=False)


def test_score_is_deterministic_and_in_range(student_checkpoint):
    model = create_model("dgiqa-lite", checkpoint=student_checkpoint)
    rgb, depth = torch.rand(2, 3, 200, 300), torch.rand(2, 1, 200, 300)
    a, b = model.score(rgb, depth), model.score(rgb, depth)
    assert torch.equal(a.quality, b.quality) and torch.equal(a.distortions, b.distortions)
    assert ((a.quality >= 0) & (a.quality <= 100)).all()
    assert ((a.distortions >= 0) & (a.distortions <= 1)).all()


def test_checkpoint_round_trip_keeps_weights_config_and_calibration(student_checkpoint, tmp_path):
    model, meta = lite_from_checkpoint(student_checkpoint)
    assert meta["arch"]["input_size"] == [128, 128]
    assert model.calibration["kind"] == "piecewise_linear"
    out = tmp_path / "copy.safetensors"
    save_checkpoint(out, model.state_dict(), {k: v for k, v in meta.items() if k not in ("format", "tensors_sha256")})
    again, _ = lite_from_checkpoint(out)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    rgb, depth = torch.rand(1, 3, 128, 128), torch.rand(1, 1, 128, 128)
    assert torch.equal(model.score(rgb, depth).quality, again.score(rgb, depth).quality)


def test_calibration_is_monotone_piecewise_linear(student_checkpoint):
    model, _ = lite_from_checkpoint(student_checkpoint)
    raw = torch.tensor([0.0, 25.0, 50.0, 75.0, 100.0])
    assert torch.allclose(model.calibrate(raw), torch.tensor([0.0, 20.0, 40.0, 70.0, 100.0]))


def test_missing_checkpoint_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="STREAM_IQA_MODEL__CHECKPOINT"):
        create_model("dgiqa-lite", checkpoint=tmp_path / "absent.safetensors")


def test_corrupt_checkpoint_is_a_clear_error(student_checkpoint, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    meta = json.loads(student_checkpoint.with_suffix(".json").read_text())
    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_checkpoint(bad)
    meta.pop("tensors_sha256")
    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(bad)
    bad.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bad)


def test_checkpoint_for_another_model_is_refused(student_checkpoint, tmp_path):
    model, meta = lite_from_checkpoint(student_checkpoint)
    out = tmp_path / "other.safetensors"
    save_checkpoint(out, model.state_dict(), {**{k: v for k, v in meta.items() if k not in ("format", "tensors_sha256")}, "model": "other"})
    with pytest.raises(CheckpointError, match="not dgiqa-lite"):
        lite_from_checkpoint(out)


def test_any_timm_trunk_can_be_configured():
    cfg = LiteConfig(trunk="mobilenetv3_small_100", input_size=(96, 96), trunk_indices=(1, 2, 3, 4),
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match="no local ImageNet weights"):
        DGIQALite(cfg)
    model = DGIQALite(cfg, pretrained_trunk=False).eval()
    out = model.score(torch.rand(2, 3, 120, 160), torch.rand(2, 1, 120, 160))
    assert out.quality.shape == (2,) and out.distortions.shape == (2, 3)


def test_local_flag_branch_is_off_by_default_and_old_layouts_still_load(student_checkpoint):
    model, meta = lite_from_checkpoint(student_checkpoint)  # saved from a default config
    assert model.config.local_flags == () and model.local_flags is None
    assert not any(k.startswith("local_flags.") for k in model.state_dict())
    # an arch dict written before the field existed (as the shipped model.json before the branch) means no branch
    arch = {k: v for k, v in meta["arch"].items() if not k.startswith("local_")}
    assert LiteConfig.from_dict(arch).local_flags == ()


def test_local_flag_branch_starts_neutral_and_feeds_only_its_flags():
    torch.manual_seed(0)
    base = DGIQALite(LiteConfig(input_size=(96, 96)), pretrained_trunk=False).eval()
    local = DGIQALite(LiteConfig(input_size=(96, 96), local_flags=("flare",)), pretrained_trunk=False).eval()
    missing, unexpected = local.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("local_flags.") for k in missing)
    x, d = torch.randn(2, 3, 96, 96), torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        q0, f0 = base(x, d)
        q1, f1 = local(x, d)  # the branch's last conv starts at zero
        assert torch.equal(q0, q1) and torch.allclose(f0, f1)
        local.local_flags.out.bias.fill_(1.5)  # a uniform map pools to itself (log-mean-exp, not log-sum-exp)
        _, f2 = local(x, d)
    assert torch.allclose(f2[:, 2], f0[:, 2] + 1.5, atol=1e-5) and torch.allclose(f2[:, :2], f0[:, :2])
    with pytest.raises(ValueError, match="not flags"):
        DGIQALite(LiteConfig(input_size=(96, 96), local_flags=("fog",)), pretrained_trunk=False)


def test_local_flag_pooling_lets_one_cell_raise_the_flag():
    from stream_iqa.nn.lite import LocalFlagHead

    head = LocalFlagHead(8, 4, 1, sharpness=4.0)
    maps = torch.zeros(1, 1, 6, 6)
    maps[..., 2, 3] = 5.0
    head.mix = torch.nn.Identity()
    head.out = torch.nn.Conv2d(8, 1, 1, bias=False)
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.weight[0, 4] = 1.0  # the logit map is the first stride-16 channel
    fine, mid = torch.zeros(1, 4, 12, 12), torch.cat([maps, torch.zeros(1, 3, 6, 6)], dim=1)
    with torch.no_grad():
        pooled = head(fine, mid)
    assert 0.5 < float(pooled) < 5.0  # far above the mean (5/36), below the max
