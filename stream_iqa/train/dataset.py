"""Training and validation sets for the student, built once and cached as arrays at the model's input size.

Two kinds of items share one record layout so that one batch can mix them:

* synthetic: a pristine natural photo degraded by a sampled recipe (``synthesis``), with its three flags known and
  a *weak* quality label from MS-SSIM against the pristine image mapped to the MOS scale; ``group`` ties the
  variants of one photo together for the ranking loss (more severe → lower quality);
* MOS: a photo with a human opinion score (CLIVE), whose flags are unknown (masked out of the flag loss).

Images are resized to the input size with the same antialiased resize the model applies at inference, and depth is
computed on the *degraded* image, as the pipeline will see it. Building is the slow part (synthesis, depth,
MS-SSIM), so arrays are cached under ``data.cache_dir`` keyed by everything that changes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from stream_iqa.depth.base import DepthSource
from stream_iqa.images import read_rgb, resize_tensor, to_tensor
from stream_iqa.model.served import DISTORTIONS
from stream_iqa.synthesis.degradations import Recipe, apply_recipe, sample_recipe

#: quality (MOS scale) given to the pristine photos; weak labels fall from it as MS-SSIM falls
PRISTINE_MOS = 80.0
#: MS-SSIM → MOS: q = FLOOR + (PRISTINE_MOS - FLOOR) * ms_ssim ** GAMMA (GAMMA > 1 spreads the crowded top end)
WEAK_FLOOR, WEAK_GAMMA = 5.0, 2.0
#: side at which MS-SSIM is computed (it needs ≥ 161 px for its 5 scales; larger costs time for little gain)
MSSSIM_SIDE = 256


@dataclass
class ArraySet:
    """Items as arrays. ``mos`` is NaN where unknown; ``flags`` rows are -1 where unknown."""

    rgb: np.ndarray  # (N,H,W,3) uint8
    depth: np.ndarray  # (N,H,W) uint8 (depth × 255)
    mos: np.ndarray  # (N,) float32, 0–100 or NaN
    weak: np.ndarray  # (N,) float32, weak quality label or NaN
    flags: np.ndarray  # (N,3) float32 in {0,1} or -1
    group: np.ndarray  # (N,) int64, same content → same group (-1: none)
    severity: np.ndarray  # (N,) float32, 0 for clean
    names: list[str]

    def __len__(self) -> int:
        return len(self.rgb)

    def tensors(self, idx: np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB (N,3,H,W) and depth (N,1,H,W) as float in [0,1], ready for the model's ``preprocess``."""
        return to_unit_tensors(self.rgb[idx], self.depth[idx])

    def take(self, idx: np.ndarray) -> "ArraySet":
        """The items at ``idx``, as a new set."""
        return ArraySet(self.rgb[idx], self.depth[idx], self.mos[idx], self.weak[idx], self.flags[idx],
                        self.group[idx], self.severity[idx], [self.names[i] for i in idx])

    @staticmethod
    def concat(sets: list["ArraySet"]) -> "ArraySet":
        offset, groups = 0, []
        for s in sets:
            g = s.group.copy()
            g[g >= 0] += offset
            offset = max(offset, int(g.max()) + 1 if len(g) else offset)
            groups.append(g)
        return ArraySet(
            rgb=np.concatenate([s.rgb for s in sets]),
            depth=np.concatenate([s.depth for s in sets]),
            mos=np.concatenate([s.mos for s in sets]),
            weak=np.concatenate([s.weak for s in sets]),
            flags=np.concatenate([s.flags for s in sets]),
            group=np.concatenate(groups),
            severity=np.concatenate([s.severity for s in sets]),
            names=[n for s in sets for n in s.names],
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, rgb=self.rgb, depth=self.depth, mos=self.mos, weak=self.weak, flags=self.flags,
                 group=self.group, severity=self.severity, names=np.array(self.names))
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> "ArraySet":
        z = np.load(path)
        return ArraySet(z["rgb"], z["depth"], z["mos"], z["weak"], z["flags"], z["group"], z["severity"],
                        [str(n) for n in z["names"]])


def _to_u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).squeeze(0).permute(1, 2, 0).numpy()


def to_unit_tensors(rgb: np.ndarray, depth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N,H,W,3) RGB and (N,H,W) depth arrays → float tensors in [0,1] (N,3,H,W) and (N,1,H,W)."""
    return (torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(255.0),
            torch.from_numpy(depth).unsqueeze(1).float().div_(255.0))


def weak_quality(degraded: torch.Tensor, pristine: torch.Tensor) -> float:
    """MS-SSIM of a degraded image against its pristine source, mapped to the MOS scale."""
    h, w = pristine.shape[-2:]
    s = MSSSIM_SIDE / min(h, w)
    size = (max(round(h * s), 161), max(round(w * s), 161))
    a, b = resize_tensor(degraded, size), resize_tensor(pristine, size)
    value = float(ms_ssim(a, b, data_range=1.0, size_average=True).clamp(0, 1))
    return WEAK_FLOOR + (PRISTINE_MOS - WEAK_FLOOR) * value**WEAK_GAMMA


def build_synthetic(
    paths: list[Path],
    depth_source: DepthSource,
    size: tuple[int, int],
    variants: int,
    seed: int,
    p_clean: float = 0.15,
    desc: str = "synthesising",
    recipe_fn: Callable[[np.random.Generator], Recipe | list[Recipe]] | None = None,
    include_pristine: bool = True,
    shared_draws: bool = False,
    max_side: int | None = None,
) -> ArraySet:
    """``variants`` degraded versions of each photo plus the pristine photo itself (group = photo).

    ``recipe_fn`` draws each variant's recipe (default: ``sample_recipe`` with ``p_clean``), or several recipes that
    become one item each (a flag and its twin without it); a focus set for one flag passes its own and leaves the
    pristine photos out, which the base set already holds. ``shared_draws``: the recipes of one variant are applied
    from the same generator state, so the steps they share come out identical (one night scene, lamps in the same
    places, for a flare and its twin). ``max_side``: photos are first downscaled (area) so that their longer side is
    at most this, the scale the optical flare renderer is tuned for and the ``real/`` photos have.
    """
    draw = recipe_fn or (lambda r: sample_recipe(r, p_clean=p_clean))
    rng = np.random.default_rng(seed)
    rgbs, depths, weak, flags, groups, sev, names = [], [], [], [], [], [], []
    for gi, path in enumerate(tqdm(paths, desc=desc, leave=False, disable=None)):
        img = read_rgb(path)
        if max_side and max(img.shape[:2]) > max_side:
            f = max_side / max(img.shape[:2])
            img = cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                             interpolation=cv2.INTER_AREA)
        pristine = to_tensor(img)
        clean_depth = depth_source(pristine)[0, 0].numpy()
        for v in range(0 if include_pristine else 1, variants + 1):
            if v == 0:
                items = [(img, {k: 0 for k in DISTORTIONS}, 0.0, PRISTINE_MOS)]
            else:
                drawn = draw(rng)
                pair_seed = int(rng.integers(2**63)) if shared_draws else None
                items = []
                for recipe in drawn if isinstance(drawn, list) else [drawn]:
                    r = rng if pair_seed is None else np.random.default_rng(pair_seed)
                    out = apply_recipe(img, clean_depth, recipe, r)
                    items.append((out, recipe.flags, float(recipe.severity), weak_quality(to_tensor(out), pristine)))
            for j, (out, recipe_flags, severity, label) in enumerate(items):
                t = to_tensor(out)
                small = resize_tensor(t, size)
                rgbs.append(_to_u8(small))
                depths.append((depth_source(t, size=size)[0, 0].numpy() * 255.0 + 0.5).astype(np.uint8))
                weak.append(label)
                flags.append([float(recipe_flags[k]) for k in DISTORTIONS])
                groups.append(gi)
                sev.append(severity)
                names.append(f"{photo_key(path)}#{v}" + (f".{j}" if len(items) > 1 else ""))
    n = len(rgbs)
    return ArraySet(
        rgb=np.stack(rgbs), depth=np.stack(depths), mos=np.full(n, np.nan, np.float32),
        weak=np.asarray(weak, np.float32), flags=np.asarray(flags, np.float32), group=np.asarray(groups, np.int64),
        severity=np.asarray(sev, np.float32), names=names,
    )


def photo_key(path: Path) -> str:
    """A natural photo's name in item names and photo splits: ``folder/file.png``."""
    return f"{path.parent.name}/{path.name}"


def photo_of(name: str) -> str:
    """The source photo (``photo_key``) of a synthetic item's name (``folder/file.png#3.1`` → ``folder/file.png``)."""
    return name.split("#", 1)[0]


def faint_twin_positives(data: ArraySet, flag: int, min_level: float, share: float = 0.01) -> np.ndarray:
    """Indices of twin-pair items (``…#v.0`` with flag ``flag``, its twin ``…#v.1`` without) whose flagged image
    differs from its twin by at least ``min_level`` (of 255, largest channel) on less than ``share`` of its pixels:
    a flag rendered too faintly to see. Training on it as a positive teaches that whatever else such an image shows
    (for flare: a bright, slightly washed-out daylight sky) is the condition."""
    index = {n: i for i, n in enumerate(data.names)}
    out = []
    for name, i in index.items():
        if not name.endswith(".0") or data.flags[i, flag] != 1:
            continue
        j = index.get(name[:-1] + "1")
        if j is None or data.flags[j, flag] != 0:
            continue
        changed = np.abs(data.rgb[i].astype(np.int16) - data.rgb[j].astype(np.int16)).max(axis=-1) >= min_level
        if changed.mean() < share:
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def build_mos(items: list[tuple[Path, float]], depth_source: DepthSource, size: tuple[int, int],
              desc: str = "MOS images") -> ArraySet:
    rgbs, depths, mos, names = [], [], [], []
    for path, score in tqdm(items, desc=desc, leave=False, disable=None):
        t = to_tensor(read_rgb(path))
        rgbs.append(_to_u8(resize_tensor(t, size)))
        depths.append((depth_source(t, size=size)[0, 0].numpy() * 255.0 + 0.5).astype(np.uint8))
        mos.append(score)
        names.append(path.name)
    n = len(rgbs)
    return ArraySet(
        rgb=np.stack(rgbs), depth=np.stack(depths), mos=np.asarray(mos, np.float32),
        weak=np.full(n, np.nan, np.float32), flags=np.full((n, len(DISTORTIONS)), -1.0, np.float32),
        group=np.full(n, -1, np.int64), severity=np.zeros(n, np.float32), names=names,
    )


def build_real(photos: list[Any], depth_source: DepthSource, size: tuple[int, int], first_group: int,
               desc: str = "real photos") -> ArraySet:
    """Real labelled photos (``stream_iqa.data.real.RealPhoto``) as flag items: the photo's own flag is known (1 for
    a positive, 0 for its negative), the other flags unknown (-1) — a real foggy night photo may well be low-light
    too, and nobody labelled it. Each photo is its own group (``first_group`` + i), so the batch sampler draws it
    beside the synthetic groups; no quality label."""
    rgbs, depths, flags, names = [], [], [], []
    for photo in tqdm(photos, desc=desc, leave=False, disable=None):
        t = to_tensor(read_rgb(photo.path))
        rgbs.append(_to_u8(resize_tensor(t, size)))
        depths.append((depth_source(t, size=size)[0, 0].numpy() * 255.0 + 0.5).astype(np.uint8))
        row = np.full(len(DISTORTIONS), -1.0, np.float32)
        row[DISTORTIONS.index(photo.distortion)] = 1.0 if photo.positive else 0.0
        flags.append(row)
        names.append(photo.relpath)
    n = len(rgbs)
    return ArraySet(
        rgb=np.stack(rgbs), depth=np.stack(depths), mos=np.full(n, np.nan, np.float32),
        weak=np.full(n, np.nan, np.float32), flags=np.stack(flags),
        group=np.arange(first_group, first_group + n, dtype=np.int64), severity=np.zeros(n, np.float32), names=names,
    )


def cache_key(**parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached(path: Path, build: Callable[[], ArraySet]) -> ArraySet:
    if path.is_file():
        return ArraySet.load(path)
    data = build()
    data.save(path)
    return data
