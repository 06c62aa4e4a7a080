"""BRISQUE (Mittal et al., 2012) as a reference point: the ``brisque`` package's SVR trained on LIVE IQA.

Score direction: BRISQUE is roughly 0–100 with **lower = better**, the opposite of MOS. Compare it with MOS through
the negated score (``-brisque``), so that SROCC/PLCC are positive when BRISQUE agrees with people; that is what
``main`` reports.

What brisque 0.2.0 does (read from its source in site-packages), and why this wrapper does not call ``score``:

* Model files ship in the wheel: ``brisque/models/svm.txt`` (libsvm ε-SVR, RBF, 770 support vectors; the original
  LIVE "allmodel") and ``normalize.pickle`` (per-feature min/max for scaling to [-1, 1]). Nothing is downloaded:
  ``requests`` is imported at module level but only used by ``BRISQUE(url=True)`` to fetch an *image* from a URL.
  The wrapper passes the two paths explicitly after checking they exist, because libsvm's loader only prints
  "can't open model file" and returns ``None`` when one is missing.
* ``BRISQUE.score`` raises ``TypeError`` under the pinned numpy 2.4: some features are 1-element arrays (its
  ``mean_squares_sum`` divides by a shape tuple) and ``float()`` of a 1-D array is an error there (deprecated
  since 1.25). :func:`brisque_score` therefore runs score()'s steps itself with the package's own methods: grey via
  ``skimage.color.rgb2gray``, the 18 features at full size and at half size (``cv2.resize``, bicubic), features
  flattened to float64, then the SVR. It also skips score()'s first MSCN pass, whose result is never used.

Cost per 500×500 image, one process: 72 ms on an otherwise idle CPU core (95–120 ms when the 2-core machine was
shared), plus ~2 ms JPEG decoding; ``scipy.signal.convolve2d`` for the local mean and variance takes half of it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import skimage.color
from brisque import BRISQUE
from brisque.models import MODEL_PATH

from stream_iqa.data.mos import MOSItem, load_clive, split_items
from stream_iqa.images import read_rgb
from stream_iqa.iqa_metrics import correlation_report, srocc_bootstrap_ci


@lru_cache(maxsize=1)
def _model() -> BRISQUE:
    """The packaged LIVE-trained model, loaded once per process (parsing svm.txt takes ~0.1 s)."""
    svm_path = Path(MODEL_PATH) / "svm.txt"
    norm_path = Path(MODEL_PATH) / "normalize.pickle"
    for path in (svm_path, norm_path):
        if not path.is_file():
            raise FileNotFoundError(f"BRISQUE model file missing from the brisque package: {path}")
    return BRISQUE(url=False, model_path={"svm": str(svm_path), "normalize": str(norm_path)})


def brisque_score(image: np.ndarray) -> float:
    """BRISQUE of one image (lower = better): RGB or grey, uint8 or float in [0, 1]; alpha is ignored."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")
    model = _model()
    gray = skimage.color.rgb2gray(image[:, :, :3])
    full = model.calculate_brisque_features(gray, kernel_size=7, sigma=7 / 6)
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    coarse = model.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)
    features = np.array([np.asarray(f, dtype=np.float64).item() for f in (*full, *coarse)])
    return float(model.calculate_image_quality_score(features))


def brisque_scores(paths: Iterable[str | Path]) -> np.ndarray:
    """BRISQUE of each image file, in order, as float64 (lower = better; negate to compare with MOS)."""
    return np.array([brisque_score(read_rgb(p)) for p in paths], dtype=np.float64)


def _report_line(name: str, items: Sequence[MOSItem], scores: np.ndarray, n_resamples: int, seed: int) -> str:
    """One results row for a subset: correlations of -BRISQUE with MOS and a bootstrap interval for SROCC."""
    mos = np.array([item.mos for item in items])
    report = correlation_report(-scores, mos)
    ci = srocc_bootstrap_ci(-scores, mos, n_resamples=n_resamples, seed=seed)
    return (
        f"{name}: n={len(items)}  SROCC={report['srocc']:.4f} (95% BCa CI {ci.low:.4f}–{ci.high:.4f})  "
        f"PLCC={report['plcc']:.4f} (4-p logistic; raw {report['plcc_raw']:.4f})  KROCC={report['krocc']:.4f}  "
        f"RMSE={report['rmse']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Print BRISQUE's agreement with CLIVE MOS on the whole subset and on the val part of ``split_items``."""
    parser = argparse.ArgumentParser(description="BRISQUE baseline on the CLIVE subset (correlations of -BRISQUE).")
    parser.add_argument("--clive", type=Path, required=True, help="folder with mos.csv and images/")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="split_items val fraction (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="split_items and bootstrap seed (default 0)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the SROCC CI")
    args = parser.parse_args(argv)

    items = load_clive(args.clive)
    _model()  # load outside the timed loop
    decode_s = score_s = 0.0
    shapes: set[tuple[int, int]] = set()
    score_of: dict[MOSItem, float] = {}
    for item in items:
        t0 = time.perf_counter()
        image = read_rgb(item.path)
        t1 = time.perf_counter()
        score_of[item] = brisque_score(image)
        decode_s += t1 - t0
        score_s += time.perf_counter() - t1
        shapes.add((image.shape[1], image.shape[0]))

    _, val = split_items(items, args.val_fraction, seed=args.seed)
    sizes = ", ".join(f"{w}x{h}" for w, h in sorted(shapes))
    print(f"BRISQUE (brisque 0.2.0, LIVE-trained SVR) vs MOS on {args.clive}: correlations of -BRISQUE")
    print(f"time per image ({sizes}, 1 process): {1000 * score_s / len(items):.1f} ms BRISQUE"
          f" + {1000 * decode_s / len(items):.1f} ms decode")
    for name, subset in (("all", items), (f"val (split_items {args.val_fraction}, seed={args.seed})", val)):
        scores = np.array([score_of[item] for item in subset])
        print(_report_line(name, subset, scores, args.bootstrap, args.seed))
