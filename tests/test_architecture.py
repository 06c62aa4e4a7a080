"""The import rules of docs/ARCHITECTURE.md, read from the code itself (every import, at any depth of a function).

The runtime — what replay, the service, the demo and the Python API run — never imports the tooling (``train/``,
``bench/``, ``model/quantize.py``); the command line reaches the tooling only inside the subcommands that need it; settings
and the output contract import no stage; and only ``video/`` opens a container for reading, so every input is vetted
the same way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "stream_iqa"
TOOLING = ("stream_iqa.train", "stream_iqa.bench", "stream_iqa.model.quantize")
#: what the foundations may import: each other, nothing that runs a stage
FOUNDATIONS = {
    "stream_iqa.schema": set(),
    "stream_iqa.errors": set(),
    "stream_iqa.log": {"stream_iqa.errors"},
    "stream_iqa.settings": {"stream_iqa.errors", "stream_iqa.log", "stream_iqa.schema"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported stream_iqa module, at module level?) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("stream_iqa"):
                out.append((name, id(node) in top))
    return out


def is_tooling(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TOOLING)


RUNTIME = [m for m in MODULES if not is_tooling(m) and m != "stream_iqa.cli"]


def test_the_rules_see_the_whole_package():
    assert {"stream_iqa.pipeline", "stream_iqa.service.app", "stream_iqa.synthesis.degradations",
            "stream_iqa.api"} <= set(RUNTIME)
    assert "stream_iqa.train.trainer" in MODULES and not is_tooling("stream_iqa.training_free")
    # the reader resolves relative imports (video/ uses them) and sees imports inside functions
    assert ("stream_iqa.video.decode.open_container", True) in imports(MODULES["stream_iqa.video.thumbnail"])
    assert any(name.startswith("stream_iqa.train") and not top for name, top in imports(MODULES["stream_iqa.cli"]))


@pytest.mark.parametrize("module", RUNTIME)
def test_the_runtime_never_imports_the_tooling(module):
    bad = sorted({name for name, _ in imports(MODULES[module]) if is_tooling(name)})
    assert not bad, f"{module} imports {bad}: tooling (training, benchmarks) must not be needed to run the product"


def test_the_command_line_reaches_the_tooling_only_inside_its_subcommands():
    bad = sorted({name for name, top in imports(MODULES["stream_iqa.cli"]) if top and is_tooling(name)})
    assert not bad, bad


@pytest.mark.parametrize("module", sorted(FOUNDATIONS))
def test_settings_and_the_contract_import_no_stage(module):
    allowed = FOUNDATIONS[module] | {module}
    got = {name for name, _ in imports(MODULES[module])}
    bad = sorted(n for n in got if not any(n == a or n.startswith(a + ".") for a in allowed))
    assert not bad, f"{module} imports {bad}"


def test_only_video_opens_a_container_for_reading():
    """Any other reader would bypass the allow-lists of ``video/source.py`` (the format whitelist that keeps FFmpeg's
    concat and playlist demuxers from opening other files). Writing clips (``av.open(path, "w")``) is not reading."""
    offenders = []
    for module in RUNTIME:
        if module.startswith("stream_iqa.video"):
            continue
        for node in ast.walk(ast.parse(MODULES[module].read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "av"):
                mode = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "mode"), None)
                if not (isinstance(mode, ast.Constant) and str(mode.value).startswith("w")):
                    offenders.append(f"{module}:{node.lineno}")
    assert not offenders, offenders


def test_the_command_line_is_the_only_entry_point_and_every_tool_is_one_of_its_subcommands():
    import importlib

    from stream_iqa.cli import TOOLS

    entry_points = [m for m, p in MODULES.items() if '__name__ == "__main__"' in p.read_text()]
    assert entry_points == ["stream_iqa.cli"]
    for name, (module, _) in TOOLS.items():
        assert module in MODULES, name
        assert callable(importlib.import_module(module).main), name
