"""Per-frame score dumps (``replay --dump``): JSON lines, or CSV with ``distortions`` flattened into columns."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from stream_iqa.nn.api import DISTORTIONS
from stream_iqa.schema import FrameRecord

DUMP_SUFFIXES = (".jsonl", ".csv")
CSV_COLUMNS = ("frame_index", "t", "quality", *DISTORTIONS, "depth_fresh")


def dump_path(text: str) -> Path:
    """argparse type: the suffix picks the format, so an unknown one is a usage error before any work is done."""
    path = Path(text)
    if path.suffix.lower() not in DUMP_SUFFIXES:
        raise ValueError(f"--dump needs a .jsonl or .csv file, got {text!r}")
    return path


def write_frames(records: Sequence[FrameRecord], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for r in records:
                d = r.distortions
                writer.writerow([r.frame_index, r.t, r.quality, *(getattr(d, k) for k in DISTORTIONS), r.depth_fresh])
    else:
        with open(path, "w") as fh:
            for r in records:
                fh.write(r.model_dump_json(exclude_none=True) + "\n")
