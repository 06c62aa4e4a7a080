"""Depth Anything V1/V2 ViT-S as a depth source: timm's DINOv2 ViT-S/14 encoder plus the DPT head written here.

The official ViT-S checkpoints load strictly after dropping ``pretrained.mask_token`` (an iBOT training token timm
does not have); see ``shared/manifests/README.md``. Two details decide whether the numbers match the official code:
which blocks are tapped (V1 and V2 files share one layout, so the version must be stated) and how the position
embeddings are resampled for inputs other than 518×518 (see ``interpolate_pos_embed``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import timm
import torch
import torch.nn.functional as F
from torch import nn

from stream_iqa.depth.base import DepthSource
from stream_iqa.nn.checkpoint import CheckpointError, layout_problems, read_torch_state_dict

Version = Literal["v1", "v2"]

CHECKPOINT_SETTING = "STREAM_IQA_DEPTH__DEPTH_ANYTHING_CHECKPOINT"
ENCODER = "vit_small_patch14_dinov2"
PATCH = 14
BUILD_SIZE = 518  # the checkpoints' pos_embed is a 37×37 grid
#: blocks whose (normed) tokens feed the head; V1 took "the last four" by accident, V2 spreads them out
TAPS: dict[str, tuple[int, ...]] = {"v1": (8, 9, 10, 11), "v2": (2, 5, 8, 11)}
FEATURES = 64
OUT_CHANNELS = (48, 96, 192, 384)
MASK_TOKEN = "pretrained.mask_token"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], offset: float = 0.1) -> torch.Tensor:
    """(1, 1+S², C) position embeddings → (1, 1+gh·gw, C) the way the official DINOv2 code does it.

    Bicubic by ``scale_factor = ((gh+offset)/S, (gw+offset)/S)`` without antialiasing, rows first. timm instead
    resizes to an explicit size with antialiasing, which shifts features by ~0.07 at 364×504; depth labels must come
    from the function the checkpoints were trained with. The base grid is returned untouched, as upstream does.
    """
    side = math.isqrt(pos_embed.shape[1] - 1)
    if tuple(grid) == (side, side):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:].float()
    patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(
        patch_pos, scale_factor=((grid[0] + offset) / side, (grid[1] + offset) / side), mode="bicubic", antialias=False
    )
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


def reference_input_size(hw: tuple[int, int], input_size: int = BUILD_SIZE) -> tuple[int, int]:
    """The official ``Resize(lower_bound, keep_aspect_ratio, ensure_multiple_of=14)``: shorter side ≈ ``input_size``,
    each side rounded (half to even, like ``np.round``) to a multiple of 14 but never below ``input_size``."""
    h, w = hw
    scale = max(input_size / h, input_size / w)

    def fit(x: float) -> int:
        y = round(x / PATCH) * PATCH
        return y if y >= input_size else math.ceil(x / PATCH) * PATCH

    return fit(scale * h), fit(scale * w)


class _ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class _FusionBlock(nn.Module):
    """DPT refinenet: add the skip, refine, upsample (to ``size`` or ×2, align_corners=True), project."""

    def __init__(self, features: int) -> None:
        super().__init__()
        # Declaration order is the checkpoint order: out_conv comes first upstream.
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: torch.Size | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        resize = {"size": size} if size is not None else {"scale_factor": 2}
        x = F.interpolate(x, **resize, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class _Scratch(nn.Module):
    def __init__(self, features: int, out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = (
            nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False) for c in out_channels
        )
        self.refinenet1, self.refinenet2, self.refinenet3, self.refinenet4 = (_FusionBlock(features) for _ in range(4))
        self.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1),
            nn.ReLU(),
        )


class DPTHead(nn.Module):
    """DPT decoder without class-token readout (``use_clstoken=False``) and without BN, as in the ViT-S configs."""

    def __init__(self, dim: int = 384, features: int = FEATURES, out_channels: tuple[int, ...] = OUT_CHANNELS) -> None:
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, kernel_size=1) for c in out_channels)
        # Taps are all at 1/14; these bring them to 4/14, 2/14, 1/14 and 1/28 of the input.
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = _Scratch(features, out_channels)

    def forward(self, taps: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """Four (N, gh·gw, C) patch-token maps → (N,1,14·gh,14·gw) non-negative inverse depth."""
        s = self.scratch
        layers = []
        for tokens, project, resize, rn in zip(
            taps, self.projects, self.resize_layers, (s.layer1_rn, s.layer2_rn, s.layer3_rn, s.layer4_rn)
        ):
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
            layers.append(rn(resize(project(x))))
        l1, l2, l3, l4 = layers
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        out = s.output_conv1(path)
        out = F.interpolate(out, size=(grid[0] * PATCH, grid[1] * PATCH), mode="bilinear", align_corners=True)
        return s.output_conv2(out)


class DepthAnything(nn.Module):
    """Depth Anything ViT-S: normalised (N,3,H,W), H and W multiples of 14 → (N,1,H,W) relative inverse depth.

    V1's extra ``interpolate(depth, (H, W), align_corners=True)`` before its final ReLU is omitted because it is an
    exact identity: the head already outputs 14·(H/14) × 14·(W/14) = H × W. V1 and V2 thus differ only in ``TAPS``.
    """

    def __init__(self, version: Version = "v2") -> None:
        super().__init__()
        if version not in TAPS:
            raise ValueError(f"Depth Anything version must be one of {sorted(TAPS)}, got {version!r}")
        self.version = version
        self.taps = TAPS[version]
        # dynamic_img_size only lets the patch embedding accept any multiple of 14; the pos-embed is resampled here.
        self.pretrained = timm.create_model(
            ENCODER, pretrained=False, img_size=BUILD_SIZE, num_classes=0, dynamic_img_size=True
        )
        self.depth_head = DPTHead(self.pretrained.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % PATCH or w % PATCH:
            raise ValueError(f"Depth Anything needs H and W to be multiples of {PATCH}, got {h}x{w}")
        grid = (h // PATCH, w // PATCH)
        return F.relu(self.depth_head(self._encode(x, grid), grid))

    def _encode(self, x: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
        """The tapped blocks' patch tokens after the final LayerNorm; the class token is dropped (no readout)."""
        vit = self.pretrained
        tokens = vit.patch_embed(x).flatten(1, 2)  # NHWC → (N, gh·gw, C)
        tokens = torch.cat([vit.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = tokens + interpolate_pos_embed(vit.pos_embed, grid)
        taps = []
        for i, block in enumerate(vit.blocks[: self.taps[-1] + 1]):
            tokens = block(tokens)
            if i in self.taps:
                taps.append(vit.norm(tokens)[:, 1:])
        return taps

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This network's weights in the official layout (a zero ``mask_token`` added), loadable by upstream code."""
        state: dict[str, torch.Tensor] = {}
        for key, value in self.state_dict().items():
            state[key] = value
            if key == "pretrained.pos_embed":
                state[MASK_TOKEN] = value.new_zeros(1, value.shape[-1])
        return state

    def load_official_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Strict load of an official state dict; a wrong file raises ValueError naming a few offending keys."""
        state = {k: v for k, v in state.items() if k != MASK_TOKEN}
        problems = layout_problems(self.state_dict(), state)
        if problems:
            raise ValueError(f"not a Depth Anything ViT-S state dict: {problems}")
        self.load_state_dict(state, strict=True)


def load_depth_anything(path: str | Path, version: Version) -> DepthAnything:
    """Build from an official ViT-S ``.pth``; ``version`` must match the file (layouts are identical)."""
    path = Path(path)
    state = read_torch_state_dict(
        path, "Depth Anything ViT-S checkpoint (depth_anything_v2_vits.pth or depth_anything_vits14.pth)", CHECKPOINT_SETTING
    )
    net = DepthAnything(version)
    try:
        net.load_official_state_dict(state)
    except ValueError as exc:  # a readable .pth of another layout: the file is wrong, not the program
        raise CheckpointError(f"{path}: {exc}") from exc
    return net


class DepthAnythingSource(DepthSource):
    """Depth Anything behind the common depth interface, with the official input transform.

    ``checkpoint=None`` gives random weights: only for tests and benchmarks, the depth is meaningless.
    """

    def __init__(self, checkpoint: str | Path | None, version: Version = "v2", input_size: int = BUILD_SIZE) -> None:
        self.net = (DepthAnything(version) if checkpoint is None else load_depth_anything(checkpoint, version)).eval()
        self.version = version
        self.input_size = input_size
        self.name = f"depth-anything-{version}"
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def to(self, device: torch.device | str) -> "DepthAnythingSource":
        self.net.to(device)
        self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self

    def _estimate(self, rgb: torch.Tensor) -> torch.Tensor:
        """Bicubic resize (same kernel as cv2.INTER_CUBIC, no antialias) to the reference size, then the network."""
        device = self._mean.device
        size = reference_input_size((rgb.shape[-2], rgb.shape[-1]), self.input_size)
        x = F.interpolate(rgb.to(device), size=size, mode="bicubic", align_corners=False)
        return self.net((x - self._mean) / self._std).to(rgb.device)
