"""The real-photo split and its flag figures (stream_iqa.data.real)."""

from __future__ import annotations

import numpy as np
import pytest

from stream_iqa.data.real import RealPhoto, load_real, real_flag_report, real_vs_clean

pytestmark = pytest.mark.data


def test_the_real_dev_split_has_every_role_and_pairs_stay_together(shared_data):
    dev, train = load_real(shared_data / "real", "dev"), load_real(shared_data / "real", "train")
    assert {(p.distortion, p.positive) for p in dev} == {("low_light", True), ("low_light", False), ("haze", True),
                                                         ("haze", False), ("flare", True)}
    assert all(p.path.is_file() for p in dev[:20]) and not {p.relpath for p in dev} & {p.relpath for p in train}
    low = {p.relpath.split("/")[-1] for p in dev if p.distortion == "low_light" and p.positive}
    high = {p.relpath.split("/")[-1] for p in dev if p.distortion == "low_light" and not p.positive}
    assert low == high  # a LOL scene's two exposures are on the same side of the split
    assert sum(p.distortion == "flare" for p in dev) == 10


def test_the_report_judges_each_flag_on_its_own_photos(tmp_path):
    photos = [RealPhoto(tmp_path / f"{i}.jpg", f"{i}", "dev", d, pos) for i, (d, pos) in enumerate(
        [("low_light", True), ("low_light", False), ("haze", True), ("flare", True), ("flare", True)])]
    probs = np.array([[0.9, 0.9, 0.0], [0.2, 0.9, 0.9], [0.0, 0.7, 0.0], [0.9, 0.0, 0.8], [0.0, 0.0, 0.1]])
    report = real_flag_report(photos, probs, {"low_light": 0.5, "haze": 0.6, "flare": 0.5},
                              ("low_light", "haze", "flare"))
    assert report["low_light"] == {"threshold": 0.5, "positives": 1, "negatives": 1, "positives_flagged": 1,
                                   "negatives_flagged": 0, "auroc": 1.0}
    assert report["haze"]["positives_flagged"] == 1 and "auroc" not in report["haze"]  # positives only
    assert report["flare"]["positives_flagged"] == 1 and report["flare"]["positives"] == 2


def test_real_positives_are_ranked_against_clean_photos_without_a_threshold(tmp_path):
    photos = [RealPhoto(tmp_path / f"{i}.jpg", f"{i}", "dev", d, pos) for i, (d, pos) in enumerate(
        [("haze", True), ("haze", True), ("haze", False), ("flare", True), ("flare", True)])]
    probs = np.array([[0.0, 0.8, 0.0], [0.0, 0.6, 0.0], [0.0, 0.99, 0.0], [0.0, 0.0, 0.9], [0.0, 0.0, 0.3]])
    clean = np.array([[0.1, 0.1, 0.95], [0.1, 0.75, 0.1], [0.9, 0.2, 0.2]])
    report = real_vs_clean(photos, probs, clean, ("low_light", "haze", "flare"))
    assert "low_light" not in report  # no real low-light positive among these photos
    # haze: the real negative (0.99) is not a clean photo and does not count; 0.75 sits between the two positives
    assert report["haze"] == {"positives": 2, "clean": 3, "auroc": round(5 / 6, 4), "clean_above_median_positive": 1,
                              "clean_allowed": 0, "positives_within_clean_bar": 1}
    # flare: a clean photo at 0.95 outranks both positives
    assert report["flare"]["auroc"] == round(4 / 6, 4) and report["flare"]["clean_above_median_positive"] == 1
    assert report["flare"]["positives_within_clean_bar"] == 0  # with 3 clean photos the 2 % bar allows none


def test_the_clean_bar_allows_one_of_58_photos_and_counts_the_positives_above_the_next(tmp_path):
    photos = [RealPhoto(tmp_path / f"{i}.jpg", f"{i}", "dev", "flare", True) for i in range(4)]
    probs = np.zeros((4, 3))
    probs[:, 2] = [0.99, 0.85, 0.7, 0.2]
    clean = np.zeros((58, 3))
    clean[:, 2] = np.linspace(0.0, 0.6, 58)
    clean[0, 2], clean[1, 2] = 0.995, 0.8  # one allowed (0.995), the next (0.8) sets the bar
    flare = real_vs_clean(photos, probs, clean, ("low_light", "haze", "flare"))["flare"]
    assert flare["clean_allowed"] == 1 and flare["positives_within_clean_bar"] == 2


def test_a_missing_real_folder_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="STREAM_IQA_DATA__ROOT"):
        load_real(tmp_path / "real")
