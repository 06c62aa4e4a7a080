"""Optically rendered lens flare: the PSF obeys diffraction, the renderer adds light where the optics say it should."""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from stream_iqa.synthesis import flare_optics as F
from stream_iqa.synthesis.degradations import to_linear

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = n // 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    return np.hypot(xx - c, yy - c), np.arctan2(yy - c, xx - c)


def _encircled_radius(plane: np.ndarray, fraction: float) -> float:
    """Radius of the centred disc holding ``fraction`` of the plane's energy."""
    r, _ = _grid(plane.shape[0])
    order = np.argsort(r.ravel())
    cumulative = np.cumsum(plane.ravel()[order])
    return float(r.ravel()[order][np.searchsorted(cumulative, fraction * cumulative[-1])])


def _dominant_harmonic(psf: np.ndarray, r_min: float = 15, r_max: float = 110) -> int:
    """Strongest angular frequency of the PSF's energy in an annulus: the number of spikes of its starburst."""
    r, theta = _grid(psf.shape[0])
    ring = (r >= r_min) & (r <= r_max)
    bins = ((theta[ring] + np.pi) / (2 * np.pi) * 360).astype(int) % 360
    profile = np.bincount(bins, weights=(psf.sum(axis=2) * r**2)[ring], minlength=360)
    spectrum = np.abs(np.fft.rfft(profile))
    return int(np.argmax(spectrum[1:60]) + 1)


def _dark(h: int = 240, w: int = 320, level: int = 6) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


# ----------------------------------------------------------------------------------------------------------- spectrum
def test_colour_matching_fit_peaks_where_cie_does() -> None:
    lam = np.arange(380.0, 781.0, 1.0)
    xyz = F.cie_xyz(lam)
    assert abs(lam[np.argmax(xyz[:, 1])] - 555) <= 5  # photopic peak
    assert abs(lam[np.argmax(xyz[:, 2])] - 445) <= 8
    assert abs(lam[np.argmax(xyz[:, 0])] - 598) <= 6
    # an equal-energy spectrum is near-white: X ≈ Y ≈ Z (exactly equal for the tabulated CIE functions)
    total = xyz.sum(axis=0)
    assert np.allclose(total / total[1], 1.0, atol=0.05)
    rgb = F.spectral_weights([450.0, 550.0, 650.0])
    assert np.argmax(rgb[0]) == 2 and np.argmax(rgb[1]) == 1 and np.argmax(rgb[2]) == 0


# ----------------------------------------------------------------------------------------------------------- aperture
def test_aperture_polygon_dust_and_scratches_block_light() -> None:
    clean = F.aperture(6, 128, np.random.default_rng(0), radius=0.3)
    assert clean.dtype == np.float32 and clean.shape == (128, 128)
    assert 0.0 <= clean.min() and clean.max() <= 1.0
    hexagon = 3 * math.sqrt(3) / 2 * (0.3 * 128) ** 2
    assert clean.sum() == pytest.approx(hexagon, rel=0.03)
    circle = F.aperture(0, 128, np.random.default_rng(0), radius=0.3)
    assert circle.sum() == pytest.approx(math.pi * (0.3 * 128) ** 2, rel=0.03)
    dirty = F.aperture(6, 128, np.random.default_rng(0), dust=40, scratches=3, radius=0.3)
    assert dirty.sum() < clean.sum() * 0.99
    assert (dirty <= clean + 1e-6).all()  # dirt only ever blocks light


# ---------------------------------------------------------------------------------------------------------------- PSF
def test_psf_is_unit_energy_and_centred() -> None:
    rng = np.random.default_rng(1)
    psf = F.psf_rgb(F.aperture(7, 256, rng, dust=30, scratches=2), rng, defocus=0.3)
    assert psf.shape == (256, 256, 3) and psf.dtype == np.float32
    assert (psf >= 0).all()
    assert np.allclose(psf.sum(axis=(0, 1)), 1.0, atol=1e-4)
    lum = psf.sum(axis=2)
    assert np.unravel_index(np.argmax(lum), lum.shape) == (128, 128)
    yy, xx = np.mgrid[0:256, 0:256]
    core = lum * (np.hypot(xx - 128, yy - 128) < 40)
    assert abs((core * xx).sum() / core.sum() - 128) < 1.0
    assert abs((core * yy).sum() / core.sum() - 128) < 1.0


@pytest.mark.parametrize(("blades", "spikes"), [(5, 10), (6, 6), (7, 14), (8, 8)])
def test_blades_set_the_number_of_diffraction_spikes(blades: int, spikes: int) -> None:
    """Each straight blade edge diffracts into a spike at right angles to it: n spikes for even n (opposite edges
    are parallel and share them), 2n for odd n."""
    rng = np.random.default_rng(blades)
    psf = F.psf_rgb(F.aperture(blades, 256, rng), rng, aberration=0.0)
    assert _dominant_harmonic(psf) == spikes


def test_psf_grows_with_wavelength() -> None:
    """Fraunhofer: the pattern's scale is ∝ λ, so a red PSF is wider than a blue one by the ratio of wavelengths."""
    mask = F.aperture(6, 256, np.random.default_rng(2))
    blue = F.psf_rgb(mask, np.random.default_rng(3), wavelengths=[450.0], aberration=0.0)[..., 2]
    red = F.psf_rgb(mask, np.random.default_rng(3), wavelengths=[650.0], aberration=0.0)[..., 0]
    ratio = _encircled_radius(red, 0.95) / _encircled_radius(blue, 0.95)
    assert ratio == pytest.approx(650 / 450, rel=0.12)
    rgb = F.psf_rgb(mask, np.random.default_rng(3), aberration=0.0)
    radii = [_encircled_radius(rgb[..., ch], 0.95) for ch in range(3)]
    assert radii[0] > radii[1] > radii[2]  # R wider than G wider than B: the rainbow fringes


def test_defocus_spreads_the_core() -> None:
    mask = F.aperture(6, 256, np.random.default_rng(4))
    sharp = F.psf_rgb(mask, np.random.default_rng(5), defocus=0.0, aberration=0.0)
    blurred = F.psf_rgb(mask, np.random.default_rng(5), defocus=1.5, aberration=0.0)
    assert blurred.max() < 0.5 * sharp.max()
    assert _encircled_radius(blurred[..., 1], 0.5) > _encircled_radius(sharp[..., 1], 0.5)


# ------------------------------------------------------------------------------------------------------------- ghosts
def test_ghost_centres_lie_on_the_line_through_the_centre() -> None:
    source, centre = (40.0, 30.0), (160.0, 120.0)
    alphas = [-1.0, -0.4, 0.5, -1.7]
    pts = F.ghost_centres(source, centre, alphas)
    assert pts[0] == pytest.approx([280.0, 210.0])  # the mirror point 2c − p
    d = np.subtract(source, centre)
    for p in pts:  # collinear with source and centre
        v = p - np.asarray(centre)
        assert abs(v[0] * d[1] - v[1] * d[0]) < 1e-9


def test_rendered_ghosts_sit_on_the_mirror_line() -> None:
    h, w = 240, 320
    source = (60.0, 50.0)
    flare = np.zeros((h, w, 3), np.float32)
    src = F.LightSource(source[0], source[1], (59, 49, 62, 52), np.ones((3, 3), np.float32), (1.0, 1.0, 1.0), 2e5)
    F.add_ghosts(flare, [src], 6, (w / 2, h / 2), math.hypot(h, w), 1.0, np.random.default_rng(6))
    lit = flare.sum(axis=2) > 1e-4
    assert lit.any()
    ys, xs = np.nonzero(lit)
    # distance of every lit pixel from the line through source and centre: within the largest ghost's reach
    d = np.subtract((w / 2, h / 2), source)
    dist = np.abs((xs - source[0]) * d[1] - (ys - source[1]) * d[0]) / np.hypot(*d)
    assert dist.max() < 0.045 * math.hypot(h, w) * (0.6 + 0.6 * 1.8) * 1.4
    mx, my = w - source[0], h - source[1]  # 2c − p
    assert flare[round(my), round(mx)].sum() > 0


def test_render_places_a_ghost_at_the_mirror_point() -> None:
    h, w = 240, 320
    source = (70.0, 60.0)
    base = _dark(h, w)
    out = to_linear(F.render_flare(base, np.random.default_rng(7), 0.8, source=source)).sum(axis=2)
    added = out - to_linear(base).sum(axis=2)
    mx, my = w - source[0], h - source[1]
    rho = math.hypot(mx - source[0], my - source[1])
    at_mirror = np.median(added[round(my) - 2 : round(my) + 3, round(mx) - 2 : round(mx) + 3])
    # half as far from the source, off the line: only the (stronger) glare tail reaches there
    off = []
    for turn in (math.pi / 2, -math.pi / 2):
        ang = math.atan2(my - source[1], mx - source[0]) + turn
        ox, oy = source[0] + rho * math.cos(ang) * 0.5, source[1] + rho * math.sin(ang) * 0.5
        if 2 <= ox < w - 2 and 2 <= oy < h - 2:
            off.append(np.median(added[round(oy) - 2 : round(oy) + 3, round(ox) - 2 : round(ox) + 3]))
    assert at_mirror > 1e-3
    assert all(at_mirror > 3 * o for o in off)


# ------------------------------------------------------------------------------------------------------------- render
def test_render_adds_light_only_near_the_source() -> None:
    """Glare kernel is 0.6 of the diagonal wide and ghosts of a centred source are centred: the corners stay dark."""
    h, w = 240, 320
    base = _dark(h, w)
    out = F.render_flare(base, np.random.default_rng(8), 0.6, source=(w / 2, h / 2))
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - w / 2, yy - h / 2) / math.hypot(h, w)
    delta = out.astype(int) - base.astype(int)
    assert (delta >= -1).all()  # light is only ever added
    assert np.abs(delta[r > 0.32]).max() <= 1
    assert delta[r < 0.02].mean() > 150  # the lamp and its glare
    assert delta[(r > 0.05) & (r < 0.15)].mean() > 3  # the glow around it


def test_dark_image_gets_a_lamp_and_far_pixels_stay_dark() -> None:
    base = _dark(240, 320, level=3)
    out = F.render_flare(base, np.random.default_rng(9), 0.5)
    assert out.max() == 255  # a lamp was placed: the flare has a cause
    sources = F.find_sources(to_linear(out))
    assert sources  # and it is found as a light source afterwards
    y, x = np.unravel_index(np.argmax(to_linear(out).sum(axis=2)), out.shape[:2])
    assert np.hypot(sources[0].x - x, sources[0].y - y) < 10


def test_detected_sources_cause_the_flare() -> None:
    lin = np.full((200, 300, 3), 0.002, np.float32)
    lin[95:101, 45:51] = (1.0, 0.15, 0.05)  # a saturated red signal: found by max channel, not luminance
    sources = F.find_sources(lin)
    assert len(sources) == 1
    assert sources[0].x == pytest.approx(47.5, abs=0.1) and sources[0].y == pytest.approx(97.5, abs=0.1)
    out = F.render_flare(lin, np.random.default_rng(10), 0.5)
    added = out - lin
    near, far = added[80:115, 30:65].mean(axis=(0, 1)), added[:, 250:].mean(axis=(0, 1))
    assert near.sum() > 10 * far.sum()
    assert near[0] > near[2]  # red light makes a red flare


def test_brightness_grows_with_severity() -> None:
    base = _dark(240, 320)
    means = [
        to_linear(F.render_flare(base, np.random.default_rng(11), s, source=(120.0, 90.0))).mean()
        for s in (0.0, 0.3, 0.6, 1.0)
    ]
    assert means == sorted(means) and means[-1] > 3 * means[0]


def test_dtype_and_shape_preserved() -> None:
    odd = cv2.resize(data.coffee(), (101, 77), interpolation=cv2.INTER_AREA)
    out = F.render_flare(odd, np.random.default_rng(12), 0.5)
    assert out.dtype == np.uint8 and out.shape == odd.shape
    lin = to_linear(odd)
    for dtype in (np.float32, np.float64):
        res = F.render_flare(lin.astype(dtype), np.random.default_rng(12), 0.5)
        assert res.dtype == dtype and res.shape == odd.shape
        assert 0.0 <= res.min() and res.max() <= 1.0
    lin_copy = lin.copy()
    F.render_flare(lin, np.random.default_rng(12), 0.5, source=(10.0, 10.0))
    assert np.array_equal(lin, lin_copy)  # the input is never painted on


def test_render_is_deterministic_given_the_seed() -> None:
    img = cv2.resize(data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)
    a = F.render_flare(img, np.random.default_rng(13), 0.7)
    b = F.render_flare(img, np.random.default_rng(13), 0.7)
    c = F.render_flare(img, np.random.default_rng(14), 0.7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        F.render_flare(np.zeros((10, 10), np.uint8), np.random.default_rng(0), 0.5)
    with pytest.raises(ValueError):
        F.render_flare(_dark(10, 10), np.random.default_rng(0), 1.5)
    with pytest.raises(ValueError):
        F.psf_rgb(np.zeros((32, 32), np.float32), np.random.default_rng(0))


def test_full_size_frame_renders() -> None:
    """A 512×384 night frame renders; the time is printed for the record, never asserted (shared CPUs)."""
    day = cv2.resize(data.coffee(), (512, 384), interpolation=cv2.INTER_AREA)
    night = F.night_background(day, np.random.default_rng(15))
    start = time.perf_counter()
    out = F.render_flare(night, np.random.default_rng(16), 0.7)
    print(f"render_flare 512x384: {(time.perf_counter() - start) * 1e3:.0f} ms")
    assert out.shape == night.shape and out.dtype == np.uint8
    assert to_linear(out).mean() > to_linear(night).mean()


# --------------------------------------------------------------------------------------------------------- helpers
def test_add_light_rolls_off_below_white() -> None:
    lin = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    assert np.allclose(F.add_light(lin, np.zeros_like(lin)), lin)
    small = F.add_light(lin, np.full_like(lin, 1e-3))
    assert np.allclose(small[..., :2] - lin[..., :2], 1e-3, rtol=0.01)
    huge = F.add_light(lin, np.full_like(lin, 1e3))
    assert (huge <= 1.0 + 1e-6).all() and (huge > 0.999).all()


def test_night_background_is_dark_with_lamps() -> None:
    day = cv2.resize(data.coffee(), (320, 240), interpolation=cv2.INTER_AREA)
    night = F.night_background(day, np.random.default_rng(17), lamps=2)
    assert night.dtype == np.uint8 and night.shape == day.shape
    assert to_linear(night).mean() < 0.25 * to_linear(day).mean()
    assert len(F.find_sources(to_linear(night))) == 2
    assert np.array_equal(night, F.night_background(day, np.random.default_rng(17), lamps=2))


def test_night_severity_lowers_the_ambient_light_and_is_checked() -> None:
    day = cv2.resize(data.coffee(), (320, 240), interpolation=cv2.INTER_AREA)
    # the same draws but the ambient level: far from the lamp's pool, the darker night is darker
    mild, deep = (F.night_background(day, np.random.default_rng(3), lamps=1, severity=s) for s in (0.0, 1.0))
    assert to_linear(deep).mean() < to_linear(mild).mean()
    assert np.array_equal(mild, F.night_background(day, np.random.default_rng(3), lamps=1, severity=0.0))
    with pytest.raises(ValueError, match="severity"):
        F.night_background(day, np.random.default_rng(3), severity=1.5)


def test_optical_flare_and_night_are_recipe_steps_raising_their_flags() -> None:
    """In a recipe, ``flare_optics`` raises the flare flag and ``night`` low light, one renderer per flag."""
    from stream_iqa.synthesis.degradations import Recipe, apply_recipe

    recipe = Recipe([("flare_optics", 0.7), ("night", 0.4), ("jpeg", 0.2)])
    assert recipe.flags == {"low_light": 1, "haze": 0, "flare": 1}
    assert [k for k, _ in recipe.steps] == ["night", "flare_optics", "jpeg"]  # the scene is lit before the lens
    for twice in ([("flare", 0.5), ("flare_optics", 0.5)], [("low_light", 0.5), ("night", 0.5)]):
        with pytest.raises(ValueError, match="each flag at most once"):
            Recipe(twice)
    day = cv2.resize(data.coffee(), (256, 192), interpolation=cv2.INTER_AREA)
    depth = np.ones(day.shape[:2], np.float32)
    night = apply_recipe(day, depth, Recipe([("night", 0.5)]), np.random.default_rng(2))
    flared = apply_recipe(day, depth, Recipe([("night", 0.5), ("flare_optics", 0.8)]), np.random.default_rng(2))
    assert to_linear(night).mean() < 0.25 * to_linear(day).mean()
    assert to_linear(flared).mean() > 1.2 * to_linear(night).mean()  # the lamps' glare lights the night scene


@pytest.mark.data
def test_flare_sheet_writes_a_small_png(tmp_path: Path) -> None:
    real = SHARED / "real" / "flare" / "photos_unpaired"
    if not real.is_dir() or not (SHARED / "real" / "low_light" / "low").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    from stream_iqa.train.flare_sheet import flare_sheet

    out = flare_sheet(tmp_path / "sheet.png", real, tile=96)
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[1] == 6 * 96 + 5 * 4
    assert out.stat().st_size < 1_000_000
