"""Speed half of the two-view accuracy/speed table: the served student (ONNX Runtime, frames in) for each fragment
grid and whole-view size, beside the single-view (v1) layout, measured side by side in one run.

    stream-iqa bench-fragments [--variants 7x32@192 6x32@192 5x32@192] [--batch 8] [--threads 2]

``GxP@S`` is a G×G grid of P-px native fragments (a (G·P)² quality view) with an S² whole view for the flags;
``v1@S`` is the single-view layout. Weights do not change speed, so every variant runs with random weights: the
table can be made before any of them is trained. Depth maps go in at each variant's input size, as the pipeline
computes them (``Scorer.depth_size``); until 2026-12-03 they went in at frame size, and the served time included a
depth resize that serving never does. The accuracy half is ``stream-iqa train-quality-view
--set fragments=[G,P]`` on the same split seeds; models/README.md keeps both.
"""

from __future__ import annotations

import argparse
import platform
import re
import tempfile
from pathlib import Path

import torch

from stream_iqa.bench.model_speed import best_rate
from stream_iqa.depth.prior import PriorDepth

_VARIANT = re.compile(r"^(?:(?P<grid>\d+)x(?P<patch>\d+)|v1)@(?P<size>\d+)$")


def parse_variant(text: str) -> tuple[tuple[int, int] | None, int]:
    """``"7x32@192"`` → ((7, 32), 192); ``"v1@192"`` → (None, 192)."""
    m = _VARIANT.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected GxP@S (e.g. 7x32@192) or v1@S")
    frags = (int(m["grid"]), int(m["patch"])) if m["grid"] else None
    return frags, int(m["size"])


@torch.inference_mode()
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", type=parse_variant,
                    default=[parse_variant(v) for v in ("v1@192", "7x32@192", "6x32@192", "5x32@192", "7x32@160",
                                                          "6x32@160")])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from stream_iqa.model.export import export_onnx
    from stream_iqa.model.onnx_runtime import OnnxRuntimeModel
    from stream_iqa.nn.lite import DGIQALite, LiteConfig

    frames = torch.rand(args.batch, 3, 360, 640)  # 640×360 frames in, as model_speed
    prior = PriorDepth()
    out = Path(tempfile.mkdtemp())
    fns = {}
    for frags, size in args.variants:
        name = f"{frags[0]}×{frags[1]} px fragments ({frags[0] * frags[1]}²) + {size}² whole view" if frags \
            else f"single view {size}² (v1 layout)"
        cfg = LiteConfig(input_size=(size, size), local_flags=("flare",), local_dim=64, fragments=frags or ())
        model = DGIQALite(cfg, pretrained_trunk=False).eval()
        path = out / f"{len(fns)}.onnx"
        export_onnx(model, path)
        served = OnnxRuntimeModel(path, threads=args.threads)
        depth = prior(frames, (size, size))  # at the model's input size, where the pipeline computes it
        fns[name] = (lambda m=served, d=depth: m.score(frames, d), args.batch)
    rates = best_rate(fns, args.rounds, min_time=1.0)
    print(f"machine: {platform.machine()} {platform.processor()}, torch {torch.__version__}, threads {args.threads}, "
          f"ONNX Runtime, batch {args.batch}, 640×360 frames in (resize and fragment gathering included; depth at the "
          "input size)")
    first = next(iter(rates))
    print(f"| variant | frames/s | ms per frame | vs {first} |")
    print("|---|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:.1f} | {1000.0 / r:.2f} | {r / rates[first]:.2f}× |")
