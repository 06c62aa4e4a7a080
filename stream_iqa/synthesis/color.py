"""sRGB ↔ linear light for the degradations and the optical flare: light adds, and clips, in linear RGB.

Table-driven (a 256-entry decode, a 65,536-step encode) because every synthetic image passes through both several
times; shared by ``degradations`` and ``flare_optics`` so neither imports the other for a colour curve.
"""

from __future__ import annotations

import numpy as np

_REC709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _srgb_decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


_SRGB_TO_LINEAR = _srgb_decode(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


def to_linear(img: np.ndarray) -> np.ndarray:
    """uint8 sRGB → float32 linear RGB in [0, 1] (exact transfer curve, via a 256-entry table)."""
    return _SRGB_TO_LINEAR[img]


def _srgb_encode_exact(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


# Linear → sRGB through a 65,536-step table: 3–5× faster than evaluating the power law per pixel, and its worst error
# (next to black, where the curve is steepest) is 0.05 of an 8-bit code.
_LUT_STEPS = 65535
_LINEAR_TO_SRGB = _srgb_encode_exact(np.linspace(0.0, 1.0, _LUT_STEPS + 1)).astype(np.float32)
_LINEAR_TO_U8 = (_LINEAR_TO_SRGB * 255.0 + 0.5).astype(np.uint8)


def _lut_index(lin: np.ndarray) -> np.ndarray:
    return (np.clip(lin, 0.0, 1.0, dtype=np.float32) * np.float32(_LUT_STEPS) + np.float32(0.5)).astype(np.int32)


def quantize(srgb: np.ndarray) -> np.ndarray:
    """float sRGB in [0, 1] → uint8 with rounding."""
    return (np.clip(srgb, 0.0, 1.0, dtype=np.float32) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def to_srgb(lin: np.ndarray) -> np.ndarray:
    """float linear RGB → uint8 sRGB, clipped to [0, 1] first: the sensor and the display saturate."""
    return _LINEAR_TO_U8[_lut_index(lin)]


def luminance(lin: np.ndarray) -> np.ndarray:
    """Rec. 709 relative luminance of linear RGB (…×3 → …)."""
    return lin @ _REC709
