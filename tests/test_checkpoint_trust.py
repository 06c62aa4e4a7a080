"""What the loader trusts in a checkpoint and its ONNX export, as a second team would hand it one: nothing that the
tensors' hash does not cover is taken on faith, an untrained network is never served, and every refusal is one line
naming the file or the setting to change.

Each case was found by serving an edited copy of the shipped model: before, an edited ``model.json`` changed the
flags silently (thresholds NaN / -1) or raised a traceback from deep in the model, an edited ``model.onnx`` was
served, and ``checkpoint: null`` scored with random weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stream_iqa
from stream_iqa.cli import main
from stream_iqa.errors import ConfigError
from stream_iqa.nn.checkpoint import CheckpointError, file_sha256, load_checkpoint, record_export, save_checkpoint
from stream_iqa.settings import DEFAULT_CHECKPOINT

CPU = {"device": "cpu"}
DEPTH = {"source": "prior"}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the shipped student (tensors, card, ONNX export) to edit."""
    for f in DEFAULT_CHECKPOINT.parent.iterdir():
        if f.name.startswith("model."):
            shutil.copy(f, tmp_path / f.name)
    return tmp_path / "model.safetensors"


def _edit_card(checkpoint: Path, edit: Any) -> None:
    card = checkpoint.with_suffix(".json")
    meta = json.loads(card.read_text())
    edit(meta)
    card.write_text(json.dumps(meta))


def _analyzer(checkpoint: Path | None, **model: Any) -> stream_iqa.Analyzer:
    return stream_iqa.create_analyzer(model={**CPU, "checkpoint": checkpoint, **model}, depth=DEPTH)


def test_no_checkpoint_is_refused_not_served_with_random_weights():
    with pytest.raises(ConfigError, match="STREAM_IQA_MODEL__CHECKPOINT"):
        _analyzer(None)
    with pytest.raises(ConfigError, match="untrained weights are never served"):
        _analyzer(None, backend="torch")


def test_an_empty_checkpoint_variable_names_the_setting(monkeypatch, capsys):
    """An unset variable in a template gives "": it read as the current directory and raised a traceback."""
    monkeypatch.setenv("STREAM_IQA_MODEL__CHECKPOINT", "")
    assert main(["score", "README.md"]) == 2
    assert "STREAM_IQA_MODEL__CHECKPOINT" in capsys.readouterr().err


def _set(path: str, value: Any):
    def edit(meta: dict) -> None:
        keys = path.split(".")
        node = meta
        for k in keys[:-1]:
            node = node[k]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return edit


_DELETE = object()
EDITS = {
    "threshold NaN": (_set("flag_thresholds.flare", float("nan")), "probabilities in [0, 1]"),
    "threshold -1": (_set("flag_thresholds.haze", -1.0), "probabilities in [0, 1]"),
    "threshold text": (_set("flag_thresholds.flare", "high"), "probabilities in [0, 1]"),
    "unknown flag": (_set("flag_thresholds.glare", 0.5), "flag_thresholds must map flags"),
    "calibration decreasing": (_set("calibration.x", [50.0, 10.0]), "x increasing"),
    "calibration one point": (lambda m: m["calibration"].update(x=[1.0], y=[2.0]), ">= 2 finite points"),
    "calibration kind": (_set("calibration.kind", "isotonic"), "unknown calibration"),
    "heads": (_set("arch.heads", 3), "does not build a dgiqa-lite (AssertionError"),
    "huge view": (_set("arch.input_size", [4096, 4096]), "outside 1..1024 px"),
    "huge grid": (_set("arch.fragments", [200, 32]), "outside 1..1024 px"),
    "no arch": (_set("arch", _DELETE), "does not build a dgiqa-lite (KeyError"),
    "no hash": (_set("tensors_sha256", _DELETE), "records no tensors_sha256"),
}


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("name", list(EDITS))
def test_an_edited_card_is_one_error_naming_the_file(copy: Path, capsys, monkeypatch, name: str, backend: str):
    """On either backend: 'auto' served the ONNX graph whatever the card said beside it."""
    if (name, backend) == ("heads", "auto"):
        pytest.skip("the graph (its weights verified) does not need the PyTorch layout's head count to serve")
    edit, says = EDITS[name]
    _edit_card(copy, edit)
    monkeypatch.setenv("STREAM_IQA_MODEL__BACKEND", backend)
    assert main(["score", "--checkpoint", str(copy), "--device", "cpu", "--depth", "prior", "README.md"]) == 3
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("{")]  # not the JSON log lines
    assert says in err and "Traceback" not in err and len(lines) == 1, err


def test_a_card_that_is_no_json_object_is_refused(copy: Path):
    copy.with_suffix(".json").write_text("[]")
    with pytest.raises(CheckpointError, match="holds a JSON list"):
        _analyzer(copy, backend="torch")
    copy.with_suffix(".json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        _analyzer(copy, backend="torch")


def test_a_mis_shaped_tensor_is_named_not_a_state_dict_dump(copy: Path):
    tensors, meta = load_checkpoint(copy)
    tensors["head_distortions.weight"] = tensors["head_distortions.weight"][:2]
    save_checkpoint(copy, tensors, {k: v for k, v in meta.items() if k not in ("format", "tensors_sha256")})
    with pytest.raises(CheckpointError, match=r"1 mis-shaped \(e.g. head_distortions.weight"):
        _analyzer(copy, backend="torch")


def _edit_graph_weight(graph: Path) -> None:
    """Change one bias inside the graph and leave its metadata (the card) alone."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(graph))
    init = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).ndim == 1)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 1.0, init.name))
    onnx.save(proto, str(graph))


def test_an_edited_graph_is_refused_by_the_hash_the_export_recorded(copy: Path):
    graph = copy.with_suffix(".onnx")
    assert json.loads(copy.with_suffix(".json").read_text())["onnx_sha256"] == {"model.onnx": file_sha256(graph)}
    assert _analyzer(copy).pipeline.scorer.host_arrays  # as shipped: ONNX Runtime serves it
    _edit_graph_weight(graph)
    assert not _analyzer(copy).pipeline.scorer.host_arrays  # auto: PyTorch, from the verified tensors
    with pytest.raises(ConfigError, match="not the graph exported from the checkpoint"):
        _analyzer(copy, backend="onnxruntime")


def test_thresholds_fitted_again_without_a_new_export_are_not_served_from_the_old_graph(copy: Path):
    """CPU workers (ONNX) would flag at the old thresholds, GPU workers (PyTorch) at the new ones."""
    _edit_card(copy, _set("flag_thresholds.flare", 0.5))
    analyzer = _analyzer(copy)
    assert not analyzer.pipeline.scorer.host_arrays and analyzer.flag_thresholds["flare"] == 0.5


def test_a_damaged_graph_under_the_forced_backend_is_one_line(copy: Path, tmp_path: Path, capsys, monkeypatch):
    bad = tmp_path / "elsewhere" / "cut.onnx"
    bad.parent.mkdir()
    bad.write_bytes(copy.with_suffix(".onnx").read_bytes()[:5000])
    monkeypatch.setenv("STREAM_IQA_MODEL__BACKEND", "onnxruntime")
    monkeypatch.setenv("STREAM_IQA_MODEL__ONNX", str(bad))
    assert main(["score", "--device", "cpu", "--depth", "prior", "README.md"]) == 2
    err = capsys.readouterr().err
    assert "STREAM_IQA_MODEL__ONNX" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_export_records_its_hash_only_beside_its_checkpoint(copy: Path, tmp_path: Path):
    elsewhere = tmp_path / "other" / "model.onnx"
    elsewhere.parent.mkdir()
    shutil.copy(copy.with_suffix(".onnx"), elsewhere)
    before = copy.with_suffix(".json").read_text()
    assert record_export(copy, elsewhere) is False and copy.with_suffix(".json").read_text() == before
    graph = copy.with_name("int8.onnx")
    graph.write_bytes(b"graph bytes")
    assert record_export(copy, graph) is True
    recorded = json.loads(copy.with_suffix(".json").read_text())["onnx_sha256"]
    assert recorded == {"model.onnx": file_sha256(copy.with_suffix(".onnx")), "int8.onnx": file_sha256(graph)}
    scores = _analyzer(copy).score_images(np.full((48, 64, 3), 128, np.uint8))  # the card still loads
    assert scores[0].quality is not None


def test_a_checkpoint_path_may_be_a_string():
    """`stream-iqa report --checkpoint` passes one: the new card checks called Path methods on it."""
    from stream_iqa.nn.lite import lite_from_checkpoint

    model, meta = lite_from_checkpoint(str(DEFAULT_CHECKPOINT))
    assert meta["tensors_sha256"] and model.flag_thresholds["flare"] == meta["flag_thresholds"]["flare"]


@pytest.mark.parametrize("call, error", [
    (lambda: _analyzer(DEFAULT_CHECKPOINT, name="nope"), "UnknownModelError"),
    (lambda: stream_iqa.create_model("nope"), "UnknownModelError"),
    (lambda: stream_iqa.create_model("dgiqa-lite", pretrained=True, device="mps"), "DeviceUnavailableError"),
    (lambda: stream_iqa.create_model("dgiqa-lite", pretrained=True, device="garbage"), "DeviceUnavailableError"),
])
def test_the_api_raises_config_error_for_bad_settings_as_it_says(call, error: str):
    """It raised KeyError / RuntimeError (mps after loading every weight) where its docstring promised ConfigError;
    both stay catchable as before (KeyError, RuntimeError)."""
    with pytest.raises(ConfigError) as info:
        call()
    assert type(info.value).__name__ == error and str(info.value) == info.value.args[0]  # not KeyError's repr
