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


def _fake_set(names: list[str], severity: list[float]) -> ArraySet:
    n = len(names)
    return ArraySet(np.zeros((n, 4, 4, 3), np.uint8), np.zeros((n, 4, 4), np.uint8), np.full(n, np.nan, np.float32),
                    np.zeros(n, np.float32), np.zeros((n, 3), np.float32), np.arange(n), np.asarray(severity, np.float32),
                    names)


def test_a_photos_undistorted_copies_count_once_in_the_threshold_set(tiny_set):
    from stream_iqa.train.evaluate import distinct_images, fit_flag_thresholds

    fake = _fake_set(["a/1.png#0", "a/1.png#1", "a/1.png#2", "b/2.png#0", "a/1.png#3", "b/2.png#4.1"],
                     [0.0, 0.0, 0.7, 0.0, 0.0, 0.0])
    assert distinct_images(fake).tolist() == [0, 2, 3]  # a's variants #1 and #3 drew nothing: copies of #0
    model = DGIQALite(LiteConfig(input_size=SIZE), pretrained_trunk=False).eval()
    syn = np.flatnonzero(tiny_set.group >= 0)
    dev = tiny_set.take(syn)
    pristine = int(np.flatnonzero(dev.severity == 0)[0])
    # twenty more copies of one pristine image would set the median (fpr 0.5) by themselves if each counted
    padded = ArraySet.concat([dev] + [dev.take(np.asarray([pristine]))] * 20)
    assert fit_flag_thresholds(model, padded, fpr=0.5, floor=0.0) == fit_flag_thresholds(model, dev, fpr=0.5, floor=0.0)


def test_threshold_holdout_moves_whole_photos_from_training_to_the_threshold_set():
    from pathlib import Path

    from stream_iqa.data.mos import split_items
    from stream_iqa.train.trainer import hold_out_photos

    photos = [Path(f"natural/{i:03d}.png") for i in range(40)]
    base = _fake_set([f"natural/{i:03d}.png#{v}" for i in range(40) for v in range(3)], [0.0, 0.5, 0.9] * 40)
    pairs = _fake_set([f"natural/{i:03d}.png#{v}.{j}" for i in range(40) for v in (1, 2) for j in (0, 1)],
                      [0.5] * 160)
    mos = _fake_set(["clive/1.bmp", "clive/2.bmp"], [0.0, 0.0])
    dev = _fake_set(["natural/dev.png#0", "natural/dev.png#1"], [0.0, 0.4])
    parts, new_dev = hold_out_photos([mos, base, pairs], base, dev, photos, 0.3, split_seed=0)
    held = {f"natural/{p.name}" for p in split_items(photos, 0.3, seed=1, key=lambda p: f"natural/{p.name}")[1]}
    assert 0 < len(held) < 40
    train_photos = {n.split("#")[0] for s in parts for n in s.names}
    assert not held & train_photos and len(train_photos) == 40 - len(held) + 2  # + the two MOS photos
    assert parts[0].names == mos.names  # items of other sources stay
    assert new_dev.names[:2] == dev.names and {n.split("#")[0] for n in new_dev.names[2:]} == held
    assert len(new_dev) == 2 + 3 * len(held)  # every base item of a held photo, pristine and degraded
    with pytest.raises(ValueError, match="holds out none"):
        hold_out_photos([base], base, None, photos[:1], 0.01, split_seed=0)
    with pytest.raises(ValueError, match="threshold_holdout"):
        TrainConfig(threshold_holdout=1.0)


def test_highly_rated_mos_photos_become_negatives_and_only_labelled_ones_are_drawn():
    from stream_iqa.train.trainer import mos_label_negatives

    data = _fake_set([f"clive/{i}.bmp" for i in range(6)] + ["natural/a.png#0", "natural/a.png#1"], [0.0] * 8)
    data.mos[:6] = [20.0, 69.9, 70.0, 85.0, 90.0, 75.0]
    data.flags[:6] = -1.0
    data.flags[5, 2] = 1.0  # a MOS photo already known to have flare keeps its label
    data.group[:6] = -1
    assert mos_label_negatives(data, {"flare": 70.0}) == {"flare": 3}
    assert data.flags[:, 2].tolist() == [-1, -1, 0, 0, 0, 1, 0, 0] and (data.flags[:5, :2] == -1).all()
    # no loss reads MOS (flag-only stage): only MOS photos with a flag label are ever drawn
    cfg = TrainConfig(batch_size=8, mos_share=0.5, w_mos=0.0, w_mos_rank=0.0, mos_negatives={"flare": 70.0})
    sampler = BatchSampler(data, cfg, np.random.default_rng(0))
    assert sorted(sampler.mos_idx.tolist()) == [2, 3, 4, 5]
    drawn = np.concatenate([sampler() for _ in range(20)])
    assert set(drawn[drawn < 6].tolist()) == {2, 3, 4, 5}
    # a stage that learns quality from MOS still draws every MOS photo
    assert len(BatchSampler(data, TrainConfig(batch_size=8), np.random.default_rng(0)).mos_idx) == 6
    with pytest.raises(ValueError, match="mos_share"):
        TrainConfig(mos_share=0.0, mos_negatives={"flare": 70.0})
    with pytest.raises(ValueError, match="mos_negatives_min_luma"):
        TrainConfig(mos_share=0.1, mos_negatives={"flare": 70.0}, mos_negatives_min_luma=1.0)


def test_night_scenes_people_liked_do_not_become_flare_negatives():
    """A lamp-lit night street rated 90 looks like the real flare photos: under the daylight bar it stays unknown."""
    from stream_iqa.train.trainer import median_luma, mos_label_negatives

    data = _fake_set([f"clive/{i}.bmp" for i in range(4)] + ["natural/a.png#0"], [0.0] * 5)
    data.rgb = np.zeros((5, 8, 8, 3), np.uint8)
    data.rgb[0] = 200                 # daylight
    data.rgb[1] = 20                  # night ...
    data.rgb[1, :2, :2] = 255         # ... with a lamp: the median stays dark
    data.rgb[2, :, :5] = 255          # more than half the frame bright: median luma 1
    data.rgb[3] = 200
    data.mos[:4] = [90.0, 90.0, 80.0, 40.0]
    data.flags[:4] = -1.0
    data.group[:4] = -1
    assert median_luma(data.rgb[:2]).round(3).tolist() == [0.784, 0.078]
    assert mos_label_negatives(data, {"flare": 70.0}, min_luma=0.3) == {"flare": 2}
    assert data.flags[:4, 2].tolist() == [0, -1, 0, -1]  # the night photo and the poorly rated one stay unknown
    data.flags[:4] = -1.0
    assert mos_label_negatives(data, {"flare": 70.0}) == {"flare": 3}  # no bar: the night photo too
    with pytest.raises(ValueError, match="not flags"):
        TrainConfig(mos_share=0.1, mos_negatives={"glare": 70.0})


def test_a_flag_too_faint_to_see_against_its_twin_loses_its_label():
    from stream_iqa.train.dataset import faint_twin_positives

    names = ["p.png#1.0", "p.png#1.1", "p.png#2.0", "p.png#2.1", "q.png#1.0", "q.png#1.1", "r.png#1"]
    data = _fake_set(names, [0.5] * 7)
    data.rgb = np.full((7, 20, 20, 3), 100, np.uint8)
    data.flags[[0, 2, 4, 6], 2] = 1.0
    data.rgb[0, :4, :4] = 255   # 4 % of the pixels brighter by 155: a flare one can see
    data.rgb[2] = 130           # a veil of +30 over everything: below 64 levels everywhere, so faint
    data.rgb[4, :1, :3] = 255    # 3 pixels of 400: under 1 % of the frame
    data.rgb[6] = 130           # no twin to compare with: left alone
    assert faint_twin_positives(data, 2, 64).tolist() == [2, 4]
    assert faint_twin_positives(data, 2, 20).tolist() == [4]      # the veil is visible at 20 levels
    assert faint_twin_positives(data, 1, 64).tolist() == []       # no haze positives
    data.flags[5, 2] = 1.0                                         # a "twin" that has the flag too is no twin
    assert faint_twin_positives(data, 2, 64).tolist() == [2]
    with pytest.raises(ValueError, match="not flags"):
        TrainConfig(min_twin_visibility={"glare": 64})


def test_flare_source_is_checked():
    assert TrainConfig(flare_source="compact").flare_source == "compact"
    with pytest.raises(ValueError, match="flare_source must be 'brightest' or 'compact'"):
        TrainConfig(flare_source="sun")


def test_random_resized_crops_cut_one_box_from_image_and_depth_and_keep_the_size():
    from stream_iqa.train.trainer import random_resized_crops

    rgb = torch.rand(6, 3, 48, 64)
    depth = rgb[:, :1].clone()  # the depth map is the red channel: the same box must come out of both
    same = random_resized_crops(rgb, depth, 1.0, np.random.default_rng(0))
    assert same[0] is rgb and same[1] is depth
    out_rgb, out_depth = random_resized_crops(rgb, depth, 0.5, np.random.default_rng(0))
    assert out_rgb.shape == rgb.shape and out_depth.shape == depth.shape
    torch.testing.assert_close(out_rgb[:, :1], out_depth)
    assert not torch.allclose(out_rgb, rgb)  # cropped and zoomed, not passed through
    # a box of a constant image is that constant: nothing from outside the image or another item leaks in
    flat = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 48, 64).contiguous()
    torch.testing.assert_close(random_resized_crops(flat, flat[:, :1], 0.3, np.random.default_rng(1))[0], flat)


def test_crop_scale_is_checked_and_needs_a_two_view_model(tmp_path):
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="crop_scale must be in"):
            TrainConfig(crop_scale=bad)
    cfg = TrainConfig(crop_scale=0.6, pretrained_trunk=False)
    with pytest.raises(ValueError, match="needs a two-view model"):
        train(cfg, Settings(), tmp_path / "m.safetensors", tmp_path / "run")


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


def test_focus_pairs_differ_only_by_their_flag():
    from stream_iqa.synthesis.degradations import sample_focus_pair

    rng = np.random.default_rng(0)
    pairs = [sample_focus_pair(rng, "flare") for _ in range(300)]
    for with_flag, twin in pairs:
        assert with_flag.flags["flare"] == 1 and twin.flags["flare"] == 0
        others = [s for s in with_flag.steps if s[0] != "flare"]
        assert others == list(twin.steps) or (not others and len(twin.steps) <= 1)  # the same other step, if any
    alone = sum(len(w.steps) == 1 for w, _ in pairs)
    assert 110 < alone < 190  # half alone, half beside other damage it must be told apart from
    assert any(w.flags["haze"] or w.flags["low_light"] for w, _ in pairs)
    assert any(len(t.steps) == 0 for _, t in pairs) and any(len(w.steps) == 1 and len(t.steps) == 1 for w, t in pairs)
    with pytest.raises(ValueError, match="not a flag"):
        sample_focus_pair(rng, "jpeg")


def test_optical_focus_pairs_share_their_night_scene():
    """``sample_focus_pair(…, "flare_optics", night)``: a share of the pairs set at night, in both twins, where the
    night replaces a drawn low light; night=0 draws exactly what it always drew."""
    from stream_iqa.synthesis.degradations import sample_focus_pair

    rng = np.random.default_rng(4)
    pairs = [sample_focus_pair(rng, "flare_optics", night=0.5) for _ in range(400)]
    at_night = 0
    for with_flag, twin in pairs:
        assert with_flag.flags["flare"] == 1 and twin.flags["flare"] == 0
        others = [s for s in with_flag.steps if s[0] != "flare_optics"]
        lone = [s for s in others if s[0] == "night"] == others  # the flag alone (in its scene): a quality twin
        assert others == list(twin.steps) or (lone and len(twin.steps) - len(others) == 1)
        if any(k == "night" for k, _ in twin.steps):
            at_night += 1
            assert twin.flags["low_light"] == 1 and not any(k == "low_light" for k, _ in twin.steps)
    assert 160 < at_night < 240
    pairs = [sample_focus_pair(rng, "flare_optics", night=0.5, overexposed=1.0) for _ in range(200)]
    for with_flag, twin in pairs:  # every daylight pair over-exposed, in both twins; a night pair never
        kinds = {k for k, _ in twin.steps}
        assert ("night" in kinds) != ("overexposure" in kinds) and "low_light" not in kinds
        assert {k for k, _ in with_flag.steps} - {"flare_optics"} <= kinds
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    assert [sample_focus_pair(a, "flare") for _ in range(50)] == [sample_focus_pair(b, "flare", night=0.0)
                                                                  for _ in range(50)]
    assert a.random() == b.random()  # night=0 takes no extra draw, so the cached focus sets stay valid
    for bad, night in (("night", 0.0), ("low_light", 0.5)):
        with pytest.raises(ValueError):
            sample_focus_pair(rng, bad, night=night)


def test_shared_draws_give_twins_one_scene_and_max_side_downscales(tmp_path, monkeypatch):
    """build_synthetic(shared_draws=True): a pair's shared steps come out identical (one night scene with its lamps
    in one place); without it they are drawn anew per twin. max_side downscales the photo before synthesis."""
    import cv2
    from skimage import data

    from stream_iqa.train import dataset as D
    from stream_iqa.synthesis.degradations import Recipe

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.resize(data.coffee(), (300, 200), interpolation=cv2.INTER_AREA)[..., ::-1])
    pair = lambda r: [Recipe([("night", 0.5)]), Recipe([("night", 0.5)])]  # noqa: E731
    kw = dict(size=(64, 64), variants=2, seed=0, recipe_fn=pair, include_pristine=False)
    shared = D.build_synthetic([photo], PriorDepth(), shared_draws=True, **kw)
    apart = D.build_synthetic([photo], PriorDepth(), **kw)
    assert np.array_equal(shared.rgb[0], shared.rgb[1]) and np.array_equal(shared.rgb[2], shared.rgb[3])
    assert not np.array_equal(shared.rgb[0], shared.rgb[2])  # each pair draws its own scene
    assert not np.array_equal(apart.rgb[0], apart.rgb[1])
    shapes = []
    real_apply = D.apply_recipe
    monkeypatch.setattr(D, "apply_recipe", lambda img, *a: shapes.append(img.shape) or real_apply(img, *a))
    D.build_synthetic([photo], PriorDepth(), max_side=150, **kw)
    assert set(shapes) == {(100, 150, 3)}


def test_recipe_yaml_rejects_inconsistent_branch_settings(tmp_path):
    bad_flag = tmp_path / "a.yaml"
    bad_flag.write_text("focus: {jpeg: 4}\n")
    with pytest.raises(ValueError, match="not flags"):
        TrainConfig.from_yaml(bad_flag)
    for bad in ("optics_flare: -1", "optics_night: 1.5", "optics_max_side: 16"):
        (tmp_path / "o.yaml").write_text(bad + "\n")
        with pytest.raises(ValueError, match="optics_flare must be"):
            TrainConfig.from_yaml(tmp_path / "o.yaml")
    no_init = tmp_path / "b.yaml"
    no_init.write_text("train_only: [local_flags]\n")
    with pytest.raises(ValueError, match="needs init_from"):
        TrainConfig.from_yaml(no_init)


@pytest.mark.data
def test_a_branch_trained_onto_a_checkpoint_leaves_the_rest_unchanged(shared_data, tmp_path):
    """train_only + init_from: the new flare branch learns; every other weight, the score, the other flags and
    the score calibration stay exactly those of the starting checkpoint."""
    settings = Settings.load(data={"root": shared_data, "cache_dir": tmp_path / "cache"}, depth={"source": "prior"})
    common = dict(variants=2, val_variants=1, steps_per_epoch=2, batch_size=8, max_natural=4, max_mos=40,
                  clive_val_fraction=0.3)
    base_path = tmp_path / "base.safetensors"
    train(TrainConfig(arch={"input_size": [64, 64]}, epochs=1, freeze_epochs=0, **common), settings, out=base_path,
          run_dir=tmp_path / "base", command="test")
    cfg = TrainConfig(init_from=str(base_path), arch={"local_flags": ["flare"], "local_dim": 16},
                      train_only=["local_flags"], focus={"flare": 2}, optics_flare=1, epochs=2, mos_share=0.25,
                      pseudo_negatives={"flare": 1.01}, w_local_flags=1.0, **common)
    out = tmp_path / "branch.safetensors"
    meta = train(cfg, settings, out=out, run_dir=tmp_path / "branch", command="test")
    assert meta["training"]["init_from"]["path"] == str(base_path)
    # a limit above 1 takes every MOS training photo as a flare negative
    assert meta["training"]["data"]["pseudo_negatives"] == {"flare": meta["training"]["data"]["mos_items"]}
    base, branch = create_model("dgiqa-lite", checkpoint=base_path), create_model("dgiqa-lite", checkpoint=out)
    assert branch.config.local_flags == ("flare",) and branch.config.input_size == (64, 64)
    b_state = base.state_dict()
    for name, tensor in branch.state_dict().items():
        if name.startswith("local_flags."):
            assert name not in b_state
        else:
            assert torch.equal(tensor, b_state[name]), name
    assert branch.local_flags.out.weight.abs().sum() > 0  # it left its zero start
    assert branch.calibration == base.calibration
    torch.manual_seed(1)
    rgb, depth = torch.rand(2, 3, 80, 100), torch.rand(2, 1, 80, 100)
    a, b = base.score(rgb, depth), branch.score(rgb, depth)
    assert torch.allclose(a.quality, b.quality)
    assert torch.allclose(a.distortions[:, :2], b.distortions[:, :2])  # low light and haze untouched
    # the focus set, cached beside the base set, holds a flared variant and its twin without flare, per pair
    (focus_file,) = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("syn-focus-")]
    focus = ArraySet.load(focus_file)
    assert len(focus) and len(focus) % 4 == 0  # 2 pairs per training photo
    assert (focus.flags[0::2, 2] == 1).all() and (focus.flags[1::2, 2] == 0).all()
    (optics_file,) = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("syn-optics-")]
    optics = ArraySet.load(optics_file)
    assert len(optics) == 2 * len(set(focus.group))  # one optical pair per training photo
    assert (optics.flags[0::2, 2] == 1).all() and (optics.flags[1::2, 2] == 0).all()
    assert (optics.flags[0::2, :2] == optics.flags[1::2, :2]).all()  # twins share the rest, night included


@pytest.mark.data
def test_data_seed_pins_the_training_sets_and_val_dev_never_follow_a_seed(shared_data, tmp_path):
    """Comparing training seeds needs the same data: data_seed keeps the synthetic training sets (and their cache
    files) while seed changes; the val and dev sets are the same images whatever either seed is."""
    from stream_iqa.train.trainer import prepare_data

    settings = Settings.load(data={"root": shared_data, "cache_dir": tmp_path / "cache"}, depth={"source": "prior"})
    common = dict(variants=1, val_variants=1, max_natural=6, max_mos=8, clive_val_fraction=0.5, dev_fraction=0.4)
    files = lambda prefix: sorted(p.name for p in (tmp_path / "cache").glob(f"{prefix}-*"))  # noqa: E731
    a = prepare_data(TrainConfig(seed=0, **common), settings, (32, 32))
    b = prepare_data(TrainConfig(seed=3, data_seed=0, **common), settings, (32, 32))
    assert len(files("syn-train")) == 1 and np.array_equal(a.train.rgb, b.train.rgb)
    c = prepare_data(TrainConfig(seed=3, **common), settings, (32, 32))
    assert len(files("syn-train")) == 2 and not np.array_equal(a.train.rgb, c.train.rgb)
    assert len(files("syn-val")) == 1 and len(files("syn-dev")) == 1
    (tmp_path / "cache" / files("syn-val")[0]).unlink()  # rebuilt under seed 3: the same images as under seed 0
    d = prepare_data(TrainConfig(seed=3, **common), settings, (32, 32))
    assert np.array_equal(a.val_synthetic.rgb, d.val_synthetic.rgb)


@pytest.mark.data
def test_init_from_refuses_arch_changes_it_would_not_train(shared_data, tmp_path):
    settings = Settings.load(data={"root": shared_data, "cache_dir": tmp_path / "cache"}, depth={"source": "prior"})
    common = dict(variants=2, val_variants=1, steps_per_epoch=1, batch_size=8, max_natural=4, max_mos=40,
                  clive_val_fraction=0.3, epochs=1, freeze_epochs=0)
    base_path = tmp_path / "base.safetensors"
    train(TrainConfig(arch={"input_size": [64, 64]}, **common), settings, out=base_path, run_dir=tmp_path / "b")
    cfg = TrainConfig(init_from=str(base_path), arch={"local_flags": ["flare"], "token_dim": 64},
                      train_only=["local_flags"], **common)
    with pytest.raises(ValueError, match="not trained"):
        train(cfg, settings, out=tmp_path / "x.safetensors", run_dir=tmp_path / "x")
    # switching depth guidance off would move the single-view model's quality, which train_only promises to keep
    blind = TrainConfig(init_from=str(base_path), arch={"depth_guidance": False}, train_only=["local_flags"], **common)
    with pytest.raises(ValueError, match="depth_guidance changes a single-view model's quality"):
        train(blind, settings, out=tmp_path / "y.safetensors", run_dir=tmp_path / "y")
    missing = TrainConfig(init_from=str(tmp_path / "nope.safetensors"), train_only=["local_flags"], **common)
    with pytest.raises(FileNotFoundError, match="init_from .*nope.safetensors not found: set init_from"):
        train(missing, settings, out=tmp_path / "y.safetensors", run_dir=tmp_path / "y")


def test_pseudo_negatives_take_only_confident_mos_photos(tiny_set):
    from stream_iqa.train.evaluate import predict_arrays
    from stream_iqa.train.trainer import pseudo_label_negatives

    torch.manual_seed(0)
    model = DGIQALite(LiteConfig(input_size=SIZE), pretrained_trunk=False).eval()
    data = ArraySet.concat([tiny_set])  # a copy: labels are set in place
    mos = np.flatnonzero(np.isnan(data.weak))
    _, probs = predict_arrays(model, data)
    limit = float(np.median(probs[mos, 2]))
    before = data.flags.copy()
    counts = pseudo_label_negatives(model, data, {"flare": limit})
    assert counts == {"flare": int((probs[mos, 2] < limit).sum())} and counts["flare"] >= 1
    became = np.flatnonzero((before[:, 2] < 0) & (data.flags[:, 2] == 0))
    assert set(became) <= set(mos) and all(probs[i, 2] < limit for i in became)
    assert (data.flags[:, :2] == before[:, :2]).all()  # other flags stay unknown
    synthetic = data.group >= 0
    assert (data.flags[synthetic] == before[synthetic]).all()  # known labels are never touched
    assert (tiny_set.flags[mos] == -1).all()


def test_recipe_yaml_requires_a_judge_for_pseudo_negatives(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pseudo_negatives: {flare: 0.1}\n")
    with pytest.raises(ValueError, match="needs init_from"):
        TrainConfig.from_yaml(path)


def test_every_shipped_recipe_parses_with_its_stages_config():
    """configs/train-*.yaml are what `make train-default` and the model card name: a key that no stage knows would
    only surface after minutes of data preparation."""
    from pathlib import Path

    from stream_iqa.train.quality_view import QualityViewConfig

    recipes = sorted((Path(__file__).resolve().parents[1] / "configs").glob("train-*.yaml"))
    assert len(recipes) >= 4
    for path in recipes:
        cfg = (QualityViewConfig if path.name.startswith("train-quality-") else TrainConfig).from_yaml(path)
        assert cfg.name, path
