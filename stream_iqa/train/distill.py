"""``stream-iqa distill``: teach the student the official DGIQA's judgement on unlabelled images or frames.

The teacher runs its official inference (K random crops + depth) once per image; its scores and its pooled
Depth-CAR refinement tokens (960-d) are cached as targets. The student then learns the scores (regression plus
pairwise ranking, since rank agreement is what SROCC rewards) and, through a throw-away linear projection, the
teacher's feature direction (cosine loss): the standard score + feature distillation pair. The flag heads are kept
as they were (the teacher has none), so start from a trained student checkpoint to keep its flags.

Here the official weights cannot be downloaded, so the shipped student is not distilled; the command is tested with
a randomly initialised teacher and documented in models/README.md for users who have ``DGIQA_Koniq10k.pth``. The
shipped student is two-view (model v2): its quality view learns from the same teacher in stage 1
(``stream_iqa.train.quality_view``, ``teacher: dgiqa:PATH``), which this command points to.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stream_iqa.depth import create_depth_source
from stream_iqa.images import read_rgb, resize_tensor, to_tensor
from stream_iqa.log import get_logger
from stream_iqa.nn.checkpoint import save_checkpoint
from stream_iqa.nn.lite import DGIQALite, lite_from_checkpoint
from stream_iqa.nn.registry import create_model
from stream_iqa.model.scorer import expand_paths
from stream_iqa.settings import Settings
from stream_iqa.train.dataset import to_unit_tensors
from stream_iqa.train.trainer import pairwise_rank_loss

log = get_logger(__name__)


@dataclass
class DistillConfig:
    epochs: int = 5
    batch_size: int = 16
    lr: float = 3e-4
    w_score: float = 1.0
    w_rank: float = 0.5
    w_feature: float = 0.5
    crops: int = 10
    seed: int = 0


class _Capture:
    """Keeps the last output of a module (a forward hook), so targets need no change to the model code."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _m: torch.nn.Module, _i: Any, out: Any) -> None:
        self.value = out[0] if isinstance(out, tuple) else out


@torch.inference_mode()
def teacher_targets(teacher: torch.nn.Module, depth_source: Any, paths: list[Path], size: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image: the student's input arrays, the teacher's score (0–100) and its crop-averaged pooled tokens."""
    capture = _Capture(teacher.refinement_attention)
    rgbs, depths, scores, feats = [], [], [], []
    try:
        for path in tqdm(paths, desc="teacher", leave=False, disable=None):
            rgb = to_tensor(read_rgb(path))
            depth = depth_source(rgb)
            out = teacher.score(rgb, depth)
            tokens = capture.value  # (crops, tokens, 960) from the teacher's refinement block
            feats.append(tokens.float().mean(dim=(0, 1)).numpy())
            scores.append(float(out.quality[0]))
            rgbs.append((resize_tensor(rgb, size)[0] * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy())
            depths.append((resize_tensor(depth, size)[0, 0] * 255 + 0.5).to(torch.uint8).numpy())
    finally:
        capture.handle.remove()
    return np.stack(rgbs), np.stack(depths), np.asarray(scores, np.float32), np.stack(feats)


def distill(cfg: DistillConfig, settings: Settings, teacher_checkpoint: Path | None, images: list[Path],
            student_checkpoint: Path | None, out: Path, command: str | None = None,
            teacher: torch.nn.Module | None = None) -> dict[str, Any]:
    started = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if student_checkpoint is not None:
        student, base_meta = lite_from_checkpoint(student_checkpoint)
    else:
        student, base_meta = DGIQALite(), {}
    if student.fragment_spec is not None:  # checked before the teacher's slow pass over the images
        raise ValueError(f"{student_checkpoint} is a two-view student (quality from native fragments, model v2): "
                         "`stream-iqa distill` trains a single-view student's whole-frame quality path. A two-view "
                         "student's quality view is distilled in its stage 1, `stream-iqa train-quality-view` with "
                         "`teacher: dgiqa:PATH` in the recipe (configs/train-quality-dgiqa.yaml), and its flags are "
                         "then retrained on the new trunk: `make train-dgiqa-distilled DGIQA=PATH` runs both")
    if teacher is None:
        teacher = create_model("dgiqa", checkpoint=teacher_checkpoint, device="cpu", crops=cfg.crops, seed=cfg.seed)
    depth_source = create_depth_source(settings.depth, "cpu")
    paths = list(expand_paths(images))
    if len(paths) < 2:
        raise ValueError("distillation needs at least two images")
    rgb, depth, t_score, t_feat = teacher_targets(teacher, depth_source, paths, student.config.input_size)
    proj = torch.nn.Linear(student.config.token_dim, t_feat.shape[1])
    capture = _Capture(student.car)
    opt = torch.optim.AdamW(list(student.parameters()) + list(proj.parameters()), lr=cfg.lr, weight_decay=1e-4)
    t_score_t, t_feat_t = torch.from_numpy(t_score), F.normalize(torch.from_numpy(t_feat), dim=1)
    history = []
    student.train()
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(paths))
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x, d = student.preprocess(*to_unit_tensors(rgb[idx], depth[idx]))
            q_logit, _ = student(x, d)
            q = torch.sigmoid(q_logit) * 100.0
            tokens = capture.value.mean(dim=1)
            loss = (cfg.w_score * F.smooth_l1_loss(q / 100.0, t_score_t[idx] / 100.0, beta=0.05)
                    + cfg.w_rank * pairwise_rank_loss(q, t_score_t[idx], None, 5.0)
                    + cfg.w_feature * (1 - F.cosine_similarity(proj(tokens), t_feat_t[idx], dim=1)).mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append({"epoch": epoch + 1, "loss": total / len(paths)})
        log.info("distill epoch", epoch=epoch + 1, loss=round(total / len(paths), 5))
    capture.handle.remove()
    student.eval()
    # the student now speaks the teacher's scale (sigmoid × 100); an earlier MOS calibration no longer applies
    student.calibration = {"kind": "identity", "note": "teacher's scale: sigmoid output × 100"}
    meta = {
        **{k: v for k, v in base_meta.items() if k not in ("format", "tensors_sha256")},
        "model": "dgiqa-lite",
        "arch": student.config.to_dict(),
        "version": base_meta.get("version", student.version) + "+distilled",
        "depth_source": depth_source.name,
        "calibration": student.calibration,
        "distillation": {
            "teacher": str(teacher_checkpoint) if teacher_checkpoint else "random-weight teacher (test)",
            "teacher_crops": cfg.crops, "images": len(paths), "config": asdict(cfg), "history": history,
            "command": command or " ".join(sys.argv), "wall_time_s": round(time.time() - started, 1),
        },
    }
    save_checkpoint(out, student.state_dict(), meta)
    return meta
