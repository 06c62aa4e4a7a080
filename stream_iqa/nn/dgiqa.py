"""DGIQA, the teacher: a faithful rebuild of uf-robopi/DGIQA@3ef7aca and of its official single-image inference.

The network's ``state_dict()`` is the official layout key for key (``shared/manifests/dgiqa_state_dict.json``), so the
released checkpoints load strictly and the distilled student learns from the exact function the paper evaluated.
``forward`` is the raw per-crop network; ``score`` reproduces the official preprocessing and crop averaging, because
the teacher's labels are only trustworthy under the inference recipe it was validated with.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from stream_iqa.depth.base import minmax_per_image
from stream_iqa.log import get_logger
from stream_iqa.nn.api import IQAOutput, ScoringModel
from stream_iqa.nn.checkpoint import SETTING as CHECKPOINT_SETTING
from stream_iqa.nn.checkpoint import CheckpointError, layout_problems, read_torch_state_dict
from stream_iqa.nn.registry import register_model

log = get_logger(__name__)

SWIN = "swin_tiny_patch4_window7_224"
CROP = 224
SHORT_SIDE = 384
#: (Swin stage channels, TCB channels) per stage; the TCB outputs concatenate to 960 channels
STAGES: tuple[tuple[int, int], ...] = ((96, 64), (192, 128), (384, 256), (768, 512))
FUSED = sum(out for _, out in STAGES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: top-level names of an older internal class, renamed whole (``spatialattention`` must not touch
#: ``cross_spatialattention``, hence a lookup on the first key component rather than substring replacement)
LEGACY_NAMES: dict[str, str] = {
    **{f"tsb{i}{s}": f"tcb{i}{s}" for i in range(1, 5) for s in ("", "_depth")},
    "cross_spatialattention": "depth_guided_cross_attention",
    "spatialattention": "refinement_attention",
}
#: buffers that timm 0.9.0–0.9.5 saved with Swin and later versions recompute (non-persistent)
STALE_BUFFER_SUFFIXES = (".attn.relative_position_index", ".attn_mask")


class TransformerCNNBridge(nn.Module):
    """TCB: distils a Swin stage into fewer channels; the gate is per pixel (no pooling), as in the official code."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 16, drop: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.attention = nn.Sequential(
            nn.Conv2d(out_channels, out_channels // reduction, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels // reduction, out_channels, kernel_size=1),
            nn.Sigmoid(),
        )
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout2d(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x * self.attention(x)
        return self.drop(self.relu(self.norm(self.conv2(x))))


def _feed_forward(dim: int) -> nn.Sequential:
    # Indices 0 and 2 are part of the checkpoint layout; the official dropout sits outside this Sequential.
    return nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))


class DepthGuidedCrossAttention(nn.Module):
    """Depth-CAR block A: depth tokens query RGB tokens, so depth decides *where* RGB evidence is gathered."""

    def __init__(self, dim: int = FUSED, heads: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc = _feed_forward(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, depth: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """(N, L, C) depth and RGB tokens → (N, L, C); post-LN with residuals onto the depth stream."""
        attended, _ = self.multihead_attn(depth, rgb, rgb, need_weights=False)
        x = self.norm1(depth + self.dropout(attended))
        return self.norm2(x + self.dropout(self.fc(x)))


class RefinementAttention(nn.Module):
    """Depth-CAR block B: the same post-LN layer as self-attention (its own ``*_spatial`` checkpoint names)."""

    def __init__(self, dim: int = FUSED, heads: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.multihead_attn_spatial = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1_spatial = nn.LayerNorm(dim)
        self.norm2_spatial = nn.LayerNorm(dim)
        self.fc_spatial = _feed_forward(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, _ = self.multihead_attn_spatial(x, x, x, need_weights=False)
        x = self.norm1_spatial(x + self.dropout(attended))
        return self.norm2_spatial(x + self.dropout(self.fc_spatial(x)))


class DGIQA(ScoringModel):
    """The DGIQA network plus the official inference as ``score``.

    ``crops`` and ``seed`` belong to the inference recipe, not the weights: the official score is a mean over random
    224² crops, so the crop count and positions are part of what a reported teacher score means.
    """

    model_name = "dgiqa"
    version = "3ef7aca"

    def __init__(self, crops: int = 10, seed: int = 0) -> None:
        super().__init__()
        if crops < 1:
            raise ValueError(f"crops must be >= 1, got {crops}")
        self.crops = crops
        self.seed = seed
        # Attribute order fixes the state-dict order, which must equal the official one.
        self.backbone = timm.create_model(SWIN, pretrained=False, features_only=True, img_size=CROP)
        self.depth_backbone = timm.create_model(SWIN, pretrained=False, features_only=True, img_size=CROP)
        self.tcb1, self.tcb2, self.tcb3, self.tcb4 = (TransformerCNNBridge(i, o) for i, o in STAGES)
        self.tcb1_depth, self.tcb2_depth, self.tcb3_depth, self.tcb4_depth = (
            TransformerCNNBridge(i, o) for i, o in STAGES
        )
        self.depth_guided_cross_attention = DepthGuidedCrossAttention()
        self.refinement_attention = RefinementAttention()
        self.dilated_stack = nn.Sequential(
            nn.Conv2d(FUSED, 1024, kernel_size=3, padding=2, dilation=2),
            nn.BatchNorm2d(1024),
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=3, padding=4, dilation=4),
            nn.BatchNorm2d(1024),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(1024, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x_rgb: torch.Tensor, x_depth: torch.Tensor) -> torch.Tensor:
        """(N,3,224,224) ImageNet-normalised RGB and 3-channel depth crops → (N,) quality in (0,1)."""
        rgb = _fuse(self.backbone(x_rgb), (self.tcb1, self.tcb2, self.tcb3, self.tcb4))
        depth_bridges = (self.tcb1_depth, self.tcb2_depth, self.tcb3_depth, self.tcb4_depth)
        depth = _fuse(self.depth_backbone(x_depth), depth_bridges)
        n, c, h, w = rgb.shape
        tokens = self.depth_guided_cross_attention(_tokens(depth), _tokens(rgb))
        tokens = self.refinement_attention(tokens)
        fused = self.dilated_stack(tokens.transpose(1, 2).reshape(n, c, h, w))
        return torch.sigmoid(self.fc(fused.mean(dim=(2, 3)))).view(-1)

    @torch.inference_mode()
    def score(self, rgb: torch.Tensor, depth: torch.Tensor, fragments: torch.Tensor | None = None) -> IQAOutput:
        """Official inference per image: (N,3,H,W) RGB in [0,1] and (N,1,H,W) depth in [0,1] → quality on 0–100.

        Each image gets its own generator seeded with ``self.seed``, so a score depends only on the image and the
        seed — not on batch composition or call history. The shorter side is resized to 384 like the official
        ``SmallestMaxSize(384)``, which also upsamples small frames; both sides are then >= 384 > 224, so every crop
        fits and no padding is ever needed.
        """
        if rgb.ndim != 4 or rgb.shape[1] != 3 or depth.ndim != 4 or depth.shape[1] != 1 or len(rgb) != len(depth):
            shapes = f"{tuple(rgb.shape)} and {tuple(depth.shape)}"
            raise ValueError(f"expected (N,3,H,W) RGB and (N,1,H,W) depth, got {shapes}")
        rgb, depth = rgb.to(self.device, torch.float32), depth.to(self.device, torch.float32)
        if depth.shape[-2:] != rgb.shape[-2:]:
            # The official pipeline estimates depth at full resolution and resizes it bilinearly to the image.
            depth = F.interpolate(depth, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        rgb, depth = official_preprocess(rgb, depth)
        rgb, depth = (rgb - self.mean) / self.std, (depth - self.mean) / self.std
        quality = torch.stack([self._mean_over_crops(r, d) for r, d in zip(rgb, depth)])
        return IQAOutput(quality * 100.0, None)

    def _mean_over_crops(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        positions = crop_positions(rgb.shape[-2:], self.crops, self.seed)
        rgb_crops = torch.stack([rgb[:, y : y + CROP, x : x + CROP] for y, x in positions])
        depth_crops = torch.stack([depth[:, y : y + CROP, x : x + CROP] for y, x in positions])
        return self(rgb_crops, depth_crops).mean()


def _fuse(features: list[torch.Tensor], bridges: tuple[nn.Module, ...]) -> torch.Tensor:
    """Swin's four NHWC stages → TCBs → bilinear to the coarsest grid (7×7) → concatenated (N,960,7,7)."""
    size = features[-1].shape[1:3]
    maps = [bridge(f.permute(0, 3, 1, 2)) for f, bridge in zip(features, bridges)]
    return torch.cat([F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps], dim=1)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) → (N,H·W,C), row-major like the official ``(h w)`` flattening; no positional encoding."""
    return x.flatten(2).transpose(1, 2)


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255.0).round().div(255.0)


def official_preprocess(rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Emulate the official uint8 path, before normalisation: (N,3,H,W), (N,1,H,W) → two (N,3,h,w) in [0,1].

    The official script reads an 8-bit image, turns depth into 8-bit by min-max scaling and *truncating*
    (``astype(uint8)``), and resizes both as uint8 with OpenCV (bilinear, no antialias, rounded back to 8 bits).
    Reproducing the quantisation keeps teacher labels on the same input grid the checkpoints were trained on.
    """
    rgb = _quantise(rgb.clamp(0.0, 1.0))
    depth = torch.floor(minmax_per_image(depth) * 255.0) / 255.0
    size = short_side_size(rgb.shape[-2:], SHORT_SIDE)
    if size != tuple(rgb.shape[-2:]):  # albumentations skips the resize when the scale is exactly 1
        both = F.interpolate(torch.cat([rgb, depth], dim=1), size=size, mode="bilinear", align_corners=False)
        rgb, depth = _quantise(both[:, :3]), _quantise(both[:, 3:])
    return rgb, depth.expand(-1, 3, -1, -1)


def short_side_size(hw: tuple[int, int] | torch.Size, short: int) -> tuple[int, int]:
    """albumentations' ``SmallestMaxSize``: scale so the shorter side is ``short``, each side rounded."""
    h, w = int(hw[0]), int(hw[1])
    scale = short / min(h, w)
    return round(h * scale), round(w * scale)


def crop_positions(hw: tuple[int, int] | torch.Size, crops: int, seed: int) -> list[tuple[int, int]]:
    """(y, x) corners of ``crops`` random 224² crops, drawn x first like the official ``get_random_crops``.

    A private ``random.Random`` mirrors the official use of Python's ``random`` without touching global state. The
    official stream is also advanced by albumentations' own draws, so positions are not claimed bit-identical to it.
    """
    rng = random.Random(seed)
    positions = []
    for _ in range(crops):
        x = rng.randint(0, int(hw[1]) - CROP)
        y = rng.randint(0, int(hw[0]) - CROP)
        positions.append((y, x))
    return positions


def convert_official_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map every published variant of the checkpoint onto the current layout (see ``LEGACY_NAMES``).

    Handles a DataParallel ``module.`` prefix, the older top-level names and the Swin buffers timm 0.9.0–0.9.5 saved.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith(STALE_BUFFER_SUFFIXES):
            continue
        head, dot, rest = key.partition(".")
        out[LEGACY_NAMES.get(head, head) + dot + rest] = value
    return out


def load_official_dgiqa(path: str | Path, crops: int = 10, seed: int = 0) -> DGIQA:
    """Build DGIQA from an official bare state dict ``.pth`` (e.g. ``DGIQA_Koniq10k.pth``), loaded strictly."""
    state = convert_official_state_dict(
        read_torch_state_dict(path, "DGIQA checkpoint (official .pth, e.g. DGIQA_Koniq10k.pth)", CHECKPOINT_SETTING)
    )
    model = DGIQA(crops=crops, seed=seed)
    problems = layout_problems(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"{path} is not a DGIQA checkpoint: {problems}")
    model.load_state_dict(state, strict=True)
    return model


@register_model("dgiqa")
def build_dgiqa(checkpoint: Path | None = None, crops: int = 10, seed: int = 0, **kw: Any) -> DGIQA:
    """Registry builder; without a checkpoint the weights are random (enough for speed tests, useless for scores)."""
    if kw:
        # The registry passes one set of overrides to every model; options meant for other models do not apply here.
        log.debug("dgiqa ignores options", options=sorted(kw))
    if checkpoint is None:
        return DGIQA(crops=crops, seed=seed)
    return load_official_dgiqa(checkpoint, crops=crops, seed=seed)
