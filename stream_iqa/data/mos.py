"""Loaders that turn IQA data sets into one record type, :class:`MOSItem`, on one scale.

Why one scale: models, metrics and reports should never need to know where a score came from. Every loader maps the
data set's *rating scale* [lo, hi] linearly onto 0–100 with higher = better::

    mos_0_100 = (mos - lo) / (hi - lo) * 100        std_0_100 = std * 100 / (hi - lo)

The rating scale, not the observed range, is used, because the observed extremes change with the subset or split
while the scale raters used does not. A scale where lower is better (DMOS) is flipped afterwards (``100 - mos``).
Linear maps leave SROCC/KROCC/PLCC unchanged; they make RMSE, thresholds and pooled training comparable. Scores
outside the stated scale raise ``ValueError``: they mean a wrong kind or a corrupt file, not data to clip.

Expected layouts (``root`` is the folder passed in; where an official archive extracts into a named subfolder, the
folder above it is accepted too). Header names are matched after stripping spaces, case-insensitively.

``csv``       any CSV with columns ``image,mos`` and optional ``std``; ``root`` is the CSV file, or a folder holding
              ``mos.csv``. Image paths are relative to the CSV's folder. Scale: ``scale=(lo, hi)`` if given, else the
              first of (0, 1), (1, 5), (0, 10), (0, 100) that contains every MOS (so a 0–100 set whose scores
              all fall in 1–5 would be misread: pass ``scale`` when in doubt). ``higher_is_better=False`` flips
              DMOS sets.
``clive``     this project's CLIVE subset: ``mos.csv`` (``image,mos,std``, MOS 0–100) and ``images/``. Kept as is.
``livec``     official LIVE In the Wild Challenge (``ChallengeDB_release/``):
              ``Data/AllImages_release.mat``
              (cell array of names), ``Data/AllMOS_release.mat`` (MOS 0–100), optional
              ``Data/AllStdDev_release.mat``, images in ``Images/`` and the 7 training images in
              ``Images/trainingImages/``. Kept as is. The 7 training images are left out unless
              ``include_training=True``, as in the published 1,162-image protocol.
``koniq10k``  ``koniq10k_scores_and_distributions.csv`` (or ``koniq10k_distributions_sets.csv``; also inside a
              ``koniq10k_scores_and_distributions/`` folder) with ``image_name``, ``MOS`` (1–5), ``SD`` and
              ``MOS_zscore``; images in ``1024x768/`` or ``512x384/`` (or ``koniq10k_<res>/<res>/``). Default: MOS 1–5
              → (MOS − 1) × 25, SD × 25. ``use_zscore=True`` takes ``MOS_zscore`` as is (already rescaled to 0–100 by
              the authors) and has no std. ``resolution`` picks the folder; by default the first present in that order.
``kadid10k``  ``dmos.csv`` with ``dist_img,ref_img,dmos,var`` and ``images/`` (also inside ``kadid10k/``). Despite its
              name ``dmos`` is a 1–5 degradation-category *MOS*, higher = better: (dmos − 1) × 25, std = √var × 25.
``spaq``      ``MOS and Image attribute scores.xlsx`` (or a ``.csv`` of the same name) in ``Annotations/``,
              ``annotations/`` or ``root``, with ``Image name`` and ``MOS`` (0–100, kept as is), images in
              ``TestImage/`` (``image_dir`` for a resized copy). The xlsx is read with the standard library, so no
              spreadsheet package is needed.

Errors: a missing root, annotation file or image raises ``FileNotFoundError`` naming what was expected; a malformed
table (missing column, wrong field count, non-numeric or out-of-scale score, duplicate image) raises ``ValueError``
naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import math
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from xml.etree import ElementTree

import numpy as np
import scipy.io

T = TypeVar("T")

DatasetKind = Literal["csv", "clive", "livec", "koniq10k", "kadid10k", "spaq"]

#: candidate rating scales for auto-normalised generic CSVs, narrowest first (see the module docstring)
AUTO_SCALES: tuple[tuple[float, float], ...] = ((0.0, 1.0), (1.0, 5.0), (0.0, 10.0), (0.0, 100.0))


@dataclass(frozen=True, slots=True)
class MOSItem:
    """One rated image: ``mos`` on 0–100 (higher = better), ``std`` of the ratings on the same scale if known."""

    path: Path
    mos: float
    std: float | None = None


@dataclass(frozen=True, slots=True)
class _Row:
    """A parsed annotation row before scale mapping; ``line`` locates it for error messages."""

    line: int
    image: str
    mos: float
    std: float | None


# --------------------------------------------------------------------------------------------------------- tables


def _find(root: Path, candidates: Sequence[str], what: str) -> Path:
    """First existing ``root / candidate``; the error lists every place looked at, so a wrong root is obvious."""
    for candidate in candidates:
        path = root / candidate
        if path.exists():
            return path
    tried = ", ".join(str(root / c) for c in candidates)
    raise FileNotFoundError(f"{what} not found; expected one of: {tried}")


def _require_dir(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data set folder not found: {path}")
    return path


def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row; ``utf-8-sig`` because spreadsheet exports often start with a BOM."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            return [(reader.line_num, fields) for fields in reader if any(field.strip() for field in fields)]
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: unreadable CSV: {e}") from e


_XLSX_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_XLSX_REL_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_XLSX_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"


def _xlsx_column(ref: str) -> int:
    """0-based column of a cell reference such as ``B12``."""
    index = 0
    for char in ref:
        if not char.isalpha():
            break
        index = index * 26 + ord(char.upper()) - ord("A") + 1
    return index - 1


def _read_xlsx(path: Path) -> list[tuple[int, list[str]]]:
    """(row number, cell texts) of the first worksheet, read with zipfile + ElementTree (SPAQ ships only an xlsx)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            shared: list[str] = []
            if "xl/sharedStrings.xml" in names:
                strings = ElementTree.fromstring(zf.read("xl/sharedStrings.xml"))
                shared = [
                    "".join(t.text or "" for t in si.iter(f"{_XLSX_MAIN}t")) for si in strings.iter(f"{_XLSX_MAIN}si")
                ]
            workbook = ElementTree.fromstring(zf.read("xl/workbook.xml"))
            sheet = next(workbook.iter(f"{_XLSX_MAIN}sheet"))
            rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
            target = next(
                r.get("Target", "") for r in rels.iter(_XLSX_PKG_REL) if r.get("Id") == sheet.get(_XLSX_REL_ID)
            )
            # relationship targets are relative to xl/ unless absolute within the package
            sheet_part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            worksheet = ElementTree.fromstring(zf.read(sheet_part))
    except (zipfile.BadZipFile, KeyError, StopIteration, ElementTree.ParseError) as e:
        raise ValueError(f"{path}: not a readable xlsx workbook ({e!r})") from e

    rows: list[tuple[int, list[str]]] = []
    for row_number, row in enumerate(worksheet.iter(f"{_XLSX_MAIN}row"), start=1):
        cells: dict[int, str] = {}
        for position, cell in enumerate(row.iter(f"{_XLSX_MAIN}c")):
            kind = cell.get("t")
            if kind == "s":
                text = shared[int(cell.findtext(f"{_XLSX_MAIN}v", "0"))]
            elif kind == "inlineStr":
                text = "".join(t.text or "" for t in cell.iter(f"{_XLSX_MAIN}t"))
            else:
                text = cell.findtext(f"{_XLSX_MAIN}v", "")
            cells[_xlsx_column(cell.get("r", "")) if cell.get("r") else position] = text
        fields = [cells.get(i, "") for i in range(max(cells) + 1)] if cells else []
        if any(f.strip() for f in fields):
            rows.append((int(row.get("r", row_number)), fields))
    return rows


def _records(
    path: Path, rows: list[tuple[int, list[str]]], required: Sequence[str], *, pad: bool
) -> list[tuple[int, dict[str, str]]]:
    """Rows as dicts keyed by normalised header; checks required columns and field counts.

    ``pad`` fills short rows with empty cells: right for xlsx (trailing empty cells are not stored), wrong for CSV
    (a short CSV row is a broken line).
    """
    if not rows:
        raise ValueError(f"{path}: empty table, expected a header with columns {', '.join(required)}")
    header_line, header = rows[0]
    keys = [h.strip().lower() for h in header]
    missing = [c for c in required if c not in keys]
    if missing:
        raise ValueError(f"{path}:{header_line}: missing column(s) {', '.join(missing)} in header {header!r}")
    records = []
    for line, fields in rows[1:]:
        too_many = len(fields) > len(keys) and any(f.strip() for f in fields[len(keys):])
        if too_many or (len(fields) < len(keys) and not pad):
            raise ValueError(f"{path}:{line}: {len(fields)} fields, header has {len(keys)}: {','.join(fields)!r}")
        records.append((line, {k: (fields[i].strip() if i < len(fields) else "") for i, k in enumerate(keys)}))
    return records


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}:{line}: column {column!r} is not finite: {text!r}")
    return value


def _parse_rows(
    path: Path, records: list[tuple[int, dict[str, str]]], image_col: str, mos_col: str, std_col: str | None
) -> list[_Row]:
    """Typed rows; an empty std cell means 'unknown', an empty image name or a repeated one is an error."""
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    for line, record in records:
        image = record[image_col]
        if not image:
            raise ValueError(f"{path}:{line}: empty {image_col!r}")
        if image in seen:
            raise ValueError(f"{path}:{line}: image {image!r} already listed on line {seen[image]}")
        seen[image] = line
        std_text = record.get(std_col, "") if std_col else ""
        std = _number(path, line, std_col, std_text) if std_col and std_text else None
        rows.append(_Row(line, image, _number(path, line, mos_col, record[mos_col]), std))
    if not rows:
        raise ValueError(f"{path}: header only, no rated images")
    return rows


def _to_items(
    path: Path, rows: Iterable[_Row], image_dir: Path, scale: tuple[float, float], *, higher_is_better: bool = True
) -> list[MOSItem]:
    """Maps scores from ``scale`` onto 0–100 (see module docstring) and checks that every image exists."""
    lo, hi = scale
    if not hi > lo:
        raise ValueError(f"scale must be (lo, hi) with hi > lo, got {scale}")
    tolerance = 1e-6 * (hi - lo)
    factor = 100.0 / (hi - lo)
    items: list[MOSItem] = []
    for row in rows:
        if not lo - tolerance <= row.mos <= hi + tolerance:
            raise ValueError(f"{path}:{row.line}: MOS {row.mos} outside the rating scale [{lo}, {hi}]")
        mos = min(max((row.mos - lo) * factor, 0.0), 100.0)
        std = None if row.std is None else row.std * factor
        items.append(MOSItem(image_dir / row.image, mos if higher_is_better else 100.0 - mos, std))
    _check_images(items)
    return items


def _check_images(items: Sequence[MOSItem]) -> None:
    missing = [item.path for item in items if not item.path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise FileNotFoundError(f"{len(missing)} of {len(items)} listed images not found, e.g. {shown}")


# -------------------------------------------------------------------------------------------------------- loaders


def load_csv(
    path: str | Path, *, scale: tuple[float, float] | None = None, higher_is_better: bool = True
) -> list[MOSItem]:
    """A generic ``image,mos[,std]`` CSV (or a folder holding ``mos.csv``); image paths relative to the CSV's folder.

    ``scale`` is the rating scale; without it the scale is inferred with the rule in the module docstring.
    """
    csv_path = Path(path).expanduser()
    if csv_path.is_dir():
        csv_path = _find(csv_path, ["mos.csv"], "MOS table")
    elif not csv_path.is_file():
        raise FileNotFoundError(f"MOS table not found: {csv_path} (expected a CSV with columns image,mos[,std])")
    records = _records(csv_path, _read_csv(csv_path), ["image", "mos"], pad=False)
    rows = _parse_rows(csv_path, records, "image", "mos", "std")
    if scale is None:
        low, high = min(r.mos for r in rows), max(r.mos for r in rows)
        scale = next((s for s in AUTO_SCALES if s[0] <= low and high <= s[1]), None)
        if scale is None:
            raise ValueError(f"{csv_path}: MOS range [{low}, {high}] fits none of {AUTO_SCALES}; pass scale=(lo, hi)")
    return _to_items(csv_path, rows, csv_path.parent, scale, higher_is_better=higher_is_better)


def load_clive(root: str | Path) -> list[MOSItem]:
    """This project's CLIVE subset (``mos.csv`` + ``images/``), MOS already on 0–100."""
    folder = _require_dir(root)
    csv_path = _find(folder, ["mos.csv"], "CLIVE MOS table")
    image_dir = _find(folder, ["images"], "CLIVE image folder")
    records = _records(csv_path, _read_csv(csv_path), ["image", "mos", "std"], pad=False)
    return _to_items(csv_path, _parse_rows(csv_path, records, "image", "mos", "std"), image_dir, (0.0, 100.0))


def _mat_vector(path: Path, key: str) -> np.ndarray:
    """The one variable ``key`` of a LIVE ``.mat`` file, flattened (MATLAB stores 1×N rows and N×1 cells)."""
    try:
        data = scipy.io.loadmat(str(path))
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable MATLAB file ({e})") from e
    if key not in data:
        raise ValueError(f"{path}: variable {key!r} missing (has {sorted(k for k in data if not k.startswith('__'))})")
    return np.asarray(data[key]).reshape(-1)


def load_livec(root: str | Path, *, include_training: bool = False) -> list[MOSItem]:
    """Official LIVE In the Wild Challenge release (``ChallengeDB_release`` or its parent), MOS 0–100 kept as is.

    The .mat files have no lines, so errors name the entry's 1-based index in place of a line number.
    """
    folder = _require_dir(root)
    if not (folder / "Data").is_dir() and (folder / "ChallengeDB_release").is_dir():
        folder = folder / "ChallengeDB_release"
    names_mat = _find(folder, ["Data/AllImages_release.mat"], "LIVE-C image list")
    mos_mat = _find(folder, ["Data/AllMOS_release.mat"], "LIVE-C MOS file")
    image_dir = _find(folder, ["Images"], "LIVE-C image folder")
    names = [str(np.asarray(n).reshape(-1)[0]).strip() for n in _mat_vector(names_mat, "AllImages_release")]
    mos = _mat_vector(mos_mat, "AllMOS_release").astype(np.float64)
    std_mat = folder / "Data" / "AllStdDev_release.mat"
    std = _mat_vector(std_mat, "AllStdDev_release").astype(np.float64) if std_mat.is_file() else None
    if len(names) != len(mos) or (std is not None and len(std) != len(names)):
        lengths = f"{len(names)} names, {len(mos)} MOS" + ("" if std is None else f", {len(std)} std")
        raise ValueError(f"{folder / 'Data'}: .mat files disagree in length ({lengths})")
    rows: list[_Row] = []
    training_dir = image_dir / "trainingImages"
    for i, name in enumerate(names):
        if not (image_dir / name).is_file() and (training_dir / name).is_file():
            if not include_training:
                continue
            name = f"trainingImages/{name}"
        rows.append(_Row(i + 1, name, float(mos[i]), None if std is None else float(std[i])))
    return _to_items(mos_mat, rows, image_dir, (0.0, 100.0))


def load_koniq10k(
    root: str | Path, *, resolution: Literal["1024x768", "512x384"] | None = None, use_zscore: bool = False
) -> list[MOSItem]:
    """KonIQ-10k: MOS 1–5 → (MOS − 1) × 25 by default, or ``MOS_zscore`` (0–100) with ``use_zscore``."""
    folder = _require_dir(root)
    csv_path = _find(
        folder,
        [
            "koniq10k_scores_and_distributions.csv",
            "koniq10k_scores_and_distributions/koniq10k_scores_and_distributions.csv",
            "koniq10k_distributions_sets.csv",
        ],
        "KonIQ-10k score table",
    )
    resolutions = [resolution] if resolution else ["1024x768", "512x384"]
    image_dir = _find(folder, [p for r in resolutions for p in (r, f"koniq10k_{r}/{r}")], "KonIQ-10k image folder")
    mos_col = "mos_zscore" if use_zscore else "mos"
    records = _records(csv_path, _read_csv(csv_path), ["image_name", mos_col], pad=False)
    if use_zscore:
        return _to_items(csv_path, _parse_rows(csv_path, records, "image_name", mos_col, None), image_dir, (0.0, 100.0))
    return _to_items(csv_path, _parse_rows(csv_path, records, "image_name", "mos", "sd"), image_dir, (1.0, 5.0))


def load_kadid10k(root: str | Path) -> list[MOSItem]:
    """KADID-10k: the ``dmos`` column is a 1–5 MOS (higher = better) → (dmos − 1) × 25, std = √var × 25."""
    folder = _require_dir(root)
    if not (folder / "dmos.csv").is_file() and (folder / "kadid10k").is_dir():
        folder = folder / "kadid10k"
    csv_path = _find(folder, ["dmos.csv"], "KADID-10k score table")
    image_dir = _find(folder, ["images"], "KADID-10k image folder")
    records = _records(csv_path, _read_csv(csv_path), ["dist_img", "dmos"], pad=False)
    rows = _parse_rows(csv_path, records, "dist_img", "dmos", "var")
    for row in rows:
        if row.std is not None and row.std < 0:
            raise ValueError(f"{csv_path}:{row.line}: negative variance {row.std}")
    rows = [_Row(r.line, r.image, r.mos, None if r.std is None else math.sqrt(r.std)) for r in rows]
    return _to_items(csv_path, rows, image_dir, (1.0, 5.0))


def load_spaq(root: str | Path, *, image_dir: str = "TestImage") -> list[MOSItem]:
    """SPAQ: ``Image name`` / ``MOS`` (0–100, kept as is) from the annotation xlsx or csv; no std is published."""
    folder = _require_dir(root)
    stem = "MOS and Image attribute scores"
    table = _find(
        folder,
        [f"{d}{stem}.{ext}" for d in ("Annotations/", "annotations/", "") for ext in ("xlsx", "csv")],
        "SPAQ annotation table",
    )
    images = _find(folder, [image_dir], "SPAQ image folder")
    raw = _read_xlsx(table) if table.suffix == ".xlsx" else _read_csv(table)
    records = _records(table, raw, ["image name", "mos"], pad=table.suffix == ".xlsx")
    return _to_items(table, _parse_rows(table, records, "image name", "mos", None), images, (0.0, 100.0))


LOADERS: dict[str, Callable[..., list[MOSItem]]] = {
    "csv": load_csv,
    "clive": load_clive,
    "livec": load_livec,
    "koniq10k": load_koniq10k,
    "kadid10k": load_kadid10k,
    "spaq": load_spaq,
}


def load_mos_dataset(kind: DatasetKind, root: str | Path, **options: Any) -> list[MOSItem]:
    """Load any supported data set as :class:`MOSItem` records on 0–100; ``options`` go to the kind's loader."""
    try:
        loader = LOADERS[kind]
    except KeyError:
        raise ValueError(f"unknown data set kind {kind!r}; known: {', '.join(LOADERS)}") from None
    return loader(root, **options)


# --------------------------------------------------------------------------------------------------------- splits


def _unit_hash(name: str, seed: int) -> float:
    """A number in [0, 1) from SHA-256 of seed and name: unlike ``hash()`` it is the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_items(
    items: Sequence[T], val_fraction: float, seed: int = 0, key: Callable[[T], str] | None = None
) -> tuple[list[T], list[T]]:
    """Train/val split decided per item by a hash of its file name (``path.name``, or ``key(item)``) and ``seed``.

    Each item goes to val when its hash falls below ``val_fraction``, so membership depends on nothing but the name:
    not on list order, the machine, the folder the data lives in, or which other items are present (adding images
    never moves old ones). The val size is therefore ``val_fraction`` of the items only on average (binomial
    spread); images sharing a file name always land on the same side. Both lists keep the input order.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    name = key or (lambda item: item.path.name)  # type: ignore[attr-defined]
    train: list[T] = []
    val: list[T] = []
    for item in items:
        (val if _unit_hash(name(item), seed) < val_fraction else train).append(item)
    return train, val


def natural_split(root: str | Path) -> dict[str, list[Path]]:
    """The fixed split of the pristine natural images: ``{split name: [image paths]}`` from ``split.csv``.

    ``root`` is the ``natural/`` folder (or the data folder above it); ``split.csv`` has ``image,split`` with image
    paths relative to it. Lists keep the file's order.
    """
    folder = _require_dir(root)
    if not (folder / "split.csv").is_file() and (folder / "natural").is_dir():
        folder = folder / "natural"
    csv_path = _find(folder, ["split.csv"], "natural-image split table")
    splits: dict[str, list[Path]] = {}
    seen: dict[str, int] = {}
    for line, record in _records(csv_path, _read_csv(csv_path), ["image", "split"], pad=False):
        image, split = record["image"], record["split"]
        if not image or not split:
            raise ValueError(f"{csv_path}:{line}: empty image or split: {record}")
        if image in seen:
            raise ValueError(f"{csv_path}:{line}: image {image!r} already listed on line {seen[image]}")
        seen[image] = line
        splits.setdefault(split, []).append(folder / image)
    missing = [p for paths in splits.values() for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise FileNotFoundError(f"{len(missing)} images listed in {csv_path} not found, e.g. {shown}")
    return splits
