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
