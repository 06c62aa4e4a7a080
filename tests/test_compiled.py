"""`model.compile`: the bucket-padded compiled network scores like the eager one and meets only bucket sizes.

Code generation is replaced by recording backends here (inductor takes minutes on a 2-core CPU); what is under test is
the padding, the slicing, the warm-up and the wiring, which do not depend on the backend."""

import copy

import pytest
import torch

from stream_iqa.nn import create_model
from stream_iqa.nn.compiled import BUCKETS, bucket_for, compile_network
from stream_iqa.nn.fuse import optimize_for_inference
from stream_iqa.settings import DEFAULT_CHECKPOINT, Settings


@pytest.fixture(scope="module")
def student():
    return optimize_for_inference(create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT, device="cpu"))


class Recorder:
    """A torch.compile backend that runs the captured graph as is and notes the batch size of each compilation."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, gm, example_inputs):
        # the frames: (N,3,192,192); parameters are graph inputs too (conv_stem's weight is (32,3,3,3))
        self.batches.append(next(int(t.shape[0]) for t in example_inputs
                                 if isinstance(t, torch.Tensor) and t.ndim == 4 and tuple(t.shape[1:]) == (3, 192, 192)))
        return gm.forward


def test_buckets_are_the_next_power_of_two():
    assert [bucket_for(n) for n in (1, 2, 3, 5, 8, 9, 100, 128, 200)] == [1, 2, 4, 8, 8, 16, 128, 128, 200]


def test_compiled_scores_equal_eager_at_every_batch_size(student):
    torch._dynamo.reset()
    rec = Recorder()
    compiled = compile_network(copy.deepcopy(student), backend=rec)
    torch.manual_seed(0)
    for n in (1, 3, 8, 5):
        rgb, depth = torch.rand(n, 3, 240, 320), torch.rand(n, 1, 192, 192)
        with torch.inference_mode():
            a, b = student.score(rgb, depth), compiled.score(rgb, depth)
        assert b.quality.shape == (n,) and b.distortions.shape == (n, 3)
        torch.testing.assert_close(b.quality, a.quality, rtol=0, atol=1e-3)
        torch.testing.assert_close(b.distortions, a.distortions, rtol=0, atol=1e-4)
    assert set(rec.batches) <= set(BUCKETS) and set(rec.batches) == {1, 4, 8}  # 5 reused the graph of 8


def test_warm_up_compiles_every_bucket_up_to_the_batch_size(student):
    from stream_iqa.pipeline import Pipeline
    from stream_iqa.model.scorer import load_scorer

    torch._dynamo.reset()
    settings = Settings.load(model={"device": "cpu", "backend": "torch"}, depth={"source": "prior"},
                             engine={"batch_size": 8})
    scorer = load_scorer(settings)
    rec = Recorder()
    compile_network(scorer.model, backend=rec)
    Pipeline(settings, scorer=scorer).warm_up()
    assert sorted(set(rec.batches)) == [1, 2, 4, 8]


def test_the_setting_compiles_the_torch_student_lazily():
    from stream_iqa.model.scorer import load_scorer

    model = load_scorer(Settings.load(model={"device": "cpu", "backend": "torch", "compile": "reduce-overhead"},
                                      depth={"source": "prior"})).model
    assert model.compile_buckets == BUCKETS  # compiled on first call (warm-up), not at load
    with pytest.raises(ValueError):
        Settings.load(model={"compile": "fastest"})
