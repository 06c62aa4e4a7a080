"""The measured accuracy/speed table that chose the student's trunk and input size.

Accuracy proxy: frozen ImageNet trunk features (global average of every tapped stage, concatenated) + ridge
regression trained on the CLIVE train part, SROCC on the held-out part — cheap enough to sweep, and a floor for the
fine-tuned student. Speed: the whole student (random heads, ImageNet trunk) at batch 8 under inference mode, all
configurations timed in one interleaved run so machine noise hits them alike.

    python -m stream_iqa.train.trunk_table [--sizes 160 192 224 256] [--trunks tf_efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from stream_iqa.data.mos import load_mos_dataset, split_items
from stream_iqa.images import read_rgb, resize_tensor, to_tensor
from stream_iqa.metrics import srocc
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
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
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


if __name__ == "__main__":
    main()
