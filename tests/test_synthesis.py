"""Degradation synthesis: each physical model does what it claims, recipes label what they apply, all reproducibly."""

from __future__ import annotations

import collections
import csv
import dataclasses
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from stream_iqa.synthesis import degradations as S
from stream_iqa.synthesis.degradations import (
    FLAG_KINDS,
    ORDER,
    QUALITY_KINDS,
    Recipe,
    apply_recipe,
    sample_flare_layout,
    sample_recipe,
)

NATURAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural"


def _photo(name: str, width: int = 256) -> np.ndarray:
    img = getattr(data, name)()
    return cv2.resize(img, (width, round(width * img.shape[0] / img.shape[1])), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return _photo("coffee")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _photo("astronaut")


def _mean_lum(img: np.ndarray) -> float:
    return float(S.luminance(S.to_linear(img)).mean())


def _dark_channel(img: np.ndarray) -> np.ndarray:
    return cv2.erode(img.min(axis=2), np.ones((7, 7), np.uint8)).astype(np.float32) / 255.0


def _ramp_depth(h: int, w: int) -> np.ndarray:
    """Inverse depth falling left → right: the left edge is nearest (1), the right edge farthest (0)."""
    return np.tile(np.linspace(1.0, 0.0, w, dtype=np.float32), (h, 1))


# ---------------------------------------------------------------------------------------------------------- low light
@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_low_light_darkens_monotonically_and_always_clearly(name: str) -> None:
    img = _photo(name)
    clean = _mean_lum(img)
    for seed in range(3):
        lums = [_mean_lum(S.low_light(img, s, np.random.default_rng(seed))) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
        assert all(a > b for a, b in zip(lums, lums[1:])), lums
        # ≥ 2 EV even at severity 0: under half the clean linear luminance, whatever cast and tone were drawn.
        assert lums[0] < 0.5 * clean, (lums[0], clean)


def test_low_light_noise_is_signal_dependent() -> None:
    """Shot noise: absolute noise grows with the signal, relative noise (1/SNR) grows as the signal falls."""
    flat = np.zeros((128, 256, 3), np.uint8)
    flat[:, :128], flat[:, 128:] = 70, 210
    for seed in range(4):
        out = S.to_linear(S.low_light(flat, 0.5, np.random.default_rng(seed)))[16:-16]
        dark, bright = out[:, 16:112], out[:, 144:240]
        assert dark.std() > 0 and bright.std() > dark.std()
        assert dark.std() / dark.mean() > bright.std() / bright.mean()


def test_low_light_noisier_at_higher_severity() -> None:
    flat = np.full((96, 96, 3), 160, np.uint8)
    snr = []
    for s in (0.0, 0.5, 1.0):
        out = S.to_linear(S.low_light(flat, s, np.random.default_rng(1)))
        snr.append(out.mean() / out.std())
    assert snr[0] > snr[1] > snr[2]


# --------------------------------------------------------------------------------------------------------------- haze
def _block_contrast(img: np.ndarray, cols: slice) -> float:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)[:, cols]
    return float(cv2.absdiff(grey, cv2.GaussianBlur(grey, (0, 0), 3)).mean())


@pytest.mark.parametrize("severity", [0.0, 0.5, 1.0])
def test_haze_hits_far_regions_harder(astronaut: np.ndarray, severity: float) -> None:
    h, w = astronaut.shape[:2]
    hazy = S.haze(astronaut, _ramp_depth(h, w), severity, np.random.default_rng(0))
    near, far = slice(0, w // 3), slice(-w // 3, None)
    kept_near = _block_contrast(hazy, near) / _block_contrast(astronaut, near)
    kept_far = _block_contrast(hazy, far) / _block_contrast(astronaut, far)
    assert kept_far < kept_near < 1.0
    dc_gain = _dark_channel(hazy) - _dark_channel(astronaut)
    assert dc_gain.mean() > 0.02
    assert dc_gain[:, far].mean() > dc_gain[:, near].mean()


def test_haze_grows_with_severity(coffee: np.ndarray) -> None:
    depth = _ramp_depth(*coffee.shape[:2])
    dc = [_dark_channel(S.haze(coffee, depth, s, np.random.default_rng(3))).mean() for s in (0.0, 0.5, 1.0)]
    assert dc[0] < dc[1] < dc[2]


def test_haze_checks_depth_shape(coffee: np.ndarray) -> None:
    with pytest.raises(ValueError, match="depth"):
        S.haze(coffee, np.zeros((10, 10), np.float32), 0.5, np.random.default_rng(0))


# --------------------------------------------------------------------------------------------------------- lens flare
def _layout_in_frame(img: np.ndarray, severity: float, seed: int) -> S.FlareLayout:
    h, w = img.shape[:2]
    layout = sample_flare_layout(img, severity, np.random.default_rng(seed))
    source = (0.8 * w, 0.2 * h)
    centre = layout.centre
    ghosts = tuple(
        dataclasses.replace(g, centre=(centre[0] + a * (source[0] - centre[0]), centre[1] + a * (source[1] - centre[1])))
        for g, a in zip(layout.ghosts, np.linspace(-1.2, 0.5, len(layout.ghosts)))
    )
    return dataclasses.replace(layout, source=source, ghosts=ghosts)


def _white_sky_and_lamp() -> tuple[np.ndarray, np.ndarray]:
    """A daylight scene whose top third is clipped white sky, and a dark scene with one lamp (32 px across) at (120, 150)."""
    sky = np.full((240, 320, 3), 90, np.uint8)
    sky[:80] = 255
    lamp = np.full((240, 320, 3), 12, np.uint8)
    cv2.circle(lamp, (120, 150), 16, (255, 250, 235), -1)
    return sky, lamp


def test_compact_source_never_grows_a_flare_from_a_white_sky() -> None:
    sky, _ = _white_sky_and_lamp()
    plain = [sample_flare_layout(sky, 0.5, np.random.default_rng(seed)).source for seed in range(40)]
    peak, at_peak = collections.Counter(plain).most_common(1)[0]
    assert peak[1] < 80 and at_peak >= 20  # the plain sampler's usual source: the sky's brightest cell
    compact = [sample_flare_layout(sky, 0.5, np.random.default_rng(seed), compact_source=True).source
               for seed in range(40)]
    assert peak not in compact
    assert sum(a == b for a, b in zip(plain, compact)) == 40 - at_peak  # the other draws are unchanged


def test_compact_source_keeps_a_lamp_as_the_source_and_draws_like_the_plain_sampler() -> None:
    _, lamp = _white_sky_and_lamp()
    at_lamp = 0
    for seed in range(40):
        plain = sample_flare_layout(lamp, 0.5, np.random.default_rng(seed))
        compact = sample_flare_layout(lamp, 0.5, np.random.default_rng(seed), compact_source=True)
        assert compact == plain  # a compact source changes nothing
        at_lamp += int(np.hypot(compact.source[0] - 120, compact.source[1] - 150) < 8)
    assert at_lamp >= 20


def test_flare_compact_step_raises_the_flare_flag(coffee: np.ndarray) -> None:
    recipe = S.Recipe([("flare_compact", 0.5)])
    assert recipe.flags["flare"] == 1
    out = S.apply_recipe(coffee, np.ones(coffee.shape[:2], np.float32), recipe, np.random.default_rng(0))
    assert out.shape == coffee.shape and not np.array_equal(out, coffee)
    pair = S.sample_focus_pair(np.random.default_rng(1), "flare_compact")
    assert pair[0].flags["flare"] == 1 and pair[1].flags["flare"] == 0


def test_sampled_ghosts_lie_on_the_line_through_the_centre(coffee: np.ndarray) -> None:
    for seed in range(10):
        layout = sample_flare_layout(coffee, float(seed) / 9, np.random.default_rng(seed))
        (sx, sy), (cx, cy) = layout.source, layout.centre
        norm = np.hypot(sx - cx, sy - cy)
        assert len(layout.ghosts) >= 3
        for g in layout.ghosts:
            gx, gy = g.centre
            assert abs((sx - cx) * (gy - cy) - (sy - cy) * (gx - cx)) / norm < 1e-6


def test_rendered_ghost_light_stays_on_the_line(astronaut: np.ndarray) -> None:
    """With glow, streaks and veil switched off, every pixel the flare brightens is on the source–centre line."""
    layout = dataclasses.replace(_layout_in_frame(astronaut, 0.8, 5), glow_gain=0.0, streak_gain=0.0, veil=0.0)
    added = S.luminance(S.to_linear(S.render_flare(astronaut, layout)) - S.to_linear(astronaut))
    ys, xs = np.nonzero(added > 2e-3)
    assert len(xs) > 200
    (sx, sy), (cx, cy) = layout.source, layout.centre
    off_line = np.abs((sx - cx) * (ys - cy) - (sy - cy) * (xs - cx)) / np.hypot(sx - cx, sy - cy)
    assert off_line.max() <= 1.25 * max(g.radius for g in layout.ghosts) + 1
    # ... and inside one of the ghosts the layout placed there (polygons reach their circumradius, edges are soft).
    inside = np.zeros(len(xs), bool)
    for g in layout.ghosts:
        inside |= np.hypot(xs - g.centre[0], ys - g.centre[1]) <= 1.2 * g.radius + 1
    assert inside.all()


@pytest.mark.parametrize("severity", [0.0, 0.5, 1.0])
def test_flare_brightens_around_the_source(coffee: np.ndarray, severity: float) -> None:
    layout = _layout_in_frame(coffee, severity, 7)
    out = S.render_flare(coffee, layout)
    added = S.luminance(S.to_linear(out) - S.to_linear(coffee))
    h, w = coffee.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(xx - layout.source[0], yy - layout.source[1])
    near, far = added[r < 0.05 * np.hypot(h, w)], added[r > 0.6 * np.hypot(h, w)]
    assert near.mean() > 0.1 and near.mean() > 5 * far.mean()
    assert _mean_lum(out) > _mean_lum(coffee)  # veiling glare and glow only ever add light


# ------------------------------------------------------------------------------------------- quality-only distortions
@pytest.mark.parametrize("kind", QUALITY_KINDS)
def test_quality_only_changes_image_but_not_brightness(coffee: np.ndarray, kind: str) -> None:
    depth = np.zeros(coffee.shape[:2], np.float32)
    for severity in (0.0, 1.0):
        out = apply_recipe(coffee, depth, Recipe([(kind, severity)]), np.random.default_rng(0))
        assert np.abs(out.astype(np.int16) - coffee).mean() > 1.0, (kind, severity)
        assert abs(float(out.mean()) / float(coffee.mean()) - 1) < 0.04, (kind, severity)
    mild = apply_recipe(coffee, depth, Recipe([(kind, 0.1)]), np.random.default_rng(0))
    harsh = apply_recipe(coffee, depth, Recipe([(kind, 1.0)]), np.random.default_rng(0))
    assert np.abs(harsh.astype(np.int16) - coffee).mean() > np.abs(mild.astype(np.int16) - coffee).mean()


def test_h264_falls_back_to_jpeg_with_a_warning(coffee: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(S, "h264_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="libx264"):
        out = S.h264(coffee, 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(out, S.jpeg(coffee, 0.5, np.random.default_rng(0)))


def test_h264_encoder_is_present() -> None:
    """The wheels ship libx264; if this fails, 'h264' training data silently became JPEG (see the warning)."""
    assert S.h264_available()


def test_overexposure_clips_whites_grows_with_severity_and_raises_no_flag(coffee: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    mild, strong = (S.overexposure(coffee, s, rng) for s in (0.0, 1.0))
    clipped = [float((img.max(axis=2) == 255).mean()) for img in (coffee, mild, strong)]  # a channel at white
    white = [float((img.min(axis=2) == 255).mean()) for img in (coffee, mild, strong)]  # all three
    assert clipped[0] < clipped[1] < clipped[2] and clipped[2] > 0.6  # large areas clip
    assert white[0] < white[1] < white[2]
    assert _mean_lum(coffee) < _mean_lum(mild) < _mean_lum(strong)
    assert Recipe([("overexposure", 0.5), ("jpeg", 0.3)]).flags == {"low_light": 0, "haze": 0, "flare": 0}


# ----------------------------------------------------------------------------------------------- recipes and contract
@pytest.mark.parametrize("kind", ORDER)
def test_odd_sizes_keep_dtype_and_shape(kind: str) -> None:
    img = cv2.resize(data.chelsea(), (131, 97), interpolation=cv2.INTER_AREA)
    depth = _ramp_depth(97, 131)
    out = apply_recipe(img, depth, Recipe([(kind, 0.7)]), np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == (97, 131, 3)
    assert not np.array_equal(out, img)


@pytest.mark.parametrize("kind", ORDER)
def test_deterministic_for_a_seed(coffee: np.ndarray, kind: str) -> None:
    depth = _ramp_depth(*coffee.shape[:2])
    recipe = Recipe([(kind, 0.6)])
    a = apply_recipe(coffee, depth, recipe, np.random.default_rng(42))
    b = apply_recipe(coffee, depth, recipe, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


def test_seed_changes_stochastic_distortions(coffee: np.ndarray) -> None:
    depth = _ramp_depth(*coffee.shape[:2])
    for kind in ("low_light", "haze", "flare", "gaussian_noise", "sensor_noise", "motion_blur"):
        a = apply_recipe(coffee, depth, Recipe([(kind, 0.6)]), np.random.default_rng(1))
        b = apply_recipe(coffee, depth, Recipe([(kind, 0.6)]), np.random.default_rng(2))
        assert not np.array_equal(a, b), kind


def test_recipe_flags_order_and_severity() -> None:
    recipe = Recipe([("jpeg", 0.3), ("haze", 0.5), ("flare", 0.0)])
    assert recipe.flags == {"low_light": 0, "haze": 1, "flare": 1}
    assert [k for k, _ in recipe.steps] == ["haze", "flare", "jpeg"]
    assert Recipe().flags == {"low_light": 0, "haze": 0, "flare": 0} and Recipe().severity == 0.0
    single = Recipe([("gaussian_blur", 0.0)]).severity
    assert 0.0 < single < Recipe([("gaussian_blur", 0.0), ("jpeg", 0.0)]).severity < Recipe([("jpeg", 1.0)]).severity
    assert Recipe([("jpeg", 1.0)]).severity == 1.0
    with pytest.raises(ValueError):
        Recipe([("fog", 0.5)])
    with pytest.raises(ValueError):
        Recipe([("haze", 1.5)])
    with pytest.raises(ValueError):
        Recipe([("haze", 0.2), ("haze", 0.4)])


def test_sample_recipe_covers_all_mixture_types_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    recipes = [sample_recipe(rng, p_clean=0.2, p_mixture=0.4) for _ in range(600)]
    again = np.random.default_rng(0)
    assert recipes == [sample_recipe(again, p_clean=0.2, p_mixture=0.4) for _ in range(600)]

    seen: set[str] = set()
    n_clean = 0
    for recipe in recipes:
        kinds = [k for k, _ in recipe.steps]
        assert recipe.flags == {f: int(f in kinds) for f in FLAG_KINDS}
        assert all(0.0 <= s <= 1.0 for _, s in recipe.steps)
        n_flags = sum(k in FLAG_KINDS for k in kinds)
        if not kinds:
            n_clean += 1
        elif len(kinds) == 1:
            seen.add("flag" if n_flags else "quality")
        else:
            assert len(kinds) == 2
            seen.add({2: "flag+flag", 1: "flag+quality", 0: "quality+quality"}[n_flags])
            if n_flags == 0:
                assert S._QUALITY_GROUP[kinds[0]] != S._QUALITY_GROUP[kinds[1]]
    assert seen == {"flag", "quality", "flag+flag", "flag+quality", "quality+quality"}
    assert 0.14 < n_clean / len(recipes) < 0.26


def test_apply_recipe_labels_match_a_mixture(coffee: np.ndarray) -> None:
    depth = _ramp_depth(*coffee.shape[:2])
    recipe = Recipe([("jpeg", 0.5), ("low_light", 0.3)])
    out = apply_recipe(coffee, depth, recipe, np.random.default_rng(0))
    assert recipe.flags["low_light"] == 1 and _mean_lum(out) < 0.5 * _mean_lum(coffee)
    clean = apply_recipe(coffee, depth, Recipe(), np.random.default_rng(0))
    np.testing.assert_array_equal(clean, coffee)
    assert clean is not coffee


def test_rejects_bad_inputs(coffee: np.ndarray) -> None:
    depth = np.zeros(coffee.shape[:2], np.float32)
    with pytest.raises(ValueError):
        apply_recipe(coffee.astype(np.float32), depth, Recipe(), np.random.default_rng(0))
    with pytest.raises(ValueError):
        apply_recipe(coffee, depth[:-1], Recipe([("haze", 0.5)]), np.random.default_rng(0))


@pytest.mark.data
def test_flags_visible_on_natural_validation_photos() -> None:
    """On real photos from the shared set: low light always darkens by ≥ 1 EV, haze always adds airlight."""
    if not (NATURAL / "split.csv").is_file():
        pytest.skip(f"{NATURAL} is not available")
    with open(NATURAL / "split.csv", newline="") as f:
        val = [NATURAL / row["image"] for row in csv.DictReader(f) if row["split"] == "val"][:6]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i, path in enumerate(val):
            img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            img = cv2.resize(img, (256, round(256 * img.shape[0] / img.shape[1])), interpolation=cv2.INTER_AREA)
            depth = _ramp_depth(*img.shape[:2])
            dark = S.low_light(img, 0.0, np.random.default_rng(i))
            assert _mean_lum(dark) < 0.5 * _mean_lum(img), path.name
            hazy = S.haze(img, depth, 0.0, np.random.default_rng(i))
            assert _dark_channel(hazy).mean() > _dark_channel(img).mean(), path.name
