"""Contact sheet of every synthetic distortion at severities 0.2 / 0.6 / 1.0, for eyeballing the models.

    stream-iqa synthesis-sheet docs/img/synthesis.png --palette  # the figure in docs/SYNTHESIS.md
    stream-iqa synthesis-sheet OUT.png [--image PHOTO] [--work 512] [--tile 176] [--seed 0]

The first row is the clean image and the prior's inverse depth (near = bright) that drives haze; each further row
is one distortion, with the same seed across a row so that only the severity changes along it. Distortions run at
``--work`` px wide — the scale their pixel parameters are tuned for — and tiles are area-downscaled from that, so
fine noise looks weaker than at full size. The default photo is scikit-learn's ``china.jpg`` (Summer Palace,
Beijing, by danielbuechele on Flickr, CC BY 2.0): daylight, sky and real distance, so darkening, depth-dependent
haze and flare ghosts all show. ``--palette`` quantises to 256 colours (Floyd–Steinberg dithered) so the sheet fits
the docs' 400 KB budget; leave it off to inspect artefacts exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from stream_iqa.depth.prior import PriorDepth
from stream_iqa.synthesis.degradations import FLAG_KINDS, QUALITY_KINDS, Recipe, apply_recipe

SEVERITIES: tuple[float, ...] = (0.2, 0.6, 1.0)
LABEL_W = 116
GAP = 4


def _load(image: Path | None, work: int) -> np.ndarray:
    if image is None:
        from sklearn.datasets import load_sample_image

        rgb = load_sample_image("china.jpg")
    else:
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {image}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (work, round(h * work / w)), interpolation=cv2.INTER_AREA)


def _label(text: str, height: int) -> np.ndarray:
    cell = np.full((height, LABEL_W, 3), 255, np.uint8)
    for i, line in enumerate(text.split("\n")):
        cv2.putText(cell, line, (4, height // 2 - 4 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return cell


def make_sheet(img: np.ndarray, tile: int, seed: int) -> np.ndarray:
    """Rows of [label, severity 0.2, 0.6, 1.0] tiles under a header row of [clean, prior depth]."""
    rgb = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    depth = PriorDepth()(rgb)[0, 0].numpy()
    th = round(img.shape[0] * tile / img.shape[1])

    def fit(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, (tile, th), interpolation=cv2.INTER_AREA)

    def row(label: str, tiles: list[np.ndarray]) -> np.ndarray:
        blank = np.full((th, tile, 3), 255, np.uint8)
        cells = [_label(label, th)]
        for t in tiles + [blank] * (len(SEVERITIES) - len(tiles)):
            cells += [t, np.full((th, GAP, 3), 255, np.uint8)]
        return np.concatenate(cells[:-1], axis=1)

    depth_grey = np.repeat((depth[..., None] * 255 + 0.5).astype(np.uint8), 3, axis=2)  # grey keeps the palette free
    rows = [row("clean |\nprior depth", [fit(img), fit(depth_grey)])]
    for kind in FLAG_KINDS + QUALITY_KINDS:
        tiles = []
        for severity in SEVERITIES:
            rng = np.random.default_rng(seed)  # same draws per severity, so only the severity changes along a row
            tiles.append(fit(apply_recipe(img, depth, Recipe([(kind, severity)]), rng)))
        rows.append(row(kind.replace("_", " "), tiles))
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for i, severity in enumerate(SEVERITIES):
        x = LABEL_W + i * (tile + GAP) + tile // 2 - 40
        cv2.putText(header, f"severity {severity:.1f}", (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    spacer = np.full((GAP, rows[0].shape[1], 3), 255, np.uint8)
    parts = [header]
    for r in rows:
        parts += [r, spacer]
    return np.concatenate(parts[:-1], axis=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--image", type=Path, default=None, help="photo to degrade (default: scikit-learn china.jpg)")
    parser.add_argument("--work", type=int, default=512, help="width the distortions run at")
    parser.add_argument("--tile", type=int, default=176, help="tile width in the sheet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--palette", action="store_true", help="quantise to 256 colours (small file)")
    args = parser.parse_args(argv)

    sheet = Image.fromarray(make_sheet(_load(args.image, args.work), args.tile, args.seed))
    if args.palette:
        sheet = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {sheet.width}×{sheet.height})")
