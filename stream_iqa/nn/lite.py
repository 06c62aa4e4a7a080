"""DGIQA-Lite: the student we run on every sampled video frame.

It keeps DGIQA's ideas and drops its cost (see docs/MODEL.md for the measured table that chose the defaults):

* one ImageNet-initialised timm trunk (``features_only``; EfficientNet-Lite0 by default, any timm trunk by config)
  instead of two Swin-T trunks — depth is a smooth one-channel map and does not need a 27M-parameter encoder;
* a small strided depth encoder working from 1/4 resolution, since depth maps carry no fine texture;
* lite TCBs (1×1 projection, the same per-pixel channel gate, a depthwise 3×3) per stage and modality;
* a lite Depth-CAR: depth-derived queries attend over RGB tokens (post-LN, as in the reference), then
  self-attention refinement. Unlike the reference, the RGB tokens also bypass the attention into the dilated stack:
  with a cheap depth prior the queries can be uninformative (the paper's own stated failure case), and the bypass
  lets the network fall back on appearance alone;
* one deterministic pass over the whole frame at a low fixed resolution, instead of 10–20 random 224² crops;
* heads for quality (0–100 after calibration) and the three distortion flags (independent logits, multi-label).

Two views (``LiteConfig.fragments``, model v2): quality is then read from native-resolution fragments
(``stream_iqa.fragments``: a grid of small native patches spliced into one image) through the same trunk and a lean
head — the global average of every tapped stage, one linear layer — because resizing the frame to 192² destroys the
fine-scale distortions people judge; the flags keep the whole-frame, depth-guided path, which low light, haze and
flare need (they are about layout, not texture). Without ``fragments`` the checkpoint is the v1 single-view layout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from stream_iqa import __version__
from stream_iqa.images import resize_frames_and_depth
from stream_iqa.model.card import ModelCard, checked_card
from stream_iqa.nn.api import DISTORTIONS, IQAOutput, ScoringModel
from stream_iqa.nn.checkpoint import CheckpointError, layout_problems, load_checkpoint, meta_label
from stream_iqa.nn.efficientnet_lite import load_imagenet_weights, supported_trunks
from stream_iqa.nn.fragments import FragmentSpec, gather_fragments
from stream_iqa.nn.registry import register_model


@dataclass
class LiteConfig:
    trunk: str = "tf_efficientnet_lite0"
    trunk_indices: tuple[int, ...] = (1, 2, 3, 4)
    input_size: tuple[int, int] = (192, 192)  # (H, W); multiples of 32, the whole frame is resized to it
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    tcb_dims: tuple[int, ...] = (32, 48, 64, 96)
    depth_dims: tuple[int, ...] = (16, 24, 32, 48)
    token_dim: int = 128
    heads: int = 4
    ffn_mult: int = 2
    dropout: float = 0.1
    dilated_dim: int = 192
    gate_reduction: int = 4
    global_dim: int = 256  # 0 disables the trunk-statistics skip
    # Flags that also get a local evidence branch: a per-location logit map from the trunk's stride-8 and stride-16
    # maps (at stride 16), soft-max pooled over space (log-mean-exp) and added to the global logit. Empty: no branch,
    # the layout of checkpoints saved before it existed.
    local_flags: tuple[str, ...] = ()
    local_dim: int = 48
    local_sharpness: float = 4.0  # log-mean-exp temperature: 0 → mean pooling, ∞ → max pooling
    # (grid, patch): quality from a grid×grid lattice of patch² native-resolution fragments through the shared trunk
    # and a lean head (stream_iqa.fragments); () → quality from the whole-frame head (the v1 layout)
    fragments: tuple[int, ...] = ()
    # False: the depth-guidance ablation. The depth encoder, depth TCBs and Depth-CAR stay, but read a constant map
    # (0.5 everywhere) instead of the depth source's, so the flags (and a v1 model's quality) see no depth information.
    depth_guidance: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LiteConfig":
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


class LiteTCB(nn.Module):
    """TCB with the reference's per-pixel channel gate and a depthwise 3×3 in place of the dense one."""

    def __init__(self, cin: int, cout: int, reduction: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)
        hidden = max(cout // reduction, 4)
        self.gate = nn.Sequential(nn.Conv2d(cout, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, cout, 1), nn.Sigmoid())
        self.dw = nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        x = x * self.gate(x)
        return self.drop(F.relu(self.norm(self.dw(x)), inplace=True))


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DepthEncoder(nn.Module):
    """Strides 4, 8, 16, 32 from a one-channel map, starting at 1/4 resolution (depth has no fine texture)."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        cin = 1
        for i, d in enumerate(dims):
            self.stages.append(_conv_bn_relu(cin, d, stride=1 if i == 0 else 2))
            cin = d

    def forward(self, depth: torch.Tensor) -> list[torch.Tensor]:
        x = F.avg_pool2d(depth, 4)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class PostLNAttention(nn.Module):
    """The reference's post-LN transformer layer: attention → dropout → residual → LN → FFN → residual → LN."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * ffn_mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * ffn_mult, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attn(query, context, context, need_weights=False)
        x = self.norm1(query + self.drop(attended))
        return self.norm2(x + self.drop(self.ffn(x)))


class LiteDepthCAR(nn.Module):
    """Depth queries attend over RGB tokens (block A), then self-attention refinement (block B)."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.cross = PostLNAttention(dim, heads, ffn_mult, dropout)
        self.refine = PostLNAttention(dim, heads, ffn_mult, dropout)

    def forward(self, rgb_tokens: torch.Tensor, depth_tokens: torch.Tensor) -> torch.Tensor:
        x = self.cross(depth_tokens, rgb_tokens)
        return self.refine(x, x)


def _dw_separable(cin: int, cout: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LocalFlagHead(nn.Module):
    """Per-location flag logits from the trunk's stride-8 and stride-16 maps, soft-max pooled over space.

    A flare is a local event (a bright source, its spikes and ghosts) that the global mean/max pool of the coarse
    6×6 token grid can wash out; this branch scores every stride-16 cell on its own and pools with log-mean-exp, so
    one cell with strong evidence can raise the flag. It reads the trunk's maps through its own projection, not the
    TCBs the quality head shares, so that training it (the trainer's auxiliary loss) does not reshape the quality
    path. The last conv starts at zero: the branch adds nothing until trained.
    """

    def __init__(self, cin: int, dim: int, n_out: int, sharpness: float) -> None:
        super().__init__()
        self.sharpness = float(sharpness)
        self.mix = nn.Sequential(
            nn.Conv2d(cin, dim, 1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.Conv2d(dim, dim, 1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            # dilated: each cell sees ~7 cells (112 px at 192) around it, enough to tell spikes radiating from a
            # bright source from the thin bright lines of paving or stems, which one cell's view confuses
            nn.Conv2d(dim, dim, 3, padding=2, dilation=2, groups=dim, bias=False),
            nn.Conv2d(dim, dim, 1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(dim, n_out, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, fine: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.avg_pool2d(fine, 2), mid], dim=1)
        logits = self.out(self.mix(x)).flatten(2)  # (N, K, cells)
        r = self.sharpness
        if r <= 0:
            return logits.mean(dim=2)
        # log-mean-exp / r: mean pooling at r→0, max pooling at r→∞; no constant offset for a uniform map
        return (torch.logsumexp(r * logits, dim=2) - math.log(logits.shape[2])) / r


class DGIQALite(ScoringModel):
    model_name = "dgiqa-lite"

    def __init__(self, config: LiteConfig | None = None, pretrained_trunk: bool = True) -> None:
        super().__init__()
        self.config = cfg = config or LiteConfig()
        if any(s % 32 for s in cfg.input_size):
            raise ValueError(f"input_size {cfg.input_size} must be multiples of 32 (the trunk's output stride)")
        self.trunk = timm.create_model(cfg.trunk, pretrained=False, features_only=True, out_indices=cfg.trunk_indices)
        if pretrained_trunk:
            if cfg.trunk not in supported_trunks():
                raise ValueError(
                    f"no local ImageNet weights for trunk {cfg.trunk!r} (packaged: {', '.join(supported_trunks())}); "
                    "pass pretrained_trunk=False or load a checkpoint"
                )
            load_imagenet_weights(self.trunk, cfg.trunk)
        chans = self.trunk.feature_info.channels()
        self.reductions = self.trunk.feature_info.reduction()
        if len(cfg.tcb_dims) != len(chans) or len(cfg.depth_dims) != len(chans):
            raise ValueError("tcb_dims and depth_dims need one entry per trunk stage")
        self.tcbs = nn.ModuleList(LiteTCB(c, d, cfg.gate_reduction, cfg.dropout) for c, d in zip(chans, cfg.tcb_dims))
        self.depth_encoder = DepthEncoder(cfg.depth_dims)
        self.tcbs_depth = nn.ModuleList(
            LiteTCB(d, d, cfg.gate_reduction, cfg.dropout) for d in cfg.depth_dims
        )
        self.rgb_proj = nn.Conv2d(sum(cfg.tcb_dims), cfg.token_dim, 1)
        self.depth_proj = nn.Conv2d(sum(cfg.depth_dims), cfg.token_dim, 1)
        self.car = LiteDepthCAR(cfg.token_dim, cfg.heads, cfg.ffn_mult, cfg.dropout)
        self.dilated = nn.Sequential(
            _dw_separable(2 * cfg.token_dim, cfg.dilated_dim, 2), _dw_separable(cfg.dilated_dim, cfg.dilated_dim, 4)
        )
        # Mean and standard deviation of every trunk stage: the classic global statistics of quality (texture energy,
        # noise, contrast), handed to the heads directly so that they need not survive the token path.
        self.global_stats = (
            nn.Sequential(nn.LayerNorm(2 * sum(chans)), nn.Linear(2 * sum(chans), cfg.global_dim), nn.GELU())
            if cfg.global_dim
            else None
        )
        head_in = 2 * cfg.dilated_dim + cfg.global_dim
        if cfg.fragments and len(cfg.fragments) != 2:
            raise ValueError(f"fragments must be (grid, patch), got {cfg.fragments}")
        #: the quality view's sampling, or None when quality comes from the whole frame (v1)
        self.fragment_spec: FragmentSpec | None = FragmentSpec(*cfg.fragments) if cfg.fragments else None
        if self.fragment_spec is None:
            self.head_quality: nn.Module = nn.Linear(head_in, 1)
        else:  # the lean head: global average of each tapped stage of the fragment image, one linear layer
            self.head_quality = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(sum(chans), 1))
        self.head_distortions = nn.Linear(head_in, len(DISTORTIONS))
        unknown = set(cfg.local_flags) - set(DISTORTIONS)
        if unknown:
            raise ValueError(f"local_flags {sorted(unknown)} are not flags ({', '.join(DISTORTIONS)})")
        if cfg.local_flags and len(chans) < 3:
            raise ValueError("local_flags needs the trunk's stride-8 and stride-16 stages (at least three stages)")
        self.local_index = [DISTORTIONS.index(k) for k in DISTORTIONS if k in cfg.local_flags]
        self.local_flags = (
            LocalFlagHead(chans[1] + chans[2], cfg.local_dim, len(self.local_index), cfg.local_sharpness)
            if self.local_index
            else None
        )
        place = torch.zeros(len(self.local_index), len(DISTORTIONS))
        for row, col in enumerate(self.local_index):
            place[row, col] = 1.0
        self.register_buffer("local_place", place, persistent=False)
        self.last_local_logits: torch.Tensor | None = None
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        self.calibration: dict[str, Any] = {"kind": "identity"}
        #: per-flag decision thresholds fixed at training time on held-out development photos
        self.flag_thresholds: dict[str, float] = {k: 0.5 for k in DISTORTIONS}
        self.version = __version__
        self.meta: dict[str, Any] = {}

    @property
    def card(self) -> ModelCard:
        """The card of the model as it stands (thresholds and calibration change while it trains); for a loaded
        checkpoint it equals ``ModelCard.from_checkpoint_meta`` of its ``model.json``."""
        cfg = self.config
        return ModelCard(
            name=self.model_name, version=str(self.version), input_size=cfg.input_size, fragments=self.fragment_spec,
            mean=tuple(cfg.mean), std=tuple(cfg.std), distortions=DISTORTIONS, flag_thresholds=self.flag_thresholds,
            calibration=str(self.calibration.get("kind", "identity")), depth_source=self.meta.get("depth_source"),
            tensors_sha256=self.meta.get("tensors_sha256"),
        )

    # -- the raw network (training, export) ------------------------------------------------------------------
    def forward(self, x: torch.Tensor, depth: torch.Tensor, frags: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised RGB (N,3,H,W) and depth (N,1,H,W) in [0,1] (and, for a two-view model, normalised fragments
        (N,3,S,S)) → (quality logit (N,), distortion logits (N,3))."""
        if self.fragment_spec is None:
            return self._whole_view(x, depth, quality=True)
        if frags is None:
            raise ValueError("this model reads quality from fragments: pass frags (see preprocess)")
        return self.forward_quality(frags), self._whole_view(x, depth, quality=False)[1]

    def forward_quality(self, frags: torch.Tensor) -> torch.Tensor:
        """Normalised fragments (N,3,S,S) → quality logit (N,): the two-view model's quality path alone."""
        if self.fragment_spec is None:
            raise ValueError("this model has no fragment view (its quality comes from the whole frame)")
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in self.trunk(frags)], dim=1)
        return self.head_quality(pooled).squeeze(1)

    def forward_flags(self, x: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Normalised whole frame and depth → distortion logits (N,3), without the quality path."""
        return self._whole_view(x, depth, quality=self.fragment_spec is None)[1]

    def _whole_view(self, x: torch.Tensor, depth: torch.Tensor, quality: bool) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.trunk(x)
        grid = feats[-1].shape[-2:]
        rgb = torch.cat([_to_grid(t(f), grid) for t, f in zip(self.tcbs, feats)], dim=1)
        if not self.config.depth_guidance:  # kept in the graph (× 0), so an exported model still takes the input
            depth = depth * 0.0 + 0.5
        dfeats = self.depth_encoder(depth)
        dep = torch.cat([_to_grid(t(f), grid) for t, f in zip(self.tcbs_depth, dfeats)], dim=1)
        rgb = self.rgb_proj(rgb)
        dep = self.depth_proj(dep)
        n, c, h, w = rgb.shape
        rgb_tokens = rgb.flatten(2).transpose(1, 2)
        car = self.car(rgb_tokens, dep.flatten(2).transpose(1, 2))
        car = car.transpose(1, 2).reshape(n, c, h, w)
        y = self.dilated(torch.cat([car, rgb], dim=1))
        pooled = [y.mean(dim=(2, 3)), y.amax(dim=(2, 3))]
        if self.global_stats is not None:
            stats = [torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], dim=1) for f in feats]
            pooled.append(self.global_stats(torch.cat(stats, dim=1)))
        pooled = torch.cat(pooled, dim=1)
        flags = self.head_distortions(pooled)
        if self.local_flags is not None:
            local = self.local_flags(feats[1], feats[2])
            if self.training:  # for the trainer's auxiliary loss on the branch alone (w_local_flags)
                self.last_local_logits = local
            if len(self.local_index) == flags.shape[1]:
                flags = flags + local
            else:  # onto their flags' columns through a constant 0/1 matrix (exports as a MatMul)
                flags = flags + local @ self.local_place.to(local.dtype)
        q = self.head_quality(pooled).squeeze(1) if quality else flags.new_zeros(flags.shape[0])
        return q, flags

    # -- preprocessing the checkpoint knows ------------------------------------------------------------------
    def preprocess(self, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB (N,3,H,W) in [0,1] and depth (N,1,h,w) in [0,1], any size → the network's whole-view inputs."""
        rgb, depth = resize_frames_and_depth(rgb, depth, self.config.input_size)
        return (rgb - self.mean) / self.std, depth

    def preprocess_fragments(self, rgb: torch.Tensor, fragments: torch.Tensor | None = None) -> torch.Tensor:
        """The quality view's input: ``fragments`` (N,3,S,S) in [0,1] as the decoder gathered them from native
        frames, else gathered here (centred) from ``rgb`` as given — native resolution only if ``rgb`` is."""
        assert self.fragment_spec is not None
        if fragments is None:
            fragments = gather_fragments(rgb, self.fragment_spec)
        elif fragments.shape[-1] != self.fragment_spec.size or fragments.shape[-2] != self.fragment_spec.size:
            raise ValueError(f"fragments of {tuple(fragments.shape[-2:])} px, the model takes "
                             f"{self.fragment_spec.size}² ({self.fragment_spec})")
        return (fragments.to(self.mean.device, self.mean.dtype) - self.mean) / self.std

    def calibrate(self, raw: torch.Tensor) -> torch.Tensor:
        """Map the network's 0–100 output onto the calibrated scale recorded with the weights (monotone)."""
        cal = self.calibration
        if cal.get("kind", "identity") == "identity":
            return raw
        if cal["kind"] == "piecewise_linear":
            xs = torch.tensor(cal["x"], dtype=raw.dtype, device=raw.device)
            ys = torch.tensor(cal["y"], dtype=raw.dtype, device=raw.device)
            return _interp(raw, xs, ys)
        raise CheckpointError(f"unknown calibration kind {cal['kind']!r}")

    @torch.inference_mode()
    def score(self, rgb: torch.Tensor, depth: torch.Tensor, fragments: torch.Tensor | None = None) -> IQAOutput:
        """``fragments``: the decoder's native fragments of these frames, for a two-view model (ignored otherwise;
        gathered from ``rgb`` when not given)."""
        rgb = rgb.to(self.device)
        x, d = self.preprocess(rgb, depth.to(self.device))
        f = self.preprocess_fragments(rgb, fragments) if self.fragment_spec is not None else None
        q_logit, d_logits = self(x, d, f)
        quality = self.calibrate(torch.sigmoid(q_logit.float()) * 100.0).clamp(0.0, 100.0)
        return IQAOutput(quality=quality, distortions=torch.sigmoid(d_logits.float()))

    def trunk_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())


def _to_grid(x: torch.Tensor, grid: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Average-pool a finer map onto the coarsest grid (area resampling; bilinear downsampling would alias)."""
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    kh, kw = x.shape[-2] // grid[0], x.shape[-1] // grid[1]
    return F.avg_pool2d(x, kernel_size=(kh, kw))


def _interp(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    idx = torch.searchsorted(xs, x.clamp(xs[0], xs[-1]).contiguous()).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[idx - 1], xs[idx], ys[idx - 1], ys[idx]
    t = (x - x0) / (x1 - x0).clamp_min(1e-9)
    return y0 + t.clamp(0, 1) * (y1 - y0)


#: the largest whole view and fragment canvas a checkpoint may ask for: far above any trained layout (192², 336²),
#: far below what one frame's preprocessing may allocate (an edited input_size of 4096² asked for 870 MB per frame)
MAX_VIEW_SIDE = 1024


def lite_from_checkpoint(path: str | Path) -> tuple[DGIQALite, dict[str, Any]]:
    """The trained student exactly as saved. Everything in the metadata that the tensors' hash does not cover (the
    architecture, thresholds, calibration) is checked here, so that an edited or damaged ``model.json`` is one
    ``CheckpointError`` naming the file, not a traceback from deep in the model, or a silent change of what it
    scores."""
    path = Path(path)
    tensors, meta = load_checkpoint(path)
    if meta.get("model") != "dgiqa-lite":
        raise CheckpointError(f"{path} holds a {meta.get('model')!r} model, not dgiqa-lite")
    where = meta_label(path)
    thresholds, calibration = checked_card(meta, where)
    try:
        config = LiteConfig.from_dict(meta["arch"])
        canvas = [config.fragments[0] * config.fragments[1]] if config.fragments else []  # grid × patch
        sizes = [*config.input_size, *canvas]
        if any(not isinstance(v, int) or not 0 < v <= MAX_VIEW_SIDE for v in sizes):
            raise ValueError(f"input_size {config.input_size} / fragments {config.fragments} outside "
                             f"1..{MAX_VIEW_SIDE} px")
        model = DGIQALite(config, pretrained_trunk=False)
    except Exception as exc:  # noqa: BLE001 - whatever an edited config breaks: KeyError, AssertionError, timm's …
        raise CheckpointError(f"{where}: its arch does not build a dgiqa-lite ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:300]})") from None
    problems = layout_problems(model.state_dict(), tensors)
    if problems:
        raise CheckpointError(f"{path} does not fit the dgiqa-lite config in its metadata: {problems}")
    model.load_state_dict(tensors, strict=True)
    model.calibration = calibration
    model.flag_thresholds.update(thresholds)
    model.version = str(meta.get("version", model.version))
    model.meta = meta
    return model.eval(), meta


@register_model("dgiqa-lite")
def build_dgiqa_lite(checkpoint: Path | None = None, pretrained_trunk: bool = True, **overrides: Any) -> DGIQALite:
    """With a checkpoint: the trained student exactly as saved. Without: a fresh student (ImageNet trunk) to train."""
    if checkpoint is not None:
        return lite_from_checkpoint(checkpoint)[0]
    return DGIQALite(LiteConfig(**overrides), pretrained_trunk=pretrained_trunk)
