"""Metrics against hand-computed values, scipy and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from stream_iqa.iqa_metrics import (
    auroc,
    correlation_report,
    fit_mapping,
    krocc,
    plcc,
    rmse,
    srocc,
    srocc_bootstrap_ci,
)

X = [1.0, 2.0, 3.0, 4.0, 5.0]
Y = [2.0, 1.0, 4.0, 3.0, 5.0]  # two adjacent swaps


def test_rank_correlations_known_values() -> None:
    assert srocc(X, Y) == pytest.approx(0.8)  # 1 - 6·Σd²/(n(n²-1)) = 1 - 6·4/120
    assert krocc(X, Y) == pytest.approx(0.6)  # (8 concordant - 2 discordant) / 10


def test_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 6, 80).astype(float)
    mos = pred * 10 + rng.normal(0, 15, 80)
    assert srocc(pred, mos) == pytest.approx(scipy.stats.spearmanr(pred, mos).statistic)
    assert krocc(pred, mos) == pytest.approx(scipy.stats.kendalltau(pred, mos).statistic)
    assert plcc(pred, mos, "none") == pytest.approx(scipy.stats.pearsonr(pred, mos).statistic)
    assert rmse(pred, mos, "none") == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))


@pytest.mark.parametrize("mapping", ["logistic4", "logistic5", "none"])
def test_perfect_and_inverse_rankings(mapping: str) -> None:
    mos = np.linspace(0, 100, 40)
    pred = mos * 0.3 + 7
    assert srocc(pred, mos) == pytest.approx(1.0)
    assert krocc(pred, mos) == pytest.approx(1.0)
    assert plcc(pred, mos, mapping) == pytest.approx(1.0, abs=1e-6)  # type: ignore[arg-type]
    assert srocc(-pred, mos) == pytest.approx(-1.0)
    assert krocc(-pred, mos) == pytest.approx(-1.0)
    # the mapping absorbs the reversed scale, the sign reports it, so PLCC agrees with SROCC in sign
    assert plcc(-pred, mos, mapping) == pytest.approx(-1.0, abs=1e-6)  # type: ignore[arg-type]


def test_logistic_mapping_straightens_a_monotone_curve() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 200)
    mos = 10 + 80 / (1 + np.exp(-2.0 * x))  # exactly a 4-parameter logistic of x
    assert plcc(x, mos) == pytest.approx(1.0, abs=1e-6)
    assert rmse(x, mos) == pytest.approx(0.0, abs=1e-4)
    assert fit_mapping(x, mos) == pytest.approx(mos, abs=1e-3)
    assert plcc(x, mos, "none") < 0.97  # raw Pearson is penalised by the bend
    inverse = -np.exp(x)  # lower = better and bent, like BRISQUE
    assert plcc(inverse, mos) < -0.99
    assert plcc(inverse, mos, "logistic5") < -0.99


def test_constant_predictions_give_nan_plcc_and_mean_rmse() -> None:
    mos = np.array([10.0, 20.0, 60.0])
    assert np.isnan(plcc(np.ones(3), mos))
    assert rmse(np.ones(3), mos) == pytest.approx(np.std(mos))


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        srocc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        plcc([1, 2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        krocc([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="unknown mapping"):
        plcc(X, Y, "cubic")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 5, 200) + labels  # many ties, within and across classes
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert auroc(scores, labels.astype(bool)) == pytest.approx(roc_auc_score(labels, scores))


def test_auroc_extremes_and_errors() -> None:
    labels = [0, 0, 1, 1]
    assert auroc([1, 2, 3, 4], labels) == 1.0
    assert auroc([4, 3, 2, 1], labels) == 0.0
    assert auroc([7, 7, 7, 7], labels) == 0.5  # all tied: each pair counts one half
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 2, 3], [1, 1, 1])
    with pytest.raises(ValueError, match="0/1"):
        auroc([1, 2, 3], [0, 2, 1])


def test_correlation_report() -> None:
    rng = np.random.default_rng(3)
    mos = rng.uniform(0, 100, 100)
    pred = mos + rng.normal(0, 20, 100)
    report = correlation_report(pred, mos)
    assert set(report) == {"n", "srocc", "krocc", "plcc", "plcc_raw", "rmse"}
    assert report["n"] == 100
    assert report["srocc"] == pytest.approx(srocc(pred, mos))
    assert report["plcc_raw"] == pytest.approx(scipy.stats.pearsonr(pred, mos).statistic)
    assert 0.7 < report["plcc"] < 1.0 and report["rmse"] < 25


def test_srocc_bootstrap_ci() -> None:
    rng = np.random.default_rng(4)
    mos = rng.uniform(0, 100, 150)
    pred = mos + rng.normal(0, 30, 150)
    ci = srocc_bootstrap_ci(pred, mos, n_resamples=500, seed=7)
    assert ci.estimate == pytest.approx(srocc(pred, mos))
    assert ci.low < ci.estimate < ci.high
    assert 0.05 < ci.high - ci.low < 0.3  # roughly 4·(1 - ρ²)/√n for this ρ and n
    assert srocc_bootstrap_ci(pred, mos, n_resamples=500, seed=7) == ci  # seeded: reproducible
    assert srocc_bootstrap_ci(pred, mos, n_resamples=500, seed=8) != ci
    percentile = srocc_bootstrap_ci(pred, mos, n_resamples=500, seed=7, method="percentile")
    assert percentile.low == pytest.approx(ci.low, abs=0.03) and percentile.high == pytest.approx(ci.high, abs=0.03)


def test_srocc_bootstrap_ci_of_a_perfect_ranking_is_a_point() -> None:
    up = srocc_bootstrap_ci([1, 2, 3, 4, 5], [3, 4, 5, 6, 9], n_resamples=100)
    down = srocc_bootstrap_ci([5, 4, 3, 2, 1], [3, 4, 5, 6, 9], n_resamples=100)
    assert up.low == up.estimate == up.high == pytest.approx(1.0)
    assert down.low == down.estimate == down.high == pytest.approx(-1.0)
