"""The contact sheet of optically rendered flares beside the real light-effect photos (docs/SYNTHESIS.md).

    stream-iqa flare-sheet docs/img/flare-optics-sheet.png

Tooling, not runtime: it reads ``../shared/data``; the renderer it shows is ``stream_iqa.synthesis.flare_optics``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stream_iqa.synthesis.color import to_linear
from stream_iqa.synthesis.flare_optics import night_background, render_flare

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
#: real light-effect photos shown on the sheet (of the 14 in real/flare/photos_unpaired): glow, glare, starbursts
SHEET_REAL: tuple[str, ...] = (
    "lighteffects_DSC00637.jpg",
    "lighteffects_DSC01257_input.jpg",
    "lighteffects_DSC01065.jpg",
    "lighteffects_DSC00983.jpg",
    "lighteffects_DSC00701.jpg",
    "lighteffects_DSC01607_input.jpg",
)
SHEET_LOW: tuple[str, ...] = ("lolv1_100.jpg", "lolv1_12.jpg", "lolv1_113.jpg")
SHEET_NATURAL: tuple[str, ...] = (
    "Sun_Hays80/street_sun_bkgpqbvgorkjqzgp.jpg",
    "Sun_Hays80/highway_sun_bpflsdaxnddnwcqi.jpg",
    "Sun_Hays80/house_sun_bgjytsucreqesmlo.jpg",
)
SHEET_SEVERITIES: tuple[float, ...] = (0.3, 0.6, 0.9, 0.3, 0.6, 0.9)


def _read_rgb(path: Path, width: int | None = None) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if width is not None and rgb.shape[1] != width:
        h = round(rgb.shape[0] * width / rgb.shape[1])
        rgb = cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA)
    return rgb


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Area-downscale into a w×h black letterbox."""
    scale = min(w / img.shape[1], h / img.shape[0])
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    cell = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    cell[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return cell


def _crop_around(img: np.ndarray, x: float, y: float, w: int, h: int) -> np.ndarray:
    """A 1:1 w×h crop centred as near (x, y) as the frame allows."""
    x0 = int(np.clip(round(x) - w // 2, 0, max(0, img.shape[1] - w)))
    y0 = int(np.clip(round(y) - h // 2, 0, max(0, img.shape[0] - h)))
    return _fit(img[y0 : y0 + h, x0 : x0 + w], w, h)


def _brightest(img: np.ndarray) -> tuple[float, float]:
    lum = cv2.GaussianBlur(to_linear(img).max(axis=2), (0, 0), 4.0)
    _, _, _, (x, y) = cv2.minMaxLoc(lum)
    return float(x), float(y)


def _text_row(text: str, width: int, height: int = 20) -> np.ndarray:
    row = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(row, text, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return row


def flare_sheet(
    out_png: Path,
    real_dir: Path = SHARED_DATA / "real" / "flare" / "photos_unpaired",
    *,
    low_dir: Path = SHARED_DATA / "real" / "low_light" / "low",
    natural_dir: Path = SHARED_DATA / "natural",
    tile: int = 160,
    seed: int = 0,
    work: int = 512,
) -> Path:
    """Write a contact sheet: rendered flares on night backgrounds above real light-effect photos.

    Rows: (1) flares rendered at ``work`` px wide on three LOL low-light captures (no lamp in them, so the renderer
    places one) and three darkened natural photos with lamps, severities 0.3 / 0.6 / 0.9 each; (2) 1:1 crops of
    the same renders around their brightest point, where the diffraction fringes and ghosts are visible; (3) six
    real night photos with glare and flare from ``real_dir`` and (4) their 1:1 crops. Thumbnails are ``tile`` px
    wide (4:3 cells). The images are read where they are; only the derived thumbnail sheet is written.
    """
    th = tile * 3 // 4
    gap = np.full((th, 4, 3), 255, np.uint8)

    def strip(cells: list[np.ndarray]) -> np.ndarray:
        parts: list[np.ndarray] = []
        for cell in cells:
            parts += [cell, gap]
        return np.concatenate(parts[:-1], axis=1)

    rendered, crops = [], []
    backgrounds = [("low", _read_rgb(low_dir / name, work)) for name in SHEET_LOW]
    for i, name in enumerate(SHEET_NATURAL):
        photo = _read_rgb(natural_dir / name, work)
        backgrounds.append(("natural", night_background(photo, np.random.default_rng(seed + 100 + i))))
    for i, ((_, bg), severity) in enumerate(zip(backgrounds, SHEET_SEVERITIES)):
        out = render_flare(bg, np.random.default_rng(seed + i), severity)
        x, y = _brightest(out)
        cell = _fit(out, tile, th)
        label = f"s={severity:.1f}"
        cv2.putText(cell, label, (4, th - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
        rendered.append(cell)
        crops.append(_crop_around(out, x, y, tile, th))
    real, real_crops = [], []
    for name in SHEET_REAL:
        photo = _read_rgb(real_dir / name, work)
        x, y = _brightest(photo)
        real.append(_fit(photo, tile, th))
        real_crops.append(_crop_around(photo, x, y, tile, th))

    width = strip(rendered).shape[1]
    rows = [
        _text_row("rendered (flare_optics): LOL low-light captures x3 | darkened natural photos with lamps x3", width),
        strip(rendered),
        _text_row("rendered, 1:1 crops around the brightest point", width),
        strip(crops),
        _text_row("real night photos with glare / flare (Jin et al., ECCV 2022 light-effects data)", width),
        strip(real),
        _text_row("real, 1:1 crops around the brightest point", width),
        strip(real_crops),
    ]
    sheet = np.concatenate(rows, axis=0)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"cannot write {out_png}")
    return out_png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Contact sheet of optically rendered flares beside real ones.")
    parser.add_argument("out", type=Path, help="PNG to write (docs/img/flare-optics-sheet.png for the docs)")
    parser.add_argument("--real-dir", type=Path, default=SHARED_DATA / "real" / "flare" / "photos_unpaired")
    parser.add_argument("--tile", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = flare_sheet(args.out, args.real_dir, tile=args.tile, seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
