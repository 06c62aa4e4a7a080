"""The two-view student's quality path: the trunk and lean head fine-tuned on native-resolution fragments of MOS photos.

Why a stage of its own: quality is learnt from human scores only (CLIVE), on fragments at the photo's own resolution
(``stream_iqa.fragments``, random cell offsets and flips per step, centred at evaluation), with the trunk's batch-norm
statistics frozen (540 photos are too few to re-estimate them) and the loss people report against — squared error on
the 0–100 scale plus (1 − PLCC) over the batch. Synthetic images never get an absolute quality label (weak labels
cost held-out SROCC in the single-view student, models/README.md); with ``w_severity_rank`` they are only ranked
among variants of one pristine photo, so the score learns to fall with degradations CLIVE has few of. The whole-view flag path is trained afterwards on the
frozen trunk (``stream-iqa train`` with ``init_from`` and ``train_only``), so the flags see the trunk they will run
with.

    stream-iqa train-quality-view --recipe configs/train-quality-view.yaml --split-seeds 0 1 2
    stream-iqa train-quality-view --recipe configs/train-quality-view.yaml --final --out runs/q/model.safetensors

``--split-seeds`` trains one model per CLIVE split (20 % held out, the split of ``split_items``) from ImageNet and
prints held-out SROCC/PLCC per seed and their mean: differences under ~0.03 on 157 photos are noise, so recipes are
compared on several splits. ``--final`` trains on every CLIVE photo and writes a checkpoint whose flag heads are
still untrained.

Distillation (``teacher``): the same training plus a teacher's scores on photos nobody rated (the natural and real/
train photos, synthetic variants of the natural ones), each step a few of them learnt like rated photos. The
teacher is one or more quality-view checkpoints of this command (a heavier view, configs/train-quality-teacher.yaml,
or an ensemble), scored with several fragment draws. Each split's student takes the teacher trained on the same
split, and a teacher whose record shows it saw a photo the student holds out is refused:

    stream-iqa train-quality-view --recipe configs/train-quality-teacher.yaml --split-seeds 0 1 2 --keep runs/quality-teacher
    stream-iqa train-quality-view --recipe configs/train-quality-distilled.yaml --split-seeds 0 1 2

The official DGIQA is a teacher too (``teacher: [dgiqa:PATH]``, e.g. ``DGIQA_Koniq10k.pth``; configs/
train-quality-dgiqa.yaml): it scores each unrated photo with its own inference (``teacher_crops`` random 224² crops
and the configured depth source). It learnt another data set's scale (KonIQ-10k's), so its scores are put on the
student's MOS scale by a straight line fitted on ``teacher_fit_photos`` of the student's own *training* CLIVE photos
(``scale_onto``). A checkpoint whose file name says it was trained on CLIVE (LIVE Challenge) is refused for split
runs, as a quality-view teacher with the wrong record is.
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from stream_iqa import __version__
from stream_iqa.data.mos import MOSItem, load_mos_dataset, natural_split, split_items
from stream_iqa.fragments import gather
from stream_iqa.images import read_rgb
from stream_iqa.log import get_logger
from stream_iqa.iqa_metrics import plcc, srocc
from stream_iqa.model.served import DISTORTIONS
from stream_iqa.nn.checkpoint import save_checkpoint
from stream_iqa.nn.lite import DGIQALite, LiteConfig
from stream_iqa.settings import Settings
from stream_iqa.train.evaluate import calibration_from
from stream_iqa.train.recipe import read_recipe

log = get_logger(__name__)


#: Where unrated photos for distillation come from — only ever the *train* side of each data set.
DISTILL_SOURCES = ("natural", "real", "synthetic")
#: A ``teacher`` entry that names the official DGIQA checkpoint (a bare state dict) rather than a quality-view one.
DGIQA_PREFIX = "dgiqa:"
#: File names of DGIQA checkpoints trained on CLIVE (the paper's "LIVEC"): their scores hold every CLIVE photo's MOS.
_CLIVE_TRAINED = re.compile(r"live[ _-]?c|clive|live[ _-]?challenge|livechallenge", re.IGNORECASE)
#: A teacher on another scale must rank the student's training photos at least this well (SROCC against their MOS)
#: to be mapped and learnt from; the official DGIQA's cross-data-set SROCC on CLIVE is far above it, chance is 0.
MIN_TEACHER_SROCC = 0.3


@dataclass
class QualityViewConfig:
    name: str = "dgiqa-lite-quality-view"
    trunk: str = "tf_efficientnet_lite0"
    fragments: tuple[int, int] = (7, 32)  # (grid, patch)
    epochs: int = 8
    batch_size: int = 16
    lr: float = 1e-3  # the lean head
    trunk_lr: float = 1e-4
    weight_decay: float = 1e-4
    w_plcc: float = 1.0
    clive_val_fraction: float = 0.2  # 0: every CLIVE photo (the final model)
    split_seed: int = 0
    seed: int = 0
    threads: int = 0
    eval_draws: int = 1  # fragment draws averaged per held-out photo (1: the centred grid the service uses)
    # Severity ranking among synthetic variants of one pristine natural *train* photo (never their absolute
    # score): per step, ``rank_photos`` photos × one distortion kind at ``rank_severities``, logistic loss on every
    # pair ordered by severity. Teaches the score to fall with degradations CLIVE has few of (synthetic haze, flare,
    # codec artefacts) without weak absolute labels. 0: MOS only.
    w_severity_rank: float = 0.0
    rank_photos: int = 2
    rank_severities: tuple[float, ...] = (0.0, 0.35, 0.7, 1.0)
    rank_temperature: float = 0.05  # on the sigmoid (0–1) scale
    # Distillation (model v2 issue, item 4): a heavier quality-view teacher (``teacher``, a checkpoint of this
    # command, e.g. configs/train-quality-teacher.yaml) scores photos no person rated — the natural and real/ *train*
    # photos and synthetic variants of the natural ones — as the mean of ``teacher_draws`` fragment draws; each step
    # then adds ``distill_batch`` of them, learnt like MOS photos (squared error + (1 − PLCC)) at ``w_distill``.
    # ``{split}`` in ``teacher`` is the CLIVE split seed (``all`` for --final): the teacher must have held out the
    # same photos as the student, or its scores would carry the held-out photos' MOS into the student. Several
    # checkpoints (a list) make an ensemble teacher: the mean of their scores.
    teacher: tuple[str, ...] = ()
    distill_sources: tuple[str, ...] = DISTILL_SOURCES
    distill_variants: int = 2  # synthetic variants per natural train photo
    distill_batch: int = 8
    w_distill: float = 1.0
    teacher_draws: int = 4
    # the official DGIQA as teacher (``dgiqa:PATH`` in ``teacher``): its random 224² crops averaged per photo, and
    # how many of the student's training CLIVE photos fix the line onto the MOS scale
    teacher_crops: int = 10
    teacher_fit_photos: int = 64
    max_mos: int = 0  # >0: only the first N CLIVE photos (smoke tests)

    @classmethod
    def from_yaml(cls, path: Path) -> "QualityViewConfig":
        data = read_recipe(path, cls.__dataclass_fields__, "quality-view")
        for key in ("fragments", "rank_severities", "distill_sources"):
            if key in data:
                data[key] = tuple(data[key])
        try:
            return cls(**data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def __post_init__(self) -> None:
        if len(self.fragments) != 2 or min(self.fragments) < 1:
            raise ValueError(f"fragments must be [grid, patch], got {list(self.fragments)}")
        if isinstance(self.teacher, str):  # one checkpoint, as a recipe or --set usually gives it
            self.teacher = (self.teacher,) if self.teacher else ()
        self.teacher = tuple(self.teacher)
        unknown = set(self.distill_sources) - set(DISTILL_SOURCES)
        if unknown:
            raise ValueError(f"distill_sources: unknown {sorted(unknown)}; known: {', '.join(DISTILL_SOURCES)}")
        if self.teacher:
            if self.teacher_draws < 1 or self.distill_batch < 1:
                raise ValueError("a teacher needs teacher_draws >= 1 and distill_batch >= 1")
            if any(t.startswith(DGIQA_PREFIX) for t in self.teacher) and (
                    self.teacher_crops < 1 or self.teacher_fit_photos < 3):
                raise ValueError("a dgiqa: teacher needs teacher_crops >= 1 and teacher_fit_photos >= 3 (the line "
                                 "onto the MOS scale)")
            if not self.distill_sources or (self.distill_sources == ("synthetic",) and self.distill_variants < 1):
                raise ValueError("a teacher needs unrated photos: distill_sources (and distill_variants for synthetic)")
            for pattern in self.teacher:
                try:
                    pattern.format(split=0)
                except (KeyError, IndexError, ValueError):
                    raise ValueError(f"teacher {pattern!r}: the only placeholder is {{split}}") from None


def _fragment_batch(images: list[np.ndarray], model: DGIQALite, rng: np.random.Generator | None,
                    flip: np.ndarray | None = None) -> torch.Tensor:
    """uint8 photos → normalised fragment batch; random offsets (and flips) with ``rng``, centred without."""
    spec = model.fragment_spec
    assert spec is not None
    frags = [gather(img, spec, rng) for img in images]
    if flip is not None:
        frags = [f[:, ::-1] if fl else f for f, fl in zip(frags, flip)]
    x = torch.from_numpy(np.ascontiguousarray(np.stack(frags))).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - model.mean) / model.std


def _plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = pred - pred.mean(), target - target.mean()
    return 1.0 - (p * t).sum() / (p.norm() * t.norm()).clamp_min(1e-8)


class PristineScenes:
    """Pristine photos at their own resolution with the prior's depth, and every degradation kind this machine can
    synthesise: the material of the severity ladders and of the distillation's synthetic variants."""

    def __init__(self, photos: list[Path]) -> None:
        from stream_iqa.depth.prior import PriorDepth
        from stream_iqa.images import to_tensor
        from stream_iqa.synthesis.degradations import FLAG_KINDS, QUALITY_KINDS, h264_available

        self.images = [read_rgb(p) for p in photos]
        prior = PriorDepth()
        self.depths = [prior(to_tensor(img))[0, 0].numpy() for img in self.images]
        self.kinds = [k for k in (*FLAG_KINDS, *QUALITY_KINDS) if k != "h264" or h264_available()]


class SeverityLadders(PristineScenes):
    """Synthetic severity ladders from pristine natural photos at their own resolution, for the ranking loss."""

    def __init__(self, photos: list[Path], severities: tuple[float, ...], rng: np.random.Generator) -> None:
        super().__init__(photos)
        self.severities = sorted(severities)
        self.rng = rng

    def draw(self, n_photos: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """(images, severity per image, ladder id per image): ``n_photos`` ladders of one random kind each."""
        from stream_iqa.synthesis.degradations import Recipe, apply_recipe

        imgs, sev, group = [], [], []
        for g in range(n_photos):
            i = int(self.rng.integers(len(self.images)))
            kind = self.kinds[int(self.rng.integers(len(self.kinds)))]
            seed = int(self.rng.integers(2**31))
            for s in self.severities:  # one seed per ladder: the same flare layout, noise field… at every severity
                recipe = Recipe([(kind, s)]) if s > 0 else Recipe()
                imgs.append(apply_recipe(self.images[i], self.depths[i], recipe, np.random.default_rng(seed)))
                sev.append(s)
                group.append(g)
        return imgs, np.asarray(sev, np.float32), np.asarray(group)


def _ladder_loss(q: torch.Tensor, severity: np.ndarray, group: np.ndarray, temperature: float) -> torch.Tensor:
    """Logistic loss on every pair of one ladder: the less degraded image should score higher."""
    sev, grp = torch.from_numpy(severity), torch.from_numpy(group)
    mask = (sev[:, None] < sev[None, :]) & (grp[:, None] == grp[None, :])
    diff = (q[:, None] - q[None, :]) / temperature
    return torch.nn.functional.softplus(-diff[mask]).mean()


@dataclass
class DistillSet:
    """Unrated photos and the teacher's quality for each (0–100, the network's scale before calibration)."""

    images: list[np.ndarray]
    targets: np.ndarray
    record: dict[str, Any]


def distill_photos(cfg: QualityViewConfig, settings: Settings) -> tuple[list[np.ndarray], dict[str, int]]:
    """The unrated *train*-side photos of ``cfg.distill_sources`` (never natural/val, real/dev or any CLIVE photo)."""
    from stream_iqa.data.real import load_real
    from stream_iqa.synthesis.degradations import Recipe, apply_recipe

    root = settings.data.root
    natural = natural_split(root / "natural")["train"]
    if cfg.max_mos:
        natural = natural[: max(4, cfg.max_mos)]
    synthetic = "synthetic" in cfg.distill_sources and cfg.distill_variants > 0
    scenes = PristineScenes(natural) if synthetic else None
    images: list[np.ndarray] = []
    counts: dict[str, int] = {}
    if "natural" in cfg.distill_sources:
        images += scenes.images if scenes is not None else [read_rgb(p) for p in natural]
        counts["natural"] = len(natural)
    if "real" in cfg.distill_sources:
        real = [p.path for p in load_real(root / "real", split="train")]
        if cfg.max_mos:
            real = real[: cfg.max_mos]
        images += [read_rgb(p) for p in real]
        counts["real"] = len(real)
    if scenes is not None:
        rng = np.random.default_rng(cfg.seed + 2)
        for img, depth in zip(scenes.images, scenes.depths):
            for _ in range(cfg.distill_variants):
                kind = scenes.kinds[int(rng.integers(len(scenes.kinds)))]
                recipe = Recipe([(kind, float(rng.uniform(0.2, 1.0)))])
                images.append(apply_recipe(img, depth, recipe, np.random.default_rng(int(rng.integers(2**31)))))
        counts["synthetic"] = len(natural) * cfg.distill_variants
    return images, counts


def _held_out_split(meta: dict[str, Any]) -> tuple[float, int] | None:
    """(val fraction, split seed) of the CLIVE photos a quality-view checkpoint was *not* trained on; None: all."""
    record = meta.get("training", {}).get("quality_view", {})
    split = record.get("split")
    if split is not None:
        return None if split["val_fraction"] == 0 else (float(split["val_fraction"]), int(split["seed"]))
    match = re.search(r"val_fraction=([0-9.]+), seed=(\d+)", str(record.get("data", "")))  # records before "split"
    return (float(match.group(1)), int(match.group(2))) if match else None


@dataclass
class Teacher:
    """One member of a distillation teacher: ``score(images)`` gives its quality per unrated photo; ``fit_scale``:
    its scale is not the student's (the official DGIQA's), so ``teacher_set`` maps it onto the MOS first."""

    score: Callable[[list[np.ndarray]], np.ndarray]
    member: dict[str, Any]
    fit_scale: bool = False


def load_teacher(cfg: QualityViewConfig, split: tuple[float, int] | None, settings: Settings | None = None,
                 shared: dict[str, Teacher] | None = None) -> list[Teacher]:
    """The teacher members for a student that holds out ``split`` (None: trains on every CLIVE photo).

    Refuses a teacher that was trained on any photo the student holds out: its scores would leak their MOS.
    ``shared``: official DGIQA teachers already loaded (one model serves every split; it never saw the splits)."""
    from stream_iqa.nn.lite import lite_from_checkpoint

    out = []
    for pattern in cfg.teacher:
        if pattern.startswith(DGIQA_PREFIX):
            out.append(_official_teacher(cfg, pattern, split, settings or Settings(), shared))
            continue
        path = Path(pattern.format(split="all" if split is None else split[1]))
        if not path.is_file():
            raise FileNotFoundError(f"teacher {path} not found (recipe key 'teacher'; train it with "
                                    "stream-iqa train-quality-view --recipe configs/train-quality-teacher.yaml)")
        teacher, meta = lite_from_checkpoint(path)
        spec = teacher.fragment_spec
        if spec is None:
            raise ValueError(f"teacher {path} has no fragment view: train it with stream-iqa train-quality-view")
        held = _held_out_split(meta)
        if split is not None and held != split:
            seen = "every CLIVE photo" if held is None else f"the split val_fraction={held[0]}, seed={held[1]}"
            raise ValueError(f"teacher {path} was trained on {seen}, but the student holds out "
                             f"val_fraction={split[0]}, seed={split[1]}: its scores would carry held-out MOS into "
                             "the student")
        out.append(Teacher(
            score=lambda images, t=teacher: predict(t, images, draws=cfg.teacher_draws, seed=cfg.seed),
            member={"version": meta.get("version"), "tensors_sha256": meta.get("tensors_sha256"),
                    "fragments": [spec.grid, spec.patch], "trunk": teacher.config.trunk}))
    return out


def _official_teacher(cfg: QualityViewConfig, pattern: str, split: tuple[float, int] | None, settings: Settings,
                      shared: dict[str, Teacher] | None) -> Teacher:
    """``dgiqa:PATH``: the official DGIQA, scoring photos by its own inference (random crops, the configured depth
    source) on ``model.device`` (auto: the GPU when there is one). Its raw scores are kept per photo list, so the
    splits share one pass."""
    path = Path(pattern[len(DGIQA_PREFIX):].format(split="all" if split is None else split[1]))
    if split is not None and _CLIVE_TRAINED.search(path.name):
        raise ValueError(f"teacher {path}: the file name says this DGIQA was trained on CLIVE (LIVE Challenge), "
                         "whose photos the student holds out; its scores would carry their MOS into the student. "
                         "Use a checkpoint trained on another data set (DGIQA_Koniq10k.pth), or --final")
    if shared is not None and str(path) in shared:
        return shared[str(path)]
    if not path.is_file():
        raise FileNotFoundError(f"teacher {path} not found (recipe key 'teacher': dgiqa:PATH names the official "
                                "DGIQA checkpoint, e.g. DGIQA_Koniq10k.pth, downloaded from the paper's release)")
    from stream_iqa.depth import create_depth_source
    from stream_iqa.images import to_tensor
    from stream_iqa.model.choice import resolve_device_name
    from stream_iqa.nn.checkpoint import file_sha256
    from stream_iqa.nn.dgiqa import load_official_dgiqa

    device = resolve_device_name(settings.model.device)  # model.device: auto = CUDA where there is one
    model = load_official_dgiqa(path, crops=cfg.teacher_crops, seed=cfg.seed).to(device).eval()
    depth_source = create_depth_source(settings.depth, device)
    # (photo list, scores) by the list's id; the list is kept so that its id cannot be reused by another one
    raw: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}

    def score(images: list[np.ndarray]) -> np.ndarray:
        key = id(images)
        if key not in raw:
            with torch.inference_mode():
                raw[key] = images, np.array([float(model.score(rgb, depth_source(rgb)).quality[0])
                                             for rgb in (to_tensor(img).to(device) for img in images)])
        return raw[key][1]

    teacher = Teacher(score=score, fit_scale=True, member={
        "kind": "dgiqa-official", "checkpoint": str(path), "sha256": file_sha256(path), "crops": cfg.teacher_crops,
        "depth_source": depth_source.name, "device": device})
    if shared is not None:
        shared[str(path)] = teacher
    return teacher


def scale_onto(raw: np.ndarray, mos: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares line ``a·raw + b ≈ mos``: a teacher's scores on the student's training photos
    against their MOS. Refused: non-finite scores; one score for every photo; scores that fall as MOS rises, or rank
    the photos barely better than chance (SROCC under ``MIN_TEACHER_SROCC``) — mapped onto the scale, such a teacher
    would teach the student nothing, or noise, or the opposite of the MOS (a wrong or broken checkpoint)."""
    raw, mos = np.asarray(raw, np.float64), np.asarray(mos, np.float64)
    if not np.isfinite(raw).all():
        raise ValueError(f"the teacher gives {int((~np.isfinite(raw)).sum())} of {len(raw)} training photos a "
                         "non-finite score: a broken checkpoint?")
    if len(raw) < 3 or raw.std() < 1e-6:
        raise ValueError(f"the teacher gives {len(raw)} training photos one score: no line onto the MOS scale")
    a, b = np.polyfit(raw, mos, 1)
    rank = srocc(raw, mos)
    if a <= 0 or rank < MIN_TEACHER_SROCC:
        how = "fall as MOS rises" if a <= 0 else "barely follow the MOS"
        raise ValueError(f"the teacher's scores {how} on {len(raw)} training photos (SROCC {rank:.2f}, PLCC "
                         f"{plcc(raw, mos):.2f}; at least {MIN_TEACHER_SROCC} is needed): not a quality model on "
                         "this scale (a wrong checkpoint?)")
    return float(a), float(b)


def teacher_set(cfg: QualityViewConfig, teachers: list[Teacher], images: list[np.ndarray], counts: dict[str, int],
                fit: tuple[list[np.ndarray], np.ndarray] | None = None) -> DistillSet:
    """Each unrated photo scored by the teacher(s): each member's score (a quality-view checkpoint: the mean over
    ``teacher_draws`` fragment draws), averaged over members. ``fit``: training photos and their MOS, for members
    on another scale (``scale_onto``; the first ``teacher_fit_photos`` of a seeded shuffle)."""
    started = time.time()
    per_member, members = [], []
    for t in teachers:
        scores, member = t.score(images), dict(t.member)
        if not np.isfinite(scores).all():
            raise ValueError(f"teacher {member}: {int((~np.isfinite(scores)).sum())} of {len(scores)} unrated photos "
                             "got a non-finite score")
        if t.fit_scale:
            if fit is None:
                raise ValueError("a teacher on another scale needs the student's training photos to fit the line")
            pick = np.random.default_rng(cfg.seed + 3).permutation(len(fit[0]))[: cfg.teacher_fit_photos]
            fit_imgs, fit_mos = [fit[0][i] for i in pick], np.asarray(fit[1])[pick]
            fit_raw = t.score(fit_imgs)
            a, b = scale_onto(fit_raw, fit_mos)
            scores = np.clip(a * scores + b, 0.0, 100.0)
            member["scale"] = {"a": round(a, 5), "b": round(b, 4), "photos": len(pick),
                               "srocc": round(srocc(fit_raw, fit_mos), 4), "plcc": round(plcc(fit_raw, fit_mos), 4)}
        per_member.append(scores)
        members.append(member)
    targets = np.mean(per_member, axis=0)
    record = {"teacher": list(cfg.teacher), "members": members, "teacher_draws": cfg.teacher_draws,
              "photos": counts, "teacher_s": round(time.time() - started, 1),
              "target_mean": round(float(targets.mean()), 2), "target_std": round(float(targets.std()), 2)}
    log.info("teacher scored unrated photos", **counts, s=record["teacher_s"])
    return DistillSet(images, targets.astype(np.float32), record)


def _freeze_bn(model: DGIQALite) -> None:
    for m in model.trunk.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.inference_mode()
def predict(model: DGIQALite, images: list[np.ndarray], draws: int = 1, seed: int = 0, batch: int = 16) -> np.ndarray:
    """Quality on the network's 0–100 scale (before calibration) per photo: the centred grid, or the mean over
    ``draws`` random grids (the centred one first)."""
    model.eval()
    rng = np.random.default_rng(seed)
    out = np.zeros(len(images))
    for d in range(draws):
        for lo in range(0, len(images), batch):
            x = _fragment_batch(images[lo:lo + batch], model, None if d == 0 else rng)
            out[lo:lo + batch] += torch.sigmoid(model.forward_quality(x)).numpy() * 100.0
    return out / draws


def train_quality_view(cfg: QualityViewConfig, train_items: list[MOSItem], val_items: list[MOSItem],
                       images: dict[Path, np.ndarray], ladder_photos: list[Path] | None = None,
                       distill: DistillSet | None = None) -> tuple[DGIQALite, dict[str, Any]]:
    """Fine-tune trunk + lean head from ImageNet on ``train_items``; held-out figures on ``val_items`` (if any).
    ``ladder_photos``: pristine photos for the severity ranking (``w_severity_rank``); ``distill``: unrated photos
    with a teacher's scores (``w_distill``)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = DGIQALite(LiteConfig(trunk=cfg.trunk, fragments=tuple(cfg.fragments)), pretrained_trunk=True)
    head = [p for n, p in model.named_parameters() if n.startswith("head_quality.")]
    opt = torch.optim.AdamW([{"params": head, "lr": cfg.lr}, {"params": model.trunk_parameters(), "lr": cfg.trunk_lr}],
                            weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_items) / cfg.batch_size)
    total = steps * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    mos = np.array([i.mos for i in train_items], dtype=np.float32)
    train_imgs = [images[i.path] for i in train_items]
    val_imgs = [images[i.path] for i in val_items]
    ladders = None
    if cfg.w_severity_rank > 0:
        if not ladder_photos:
            raise ValueError("w_severity_rank needs pristine photos (the natural train split)")
        ladders = SeverityLadders(ladder_photos, cfg.rank_severities, np.random.default_rng(cfg.seed + 1))
    history = []
    started = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        _freeze_bn(model)
        order = rng.permutation(len(train_items))
        losses = []
        for s in range(steps):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            x = _fragment_batch([train_imgs[i] for i in idx], model, rng, flip=rng.random(len(idx)) < 0.5)
            q = torch.sigmoid(model.forward_quality(x))
            y = torch.from_numpy(mos[idx] / 100.0)
            loss = torch.nn.functional.mse_loss(q, y) + cfg.w_plcc * _plcc_loss(q, y)
            if ladders is not None:
                imgs, sev, grp = ladders.draw(cfg.rank_photos)
                flip = np.repeat(rng.random(cfg.rank_photos) < 0.5, len(cfg.rank_severities))
                # one fragment draw per ladder: its rungs differ by the degradation only, not by where they look
                seed = int(rng.integers(2**31))
                xs = [_fragment_batch([im], model, np.random.default_rng(seed + int(g)), flip=f[None])
                      for im, g, f in zip(imgs, grp, flip)]
                qr = torch.sigmoid(model.forward_quality(torch.cat(xs)))
                loss = loss + cfg.w_severity_rank * _ladder_loss(qr, sev, grp, cfg.rank_temperature)
            if distill is not None:
                pick = rng.choice(len(distill.images), size=min(cfg.distill_batch, len(distill.images)), replace=False)
                xd = _fragment_batch([distill.images[i] for i in pick], model, rng, flip=rng.random(len(pick)) < 0.5)
                qd = torch.sigmoid(model.forward_quality(xd))
                yd = torch.from_numpy(distill.targets[pick] / 100.0)
                loss = loss + cfg.w_distill * (torch.nn.functional.mse_loss(qd, yd) + cfg.w_plcc * _plcc_loss(qd, yd))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        entry: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                                 "elapsed_s": round(time.time() - started, 1)}
        if val_items:
            pred = predict(model, val_imgs)
            entry["val"] = {"srocc": srocc(pred, [i.mos for i in val_items]),
                            "plcc": plcc(pred, [i.mos for i in val_items])}
        history.append(entry)
        log.info("quality view epoch", **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()
                                          if k != "val"}, **{f"val_{k}": round(v, 4) for k, v in entry.get("val", {}).items()})
    model.eval()
    metrics: dict[str, Any] = {"train_s": round(time.time() - started, 1)}
    result: dict[str, Any] = {"metrics": metrics, "history": history}
    if distill is not None:
        result["distillation"] = distill.record
    if val_items:
        target = [i.mos for i in val_items]
        pred = predict(model, val_imgs)
        metrics.update(n=len(val_items), srocc=srocc(pred, target), plcc=plcc(pred, target))
        if cfg.eval_draws > 1:
            avg = predict(model, val_imgs, draws=cfg.eval_draws)
            metrics.update(srocc_draws=srocc(avg, target), plcc_draws=plcc(avg, target))
    return model, result


def load_clive(settings: Settings, max_items: int = 0) -> tuple[list[MOSItem], dict[Path, np.ndarray]]:
    items = load_mos_dataset("clive", settings.data.root / "clive")
    if max_items:
        items = items[:max_items]
    return items, {i.path: read_rgb(i.path) for i in items}


def ladder_photos(cfg: QualityViewConfig, settings: Settings) -> list[Path] | None:
    """The pristine natural *train* photos (never val), when the recipe ranks severity ladders."""
    if cfg.w_severity_rank <= 0:
        return None
    photos = natural_split(settings.data.root / "natural")["train"]
    return photos[: max(4, cfg.max_mos)] if cfg.max_mos else photos


def _rated(items: list[MOSItem], images: dict[Path, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The photos the student trains on and their MOS: what a teacher on another scale is fitted on."""
    return [images[i.path] for i in items], np.array([i.mos for i in items])


def compare_split_seeds(cfg: QualityViewConfig, settings: Settings, seeds: list[int],
                        keep: Path | None = None) -> list[dict[str, Any]]:
    """One model per CLIVE split; ``keep``: also save each as ``keep/split-SEED.safetensors`` (held-out checks)."""
    fraction = cfg.clive_val_fraction or 0.2
    # every teacher checked before minutes of data loading: a missing or leaking one fails at once
    shared: dict[str, Teacher] = {}
    teachers = {seed: load_teacher(cfg, (fraction, seed), settings, shared) for seed in seeds} if cfg.teacher else {}
    items, images = load_clive(settings, cfg.max_mos)
    photos = ladder_photos(cfg, settings)
    unrated = distill_photos(cfg, settings) if cfg.teacher else None
    rows = []
    for seed in seeds:
        train, val = split_items(items, fraction, seed=seed)
        distill = None
        if unrated is not None:
            distill = teacher_set(cfg, teachers.pop(seed), *unrated, fit=_rated(train, images))
        model, result = train_quality_view(cfg, train, val, images, photos, distill)
        if keep is not None:
            save_quality_view(cfg, model, result, train, images, keep / f"split-{seed}.safetensors",
                              "quality_view --split-seeds", f"clive (train part, val_fraction={fraction}, seed={seed})",
                              split={"val_fraction": fraction, "seed": seed})
        rows.append({"split_seed": seed, **result["metrics"]})
    return rows


def write_final(cfg: QualityViewConfig, settings: Settings, out: Path, command: str) -> dict[str, Any]:
    """Train on every CLIVE photo and save a two-view checkpoint (flag heads untrained: train them next)."""
    teacher = load_teacher(cfg, None, settings) if cfg.teacher else None
    items, images = load_clive(settings, cfg.max_mos)
    distill = teacher_set(cfg, teacher, *distill_photos(cfg, settings), fit=_rated(items, images)) if teacher else None
    model, result = train_quality_view(cfg, items, [], images, ladder_photos(cfg, settings), distill)
    return save_quality_view(cfg, model, result, items, images, out, command, f"clive (all {len(items)})",
                             split={"val_fraction": 0, "seed": None})


def save_quality_view(cfg: QualityViewConfig, model: DGIQALite, result: dict[str, Any], items: list[MOSItem],
                      images: dict[Path, np.ndarray], out: Path, command: str, data: str,
                      split: dict[str, Any]) -> dict[str, Any]:
    """Fit the calibration on the training photos ``items`` and write the checkpoint with its record; ``split``: the
    CLIVE photos held out (``val_fraction`` 0: none), which a student distilled from this model must hold out too."""
    raw = predict(model, [images[i.path] for i in items])
    model.calibration = calibration_from(raw, np.array([i.mos for i in items]))
    meta = {
        "model": "dgiqa-lite",
        "version": f"{__version__}+{cfg.name}",
        "arch": model.config.to_dict(),
        "preprocess": {"input_size": list(model.config.input_size), "resize": "whole frame, bilinear antialiased",
                       "fragments": {"grid": cfg.fragments[0], "patch": cfg.fragments[1],
                                     "sampling": "native resolution, patch centred in each cell"},
                       "mean": list(model.config.mean), "std": list(model.config.std), "rgb_range": [0, 1]},
        "depth_source": "prior",
        "distortions": list(DISTORTIONS),
        "flag_thresholds": {k: 0.5 for k in DISTORTIONS},
        "calibration": model.calibration,
        "training": {"quality_view": {"config": asdict(cfg), "command": command, "data": data + (
                                          ", severity ladders of the natural train photos" if cfg.w_severity_rank else "")
                                      + (", a teacher's scores on unrated train-side photos" if cfg.teacher else ""),
                                      "split": split,
                                      **({"distillation": result["distillation"]} if "distillation" in result else {}),
                                      "history": result["history"], "wall_time_s": result["metrics"]["train_s"],
                                      "machine": f"{platform.machine()} torch threads={torch.get_num_threads()}",
                                      "torch": torch.__version__,
                                      **({"metrics": result["metrics"]} if "srocc" in result["metrics"] else {})}},
    }
    save_checkpoint(out, model.state_dict(), meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path)
    ap.add_argument("--split-seeds", type=int, nargs="+")
    ap.add_argument("--final", action="store_true", help="train on every CLIVE photo and write --out")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", type=Path, help="with --split-seeds: save each split's model in this folder")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="override recipe keys")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    cfg = QualityViewConfig.from_yaml(args.recipe) if args.recipe else QualityViewConfig()
    overrides = {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        if key not in QualityViewConfig.__dataclass_fields__:
            raise SystemExit(f"--set {key}: not a quality-view setting")
        v = yaml.safe_load(value)
        overrides[key] = tuple(v) if isinstance(v, list) else v
    cfg = replace(cfg, **overrides)  # checked as the recipe is
    settings = Settings()
    if args.final:
        if args.out is None:
            raise SystemExit("--final needs --out")
        write_final(cfg, settings, args.out, shlex.join(["stream-iqa", "train-quality-view", *argv]))
        return
    seeds = args.split_seeds or [cfg.split_seed]
    rows = compare_split_seeds(cfg, settings, seeds, args.keep)
    print(f"quality view {cfg.fragments[0]}x{cfg.fragments[1]} fragments, {cfg.epochs} epochs, held-out CLIVE "
          f"({cfg.clive_val_fraction or 0.2:.0%}), torch threads={torch.get_num_threads()}")
    draws = cfg.eval_draws > 1
    print("| split seed | SROCC | PLCC |" + (f" SROCC, {cfg.eval_draws} draws |" if draws else "") + " train s |")
    print("|---|---|---|" + ("---|" if draws else "") + "---|")
    for r in rows:
        print(f"| {r['split_seed']} | {r['srocc']:.3f} | {r['plcc']:.3f} |"
              + (f" {r['srocc_draws']:.3f} |" if draws else "") + f" {r['train_s']:.0f} |")
    print(f"| mean | {np.mean([r['srocc'] for r in rows]):.3f} | {np.mean([r['plcc'] for r in rows]):.3f} |"
          + (f" {np.mean([r['srocc_draws'] for r in rows]):.3f} |" if draws else "") + " |")
