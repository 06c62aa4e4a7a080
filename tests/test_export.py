"""`stream-iqa export --onnx`: the shipped student as ONNX, equal to PyTorch on real frames, usable as the backend."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip
from stream_iqa.cli import main
from stream_iqa.depth.prior import PriorDepth
from stream_iqa.model.export import ExportableStudent
from stream_iqa.model.onnx_runtime import OnnxRuntimeModel
from stream_iqa.images import to_tensor
from stream_iqa.nn import create_model
from stream_iqa.nn.lite import _interp
from stream_iqa.pipeline import Pipeline
from stream_iqa.settings import DEFAULT_CHECKPOINT, Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(default_onnx) -> Path:
    return default_onnx


@pytest.fixture(scope="module")
def student():
    return create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT, device="cpu")


def test_the_onnx_file_is_valid_and_carries_its_preprocessing(exported, student):
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["input_size"]) == list(student.config.input_size)
    assert json.loads(meta["flag_thresholds"]) == pytest.approx(student.flag_thresholds)
    assert json.loads(meta["distortions"]) == ["low_light", "haze", "flare"]
    two_view = student.fragment_spec is not None  # model v2: quality from native fragments, the third input
    assert [i.name for i in proto.graph.input] == ["rgb", "depth"] + (["fragments"] if two_view else [])
    if two_view:
        assert json.loads(meta["fragments"]) == [student.fragment_spec.grid, student.fragment_spec.patch]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_matches_pytorch_on_real_frames(exported, student, photos, batch):
    frames = [photos[k] for k in ("astronaut", "coffee", "chelsea")]
    rgb = torch.cat([torch.nn.functional.interpolate(to_tensor(frames[i % 3]), size=(240, 320), mode="area")
                     for i in range(batch)])
    depth = PriorDepth()(rgb)
    ref = student.score(rgb, depth)
    got = OnnxRuntimeModel(exported).score(rgb, depth)
    rel = (got.quality - ref.quality).abs() / ref.quality.abs()
    assert got.quality.shape == (batch,) and float(rel.max()) <= 1e-3
    assert float((got.distortions - ref.distortions).abs().max()) <= 1e-3


def test_the_graphs_calibration_equals_the_models():
    cal = {"kind": "piecewise_linear", "x": [0.0, 20.0, 55.0, 100.0], "y": [0.0, 10.0, 70.0, 100.0]}
    model = create_model("dgiqa-lite", checkpoint=DEFAULT_CHECKPOINT, device="cpu")
    model.calibration = cal
    x = torch.linspace(-5.0, 105.0, 2001)
    ref = _interp(x.clamp(0, 100), torch.tensor(cal["x"]), torch.tensor(cal["y"]))
    torch.testing.assert_close(ExportableStudent(model).calibrate(x), ref, atol=1e-4, rtol=0)


def test_the_pipeline_runs_on_the_onnxruntime_backend(exported, tmp_path):
    clip = build_clip(ClipSpec(scenes=["coffee"], scene_s=6.0, spans=[Span("low_light", 1.5, 4.5)]), tmp_path / "c.mp4")
    torch_settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
    ort_settings = Settings.load(model={"device": "cpu", "backend": "onnxruntime", "onnx": exported},
                                 depth={"source": "prior"})
    reports = []
    for s in (torch_settings, ort_settings):
        p = Pipeline(s)
        reports.append(p.analyze(clip, clip_id="c", depth_state=p.new_depth_state()).report)
    assert [x.type for x in reports[1].segments] == [x.type for x in reports[0].segments] == ["low_light"]
    assert np.isclose(reports[1].quality.mean, reports[0].quality.mean, atol=0.01)
    assert reports[1].model == reports[0].model


def test_a_missing_onnx_file_names_the_setting(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STREAM_IQA_MODEL__BACKEND", "onnxruntime")
    monkeypatch.setenv("STREAM_IQA_MODEL__ONNX", str(tmp_path / "missing.onnx"))
    assert main(["score", str(tmp_path)]) == 3
    assert "STREAM_IQA_MODEL__ONNX" in capsys.readouterr().err
