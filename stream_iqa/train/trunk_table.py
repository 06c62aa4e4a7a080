"""The measured accuracy/speed table that chose the student's trunk and input size.

Accuracy proxy: frozen ImageNet trunk features (global average of every tapped stage, concatenated) + ridge
regression trained on the CLIVE train part, SROCC on the held-out part — cheap enough to sweep, and a floor for the
fine-tuned student. Speed: the whole student (random heads, ImageNet trunk) at batch 8 under inference mode, all
configurations timed in one interleaved run so machine noise hits them alike.

    stream-iqa trunk-table [--sizes 160 192 224 256] [--trunks tf_efficientnet_lite0]
    stream-iqa trunk-table --inputs whole@192 fragments@7x32 fragments@7x48 --split-seeds 0 1 2 3 4

``--inputs`` compares what the trunk is fed (the whole frame resized, or native-resolution fragments,
``stream_iqa.nn.fragments``) on several CLIVE splits: features are extracted once per input, the ridge is refit per
split, so the spread across splits is visible (differences under ~0.03 on 157 photos are noise).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from stream_iqa.data.mos import load_mos_dataset, split_items
from stream_iqa.images import read_rgb, resize_tensor, to_tensor
from stream_iqa.iqa_metrics import srocc
from stream_iqa.nn.lite import DGIQALite, LiteConfig
from stream_iqa.settings import Settings


@torch.inference_mode()
def frozen_features(model: DGIQALite, images: list[torch.Tensor], size: int) -> np.ndarray:
    out = []
    for img in images:
        x = (resize_tensor(img, (size, size)) - model.mean) / model.std
        out.append(torch.cat([f.mean(dim=(2, 3)) for f in model.trunk(x)], dim=1)[0].numpy())
    return np.stack(out)


@torch.inference_mode()
def input_features(model: DGIQALite, images: list[torch.Tensor], spec: str) -> np.ndarray:
    """Frozen trunk features of each image as fed by ``spec``: ``whole@S`` (resized to S²) or ``fragments@GxP``."""
    kind, _, arg = spec.partition("@")
    if kind == "whole":
        return frozen_features(model, images, int(arg))
    if kind != "fragments":
        raise ValueError(f"input {spec!r}: use whole@SIZE or fragments@GRIDxPATCH")
    from stream_iqa.nn.fragments import FragmentSpec, gather_fragments

    grid, patch = (int(v) for v in arg.split("x"))
    frag = FragmentSpec(grid, patch)
    out = []
    for img in images:
        x = (gather_fragments(img, frag) - model.mean) / model.std
        out.append(torch.cat([f.mean(dim=(2, 3)) for f in model.trunk(x)], dim=1)[0].numpy())
    return np.stack(out)


def compare_inputs(specs: list[str], seeds: list[int], trunk: str = "tf_efficientnet_lite0",
                   stages: tuple[int, ...] = (1, 2, 3, 4)) -> dict[str, list[float]]:
    """Held-out CLIVE SROCC of a ridge on frozen features, per input spec and split seed; ``stages``: the trunk
    stages tapped (their global averages are concatenated)."""
    items = load_mos_dataset("clive", Settings().data.root / "clive")
    images = [to_tensor(read_rgb(i.path)) for i in items]
    index = {i.path: k for k, i in enumerate(items)}
    model = DGIQALite(LiteConfig(trunk=trunk, trunk_indices=tuple(stages), tcb_dims=(8,) * len(stages),
                                 depth_dims=(8,) * len(stages))).eval()
    out: dict[str, list[float]] = {}
    for spec in specs:
        feats = input_features(model, images, spec)
        for seed in seeds:
            train, val = split_items(items, 0.2, seed=seed)
            tr, va = [index[i.path] for i in train], [index[i.path] for i in val]
            ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(feats[tr], [i.mos for i in train])
            out.setdefault(spec, []).append(srocc(ridge.predict(feats[va]), [i.mos for i in val]))
    return out


@torch.inference_mode()
def throughput(models: dict[str, DGIQALite], sizes: dict[str, int], batch: int = 8, rounds: int = 5) -> dict[str, float]:
    """Frames/s per configuration, interleaved round-robin and taking each one's best round."""
    best = {k: 0.0 for k in models}
    for _ in range(rounds):
        for key, m in models.items():
            s = sizes[key]
            x, d = torch.randn(batch, 3, s, s), torch.rand(batch, 1, s, s)
            m(x, d)
            t, n = time.perf_counter(), 0
            while time.perf_counter() - t < 0.6:
                m(x, d)
                n += batch
            best[key] = max(best[key], n / (time.perf_counter() - t))
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 224, 256])
    ap.add_argument("--trunks", nargs="+", default=["tf_efficientnet_lite0"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--inputs", nargs="+", help="compare inputs instead: whole@SIZE, fragments@GRIDxPATCH")
    ap.add_argument("--split-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3, 4], help="trunk stages tapped (--inputs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.inputs:
        table = compare_inputs(args.inputs, args.split_seeds, args.trunks[0], tuple(args.stages))
        print(f"frozen {args.trunks[0]} features (stages {args.stages}) + ridge, held-out CLIVE SROCC (20 %), "
              f"split seeds {args.split_seeds}")
        print("| input | " + " | ".join(f"seed {s}" for s in args.split_seeds) + " | mean |")
        print("|---|" + "---|" * (len(args.split_seeds) + 1))
        for spec, vals in table.items():
            print(f"| {spec} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
        return
    root = Settings().data.root
    train, val = split_items(load_mos_dataset("clive", root / "clive"), 0.2, seed=0)
    imgs_tr = [to_tensor(read_rgb(i.path)) for i in train]
    imgs_va = [to_tensor(read_rgb(i.path)) for i in val]
    y_tr, y_va = np.array([i.mos for i in train]), np.array([i.mos for i in val])
    models, sizes, acc = {}, {}, {}
    for trunk in args.trunks:
        for size in args.sizes:
            key = f"{trunk}@{size}"
            m = DGIQALite(LiteConfig(trunk=trunk, input_size=(size, size))).eval()
            ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(frozen_features(m, imgs_tr, size), y_tr)
            acc[key] = srocc(ridge.predict(frozen_features(m, imgs_va, size)), y_va)
            models[key], sizes[key] = m, size
    fps = throughput(models, sizes)
    print(f"CLIVE subset: {len(train)} train / {len(val)} val photos; torch threads={torch.get_num_threads()}")
    print("| trunk | input | frozen-feature ridge SROCC (CLIVE val) | student frames/s (batch 8) |")
    print("|---|---|---|---|")
    for key in models:
        trunk, size = key.split("@")
        print(f"| {trunk} | {size}×{size} | {acc[key]:.3f} | {fps[key]:.1f} |")
