"""``stream-iqa demo``: the shipped model on real photos and their synthetically degraded versions.

Self-contained (photos that ship inside scikit-image and scikit-learn, the default checkpoint, the depth prior), so
it runs on a fresh machine with no data and no network. It shows what the model is for: clean photos score high
and raise no flag; the same photos made dark, hazy or flared score lower and raise the matching flag.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from stream_iqa.images import to_tensor
from stream_iqa.model.served import DISTORTIONS
from stream_iqa.model.scorer import Scorer
from stream_iqa.synthesis.degradations import Recipe, apply_recipe


def sample_photos() -> dict[str, np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"china": china, "flower": flower, "coffee": data.coffee(), "chelsea": data.chelsea(),
            "astronaut": data.astronaut()}


def run_demo(scorer: Scorer, severity: float = 0.6, seed: int = 0, console: Console | None = None) -> list[dict]:
    console = console or Console()
    rows = []
    for name, img in sample_photos().items():
        depth = scorer.depth(to_tensor(img))[0, 0].cpu().numpy()
        for kind in ("clean", *DISTORTIONS):
            recipe = Recipe() if kind == "clean" else Recipe([(kind, severity)])
            out = apply_recipe(img, depth, recipe, np.random.default_rng(seed))
            result = scorer.score_rgb(to_tensor(out))
            flagged = [k for k, on in (result.flags or {}).items() if on]
            rows.append({"photo": name, "made": kind, "quality": result.quality,
                         "distortions": result.distortions.model_dump() if result.distortions else {},
                         "flagged": flagged})
    table = Table(title=f"stream-iqa demo — {scorer.model.card.name} on sample photos (severity {severity})")
    for col in ("photo", "synthesised", "quality", *DISTORTIONS, "flagged"):
        table.add_column(col, justify="right" if col in ("quality", *DISTORTIONS) else "left")
    for r in rows:
        d = r.get("distortions", {})
        ok = (r["made"] == "clean" and not r["flagged"]) or r["made"] in r["flagged"]
        table.add_row(r["photo"], r["made"], f"{r['quality']:.1f}", *(f"{d.get(k, float('nan')):.2f}" for k in DISTORTIONS),
                      f"[{'green' if ok else 'red'}]{', '.join(r['flagged']) or '–'}[/]")
    console.print(table)
    return rows
