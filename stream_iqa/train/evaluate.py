"""Validation figures for the student: correlation with human scores and flag separability on unseen content.

``evaluate_arrays`` runs on the cached training-resolution arrays (fast, used after every epoch);
``evaluate_images`` runs the full public path (file → depth source → ``model.score``) on any MOS data set layout,
which is what ``stream-iqa eval`` reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from tqdm import tqdm

from stream_iqa.depth.base import DepthSource
from stream_iqa.metrics import auroc, correlation_report
from stream_iqa.nn.api import DISTORTIONS, ScoringModel
from stream_iqa.images import read_rgb, to_tensor
from stream_iqa.train.dataset import ArraySet


@torch.inference_mode()
def predict_arrays(model: Any, data: ArraySet, batch_size: int = 64, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Quality (0–100; uncalibrated when ``raw``) and flag probabilities for every item of an ArraySet."""
    was_training = model.training
    model.eval()
    qs, fs = [], []
    for i in range(0, len(data), batch_size):
        rgb = torch.from_numpy(data.rgb[i : i + batch_size]).permute(0, 3, 1, 2).float().div_(255.0)
        depth = torch.from_numpy(data.depth[i : i + batch_size]).unsqueeze(1).float().div_(255.0)
        x, d = model.preprocess(rgb, depth)
        q_logit, f_logits = model(x, d)
        q = torch.sigmoid(q_logit) * 100.0
        qs.append((q if raw else model.calibrate(q)).numpy())
        fs.append(torch.sigmoid(f_logits).numpy())
    model.train(was_training)
    return np.concatenate(qs), np.concatenate(fs)


def flag_report(probs: np.ndarray, flags: np.ndarray, severity: np.ndarray, threshold: float) -> dict[str, Any]:
    """Per-flag AUROC, and how often images without that distortion — pristine ones especially — get flagged."""
    out: dict[str, Any] = {}
    pristine = severity == 0
    none_flagged = flags.sum(1) == 0
    for j, name in enumerate(DISTORTIONS):
        y = flags[:, j]
        out[f"auroc_{name}"] = auroc(probs[:, j], y) if 0 < y.sum() < len(y) else float("nan")
    any_flag = (probs >= threshold).any(1)
    out["pristine_flagged"] = float(any_flag[pristine].mean()) if pristine.any() else float("nan")
    out["unflagged_flagged"] = float(any_flag[none_flagged].mean()) if none_flagged.any() else float("nan")
    out["n_pristine"] = int(pristine.sum())
    return out


def evaluate_arrays(model: Any, synthetic: ArraySet | None, mos: ArraySet | None, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if synthetic is not None and len(synthetic):
        q, p = predict_arrays(model, synthetic)
        out["synthetic"] = flag_report(p, synthetic.flags, synthetic.severity, threshold)
        out["synthetic"]["weak_srocc"] = correlation_report(q, synthetic.weak)["srocc"]
    if mos is not None and len(mos):
        q, _ = predict_arrays(model, mos)
        out["mos"] = correlation_report(q, mos.mos)
    return out


def fit_calibration(model: Any, data: ArraySet, knots: int = 21) -> dict[str, Any]:
    """A monotone piecewise-linear map from the network's raw 0–100 output to the MOS scale, fitted by isotonic
    regression on the MOS photos the model was trained on. Monotone, so rankings (SROCC) are unchanged."""
    m = ~np.isnan(data.mos)
    if m.sum() < 20:
        return {"kind": "identity"}
    sub = ArraySet(data.rgb[m], data.depth[m], data.mos[m], data.weak[m], data.flags[m], data.group[m],
                   data.severity[m], [n for n, k in zip(data.names, m) if k])
    raw, _ = predict_arrays(model, sub, raw=True)
    iso = IsotonicRegression(y_min=0.0, y_max=100.0, out_of_bounds="clip").fit(raw, sub.mos)
    xs = np.unique(np.quantile(raw, np.linspace(0, 1, knots)))
    xs = np.concatenate([[0.0], xs, [100.0]])
    xs = np.unique(xs)
    ys = np.maximum.accumulate(iso.predict(xs))
    return {"kind": "piecewise_linear", "x": [round(float(v), 4) for v in xs], "y": [round(float(v), 4) for v in ys],
            "fitted_on": f"{int(m.sum())} MOS training photos (isotonic regression)"}


@torch.inference_mode()
def score_images(model: ScoringModel, depth: DepthSource, paths: list[Path], batch_size: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
    """The public scoring path on image files: whole image → depth source → ``model.score``."""
    qs: list[float] = []
    fs: list[np.ndarray] = []
    for path in tqdm(paths, desc="scoring", leave=False, disable=None):
        rgb = to_tensor(read_rgb(path))
        out = model.score(rgb, depth(rgb))
        qs.append(float(out.quality[0]))
        if out.distortions is not None:
            fs.append(out.distortions[0].cpu().numpy())
    return np.asarray(qs), (np.stack(fs) if fs else None)


def evaluate_images(model: ScoringModel, depth: DepthSource, items: list[Any]) -> dict[str, Any]:
    q, _ = score_images(model, depth, [i.path for i in items])
    return {"n": len(items), **correlation_report(q, np.asarray([i.mos for i in items]))}
