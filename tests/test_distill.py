"""Distillation against a randomly initialised teacher (the official weights cannot be had here)."""

import cv2
import pytest
import torch

from stream_iqa.nn.dgiqa import DGIQA
from stream_iqa.nn.registry import create_model
from stream_iqa.settings import Settings
from stream_iqa.train.distill import DistillConfig, distill


def test_distill_learns_the_teacher_scores(tmp_path, photos, student_checkpoint):
    for name, img in photos.items():
        for k, crop in enumerate((img[:240, :240], img[-240:, -240:])):
            cv2.imwrite(str(tmp_path / f"{name}{k}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    torch.manual_seed(0)
    teacher = DGIQA(crops=1, seed=0).eval()
    settings = Settings.load(depth={"source": "prior"})
    out = tmp_path / "distilled.safetensors"
    meta = distill(DistillConfig(epochs=6, batch_size=6, crops=1, lr=1e-3), settings, None, [tmp_path],
                   student_checkpoint, out, command="test", teacher=teacher)
    losses = [h["loss"] for h in meta["distillation"]["history"]]
    assert losses[-1] < losses[0]
    student = create_model("dgiqa-lite", checkpoint=out)
    assert student.calibration["kind"] == "identity" and meta["distillation"]["images"] == 6


def test_distill_needs_images(tmp_path, student_checkpoint):
    with pytest.raises(ValueError, match="at least two images"):
        distill(DistillConfig(), Settings.load(depth={"source": "prior"}), None, [tmp_path], student_checkpoint,
                tmp_path / "x.safetensors", teacher=DGIQA(crops=1))


def test_a_two_view_student_is_refused_before_the_teacher_runs(tmp_path):
    """The shipped v2 student reads quality from fragments, which this command does not train: a clear error that
    names the command that does, raised before the teacher's slow pass (a teacher that would fail is passed)."""
    from stream_iqa.settings import DEFAULT_CHECKPOINT

    class Unreachable(torch.nn.Module):
        def forward(self, *a):
            raise AssertionError("the teacher ran")

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), torch.zeros(64, 64, 3, dtype=torch.uint8).numpy())
    with pytest.raises(ValueError, match="two-view student.*train-quality-view.*dgiqa:PATH"):
        distill(DistillConfig(), Settings.load(depth={"source": "prior"}), None, [tmp_path], DEFAULT_CHECKPOINT,
                tmp_path / "x.safetensors", teacher=Unreachable())
