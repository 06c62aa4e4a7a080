"""BatchNorm folding for the PyTorch inference path: same scores as the unfolded student, on real frames."""

import copy

import pytest
import torch

from stream_iqa.images import to_tensor
from stream_iqa.nn import create_model
from stream_iqa.nn.fuse import fold_batchnorm, optimize_for_inference
from stream_iqa.settings import DEFAULT_CHECKPOINT, Settings


@pytest.fixture(scope="module")
def student():
    return create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT, device="cpu")


def _frames(photos) -> tuple[torch.Tensor, torch.Tensor]:
    from stream_iqa.depth.prior import PriorDepth

    rgb = torch.cat([torch.nn.functional.interpolate(to_tensor(photos[k]), size=(360, 640), mode="bilinear",
                                                     antialias=True) for k in ("astronaut", "coffee", "chelsea")])
    return rgb, PriorDepth()(rgb, (192, 192))


def test_folding_keeps_the_scores_and_removes_every_batchnorm(student, photos):
    rgb, depth = _frames(photos)
    fast = optimize_for_inference(copy.deepcopy(student))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    with torch.inference_mode():
        a, b = student.score(rgb, depth), fast.score(rgb, depth)
    torch.testing.assert_close(b.quality, a.quality, rtol=0, atol=1e-3)
    torch.testing.assert_close(b.distortions, a.distortions, rtol=0, atol=1e-4)
    assert a.quality.std() > 1.0


def test_timm_fused_activations_survive_the_fold(student):
    folded = copy.deepcopy(student)
    n = fold_batchnorm(folded)
    assert n == sum(isinstance(m, torch.nn.BatchNorm2d) for m in student.modules())
    assert sum(isinstance(m, torch.nn.ReLU6) for m in folded.modules()) == sum(
        isinstance(m, torch.nn.ReLU6) for m in student.modules())


def test_a_training_model_is_refused(student):
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(copy.deepcopy(student).train())


def test_the_loaded_torch_scorer_is_the_folded_channels_last_student():
    from stream_iqa.model.scorer import load_scorer

    model = load_scorer(Settings.load(model={"device": "cpu", "backend": "torch"}, depth={"source": "prior"})).model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
