"""Reading a training recipe (YAML): one place that refuses unknown keys, for every training stage's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_recipe(path: Path, fields: dict[str, Any], what: str) -> dict[str, Any]:
    """The mapping in ``path``; a key not among ``fields`` (a dataclass's ``__dataclass_fields__``) is a typo that
    would otherwise train with a default silently, so it is refused, naming the file and ``what`` it configures."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a mapping of {what} settings, not {type(data).__name__}")
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{path}: unknown {what} settings {sorted(unknown)}")
    return data
