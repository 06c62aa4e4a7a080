"""Physically motivated degradation synthesis with graded severity, for training the moderation flags and scores.

Every distortion takes a uint8 RGB image (H×W×3) and a ``severity`` in [0, 1] — 0 = just noticeable, 1 = extreme —
and returns a new uint8 RGB image of the same shape. The three *flag* distortions (low light, haze, lens flare) are
the conditions the service moderates; the *quality-only* ones (blur, noise, compression, resampling) lower quality
without raising a flag, so a flag head cannot learn "any damage = flag". All randomness comes from the
``numpy.random.Generator`` passed in, so a seed reproduces an image exactly.

Light is modelled in *linear* RGB: exposure, sensor noise, scattering and stray light all add or scale photon counts,
so those models convert sRGB → linear (exact sRGB transfer curve), act, and convert back. Applying them to gamma-coded
values instead would make haze too grey, flare too weak in highlights and noise wrong in shadows.

Parameters per severity ``s`` (pixel sizes are for ~512 px images; see docs/SYNTHESIS.md):

==============  ================================================================================================
low_light       net exposure drop 2 + 3.5·s EV (×1/4 … ×1/45 linear); photo-electrons at mid-grey 80·40^−s
                (SNR 9 … 1.4); read noise 1.5 + 2.5·s e⁻; illuminant cast (warm tungsten/sodium or cool
                moonlight/LED) of strength ∝ 0.4 + 0.6·s; tone gamma U(0.9, 1.25); ISP denoise smear w.p. ½
haze            t = exp(−β·d), β = 0.2·15^s (far-plane transmission 0.82 … 0.05), d = 0.1 + 0.9·(1 − depth),
                β varies ±20 % over the frame; airlight 0.75–0.95 (sRGB) with a slight blue or warm tint, dimmed
                in dark scenes by their log-average luminance
flare           strength g = 0.35 + 0.65·s scales glow, starburst (length 0.1 … 0.4 of the diagonal),
                3 + 5·s (+0…2) ghosts and veiling glare (linear 0.02 … 0.08·g)
flare_compact   ``flare`` whose source is a compact light: the brightest region only where it covers ≤ 1 % of the
                frame, else anywhere (the flare's saturated core is then the lamp); never a white sky (focus only)
flare_optics    ``flare_optics.render_flare``: diffraction PSF of a random aperture mixed with veiling glare, at the
                photo's clipped highlights (or a lamp), lamp energy 0.02·20^s·diag², 2 + 3·s ghosts (focus only)
night           ``flare_optics.night_background``: a lamp-lit night scene, ambient −(5 + 2·s) EV (focus only)
overexposure    exposure +0.7 + 2.3·s EV in linear light, clipped at white; no flag (focus only)
gaussian_blur   σ = 0.7 + 3.3·s px
motion_blur     linear kernel of 3 + 27·s px at a random angle
gaussian_noise  additive sRGB noise σ = (2 + 23·s)/255 per channel
sensor_noise    Poisson–Gaussian at normal exposure, 3000·50^−s e⁻ at white, read noise 2 e⁻
jpeg            OpenCV JPEG quality 80·(1/16)^s (80, 46, 15, 5 at s = 0, 0.2, 0.6, 1)
h264            one intra frame through libx264 (preset veryfast, yuv420p), CRF 24 + 27·s
resample        area downscale by 1.3 + 4.7·s, bilinear or bicubic upscale back
==============  ================================================================================================

Order of application (``ORDER``) follows the imaging chain: atmosphere (haze) → optics (blur) → exposure and sensor
(low light) → stray light from emitters (flare) → extra noise → ISP resampling → compression. Flare comes after low
light on purpose: the lamps and sun that cause flare do not dim with the scene, so a flare on a night shot must
stay bright; the price is that the flare layer carries no shot noise of its own.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import av
import cv2
import numpy as np

from stream_iqa.synthesis.color import (
    _LINEAR_TO_SRGB, _REC709, _lut_index, _srgb_decode, luminance, quantize, to_linear, to_srgb,
)
from stream_iqa.schema import DISTORTION_TYPES
from stream_iqa.synthesis import flare_optics

FLAG_KINDS: tuple[str, ...] = DISTORTION_TYPES  # the contract's flags, in its order
QUALITY_KINDS: tuple[str, ...] = (
    "gaussian_blur",
    "motion_blur",
    "gaussian_noise",
    "sensor_noise",
    "jpeg",
    "h264",
    "resample",
)
#: Physical order of the imaging chain; a recipe's steps are always applied in this order.
ORDER: tuple[str, ...] = (
    "haze",
    "gaussian_blur",
    "motion_blur",
    "low_light",
    "night",
    "overexposure",
    "flare",
    "flare_compact",
    "flare_optics",
    "sensor_noise",
    "gaussian_noise",
    "resample",
    "jpeg",
    "h264",
)
#: Steps that render a flag another way than its own kind: an optically rendered flare (``flare_optics``), the
#: sprite flare from a compact source only (``flare_compact``), and a daylight photo turned into a lamp-lit night
#: scene (``night``, which is low light by the flag's definition). Only focus sets draw them
#: (``sample_focus_pair``); ``sample_recipe`` never does, so its sets are unchanged by them.
STEP_FLAG: dict[str, str] = {"night": "low_light", "flare_optics": "flare", "flare_compact": "flare"}
#: ``overexposure`` raises no flag but looks like one to a detector keyed on brightness: an over-exposed shot clips
#: its sky, white clothes and sunlit walls to white, the pristine photos' flare (and haze) false alarm. Focus only.
#: Quality-only kinds that model the same stage; a two-step quality-only mixture never takes two from one group.
_QUALITY_GROUP: dict[str, str] = {
    "gaussian_blur": "blur",
    "motion_blur": "blur",
    "gaussian_noise": "noise",
    "sensor_noise": "noise",
    "jpeg": "compression",
    "h264": "compression",
    "resample": "resample",
}
#: bump when a change alters what a recipe produces: training caches are keyed by it
SYNTHESIS_VERSION = 2

#: Per-step impairment of a just-noticeable (severity 0) distortion, so a mild distortion never scores like clean.
JUST_NOTICEABLE = 0.1

def _check_image(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 RGB image, got {img.dtype} {img.shape}")


def _check_severity(severity: float) -> float:
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    return float(severity)


# ---------------------------------------------------------------------------------------------------------- low light
def low_light(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Under-exposure of a dim scene through a real sensor: darker, noisier, colour-cast, tone-shifted.

    Why each part: the exposure drop is what viewers call "too dark"; shot noise (Poisson in photo-electrons, so
    its *relative* size grows as light falls — SNR = √electrons) and amplified read noise are what makes dim
    footage look grainy rather than just dark; artificial light at night is rarely neutral and auto white balance
    under-corrects it; cameras change tone curves and smear noise away in low light.

    The net drop is at least 2 EV (×¼ linear light, mid-grey 0.46 → 0.24 in sRGB) even at severity 0, so a flag
    classifier can separate every severity from a normally exposed frame of the same scene; a scene that was
    already dark when shot is of course not separable by brightness alone, the noise is then the cue.
    """
    _check_image(img)
    s = _check_severity(severity)
    lin = to_linear(img)

    # Illuminant cast: gains normalised to unit luminance so the cast does not change exposure.
    warm = rng.random() < 0.6
    k = rng.uniform(0.3, 1.0) * (0.4 + 0.6 * s)
    gains = np.array([1 + 0.35 * k, 1.0, 1 - 0.45 * k] if warm else [1 - 0.3 * k, 1.0, 1 + 0.35 * k], np.float32)
    gains /= float(gains @ _REC709)

    ev = 2.0 + 3.5 * s
    # Electrons per unit of (darkened) linear signal, chosen so mid-grey collects 80·40^−s electrons.
    per_unit = 80.0 * 40.0**-s / (0.18 * 2.0**-ev)
    electrons = lin * (gains * np.float32(2.0**-ev * per_unit))
    noisy = _poisson_gaussian(electrons, 1.5 + 2.5 * s, rng)
    noisy *= np.float32(1.0 / per_unit)

    # Tone change folded into the linear → sRGB table: one lookup instead of a per-pixel power.
    tone = _LINEAR_TO_SRGB ** np.float32(rng.uniform(0.9, 1.25))
    srgb = tone[_lut_index(noisy)]
    if rng.random() < 0.5:
        srgb = _denoise_smear(srgb, s)
    return quantize(srgb)


def _poisson_gaussian(electrons: np.ndarray, read_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Photo-electron counts → noisy counts (in place): shot noise (variance = mean) plus Gaussian read noise.

    Uses the heteroscedastic Gaussian approximation of the Poisson–Gaussian model (Foi et al., 2008): exact in its
    first two moments, indistinguishable by eye above a few electrons, and ~7× faster than per-pixel Poisson draws.
    """
    sigma = np.sqrt(electrons + np.float32(read_sigma**2))
    sigma *= rng.standard_normal(electrons.shape, dtype=np.float32)
    electrons += sigma
    return electrons


def _denoise_smear(srgb: np.ndarray, s: float) -> np.ndarray:
    """A camera's low-light noise reduction: strong chroma blur, lighter luma blur (blotchy, waxy texture)."""
    ycc = cv2.cvtColor(srgb, cv2.COLOR_RGB2YCrCb)
    smeared = cv2.GaussianBlur(ycc, (0, 0), 1.5 + 2.0 * s)
    smeared[..., 0] = cv2.GaussianBlur(ycc[..., 0], (0, 0), 0.6 + 0.6 * s)
    return cv2.cvtColor(smeared, cv2.COLOR_YCrCb2RGB)


# --------------------------------------------------------------------------------------------------------------- haze
def haze(img: np.ndarray, depth: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Koschmieder's atmospheric scattering model ``I = J·t + A·(1 − t)``, ``t = exp(−β·d)``, in linear light.

    ``depth`` is relative inverse depth (near = 1, H×W in [0, 1]); scene distance is taken as
    ``d = 0.1 + 0.9·(1 − depth)`` so the nearest surface still sits a little behind the camera and the farthest at
    ``d = 1``. ``β = 0.35·(3/0.35)^s``: the farthest plane keeps 70 % of its light at severity 0 (a visible veil),
    28 % at 0.6 and 5 % at 1 (dense fog). The faint end started at 82 % until the first training run showed such
    veils to be indistinguishable from the natural aerial perspective of clean landscape photos — not a condition a
    moderator would flag. Real haze is not homogeneous, so β is modulated ±20 % by a smooth random field.

    The airlight — the colour of the horizon seen through infinite haze — is grey with a slight blue (clean mist)
    or warm (polluted air, low sun) tint, at 0.75–0.95 of white in daylight. It is in-scattered ambient light, so
    it scales with the illumination: the scene's log-average linear luminance over 0.12 (the median of our
    daylight photo set is 0.14), clamped to [0.3, 1], dims it for dusk and dim indoor frames, where a white veil
    would look pasted on.
    """
    _check_image(img)
    s = _check_severity(severity)
    h, w = img.shape[:2]
    if depth.shape != (h, w):
        raise ValueError(f"depth map shape {depth.shape} does not match the image {(h, w)}")

    field_ = cv2.resize(rng.uniform(-1.0, 1.0, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    beta = np.float32(0.35 * (3.0 / 0.35) ** s) * (1.0 + 0.2 * np.clip(field_, -1.0, 1.0))
    distance = np.float32(0.1) + np.float32(0.9) * (1.0 - np.clip(depth.astype(np.float32), 0.0, 1.0))
    t = np.exp(-beta * distance)[..., None]

    lin = to_linear(img)
    small = cv2.resize(lin, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    key = float(np.exp(np.log(luminance(small) + 1e-4).mean()))
    level = rng.uniform(0.75, 0.95)
    tint = np.array([-0.03, 0.0, 0.04] if rng.random() < 0.5 else [0.04, 0.01, -0.04], np.float32)
    colour = _srgb_decode(np.clip(level * (1.0 + rng.uniform(0.0, 1.0) * tint), 0.0, 1.0))
    airlight = (colour * np.clip(key / 0.12, 0.3, 1.0)).astype(np.float32)
    return to_srgb(lin * t + airlight * (1.0 - t))


# --------------------------------------------------------------------------------------------------------- lens flare
@dataclass(frozen=True)
class Ghost:
    """One internal reflection of the source: an image of the aperture (polygon) or a disc, possibly a ring."""

    centre: tuple[float, float]  #: (x, y) in pixels
    radius: float  #: circumradius in pixels
    sides: int  #: aperture blades; 0 = disc
    rotation: float  #: radians
    colour: tuple[float, float, float]  #: linear RGB radiance added at the centre (coating tint × intensity)
    ring: bool  #: bright rim, fainter inside


@dataclass(frozen=True)
class FlareLayout:
    """Geometry and strength of one lens flare; ``sample_flare_layout`` draws it, ``render_flare`` paints it."""

    source: tuple[float, float]  #: (x, y) in pixels; may lie outside the frame
    centre: tuple[float, float]  #: optical centre, (x, y) in pixels
    colour: tuple[float, float, float]  #: source tint in linear RGB, max 1
    glow_gain: float
    glow_core: float  #: core radius, px
    glow_halo: float  #: halo radius, px
    streak_gain: float
    streak_length: float  #: px
    streak_angles: tuple[float, ...]
    streak_lengths: tuple[float, ...]  #: per-spike length factors
    ghosts: tuple[Ghost, ...]
    veil: float  #: veiling glare, linear radiance added across the frame


_GHOST_TINTS = np.array(
    [[0.35, 1.0, 0.45], [1.0, 0.35, 0.9], [0.3, 0.6, 1.0], [1.0, 0.6, 0.2], [0.9, 0.9, 0.6]], np.float32
)
_SOURCE_TINTS = np.array([[1.0, 0.95, 0.85], [1.0, 0.78, 0.5], [0.9, 0.95, 1.0]], np.float32)


#: ``compact_source``: the largest share of the frame (at 1/8 scale, linear luminance at least half the peak) that the
#: brightest region may cover and still be taken as the flare's source. A lamp or the sun subtends a small angle; a
#: white sky, a sunlit wall or white clothes cover far more than 1 % of the frame and emit nothing of their own.
COMPACT_SOURCE_AREA = 0.01


def sample_flare_layout(
    img: np.ndarray, severity: float, rng: np.random.Generator, compact_source: bool = False
) -> FlareLayout:
    """Draw a flare: source at the brightest region (if bright enough, 70 %) or anywhere incl. just off-frame.

    Ghosts sit on the line from the source through the optical centre, at ``centre + α·(source − centre)``:
    reflections between lens surfaces image the source with magnification α, mostly negative (mirrored through the
    centre). They take the aperture's polygon shape and the tint of the anti-reflection coatings.

    ``compact_source``: the brightest region is the source only when it is compact (``COMPACT_SOURCE_AREA``), as a
    lamp or the sun is; otherwise the source is drawn anywhere, and where it falls inside the frame the flare's own
    saturated core is the light. So no flare has a white sky or a sunlit surface as its origin: those are what the
    card says flare is not, and a flare grown from them looks like the unflared photo (the ``flare_compact`` step).
    The draws are the same as without it, so the two differ only where a large bright region would be the source.
    """
    _check_image(img)
    s = _check_severity(severity)
    h, w = img.shape[:2]
    diag = math.hypot(h, w)
    g = 0.35 + 0.65 * s

    small = cv2.resize(img, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    lum = cv2.GaussianBlur(luminance(to_linear(small)), (0, 0), 1.0)
    _, peak, _, (px, py) = cv2.minMaxLoc(lum)
    at_peak = rng.random() < 0.7
    if compact_source and peak > 0.6 and float((lum >= 0.5 * peak).mean()) > COMPACT_SOURCE_AREA:
        at_peak = False
    if peak > 0.6 and at_peak:
        source = ((px + 0.5) * w / small.shape[1], (py + 0.5) * h / small.shape[0])
    else:
        source = (rng.uniform(-0.15, 1.15) * w, rng.uniform(-0.15, 0.75) * h)
    centre = (w / 2.0, h / 2.0)
    colour = _SOURCE_TINTS[rng.integers(len(_SOURCE_TINTS))] * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    colour = colour / colour.max()

    blades = int(rng.integers(5, 9))
    spikes = blades if blades % 2 == 0 else 2 * blades  # diffraction: odd blade counts give twice the spikes
    rotation = rng.uniform(0.0, 2 * math.pi / spikes)
    angles = tuple(rotation + 2 * math.pi * k / spikes for k in range(spikes))
    lengths = tuple(rng.uniform(0.6, 1.3, spikes).tolist())

    ghosts = []
    for _ in range(3 + round(5 * s) + int(rng.integers(0, 3))):
        alpha = rng.uniform(-1.6, 0.7)
        radius = diag * rng.uniform(0.015, 0.07) * (0.6 + 0.5 * abs(alpha))
        # Light spread over a bigger ghost is fainter per pixel; small ghosts are the bright ones.
        intensity = g * rng.uniform(0.1, 0.35) * float(np.clip(0.03 * diag / radius, 0.3, 1.5))
        tint = _GHOST_TINTS[rng.integers(len(_GHOST_TINTS))] * colour
        ghosts.append(
            Ghost(
                centre=(centre[0] + alpha * (source[0] - centre[0]), centre[1] + alpha * (source[1] - centre[1])),
                radius=float(radius),
                sides=blades if rng.random() < 0.6 else 0,
                rotation=float(rotation),
                colour=tuple((tint * intensity).tolist()),
                ring=bool(rng.random() < 0.3),
            )
        )
    return FlareLayout(
        source=(float(source[0]), float(source[1])),
        centre=centre,
        colour=tuple(colour.tolist()),
        glow_gain=g,
        glow_core=diag * (0.012 + 0.02 * s),
        glow_halo=diag * (0.04 + 0.08 * s),
        streak_gain=g * rng.uniform(0.1, 0.3),
        streak_length=diag * (0.1 + 0.3 * s),
        streak_angles=angles,
        streak_lengths=lengths,
        ghosts=tuple(ghosts),
        veil=g * rng.uniform(0.02, 0.08),
    )


def render_flare(img: np.ndarray, layout: FlareLayout) -> np.ndarray:
    """Add the flare's light to the image in linear RGB and clip where the sensor saturates.

    Components: a saturated core with a Lorentzian halo (scatter in glass and on dust), a diffraction starburst of
    thin spikes, ghosts, and veiling glare — a near-uniform wash, slightly stronger toward the source, that lifts
    the blacks and flattens contrast across the whole frame.
    """
    _check_image(img)
    h, w = img.shape[:2]
    sx, sy = layout.source
    dx = np.arange(w, dtype=np.float32)[None, :] - np.float32(sx)
    dy = np.arange(h, dtype=np.float32)[:, None] - np.float32(sy)
    r = np.sqrt(dx * dx + dy * dy)

    glow = 3.0 * np.exp(-((r / np.float32(layout.glow_core)) ** 2)) + 0.5 / (1.0 + (r / np.float32(layout.glow_halo)) ** 2)
    veil_shape = 0.6 + 0.4 * np.exp(-r / np.float32(math.hypot(h, w)))
    light = (np.float32(layout.glow_gain) * glow + _streaks(h, w, layout) + np.float32(layout.veil) * veil_shape)
    out = to_linear(img) + light[..., None] * np.asarray(layout.colour, np.float32)
    for ghost in layout.ghosts:
        _add_ghost(out, ghost)
    return to_srgb(out)


def _streaks(h: int, w: int, layout: FlareLayout) -> np.ndarray:
    """Diffraction spikes, rendered at half resolution (they are smooth along their length) and upsampled."""
    hh, hw = max(1, (h + 1) // 2), max(1, (w + 1) // 2)
    dx = (np.arange(hw, dtype=np.float32)[None, :] + 0.5) * np.float32(w / hw) - np.float32(layout.source[0])
    dy = (np.arange(hh, dtype=np.float32)[:, None] + 0.5) * np.float32(h / hh) - np.float32(layout.source[1])
    out = np.zeros((hh, hw), np.float32)
    for angle, factor in zip(layout.streak_angles, layout.streak_lengths):
        length = np.float32(layout.streak_length * factor)
        c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        along = np.maximum(dx * c + dy * s, 0.0)
        perp = dx * s - dy * c
        width = np.float32(1.2) * (1.0 + 2.0 * along / length)  # spikes widen slightly with distance
        out += np.exp(-0.5 * (perp / width) ** 2 - along / (0.25 * length))
    return cv2.resize(out * np.float32(layout.streak_gain), (w, h), interpolation=cv2.INTER_LINEAR)


def _add_ghost(lin: np.ndarray, ghost: Ghost) -> None:
    """Add one soft-edged ghost in place, touching only its bounding box."""
    h, w = lin.shape[:2]
    cx, cy = ghost.centre
    reach = ghost.radius * 1.2
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    r = np.sqrt(dx * dx + dy * dy)
    edge = np.full_like(r, ghost.radius)
    if ghost.sides:
        sector = 2 * math.pi / ghost.sides
        theta = np.mod(np.arctan2(dy, dx) - ghost.rotation, sector) - sector / 2
        edge = np.float32(ghost.radius * math.cos(math.pi / ghost.sides)) / np.cos(theta)
    soft = np.float32(max(1.0, 0.12 * ghost.radius))
    mask = np.clip((edge - r) / soft + 0.5, 0.0, 1.0)
    if ghost.ring:
        mask *= 0.3 + 0.7 * np.clip(r / edge, 0.0, 1.0) ** 4
    lin[y0:y1, x0:x1] += mask[..., None] * np.asarray(ghost.colour, np.float32)


def lens_flare(
    img: np.ndarray, severity: float, rng: np.random.Generator, compact_source: bool = False
) -> np.ndarray:
    """Lens flare from a bright source: glow, starburst, ghosts along the optical axis line, veiling glare."""
    return render_flare(img, sample_flare_layout(img, severity, rng, compact_source=compact_source))


# ------------------------------------------------------------------------------------------- quality-only distortions
def gaussian_blur(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Defocus-like blur, σ = 0.7 + 3.3·s px (a Gaussian is the usual stand-in for a lens' out-of-focus PSF)."""
    _check_image(img)
    sigma = 0.7 + 3.3 * _check_severity(severity)
    return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def motion_blur(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Camera shake / panning: a straight anti-aliased line PSF of 3 + 27·s px at a random angle."""
    _check_image(img)
    length = 3.0 + 27.0 * _check_severity(severity)
    angle = rng.uniform(0.0, math.pi)
    size = int(math.ceil(length)) | 1
    half = (size - 1) / 2
    dx, dy = 0.5 * (length - 1) * math.cos(angle), 0.5 * (length - 1) * math.sin(angle)
    canvas = np.zeros((size * 4, size * 4), np.uint8)  # draw at 4× for sub-pixel accuracy, then area-reduce
    p0 = (round((half - dx) * 4 + 1.5), round((half - dy) * 4 + 1.5))
    p1 = (round((half + dx) * 4 + 1.5), round((half + dy) * 4 + 1.5))
    cv2.line(canvas, p0, p1, 255, thickness=4, lineType=cv2.LINE_AA)
    kernel = cv2.resize(canvas.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def gaussian_noise(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Signal-independent additive noise in sRGB, σ = (2 + 23·s)/255 per channel (transmission/ADC noise)."""
    _check_image(img)
    sigma = np.float32((2.0 + 23.0 * _check_severity(severity)) / 255.0)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return quantize(img.astype(np.float32) / 255.0 + noise)


def sensor_noise(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson–Gaussian sensor noise at *normal* exposure: 3000·50^−s electrons at white, 2 e⁻ read noise.

    Unlike ``low_light`` the exposure is unchanged, so this is a quality loss (small sensor, high ISO in daylight)
    and not a flag.
    """
    _check_image(img)
    per_unit = 3000.0 * 50.0 ** -_check_severity(severity)
    noisy = _poisson_gaussian(to_linear(img) * np.float32(per_unit), 2.0, rng)
    noisy *= np.float32(1.0 / per_unit)
    return to_srgb(noisy)


def jpeg(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Baseline JPEG through OpenCV (blocking, ringing, chroma loss) at quality ``80·(1/16)^s``: 80 … 5.

    The quality is geometric in severity because visible damage is: 80 → 40 is barely noticed, 10 → 5 is not.
    """
    _check_image(img)
    return _jpeg_roundtrip(img, _jpeg_quality(_check_severity(severity)))


def _jpeg_quality(s: float) -> int:
    return round(80 * (1 / 16) ** s)


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode JPEG")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


@functools.cache
def h264_available() -> bool:
    """Whether PyAV's FFmpeg has the libx264 encoder (wheels normally do; minimal FFmpeg builds may not)."""
    try:
        av.codec.Codec("libx264", "w")
    except ValueError:
        return False
    return True


def h264(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """The image as one H.264 intra frame (libx264, preset veryfast as in live streaming, yuv420p), CRF 24 + 27·s.

    Streams are what the service sees, and H.264's artefacts (deblocked smearing, 4:2:0 chroma, intra prediction
    streaks) differ from JPEG's blocks. Odd sizes are edge-padded to even for 4:2:0 and cropped back. If the FFmpeg
    inside PyAV has no libx264, this falls back to ``jpeg`` at the same severity and warns once; the
    recipe still says ``h264``, so check ``h264_available()`` before drawing conclusions about H.264 specifically.
    """
    _check_image(img)
    s = _check_severity(severity)
    if not h264_available():
        warnings.warn("libx264 is not available in PyAV; 'h264' falls back to JPEG", RuntimeWarning, stacklevel=2)
        return _jpeg_roundtrip(img, _jpeg_quality(s))
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = padded.shape[1], padded.shape[0]
    encoder.pix_fmt = "yuv420p"
    encoder.options = {"crf": str(round(24 + 27 * s)), "preset": "veryfast"}
    frame = av.VideoFrame.from_ndarray(padded, format="rgb24").reformat(format="yuv420p")
    packets = [*encoder.encode(frame), *encoder.encode(None)]
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in [*packets, None] for f in decoder.decode(p)]
    if not frames:
        raise RuntimeError("libx264 round trip produced no frame")
    return np.ascontiguousarray(frames[0].to_ndarray(format="rgb24")[:h, :w])


def resample(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Downscale by 1.3 + 4.7·s (area) and upscale back (bilinear or bicubic): low-bitrate ladders, digital zoom."""
    _check_image(img)
    factor = 1.3 + 4.7 * _check_severity(severity)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(2, round(w / factor)), max(2, round(h / factor))), interpolation=cv2.INTER_AREA)
    up = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(small, (w, h), interpolation=up)


def overexposure(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Exposure pushed up by 0.7 + 2.3·s EV in linear light and clipped at the sensor's white: large areas (sky,
    white clothes, sunlit walls) turn flat white without any glare around them."""
    _check_image(img)
    gain = np.float32(2.0 ** (0.7 + 2.3 * _check_severity(severity)))
    return to_srgb(np.minimum(to_linear(img) * gain, 1.0))


def _night(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    return flare_optics.night_background(img, rng, severity=severity)


def _flare_optics(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    return flare_optics.render_flare(img, rng, severity)


# ----------------------------------------------------------------------------------------------------------- recipes
_Apply = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]
_APPLY: dict[str, _Apply] = {
    "low_light": lambda img, depth, s, rng: low_light(img, s, rng),
    "haze": haze,
    "flare": lambda img, depth, s, rng: lens_flare(img, s, rng),
    "flare_compact": lambda img, depth, s, rng: lens_flare(img, s, rng, compact_source=True),
    "night": lambda img, depth, s, rng: _night(img, s, rng),
    "flare_optics": lambda img, depth, s, rng: _flare_optics(img, s, rng),
    "overexposure": lambda img, depth, s, rng: overexposure(img, s, rng),
    "gaussian_blur": lambda img, depth, s, rng: gaussian_blur(img, s, rng),
    "motion_blur": lambda img, depth, s, rng: motion_blur(img, s, rng),
    "gaussian_noise": lambda img, depth, s, rng: gaussian_noise(img, s, rng),
    "sensor_noise": lambda img, depth, s, rng: sensor_noise(img, s, rng),
    "jpeg": lambda img, depth, s, rng: jpeg(img, s, rng),
    "h264": lambda img, depth, s, rng: h264(img, s, rng),
    "resample": lambda img, depth, s, rng: resample(img, s, rng),
}


@dataclass(frozen=True)
class Recipe:
    """Distortions to apply, as (kind, severity) pairs; stored as a tuple sorted in imaging-chain order (``ORDER``)."""

    steps: Sequence[tuple[str, float]] = ()

    def __post_init__(self) -> None:
        checked = []
        for kind, severity in self.steps:
            if kind not in _APPLY:
                raise ValueError(f"unknown distortion {kind!r}; known: {', '.join(ORDER)}")
            checked.append((str(kind), _check_severity(severity)))
        kinds = [k for k, _ in checked]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"a recipe applies each distortion at most once, got {kinds}")
        raised = [STEP_FLAG.get(k, k) for k in kinds if STEP_FLAG.get(k, k) in FLAG_KINDS]
        if len(set(raised)) != len(raised):
            raise ValueError(f"a recipe renders each flag at most once, got {kinds}")
        object.__setattr__(self, "steps", tuple(sorted(checked, key=lambda step: ORDER.index(step[0]))))

    @property
    def flags(self) -> dict[str, int]:
        """Moderation labels: 1 for each flag distortion present, at any severity."""
        raised = {STEP_FLAG.get(k, k) for k, _ in self.steps}
        return {kind: int(kind in raised) for kind in FLAG_KINDS}

    @property
    def severity(self) -> float:
        """Overall impairment in [0, 1]: ``1 − Π(1 − i_k)`` with ``i_k = 0.1 + 0.9·s_k`` per step.

        Independent impairments compound (two mild ones are worse than either), and a just-noticeable step still
        counts 0.1, so only a clean image scores 0.
        """
        keep = 1.0
        for _, s in self.steps:
            keep *= 1.0 - (JUST_NOTICEABLE + (1.0 - JUST_NOTICEABLE) * s)
        return 1.0 - keep


def sample_recipe(
    rng: np.random.Generator, p_clean: float = 0.15, p_mixture: float = 0.35, p_flag: float = 0.6
) -> Recipe:
    """Draw a training recipe: clean with ``p_clean``; otherwise a two-step mixture with ``p_mixture`` or one step.

    A single step is a flag distortion with ``p_flag`` (the labels the service moderates), else quality-only.
    Mixtures are flag+flag (30 %: foggy dusk, sun through mist), flag+quality (45 %: the common case of a flagged
    condition in a compressed stream) or quality+quality (25 %, from different stages, so a flag is never implied
    by "lots of damage"). Severities are uniform in [0, 1].
    """
    if rng.random() < p_clean:
        return Recipe()
    if rng.random() < p_mixture:
        mix = rng.choice(3, p=[0.30, 0.45, 0.25])
        if mix == 0:
            kinds = list(rng.choice(FLAG_KINDS, size=2, replace=False))
        elif mix == 1:
            kinds = [rng.choice(FLAG_KINDS), rng.choice(QUALITY_KINDS)]
        else:
            first = rng.choice(QUALITY_KINDS)
            others = [k for k in QUALITY_KINDS if _QUALITY_GROUP[k] != _QUALITY_GROUP[first]]
            kinds = [first, rng.choice(others)]
    else:
        kinds = [rng.choice(FLAG_KINDS) if rng.random() < p_flag else rng.choice(QUALITY_KINDS)]
    return Recipe([(str(kind), float(rng.random())) for kind in kinds])


def sample_focus_pair(
    rng: np.random.Generator, kind: str, night: float = 0.0, overexposed: float = 0.0
) -> list[Recipe]:
    """A recipe that contains the flag step ``kind`` and its twin without it: extra examples of one hard flag (the
    trainer's ``focus`` and ``optics_flare``).

    ``kind`` is a flag (``flare``) or a step that renders one (``flare_optics``). The flag comes alone (50 %), with
    another flag (20 %) or with a quality-only distortion (30 %), severities uniform in [0, 1]. The twin keeps the
    other step (a lone flag's twin is the photo with a random quality-only distortion, or clean), so the two differ
    only by the flag: a detector trained on both learns the flag, not the photo's content or the damage beside it
    (thin bright lines, a radial bouquet and haze were what a branch trained on positives alone mistook for flare).

    With probability ``night`` both twins are set in a lamp-lit night scene (the ``night`` step; it replaces a
    drawn low light): the twin then shows the lamps without their flare, the "plain lights vs flare" case. With
    probability ``overexposed`` a daylight pair is over-exposed in both twins: the twin is then clipped white sky
    and sunlit surfaces without glare. These draws come last, and only when asked for, so ``night=0,
    overexposed=0`` gives exactly the pairs it always gave.
    """
    flag = STEP_FLAG.get(kind, kind)
    if flag not in FLAG_KINDS or kind == "night":
        raise ValueError(f"focus kind {kind!r} is not a flag ({', '.join(FLAG_KINDS)}) or a flag's renderer")
    if night and flag == "low_light":
        raise ValueError("a night scene is itself low light: it cannot be the twin of a low-light focus pair")
    u = rng.random()
    other: list[tuple[str, float]] = []
    if u >= 0.5:
        other_kind = str(rng.choice([k for k in FLAG_KINDS if k != flag])) if u < 0.7 else str(rng.choice(QUALITY_KINDS))
        other = [(other_kind, float(rng.random()))]
    with_flag = [(kind, float(rng.random())), *other]
    if not other and rng.random() < 0.5:
        other = [(str(rng.choice(QUALITY_KINDS)), float(rng.random()))]
    scene: list[tuple[str, float]] = []
    if night > 0 and rng.random() < night:
        scene = [("night", float(rng.random()))]
    elif overexposed > 0 and rng.random() < overexposed:
        scene = [("overexposure", float(rng.random()))]
    if scene:  # the scene sets the exposure: a drawn low light gives way to it, in both twins
        with_flag, other = ([st for st in steps if st[0] != "low_light"] + scene for steps in (with_flag, other))
    return [Recipe(with_flag), Recipe(other)]


def apply_recipe(img: np.ndarray, depth: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """Apply ``recipe`` to a uint8 RGB image with its inverse-depth map (H×W, near = 1); returns a new uint8 image."""
    _check_image(img)
    if depth.shape != img.shape[:2]:
        raise ValueError(f"depth map shape {depth.shape} does not match the image {img.shape[:2]}")
    out = img
    for kind, severity in recipe.steps:
        out = _APPLY[kind](out, depth, severity, rng)
    return out.copy() if out is img else out
