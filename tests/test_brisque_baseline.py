"""The BRISQUE wrapper: packaged model, no network, sane direction on real photos."""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from stream_iqa.baselines.brisque_baseline import brisque_score, brisque_scores, main
from stream_iqa.images import read_rgb
from stream_iqa.data.mos import load_clive, split_items
from stream_iqa.settings import DataSettings

CLIVE = DataSettings().root / "clive"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection fails, so a download attempt anywhere in brisque/libsvm would surface as an error."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _degrade(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Heavy Gaussian blur plus strong white noise: far outside anything a viewer would call good."""
    blurred = cv2.GaussianBlur(image, (0, 0), 3).astype(np.float64)
    noisy = blurred + np.random.default_rng(seed).normal(0, 25, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "camera"])
def test_degraded_photo_scores_worse(name: str, no_network: None) -> None:
    image = getattr(skimage.data, name)()  # camera is grey (H, W): exercises the channel expansion
    original, degraded = brisque_score(image), brisque_score(_degrade(image))
    assert np.isfinite(original) and np.isfinite(degraded)
    assert degraded > original + 20  # lower BRISQUE = better


def test_input_forms_agree() -> None:
    rgb = skimage.data.chelsea()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert brisque_score(rgba) == pytest.approx(brisque_score(rgb))
    assert brisque_score(rgb.astype(np.float64) / 255) == pytest.approx(brisque_score(rgb))
    grey = skimage.data.camera()
    assert brisque_score(grey[:, :, None]) == pytest.approx(brisque_score(grey))
    with pytest.raises(ValueError, match="expected an"):
        brisque_score(np.zeros((8, 8, 2), np.uint8))


def test_files_round_trip_and_read_errors(tmp_path: Path) -> None:
    rgb = skimage.data.astronaut()
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    scores = brisque_scores([tmp_path / "a.png"])
    assert scores.dtype == np.float64 and scores.shape == (1,)
    assert scores[0] == pytest.approx(brisque_score(rgb))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        read_rgb(tmp_path / "junk.jpg")


@pytest.mark.data
@pytest.mark.skipif(not (CLIVE / "mos.csv").is_file(), reason="shared/data/clive not present")
def test_clive_images_score_finite(no_network: None) -> None:
    items = load_clive(CLIVE)[:3]
    scores = brisque_scores(item.path for item in items)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_main_prints_all_and_val_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI on a fake CLIVE folder: twelve crops of one photo, more blur for lower MOS."""
    photo = skimage.data.coffee()
    (tmp_path / "images").mkdir()
    rows = ["image,mos,std"]
    for i in range(12):
        name = f"{i}.png"
        crop = photo[: 200 + 8 * i, : 200 + 8 * i]
        image = cv2.GaussianBlur(crop, (0, 0), 0.5 * i) if i else crop
        cv2.imwrite(str(tmp_path / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append(f"{name},{90 - 7 * i},5")
    (tmp_path / "mos.csv").write_text("\n".join(rows) + "\n")
    assert len(split_items(load_clive(tmp_path), 0.5, seed=0)[1]) >= 6  # enough pairs for a bootstrap

    main(["--clive", str(tmp_path), "--val-fraction", "0.5", "--bootstrap", "200"])
    out = capsys.readouterr().out
    assert "time per image" in out
    assert "all: n=12  SROCC=" in out and "val (split_items 0.5, seed=0): n=" in out
