"""Per-frame score dumps (``replay --dump``): JSON lines, or CSV with ``distortions`` flattened into columns.

Also the check that any output file of replay can be written, made before the analysis so that a bad destination
fails in a second rather than after the whole clip has been analysed.
"""

from __future__ import annotations

import argparse
import csv
import errno
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stream_iqa.errors import FileError
from stream_iqa.model.served import DISTORTIONS
from stream_iqa.schema import FrameRecord

DUMP_SUFFIXES = (".jsonl", ".csv")
CSV_COLUMNS = ("frame_index", "t", "quality", *DISTORTIONS, "depth_fresh")


def dump_path(text: str) -> Path:
    """argparse type: the suffix picks the format, so an unknown one is a usage error before any work is done."""
    path = Path(text)
    if path.suffix.lower() not in DUMP_SUFFIXES:  # ArgumentTypeError: argparse shows this message, not its own
        raise argparse.ArgumentTypeError(f"needs a .jsonl or .csv file, got {text!r}")
    return path


def cannot_write(what: str, path: Path, exc: OSError) -> FileError:
    """The one-line error for an output that cannot be written, before or after the analysis alike."""
    return FileError(f"cannot write {what} {path}: {exc.strerror or exc}")


def check_writable(path: Path, what: str) -> None:
    """Raise ``FileError`` unless ``path`` can be created or overwritten.

    Probes for real (a temporary file in the folder that will hold it; opening an existing file for appending, which
    leaves it unchanged) rather than trusting permission bits: root ignores those, a read-only mount does not.
    Folders that do not exist yet are fine (they are created when writing) as long as the nearest existing one is a
    folder that accepts files; nothing is created here.
    """
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        if path.exists():
            open(path, "ab").close()
            return
        folder = next(p for p in path.parents if p.exists())  # the root always exists
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{folder} is not a folder")
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise cannot_write(what, path, exc) from exc


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
