"""The model card: parsed once from ``model.json`` or an exported graph, identical across backends, and strict."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stream_iqa.fragments import FragmentSpec
from stream_iqa.model.card import ModelCard
from stream_iqa.nn.checkpoint import read_meta
from stream_iqa.settings import DEFAULT_CHECKPOINT


def test_the_shipped_checkpoints_card_is_its_model_json_and_what_the_loaded_model_carries():
    from stream_iqa.nn.lite import lite_from_checkpoint

    meta = read_meta(DEFAULT_CHECKPOINT)
    card = ModelCard.from_checkpoint_meta(meta)
    model, _ = lite_from_checkpoint(DEFAULT_CHECKPOINT)
    assert model.card == card
    assert card.name == "dgiqa-lite" and card.version == meta["version"] and card.backend == "torch"
    assert card.input_size == tuple(meta["preprocess"]["input_size"])
    assert dict(card.flag_thresholds) == pytest.approx(meta["flag_thresholds"])
    assert card.depth_source == meta["depth_source"] and card.tensors_sha256 == meta["tensors_sha256"]
    assert card.calibration == meta["calibration"]["kind"]


def test_the_card_is_frozen_and_its_thresholds_cannot_be_edited_through_it():
    card = ModelCard(name="m", version="1", distortions=("haze",), flag_thresholds={"haze": 0.7})
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.flag_thresholds["haze"] = 0.1  # type: ignore[index]
    assert card.thresholds() == {"low_light": 0.5, "haze": 0.7, "flare": 0.5}


def test_thresholds_for_a_flag_the_model_does_not_predict_are_refused():
    with pytest.raises(ValueError, match="does not predict"):
        ModelCard(name="m", version="1", distortions=("haze",), flag_thresholds={"glare": 0.5})


def test_the_card_round_trips_through_onnx_metadata():
    card = ModelCard(name="dgiqa-lite", version="2.0", input_size=(192, 192), fragments=FragmentSpec(6, 32),
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), distortions=("low_light", "haze", "flare"),
                     flag_thresholds={"low_light": 0.5, "haze": 0.8, "flare": 0.9}, calibration="piecewise_linear",
                     depth_source="prior", tensors_sha256="ab" * 32)
    meta = card.to_onnx_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert ModelCard.from_onnx_metadata(meta) == dataclasses.replace(card, backend="onnxruntime")


def test_a_graph_exported_before_the_card_still_reads_and_one_without_input_size_is_refused():
    old = {"model": "dgiqa-lite", "version": "0.1.0", "input_size": "[192, 192]",
           "distortions": json.dumps(["low_light", "haze", "flare"]), "flag_thresholds": '{"haze": 0.62}',
           "tensors_sha256": "cd" * 32}
    card = ModelCard.from_onnx_metadata(old)
    assert card.input_size == (192, 192) and card.fragments is None and card.mean is None
    assert card.thresholds()["haze"] == 0.62 and card.tensors_sha256 == "cd" * 32
    with pytest.raises(ValueError, match="input_size"):
        ModelCard.from_onnx_metadata({"model": "x"})


def test_the_teacher_has_a_card_without_flags_or_input_size():
    from stream_iqa.nn.dgiqa import DGIQA

    card = DGIQA(crops=1).card
    assert card.name == "dgiqa" and card.input_size is None and card.distortions == () and card.fragments is None
    assert card.thresholds() == {"low_light": 0.5, "haze": 0.5, "flare": 0.5}


def test_the_card_is_read_without_torch():
    import subprocess
    import sys

    code = "import sys; from stream_iqa.model.card import ModelCard; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
