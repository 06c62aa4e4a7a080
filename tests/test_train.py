"""Training on a tiny configuration: the loss goes down, and a run ends in a loadable, self-describing checkpoint."""

import numpy as np
import pytest
import torch

from stream_iqa.depth import PriorDepth
from stream_iqa.nn.lite import DGIQALite, LiteConfig
from stream_iqa.nn.registry import create_model
from stream_iqa.settings import Settings
from stream_iqa.train.dataset import ArraySet, build_mos, build_synthetic
from stream_iqa.train.trainer import BatchSampler, TrainConfig, compute_loss, pairwise_rank_loss, train

SIZE = (64, 64)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory, photos) -> ArraySet:
    import cv2

    d = tmp_path_factory.mktemp("photos")
    paths = []
    for name, img in photos.items():
        p = d / f"{name}.png"
        cv2.imwrite(str(p), cv2.cvtColor(img[:256, :256], cv2.COLOR_RGB2BGR))
        paths.append(p)
    depth = PriorDepth()
    syn = build_synthetic(paths, depth, SIZE, variants=3, seed=0)
    mos = build_mos([(p, 30.0 + 20 * i) for i, p in enumerate(paths)], depth, SIZE)
    return ArraySet.concat([mos, syn])


def test_synthetic_set_labels(tiny_set):
    syn = tiny_set.group >= 0
    assert syn.sum() == 3 * 4 and (~syn).sum() == 3
    pristine = syn & (tiny_set.severity == 0)
    assert (tiny_set.flags[pristine] == 0).all()
    assert np.allclose(tiny_set.weak[syn & (tiny_set.severity == 0) & (tiny_set.flags.sum(1) == 0)].max(), 80.0)
    assert (tiny_set.flags[~syn] == -1).all() and np.isnan(tiny_set.weak[~syn]).all()
    assert tiny_set.rgb.shape[1:] == (64, 64, 3) and tiny_set.depth.dtype == np.uint8


def test_a_few_steps_lower_the_loss(tiny_set):
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, group_size=4)
    model = DGIQALite(LiteConfig(input_size=SIZE), pretrained_trunk=False)
    model.train()
    rng = np.random.default_rng(0)
    idx = BatchSampler(tiny_set, cfg, rng)()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss, parts = compute_loss(model, tiny_set, idx, cfg, np.random.default_rng(1))
        assert {"mos", "weak", "flags"} <= set(parts)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_rank_loss_prefers_the_right_order():
    target = torch.tensor([10.0, 50.0, 90.0])
    right = pairwise_rank_loss(torch.tensor([5.0, 40.0, 95.0]), target, None, 5.0)
    wrong = pairwise_rank_loss(torch.tensor([95.0, 40.0, 5.0]), target, None, 5.0)
    assert right < wrong
    assert float(pairwise_rank_loss(torch.tensor([1.0, 2.0]), target[:2], torch.tensor([0, 1]), 5.0)) == 0.0


@pytest.mark.data
def test_train_command_writes_a_loadable_checkpoint(shared_data, tmp_path):
    settings = Settings.load(data={"root": shared_data, "cache_dir": tmp_path / "cache"}, depth={"source": "prior"})
    cfg = TrainConfig(arch={"input_size": [64, 64]}, variants=2, val_variants=1, epochs=2, freeze_epochs=1,
                      steps_per_epoch=2, batch_size=8, max_natural=4, max_mos=40, clive_val_fraction=0.3)
    out = tmp_path / "m.safetensors"
    meta = train(cfg, settings, out=out, run_dir=tmp_path / "run", command="test")
    assert set(meta["metrics"]) == {"synthetic", "mos"} and len(meta["history"]) == 2
    model = create_model("dgiqa-lite", checkpoint=out)
    assert model.meta["depth_source"] == "prior" and model.meta["training"]["command"] == "test"
    assert set(model.flag_thresholds) == {"low_light", "haze", "flare"}
    assert all(0.5 <= v <= 1.0 for v in model.flag_thresholds.values())
    q = model.score(torch.rand(1, 3, 90, 120), torch.rand(1, 1, 90, 120)).quality
    assert 0 <= float(q) <= 100
    # resuming a finished run trains no further epochs and reproduces the same weights
    meta2 = train(cfg, settings, out=tmp_path / "m2.safetensors", run_dir=tmp_path / "run", resume=True, command="test")
    assert len(meta2["history"]) == 2
    a, b = create_model("dgiqa-lite", checkpoint=out), create_model("dgiqa-lite", checkpoint=tmp_path / "m2.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_flag_thresholds_come_from_dev_negatives(tiny_set):
    from stream_iqa.train.evaluate import fit_flag_thresholds, predict_arrays

    model = DGIQALite(LiteConfig(input_size=SIZE), pretrained_trunk=False).eval()
    syn = tiny_set.group >= 0
    dev = ArraySet(tiny_set.rgb[syn], tiny_set.depth[syn], tiny_set.mos[syn], tiny_set.weak[syn], tiny_set.flags[syn],
                   tiny_set.group[syn], tiny_set.severity[syn], [n for n, k in zip(tiny_set.names, syn) if k])
    th = fit_flag_thresholds(model, dev, fpr=0.0, floor=0.0)
    _, probs = predict_arrays(model, dev)
    for j, name in enumerate(("low_light", "haze", "flare")):
        negatives = probs[dev.flags[:, j] == 0, j]
        assert th[name] == pytest.approx(float(negatives.max()), abs=1e-4)  # fpr 0: above every negative
    floored = fit_flag_thresholds(model, dev, fpr=0.0, floor=0.99)
    assert all(v >= 0.99 for v in floored.values())
    assert fit_flag_thresholds(model, None, 0.01, 0.5) == {"low_light": 0.5, "haze": 0.5, "flare": 0.5}


def test_the_local_flag_branch_gets_its_own_loss(tiny_set):
    torch.manual_seed(0)
    model = DGIQALite(LiteConfig(input_size=SIZE, local_flags=("flare",)), pretrained_trunk=False).train()
    idx = BatchSampler(tiny_set, TrainConfig(batch_size=8, group_size=4), np.random.default_rng(0))()
    _, parts = compute_loss(model, tiny_set, idx, TrainConfig(w_local_flags=0.0), np.random.default_rng(1))
    assert "local_flags" not in parts
    loss, parts = compute_loss(model, tiny_set, idx, TrainConfig(w_local_flags=1.0), np.random.default_rng(1))
    assert parts["local_flags"] == pytest.approx(np.log(2), abs=1e-4)  # the branch starts neutral (logit 0)
    loss.backward()
    assert model.local_flags.out.weight.grad.abs().sum() > 0
