"""Still-image I/O shared by scoring, training and evaluation (one decoder, one tensor layout)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB HxWx3; ValueError when OpenCV cannot decode it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 → float (1,3,H,W) in [0,1]."""
    return torch.from_numpy(np.require(img, requirements=["C", "W"])).permute(2, 0, 1)[None].float().div_(255.0)


def resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The student's own resize (antialiased bilinear), so training and evaluation see what inference sees."""
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
