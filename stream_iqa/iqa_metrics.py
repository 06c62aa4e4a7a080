"""Agreement between predicted quality and human scores: the figures IQA papers report, computed one way everywhere.

Conventions: every function takes ``(pred, target)`` as 1-D array-likes of equal length. Rank statistics come from
scipy (the maintained implementations, with tie corrections). PLCC and RMSE are computed, by default, after fitting
the predictions to the MOS with a monotonic 4-parameter logistic (VQEG FR-TV Phase II): a model's scale is arbitrary
(BRISQUE is 0–100 with lower = better, a network's output may be bent), and PLCC should measure how well the model
*orders and spaces* images, not whether its units happen to be linear in MOS. The 4-parameter form is the default
rather than the 5-parameter one of Sheikh et al. (2006) because it is monotonic by construction, so the mapping can
never reorder predictions, and its fewer parameters fit stably on small validation sets (~140 images). Use
``mapping="logistic5"`` to match papers that used Sheikh's form, and ``mapping="none"`` for raw Pearson, which is what
most deep NR-IQA papers print for models trained to regress MOS directly.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import scipy.optimize
import scipy.stats
from numpy.typing import ArrayLike, NDArray

Mapping = Literal["logistic4", "logistic5", "none"]


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validated float copies: mismatched lengths, NaN or fewer than 3 points are caller bugs, not a NaN metric."""
    x = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"pred and target differ in length: {x.size} vs {y.size}")
    if x.size < 3:
        raise ValueError(f"need at least 3 pairs, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("pred and target must be finite")
    return x, y


def srocc(pred: ArrayLike, target: ArrayLike) -> float:
    """Spearman rank-order correlation (ties get average ranks)."""
    x, y = _pair(pred, target)
    return float(scipy.stats.spearmanr(x, y).statistic)


def krocc(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall rank-order correlation, tau-b (corrects for ties on either side)."""
    x, y = _pair(pred, target)
    return float(scipy.stats.kendalltau(x, y).statistic)


def _logistic4(x: NDArray[np.float64], b1: float, b2: float, b3: float, b4: float) -> NDArray[np.float64]:
    """VQEG 4-parameter logistic: from ``b2`` (x → −∞) to ``b1`` (x → +∞), centred at ``b3``, width ``|b4|``."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def _logistic5(
    x: NDArray[np.float64], b1: float, b2: float, b3: float, b4: float, b5: float
) -> NDArray[np.float64]:
    """Sheikh et al. (2006) 5-parameter logistic: a logistic of height ``b1`` plus a linear term ``b4·x + b5``."""
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(b2 * (x - b3)))) + b4 * x + b5


def fit_mapping(pred: ArrayLike, target: ArrayLike, mapping: Mapping = "logistic4") -> NDArray[np.float64]:
    """Predictions mapped onto the target's scale by least squares (``mapping="none"`` returns them unchanged).

    Predictions are standardised before fitting so that one starting point works for any score scale; the start
    follows the sign of the rank correlation, so inversely scaled scores (BRISQUE) fit without negating them first.
    ``least_squares`` is used rather than ``curve_fit`` because it returns its best parameters even when it stops on
    the evaluation budget, where ``curve_fit`` raises.
    """
    x, y = _pair(pred, target)
    if mapping == "none":
        return x
    spread = x.std()
    if spread == 0.0:
        return np.full_like(y, y.mean())
    z = (x - x.mean()) / spread
    sign = 1.0 if scipy.stats.spearmanr(z, y).statistic >= 0 else -1.0
    lo, hi = float(y.min()), float(y.max())
    if mapping == "logistic4":
        start = [hi, lo, 0.0, 1.0] if sign > 0 else [lo, hi, 0.0, 1.0]
        curve = _logistic4
    elif mapping == "logistic5":
        start = [sign * (hi - lo), 1.0, 0.0, 0.0, float(y.mean())]
        curve = _logistic5
    else:
        raise ValueError(f"unknown mapping {mapping!r}; use 'logistic4', 'logistic5' or 'none'")
    with np.errstate(over="ignore"):  # exp overflow on steep trial curves saturates correctly to 0 or 1
        fit = scipy.optimize.least_squares(lambda b: curve(z, *b) - y, start, max_nfev=10_000)
        return curve(z, *fit.x)


def plcc(pred: ArrayLike, target: ArrayLike, mapping: Mapping = "logistic4") -> float:
    """Pearson linear correlation after :func:`fit_mapping` (default 4-parameter logistic; ``"none"``: raw Pearson).

    The fitted curve absorbs the direction of the scale, so the mapped correlation alone would be positive even for
    a lower-is-better score; it is given the sign of the mapping's trend (decreasing → negative) so that PLCC, SROCC
    and KROCC of one prediction always agree in sign. NaN when the mapping is flat (constant predictions).
    """
    x, y = _pair(pred, target)
    mapped = fit_mapping(x, y, mapping)
    if np.ptp(mapped) == 0.0:
        return float("nan")
    trend = 1.0 if scipy.stats.pearsonr(mapped, x).statistic >= 0 else -1.0
    return trend * float(scipy.stats.pearsonr(mapped, y).statistic)


def rmse(pred: ArrayLike, target: ArrayLike, mapping: Mapping = "logistic4") -> float:
    """Root-mean-square error in target units after :func:`fit_mapping` (``"none"`` if pred is already on MOS)."""
    x, y = _pair(pred, target)
    return float(np.sqrt(np.mean((fit_mapping(x, y, mapping) - y) ** 2)))


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve from ranks: the Mann–Whitney U of positives vs negatives over ``n_pos · n_neg``.

    Equals the probability that a random positive scores above a random negative, ties counting one half (scipy's
    U uses mid-ranks). ``labels`` are booleans or 0/1, positive = 1.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    raw = np.asarray(labels).reshape(-1)
    if s.shape != raw.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {raw.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    if not np.isin(raw, (0, 1)).all():
        raise ValueError("labels must be booleans or 0/1")
    positive = raw.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes, got {n_pos} positives and {n_neg} negatives")
    u = scipy.stats.mannwhitneyu(s[positive], s[~positive], alternative="two-sided").statistic
    return float(u) / (n_pos * n_neg)


def correlation_report(pred: ArrayLike, mos: ArrayLike, mapping: Mapping = "logistic4") -> dict[str, float | int]:
    """SROCC, KROCC, PLCC (mapped and raw) and mapped RMSE in one dict, the row an IQA results table needs."""
    x, y = _pair(pred, mos)
    return {
        "n": int(x.size),
        "srocc": srocc(x, y),
        "krocc": krocc(x, y),
        "plcc": plcc(x, y, mapping),
        "plcc_raw": plcc(x, y, "none"),
        "rmse": rmse(x, y, mapping),
    }


class BootstrapCI(NamedTuple):
    """A point estimate and its confidence interval."""

    estimate: float
    low: float
    high: float


def _spearman_along(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """Spearman along ``axis`` for a batch of resamples: Pearson of mid-ranks (what ``spearmanr`` computes)."""
    rx = scipy.stats.rankdata(x, axis=axis)
    ry = scipy.stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    denom = np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=axis) / denom


def srocc_bootstrap_ci(
    pred: ArrayLike,
    target: ArrayLike,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    method: Literal["BCa", "percentile", "basic"] = "BCa",
) -> BootstrapCI:
    """SROCC with a paired bootstrap confidence interval (``scipy.stats.bootstrap``; BCa corrects bias and skew).

    Why: on a ~140-image validation set SROCC moves by several hundredths between resamples, so two models' figures
    mean little without an interval. Pairs are resampled together; ``seed`` makes the interval reproducible.
    A perfect ranking (±1) resamples only to itself, where BCa's acceleration is 0/0, so it returns a zero-width
    interval.
    """
    x, y = _pair(pred, target)
    estimate = srocc(x, y)
    if abs(estimate) > 1.0 - 1e-12:  # spearmanr's float rounding can leave 0.9999999999999998
        return BootstrapCI(estimate, estimate, estimate)
    result = scipy.stats.bootstrap(
        (x, y),
        _spearman_along,
        n_resamples=n_resamples,
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        method=method,
        rng=np.random.default_rng(seed),
    )
    return BootstrapCI(estimate, float(result.confidence_interval.low), float(result.confidence_interval.high))
