"""Lens flare rendered from optics (Fraunhofer diffraction of a real aperture), not painted as sprites.

Why: the flag head learns what flare *looks like*, and the sprite flare in ``synthesis.lens_flare`` (discs, Gaussian
spikes) has none of the structure of a real one — no diffraction colour, no streaks from dust and scratches, no
rings. A lens images a point source as its point-spread function; for a thin lens in the Fraunhofer regime that is

    PSF_λ(u) = |FFT(A(x) · exp(i·2π·W(x)/λ))|²,   u ∝ λ·f

where ``A`` is the aperture (a polygon of iris blades, with opaque dust specks and scratches on the front element)
and ``W`` the wavefront error (defocus ``∝ ρ²`` plus a little astigmatism and coma), in waves at a reference
wavelength. Dust specks diffract into a wide halo of rings, scratches into a long streak perpendicular to them, the
straight blade edges into the starburst (n spikes for even n blades, 2n for odd). The pattern's size grows in
proportion to λ, so the per-wavelength PSFs (computed at 550 nm sampling and resampled by λ/550) sum — weighted by
the CIE 1931 colour matching functions (the analytic multi-lobe Gaussian fit of Wyman, Sloan & Shirley, JCGT 2013)
and converted XYZ → linear sRGB — to the rainbow-fringed pattern real lenses show (Wu et al., "How to Train Neural
Networks for Flare Removal", ICCV 2021). Internal reflections between lens surfaces add ghosts: defocused images of
the aperture on the line through the optical centre, mostly mirrored to ``c + α·(p − c)`` with α < 0, the exact
mirror ``2c − p`` at α = −1 (Dai et al., "Flare7K", NeurIPS 2022).

Real night glare is mostly *scattering* (haze, grease on the front element), not diffraction, so the kernel mixes
the diffraction PSF with a smooth veiling-glare profile (``scatter_kernel``). Everything is added in **linear**
light: a lamp at night is many stops brighter than the white it clips to, so each light source carries an HDR
radiance (the unrecorded excess), the flare is that radiance convolved with the kernel — for a lamp a few pixels
wide, the starburst and glare placed at the lamp, scaled by its energy — and the sum saturates with a highlight
roll-off (``add_light``). Conventions follow ``synthesis``: uint8 sRGB in and out (a float image is taken as linear
RGB and returned as such), ``severity`` in [0, 1], every random draw from the ``numpy.random.Generator`` passed in,
so a seed reproduces an image exactly. Pixel sizes are tuned, as there, for frames of ~512 px: the kernel is 0.6 of
the frame diagonal, so cost grows with the square of the frame size.

    stream-iqa flare-sheet docs/img/flare-optics-sheet.png   # the sheet in docs/SYNTHESIS.md
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import scipy.fft
from scipy.signal import fftconvolve

from stream_iqa.synthesis.color import to_linear, to_srgb

#: Wavelength (nm) at which the aperture grid is sampled; other wavelengths are resampled by λ / LAMBDA_REF.
LAMBDA_REF = 550.0
#: Default spectral sampling: 16 wavelengths over the visible range (31 moves < 0.6 % of the PSF's energy, 10 ~1.5 %).
WAVELENGTHS: tuple[float, ...] = tuple(np.linspace(400.0, 700.0, 16).tolist())
#: Aperture grid for the PSF: at 256² one PSF (16 FFTs and resamplings) takes 10–15 ms on a 2-core CPU.
PSF_GRID = 256

# XYZ → linear sRGB (D65), IEC 61966-2-1.
_XYZ_TO_RGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]], np.float64
)
# Multi-lobe piecewise-Gaussian fit of the CIE 1931 2° observer: (weight, mean, σ below mean, σ above mean).
_CMF_LOBES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "x": ((1.056, 599.8, 37.9, 31.0), (0.362, 442.0, 16.0, 26.7), (-0.065, 501.1, 20.4, 26.2)),
    "y": ((0.821, 568.8, 46.9, 40.5), (0.286, 530.9, 16.3, 31.1)),
    "z": ((1.217, 437.0, 11.8, 36.0), (0.681, 459.0, 26.0, 13.8)),
}
# Lamp colours (linear RGB, max 1): sodium vapour, warm white, cool LED, halogen headlamp, red signal.
_LAMP_TINTS = np.array(
    [[1.0, 0.55, 0.18], [1.0, 0.78, 0.5], [0.85, 0.92, 1.0], [1.0, 0.93, 0.8], [1.0, 0.12, 0.05]], np.float32
)
# Ghost tints from anti-reflection coatings (residual reflectance is strongest in green/magenta/blue/amber).
_COATING_TINTS = np.array(
    [[0.35, 1.0, 0.45], [1.0, 0.4, 0.9], [0.35, 0.6, 1.0], [1.0, 0.65, 0.25], [0.8, 0.95, 0.6]], np.float32
)


# -------------------------------------------------------------------------------------------------------- spectrum
def cie_xyz(wavelengths: Sequence[float] | np.ndarray) -> np.ndarray:
    """CIE 1931 x̄ȳz̄ at ``wavelengths`` (nm) from the Wyman–Sloan–Shirley analytic fit (K → K×3)."""
    lam = np.asarray(wavelengths, np.float64)
    out = np.zeros((lam.size, 3))
    for j, key in enumerate("xyz"):
        for weight, mean, below, above in _CMF_LOBES[key]:
            sigma = np.where(lam < mean, below, above)
            out[:, j] += weight * np.exp(-0.5 * ((lam - mean) / sigma) ** 2)
    return out


def spectral_weights(wavelengths: Sequence[float] | np.ndarray) -> np.ndarray:
    """Linear-sRGB contribution of each wavelength of an equal-energy source (K×3; may be negative off-gamut)."""
    return cie_xyz(wavelengths) @ _XYZ_TO_RGB.T


# -------------------------------------------------------------------------------------------------------- aperture
def aperture(
    n_blades: int,
    size: int,
    rng: np.random.Generator,
    dust: int = 0,
    scratches: int = 0,
    *,
    radius: float = 0.2,
    rounding: float = 0.0,
) -> np.ndarray:
    """Transmission of the lens aperture on a ``size``² grid (float32 in [0, 1], anti-aliased).

    The iris is a regular polygon of ``n_blades`` blades (0 = circle) at a random rotation, circumradius
    ``radius·size``; ``rounding`` in [0, 1] bows its edges out toward the circumcircle (curved blades weaken the
    spikes). ``dust`` opaque specks (discs of radius 0.3–1.5 % of the pupil diameter) and ``scratches`` thin lines
    lie anywhere on the pupil: each is a small obstacle whose diffraction (Babinet) spreads light far from the core —
    specks into ring-structured haze, lines into a long streak at right angles to them.
    """
    c = size / 2.0
    big_r = radius * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - np.float32(c), yy - np.float32(c)
    r = np.sqrt(dx * dx + dy * dy)
    rotation = rng.uniform(0.0, 2 * math.pi)
    if n_blades >= 3:
        sector = 2 * math.pi / n_blades
        theta = np.mod(np.arctan2(dy, dx) - np.float32(rotation), np.float32(sector)) - np.float32(sector / 2)
        edge = np.float32(big_r * math.cos(math.pi / n_blades)) / np.cos(theta)
        edge = (1.0 - np.float32(rounding)) * edge + np.float32(rounding * big_r)
    else:
        edge = np.full_like(r, big_r)
    mask = np.clip(edge - r + 0.5, 0.0, 1.0)

    if dust or scratches:
        occluder = np.zeros((size, size), np.uint8)
        shift = 4  # cv2 sub-pixel coordinates: fixed point with 4 fractional bits
        for _ in range(int(dust)):
            rho, phi = big_r * math.sqrt(rng.random()), rng.uniform(0.0, 2 * math.pi)
            centre = (round((c + rho * math.cos(phi)) * 16), round((c + rho * math.sin(phi)) * 16))
            disc_r = max(1, round(2 * big_r * rng.uniform(0.003, 0.015) * 16))
            cv2.circle(occluder, centre, disc_r, 255, -1, cv2.LINE_AA, shift)
        for _ in range(int(scratches)):
            rho, phi = big_r * math.sqrt(rng.random()), rng.uniform(0.0, 2 * math.pi)
            mx, my = c + rho * math.cos(phi), c + rho * math.sin(phi)
            angle, half = rng.uniform(0.0, math.pi), big_r * rng.uniform(0.3, 0.9)
            p0 = (round((mx - half * math.cos(angle)) * 16), round((my - half * math.sin(angle)) * 16))
            p1 = (round((mx + half * math.cos(angle)) * 16), round((my + half * math.sin(angle)) * 16))
            cv2.line(occluder, p0, p1, 255, 1, cv2.LINE_AA, shift)
        mask *= 1.0 - occluder.astype(np.float32) / 255.0
    return mask.astype(np.float32)


# ------------------------------------------------------------------------------------------------------------- PSF
def _wavefront(
    size: int, pupil_radius: float, rng: np.random.Generator, defocus: float, aberration: float
) -> np.ndarray:
    """Wavefront error in waves at LAMBDA_REF: defocus ``defocus·ρ²`` plus random astigmatism and coma."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = (xx - np.float32(size / 2.0)) / np.float32(pupil_radius)
    y = (yy - np.float32(size / 2.0)) / np.float32(pupil_radius)
    rho2 = x * x + y * y
    astig_x, astig_y, coma_x, coma_y = (rng.normal(0.0, aberration, 4) if aberration > 0 else np.zeros(4)).tolist()
    w = np.float32(defocus) * rho2
    w += np.float32(astig_x) * (x * x - y * y) + np.float32(astig_y) * (2 * x * y)
    w += (np.float32(coma_x) * x + np.float32(coma_y) * y) * (3 * rho2 - 2)
    return w


def psf_rgb(
    aperture: np.ndarray,
    rng: np.random.Generator,
    defocus: float = 0.0,
    wavelengths: Sequence[float] = WAVELENGTHS,
    *,
    aberration: float = 0.05,
) -> np.ndarray:
    """Polychromatic point-spread function of ``aperture``: H×W×3 float32 linear RGB, each channel summing to 1.

    Per wavelength λ the pupil field is ``A·exp(i·2π·W·λ_ref/λ)`` (a fixed optical path error is fewer waves at
    longer λ); its far-field intensity ``|FFT|²`` is computed on the λ_ref grid and magnified by λ/λ_ref about the
    centre, so red rings and spikes reach further than blue ones. ``defocus`` is the peak defocus in waves at the
    pupil edge (0 = in focus; ~1 smears the core into a ringed disc); ``aberration`` the σ, in waves, of random
    astigmatism and coma drawn from ``rng``. Wavelengths are weighted by the CIE colour matching functions, the sum
    converted to linear sRGB, negatives (out of gamut) clipped, and every channel normalised to unit energy, so a
    white source keeps its colour overall while the pattern shows the spectral fringes. Centred at (H//2, W//2).
    """
    if aperture.ndim != 2 or aperture.shape[0] != aperture.shape[1]:
        raise ValueError(f"aperture must be a square 2-D mask, got shape {aperture.shape}")
    size = aperture.shape[0]
    lam = np.asarray(wavelengths, np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError("wavelengths must be a non-empty 1-D sequence")
    open_ = aperture > 0.5
    if not open_.any():
        raise ValueError("aperture is fully opaque")
    yy, xx = np.nonzero(open_)
    pupil_radius = float(np.sqrt(((xx - size / 2.0) ** 2 + (yy - size / 2.0) ** 2).max())) + 0.5
    w = _wavefront(size, pupil_radius, rng, defocus, aberration)

    # (−1)^(x+y) on the pupil moves the zero frequency to (size//2, size//2): a free fftshift (size is even).
    yy, xx = np.indices((size, size))
    amp = (aperture * np.where((xx + yy) % 2 == 0, 1.0, -1.0)).astype(np.float32)
    phase = np.float32(2 * math.pi) * w
    fields = np.empty((lam.size, size, size), np.complex64)
    for k, lam_k in enumerate(lam):
        ph = phase * np.float32(LAMBDA_REF / lam_k)
        fields[k].real = amp * np.cos(ph)
        fields[k].imag = amp * np.sin(ph)
    spectra = scipy.fft.fft2(fields, axes=(-2, -1), workers=1, overwrite_x=True)
    intensity = np.square(spectra.real) + np.square(spectra.imag)

    c = float(size // 2)
    planes = np.empty((lam.size, size, size), np.float32)
    for k, lam_k in enumerate(lam):
        scale = lam_k / LAMBDA_REF  # dst(x) = src(c + (x − c)/scale): the pattern grows with λ
        inverse = np.array([[1 / scale, 0, c * (1 - 1 / scale)], [0, 1 / scale, c * (1 - 1 / scale)]], np.float32)
        cv2.warpAffine(
            intensity[k], inverse, (size, size), planes[k], cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0
        )
    planes /= np.maximum(planes.sum(axis=(1, 2), keepdims=True), np.float32(1e-30))
    weights = spectral_weights(lam).astype(np.float32)  # K×3
    out = (weights.T @ planes.reshape(lam.size, -1)).T.reshape(size, size, 3)
    np.maximum(out, 0.0, out=out)
    out /= np.maximum(out.sum(axis=(0, 1), keepdims=True), 1e-30)
    return out


def resize_psf(psf: np.ndarray, size: int) -> np.ndarray:
    """Resample a centred PSF to ``size``² (odd, so the centre stays a pixel), keeping unit energy per channel."""
    if size % 2 == 0:
        raise ValueError("PSF size must be odd")
    n = psf.shape[0]
    scale = size / n
    c_src, c_dst = n // 2, size // 2
    # Map dst → src so the PSF centre (n//2) lands exactly on the kernel centre (size//2).
    inverse = np.array([[1 / scale, 0, c_src - c_dst / scale], [0, 1 / scale, c_src - c_dst / scale]], np.float32)
    out = cv2.warpAffine(psf, inverse, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)
    out = np.maximum(out, 0.0)
    return (out / np.maximum(out.sum(axis=(0, 1), keepdims=True), 1e-30)).astype(np.float32)


def scatter_kernel(size: int, core: float, power: float) -> np.ndarray:
    """Veiling glare: light scattered by haze, grease and glass, ``(1 + (r/core)²)^−power`` on a ``size``² grid.

    Forward scattering by particles much larger than a wavelength is nearly neutral and falls off smoothly with
    angle: the soft glow that surrounds real lamps at night, far wider than the diffraction core. ``power`` > 1
    keeps its energy finite; unit sum.
    """
    c = size // 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r2 = ((xx - c) ** 2 + (yy - c) ** 2) / np.float32(core * core)
    out = np.power(1.0 + r2, np.float32(-power))
    return (out / out.sum()).astype(np.float32)


def radial_taper(kernel: np.ndarray, start: float = 0.3) -> np.ndarray:
    """Fade a centred kernel to zero on a circle (cos² from ``start``·radius to the edge), renormalised per channel.

    A kernel cut off at its square border prints that square around every bright source; a circular fade does
    not. Light lost beyond the circle is a few per cent of a glare kernel's energy.
    """
    n = kernel.shape[0]
    c = n // 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    r = np.sqrt((xx - c) ** 2 + (yy - c) ** 2) / np.float32(c + 0.5)
    fade = np.clip((1.0 - r) / np.float32(1.0 - start), 0.0, 1.0)
    window = np.sin(np.float32(math.pi / 2) * fade) ** 2
    out = kernel * (window[..., None] if kernel.ndim == 3 else window)
    return (out / np.maximum(out.sum(axis=(0, 1), keepdims=True), 1e-30)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True, eq=False)
class LightSource:
    """A bright emitter in the frame: where it is, which pixels it covers and how much light it really sends."""

    x: float  #: centroid, px
    y: float
    bbox: tuple[int, int, int, int]  #: x0, y0, x1, y1 (exclusive) of its pixels
    mask: np.ndarray  #: float32 weights over the bbox (1 = emitting)
    colour: tuple[float, float, float]  #: linear RGB, max 1
    energy: float  #: HDR radiance beyond what the sensor recorded, linear units × px (relative from find_sources)


def find_sources(lin: np.ndarray, threshold: float = 0.9, max_sources: int = 4) -> list[LightSource]:
    """Clipped highlights as light sources: connected components where max(R, G, B) ≥ ``threshold`` (linear).

    The max channel is used, not luminance, so saturated red signals and sodium lamps count. Up to
    ``max_sources`` components, largest first. Their ``energy`` is *relative* to a lamp (``render_flare`` scales
    it): a component of a lamp's area (a disc of 0.6 % of the diagonal) or more gets 1, smaller ones √(area /
    lamp area) — and extended highlights (sky, a lit wall) no more than a lamp, since they are no brighter than the
    white they clip at. The colour is the sum of linear RGB over the component and a 3-px ring around it: a
    coloured signal's own pixels, or the hue that survives in the fringe around a lamp's clipped white core.
    """
    h, w = lin.shape[:2]
    bright = (np.maximum(np.maximum(lin[..., 0], lin[..., 1]), lin[..., 2]) >= threshold).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(bright, connectivity=8)
    order = sorted(range(1, count), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))[:max_sources]
    lamp_area = math.pi * (0.006 * math.hypot(h, w)) ** 2
    pad = 3
    sources = []
    for i in order:
        x0, y0 = int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_TOP])
        x1, y1 = x0 + int(stats[i, cv2.CC_STAT_WIDTH]), y0 + int(stats[i, cv2.CC_STAT_HEIGHT])
        ex0, ey0, ex1, ey1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
        inside = (labels[ey0:ey1, ex0:ex1] == i).astype(np.uint8)
        around = cv2.dilate(inside, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8)).astype(bool)
        tint = lin[ey0:ey1, ex0:ex1][around].sum(axis=0)  # brightness-weighted: the core and its fringe dominate
        tint = np.maximum(tint, 1e-6 * max(float(tint.max()), 1e-6))
        area = int(stats[i, cv2.CC_STAT_AREA])
        sources.append(
            LightSource(
                x=float(centroids[i][0]),
                y=float(centroids[i][1]),
                bbox=(x0, y0, x1, y1),
                mask=(labels[y0:y1, x0:x1] == i).astype(np.float32),
                colour=tuple((tint / tint.max()).tolist()),
                energy=min(1.0, math.sqrt(area / lamp_area)),
            )
        )
    return sources


def paint_lamp(lin: np.ndarray, x: float, y: float, radius: float, colour: np.ndarray, energy: float) -> LightSource:
    """Paint a small clipped disc (a street lamp) into ``lin`` in place and return it as a light source.

    The centre is clamped into the frame. The painted core is 4× the tint, so it clips toward white as a real
    overexposed lamp does, its hue showing only where it is not saturated.
    """
    h, w = lin.shape[:2]
    x, y = float(np.clip(x, 0, w - 1)), float(np.clip(y, 0, h - 1))
    reach = int(math.ceil(radius + 1))
    x0, x1 = max(0, round(x) - reach), min(w, round(x) + reach + 1)
    y0, y1 = max(0, round(y) - reach), min(h, round(y) + reach + 1)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(x)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(y)
    mask = np.clip(np.float32(radius) - np.sqrt(dx * dx + dy * dy) + 0.5, 0.0, 1.0)
    core = np.asarray(colour, np.float32) / np.float32(max(float(np.max(colour)), 1e-6)) * np.float32(4.0)
    patch = lin[y0:y1, x0:x1]
    np.maximum(patch, mask[..., None] * core, out=patch)
    return LightSource(x, y, (x0, y0, x1, y1), mask, tuple((core / 4.0).tolist()), float(energy))


# ---------------------------------------------------------------------------------------------------------- ghosts
def ghost_centres(source: tuple[float, float], centre: tuple[float, float], alphas: Sequence[float]) -> np.ndarray:
    """Ghost positions ``c + α·(p − c)`` on the line through the optical centre ``c`` and the source ``p`` (n×2).

    α = −1 is the mirror point ``2c − p``; |α| ≠ 1 are reflections with other magnifications.
    """
    p, c = np.asarray(source, np.float64), np.asarray(centre, np.float64)
    return c[None, :] + np.asarray(alphas, np.float64)[:, None] * (p - c)[None, :]


def _ghost_sprite(shape: np.ndarray, radius: float, chroma: float, blur: float, ring: bool) -> np.ndarray:
    """The aperture shape scaled to ``radius`` px per channel (R, G, B sizes differ by ``chroma``: lateral colour)."""
    side = 2 * int(math.ceil(radius * (1 + abs(chroma)) + 2 * blur + 2)) + 1
    out = np.zeros((side, side, 3), np.float32)
    n = shape.shape[0]
    for ch, lam in enumerate((610.0, 550.0, 465.0)):
        r_c = radius * (1.0 + chroma * (lam - LAMBDA_REF) / LAMBDA_REF)
        scale = 2 * r_c / n
        shift = n / 2 - side / 2 / scale
        inverse = np.array([[1 / scale, 0, shift], [0, 1 / scale, shift]], np.float32)
        plane = cv2.warpAffine(shape, inverse, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if ring:
            inner = cv2.erode(plane, np.ones((3, 3), np.uint8), iterations=max(1, round(0.15 * r_c)))
            plane = plane - 0.7 * inner
        out[..., ch] = plane
    if blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    return out


def _add(canvas: np.ndarray, sprite: np.ndarray, x: float, y: float) -> None:
    """Add ``sprite`` (odd-sized, centred) to ``canvas`` in place with its centre at (x, y); clipped to the frame."""
    h, w = canvas.shape[:2]
    sh, sw = sprite.shape[:2]
    left, top = round(x) - sw // 2, round(y) - sh // 2
    x0, y0, x1, y1 = max(0, left), max(0, top), min(w, left + sw), min(h, top + sh)
    if x0 < x1 and y0 < y1:
        canvas[y0:y1, x0:x1] += sprite[y0 - top : y1 - top, x0 - left : x1 - left]


def add_light(lin: np.ndarray, light: np.ndarray) -> np.ndarray:
    """``lin + light`` with a highlight roll-off: ``lin + h·(1 − exp(−light/h))``, ``h = 1 − lin`` (headroom).

    Faint light adds linearly (the exponential's slope is 1 at 0); bright light saturates smoothly at white, as a
    camera's tone curve rolls highlights off, instead of the hard-edged white disc a plain clip would leave around
    every lamp. Existing pixels are unchanged where no light is added, so clipped highlights stay as they were.
    """
    base = np.clip(lin, 0.0, 1.0)
    headroom = np.maximum(1.0 - base, np.float32(1e-6))
    return base + headroom * -np.expm1(-np.maximum(light, 0.0) / headroom)


# ---------------------------------------------------------------------------------------------------------- render
def render_flare(
    image: np.ndarray,
    rng: np.random.Generator,
    severity: float,
    source: tuple[float, float] | None = None,
) -> np.ndarray:
    """Add an optically rendered lens flare to ``image``: glare and starburst around each light source, and ghosts.

    ``image``: uint8 sRGB H×W×3 (returned as uint8 sRGB) or float linear RGB (returned as linear RGB of the same
    dtype, in [0, 1]). Light sources are the clipped highlights (``find_sources``); with ``source=(x, y)`` a lamp
    is painted there instead, and a frame without any highlight gets one at a random place in its upper part, so
    the flare always has a visible cause.

    The lens is drawn from ``rng``: 5–9 blades, dust and scratches, defocus ≤ 0.6 waves; its ``psf_rgb`` is mixed
    with a ``scatter_kernel`` veiling glare (5–50 % of the energy: a clean lens shows a starburst, a greasy one a
    glow), sized to 0.6 of the frame diagonal, and convolved (FFT) with the sources' HDR radiance. Per severity
    ``s``: lamp energy ``0.02·20^s·diag²`` (linear units × px: brighter lamps saturate wider and their spikes and
    rings reach further), dust (20 … 120 specks) and scratches grow, and 2 + 3·s (+0…1) ghosts per source (the
    two largest) appear with reflectance ∝ ``g = 0.35 + 0.65·s``. The light is added in linear RGB with a highlight
    roll-off (``add_light``).
    """
    supported = image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating)
    if image.ndim != 3 or image.shape[2] != 3 or not supported:
        raise ValueError(f"expected an H×W×3 uint8 sRGB or float linear image, got {image.dtype} {image.shape}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    s = float(severity)
    lin = to_linear(image) if image.dtype == np.uint8 else np.array(image, np.float32)  # a copy: lamps are painted
    h, w = lin.shape[:2]
    diag = math.hypot(h, w)
    energy = 0.02 * 20.0**s * diag * diag

    blades = int(rng.integers(5, 10))
    kernel = _lens_kernel(blades, 2 * round(0.3 * diag) + 1, diag, s, rng)
    if source is not None:
        tint = _LAMP_TINTS[rng.integers(len(_LAMP_TINTS))]
        sources = [paint_lamp(lin, source[0], source[1], 0.006 * diag, tint, energy * rng.uniform(0.8, 1.2))]
    else:
        sources = [replace(src, energy=src.energy * energy * rng.uniform(0.6, 1.4)) for src in find_sources(lin)]
        if not sources:  # a street lamp, not a red signal: the scene gives no hint of a road
            tint = _LAMP_TINTS[rng.integers(len(_LAMP_TINTS) - 1)]
            x, y = rng.uniform(0.1, 0.9) * w, rng.uniform(0.08, 0.6) * h
            sources = [paint_lamp(lin, x, y, diag * rng.uniform(0.004, 0.009), tint, energy * rng.uniform(0.8, 1.2))]

    flare = convolve_sources(sources, kernel, (h, w))
    add_ghosts(flare, sources[:2], blades, (w / 2.0, h / 2.0), diag, s, rng)
    out = add_light(lin, flare)
    return to_srgb(out) if image.dtype == np.uint8 else np.clip(out, 0.0, 1.0).astype(image.dtype)


def convolve_sources(sources: Sequence[LightSource], kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The sources' HDR radiance convolved with ``kernel`` (odd, centred, H'×W'×3) on an ``shape`` frame (H×W×3).

    Only the box around the sources is transformed (FFT convolution of that crop, full output, pasted back at its
    offset), so one lamp costs a kernel-sized FFT rather than a frame-plus-kernel one. Same result as convolving
    the whole frame, up to float32 round-off, which is clipped at 0.
    """
    h, w = shape
    out = np.zeros((h, w, 3), np.float32)
    if not sources:
        return out
    bx0, by0 = min(src.bbox[0] for src in sources), min(src.bbox[1] for src in sources)
    bx1, by1 = max(src.bbox[2] for src in sources), max(src.bbox[3] for src in sources)
    radiance = np.zeros((by1 - by0, bx1 - bx0, 3), np.float32)
    for src in sources:
        x0, y0, x1, y1 = src.bbox
        per_px = src.energy / max(float(src.mask.sum()), 1e-6)
        radiance[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] += src.mask[..., None] * (
            np.asarray(src.colour, np.float32) * np.float32(per_px)
        )
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    # Crop the kernel to what can reach the frame from the box: a lamp in a corner needs only a quarter of it.
    # (output row = source row + kernel row − ry, and both must lie in the frame).
    ky0, ky1 = max(0, ry - by1 + 1), min(kernel.shape[0], ry + h - by0)
    kx0, kx1 = max(0, rx - bx1 + 1), min(kernel.shape[1], rx + w - bx0)
    full = fftconvolve(radiance, kernel[ky0:ky1, kx0:kx1], mode="full", axes=(0, 1))
    top, left = by0 - ry + ky0, bx0 - rx + kx0  # frame coordinates of full[0, 0]
    y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + full.shape[0]), min(w, left + full.shape[1])
    out[y0:y1, x0:x1] = full[y0 - top : y1 - top, x0 - left : x1 - left]
    return np.maximum(out, 0.0, out=out)


def _lens_kernel(blades: int, size: int, diag: float, s: float, rng: np.random.Generator) -> np.ndarray:
    """One random lens at severity ``s``: diffraction PSF + veiling glare on a ``size``² grid, unit energy."""
    mask = aperture(
        blades,
        PSF_GRID,
        rng,
        dust=int(rng.integers(20, 40) * (1 + 2 * s)),
        scratches=int(rng.integers(0, 2) + round(3 * s * rng.random())),
        radius=0.2,
        rounding=rng.uniform(0.0, 0.15),
    )
    psf = resize_psf(psf_rgb(mask, rng, defocus=rng.uniform(0.0, 0.6), aberration=0.05), size)
    share = rng.uniform(0.05, 0.5)  # clean lens: starburst; greasy lens or haze: glow
    glare = scatter_kernel(size, diag * rng.uniform(0.002, 0.006), rng.uniform(1.15, 1.4))
    return radial_taper((1.0 - share) * psf + share * glare[..., None])


def add_ghosts(
    flare: np.ndarray,
    sources: Sequence[LightSource],
    blades: int,
    centre: tuple[float, float],
    diag: float,
    s: float,
    rng: np.random.Generator,
) -> None:
    """Ghosts of each source, in place: soft, faint, coating-tinted images of the iris on the line through the centre.

    The first is at the mirror point (α = −1), the others at α ∈ [−1.8, 0.7]; a ghost's light is the source's
    energy × a reflectance of 0.02–0.15 % × g spread over its area, capped at 0.06·g linear — ghosts are faint
    next to the glare, and big ones fainter per pixel.
    """
    g = 0.35 + 0.65 * s
    iris = aperture(blades, 64, rng, radius=0.48, rounding=rng.uniform(0.0, 0.3))
    for src in sources:
        n = 2 + round(3 * s) + int(rng.integers(0, 2))
        alphas = [-1.0, *rng.uniform(-1.8, 0.7, n - 1).tolist()]
        colour = np.asarray(src.colour, np.float32)
        for (gx, gy), alpha in zip(ghost_centres((src.x, src.y), centre, alphas), alphas):
            radius = diag * rng.uniform(0.01, 0.045) * (0.6 + 0.6 * abs(alpha))
            reflectance = g * rng.uniform(0.2e-3, 1.5e-3)
            peak = min(0.06 * g, reflectance * src.energy / (math.pi * radius * radius))
            tint = 0.5 * (_COATING_TINTS[rng.integers(len(_COATING_TINTS))] + 1.0) * colour
            blur = rng.uniform(0.5, 0.12 * radius + 0.5)
            sprite = _ghost_sprite(iris, radius, rng.uniform(-0.12, 0.12), blur, rng.random() < 0.4)
            _add(flare, sprite * (tint * np.float32(peak)), gx, gy)


# ------------------------------------------------------------------------------------------------ night backgrounds
def night_background(
    rgb: np.ndarray, rng: np.random.Generator, lamps: int | None = None, severity: float | None = None
) -> np.ndarray:
    """A daylight photo turned into a night scene lit by ``lamps`` (default 1–3) street lamps. uint8 sRGB in and out.

    "Day for night" in linear light: the scene's reflectance (the photo, raised to γ ∈ [1.1, 1.4] so shadows sink
    faster than highlights) is lit by a faint ambient level (−(5 + 2·s) EV, ``s`` = ``severity`` or drawn uniform
    in [0, 1]: sky glow, moonlight) plus a pool of light
    under each lamp falling off as ``1 / (1 + (d/d₀)²)``, and given a sodium/tungsten-warm or LED/moonlight-cool
    cast. A plain exposure drop would leave the daylight sky as the brightest thing in the frame; with pools the
    far sky sinks to near black and the lamps' surroundings stay readable. Each lamp is painted as a small clipped
    disc, so ``render_flare`` finds it as a light source.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 RGB image, got {rgb.dtype} {rgb.shape}")
    if severity is not None and not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    lin = to_linear(rgb)
    h, w = lin.shape[:2]
    diag = math.hypot(h, w)
    reflectance = np.power(lin, np.float32(rng.uniform(1.1, 1.4)))
    cast = np.array([1.2, 1.0, 0.75] if rng.random() < 0.6 else [0.85, 0.95, 1.2], np.float32)
    ambient_ev = 5.0 + 2.0 * severity if severity is not None else rng.uniform(5.0, 7.0)
    light = np.full((h, w), np.float32(2.0**-ambient_ev), np.float32)
    positions = []
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(1, 4)) if lamps is None else lamps):
        x, y = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.55) * h
        positions.append((x, y))
        d0 = np.float32(diag * rng.uniform(0.12, 0.3))
        # the pool is centred below the lamp: it lights the street and walls beneath it more than the sky above
        d2 = (xx - np.float32(x)) ** 2 + (yy - np.float32(y + 0.08 * diag)) ** 2
        light += np.float32(2.0 ** -rng.uniform(1.5, 3.0)) / (1.0 + d2 / (d0 * d0))
    night = reflectance * light[..., None] * cast
    for x, y in positions:
        tint = _LAMP_TINTS[rng.integers(len(_LAMP_TINTS) - 1)]  # no red signals floating in the sky
        paint_lamp(night, x, y, diag * rng.uniform(0.003, 0.008), tint, 0.0)
    return to_srgb(night)
