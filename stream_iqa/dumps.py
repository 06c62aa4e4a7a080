"""Per-frame score dumps (``replay --dump``): JSON lines, or CSV with ``distortions`` flattened into columns.

Also the checks on replay's output files, made before the analysis so that a bad destination fails in a second
rather than after the whole clip has been analysed: each can be written, has the suffix of what it will hold, and
names neither the input video nor another output (each would silently replace it).
"""

from __future__ import annotations

import argparse
import csv
import errno
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from stream_iqa.errors import ConfigError, FileError
from stream_iqa.model.served import DISTORTIONS
from stream_iqa.schema import FrameRecord

DUMP_SUFFIXES = (".jsonl", ".csv")
CSV_COLUMNS = ("frame_index", "t", "quality", *DISTORTIONS, "depth_fresh")


def suffixed_path(*suffixes: str) -> Callable[[str], Path]:
    """argparse type for an output whose format is fixed (``--plot`` PNG, ``--html`` a page): a path ending
    otherwise is a usage error, so that ``--plot clip.mp4`` cannot be written over a video."""

    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"needs a {' or '.join(suffixes)} file, got {text!r}")
        return path

    return parse


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard and symbolic links to one file too
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def check_distinct(outputs: Mapping[str, Path], video: Path | None) -> None:
    """Raise ``ConfigError`` when an output (``{"dump": path, ...}``) names the input video or another output."""
    seen: dict[str, Path] = {"the input video": video} if video is not None else {}
    for flag, path in outputs.items():
        for name, other in seen.items():
            if _same_file(path, other):
                raise ConfigError(f"--{flag} {path} is also {name}: it would be overwritten")
        seen[f"--{flag}"] = path


#: argparse type of ``--dump``: the suffix picks the format, so an unknown one is a usage error before any work is done
dump_path = suffixed_path(*DUMP_SUFFIXES)


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
