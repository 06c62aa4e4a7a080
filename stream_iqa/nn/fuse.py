"""Inference-time graph surgery for the PyTorch path: batch-norm folded into the convolution before it.

In eval mode a BatchNorm is a fixed per-channel affine map, so ``conv → bn`` equals one convolution with rescaled
weights and a bias: the same outputs (up to float rounding) for one full pass over the feature map less. ONNX Runtime
does this itself when it loads a graph; PyTorch eager does not, which is one reason the ONNX backend is faster.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _is_plain_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.padding_mode == "zeros"


def _bn_replacement(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a norm once its affine map is in the conv: nothing, or timm's fused activation."""
    act, drop = getattr(bn, "act", None), getattr(bn, "drop", None)  # timm.layers.BatchNormAct2d
    parts = [m for m in (drop, act) if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    return nn.Sequential(*parts) if parts else nn.Identity()


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d among the same parent's children, in place; returns how
    many were folded. The model must be in eval mode (training-mode BN uses batch statistics, which cannot fold).

    "Directly follows" means the next child in definition order, which is how torch and timm blocks are written
    (``conv_dw, bn1``, ``Sequential(conv, bn, act)``); ``tests/test_fuse.py`` checks the folded shipped model against
    the original on real frames, which is what catches a block whose forward does not run them back to back.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (model.eval())")
    folded = 0
    for parent in list(model.modules()):
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if not (_is_plain_conv(conv) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats):
                continue
            if conv.out_channels != bn.num_features:
                continue
            parent._modules[first] = fuse_conv_bn_eval(conv, bn)  # type: ignore[arg-type]
            parent._modules[second] = _bn_replacement(bn)
            folded += 1
    return folded


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """The PyTorch inference path of the student: BN folded, weights in channels_last, in place.

    Measured together because neither pays much alone on this CPU (BENCHMARKS.md, `stream-iqa bench`, section 2):
    channels_last convolutions are fast, but an unfolded BatchNorm between them drops back to a slow NHWC path."""
    fold_batchnorm(model.eval())
    return model.to(memory_format=torch.channels_last)
