"""`stream-iqa export --onnx PATH --int8`: a statically quantised student that keeps the fp32 file's interface and
metadata, runs as the onnxruntime backend, and scores real photos close to fp32."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from stream_iqa.cli import main
from stream_iqa.depth.prior import PriorDepth
from stream_iqa.model.onnx_runtime import OnnxRuntimeModel
from stream_iqa.images import read_rgb, to_tensor
from stream_iqa.model.quantize import FrameReader, calibration_paths, graph_fragments, quantize_onnx
from stream_iqa.model.scorer import load_scorer
from stream_iqa.settings import Settings

#: |Δquality| (0-100 scale) allowed between int8 and fp32 on each of the 8 fixed photos below. Calibrated on 8 photos
#: as here, v1's single-view student differed by at most 3.2 on them (mean 1.2; calibrated on 64, by 1.5 on average
#: over 679 CLIVE / validation images, `stream-iqa quantize --bench`); v2's fragment view quantises worse: at most 9.5
#: (mean 2.3; one CLIVE photo, the rest under 5). 12 leaves a margin over that; a broken quantisation (wrong ranges,
#: a lost calibration map, swapped inputs) is off by tens. int8 is an option, not what is served (BENCHMARKS.md).
MAX_DQ = 12.0
#: flag probability change allowed on these photos (observed: 0.075)
MAX_DFLAG = 0.2


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory, shared_data) -> Path:
    path = tmp_path_factory.mktemp("int8") / "dgiqa-lite-int8.onnx"
    assert main(["export", "--onnx", str(path), "--int8", "--calibration-frames", "8"]) == 0
    return path


@pytest.fixture(scope="module")
def fp32_file(default_onnx) -> Path:
    return default_onnx


def test_the_int8_file_keeps_inputs_outputs_and_metadata(int8_file, fp32_file):
    q, f = onnx.load(str(int8_file)), onnx.load(str(fp32_file))
    onnx.checker.check_model(q)
    two_view = graph_fragments(fp32_file) is not None
    assert [i.name for i in q.graph.input] == [i.name for i in f.graph.input] == (
        ["rgb", "depth", "fragments"] if two_view else ["rgb", "depth"])
    assert [o.name for o in q.graph.output] == [o.name for o in f.graph.output] == ["quality", "distortions"]
    assert q.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch kept
    qm, fm = ({p.key: p.value for p in m.metadata_props} for m in (q, f))
    assert {k: qm[k] for k in fm} == fm
    assert qm["quantization"].startswith("int8-static")
    assert qm["calibration"].startswith("8 frames")
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8_file.stat().st_size < 0.6 * fp32_file.stat().st_size  # int8 weights


def test_int8_scores_real_photos_close_to_fp32(int8_file, fp32_file, photos, shared_data):
    frames = [to_tensor(photos[k]) for k in ("astronaut", "coffee", "chelsea")]
    clive = sorted((shared_data / "clive" / "images").glob("*.*g"))[:5]
    assert len(clive) == 5
    frames += [to_tensor(read_rgb(p)) for p in clive]
    size = (240, 320)
    rgb = torch.cat([torch.nn.functional.interpolate(f, size=size, mode="area") for f in frames])
    depth = PriorDepth()(rgb)
    ref = OnnxRuntimeModel(fp32_file).score(rgb, depth)
    got = OnnxRuntimeModel(int8_file).score(rgb, depth)
    assert got.quality.shape == ref.quality.shape == (len(frames),)
    assert float((got.quality - ref.quality).abs().max()) <= MAX_DQ
    assert float((got.distortions - ref.distortions).abs().max()) <= MAX_DFLAG


def test_the_int8_file_is_selected_by_config(int8_file, photos):
    settings = Settings.load(model={"device": "cpu", "backend": "onnxruntime", "onnx": int8_file},
                             depth={"source": "prior"})
    scorer = load_scorer(settings)
    assert isinstance(scorer.model, OnnxRuntimeModel)
    assert json.loads(scorer.model.runner.meta["input_size"]) == [192, 192]
    rgb = to_tensor(photos["coffee"])
    out = scorer.model.score(rgb, PriorDepth()(rgb))
    assert out.quality.shape == (1,) and 0.0 <= float(out.quality[0]) <= 100.0
    assert out.distortions.shape == (1, 3)


def test_calibration_uses_the_train_split_only(shared_data):
    from stream_iqa.data.mos import natural_split

    val = set(natural_split(shared_data / "natural")["val"])
    paths = calibration_paths(shared_data, 16)
    assert len(paths) == 16 and not val & set(paths)
    reader = FrameReader(np.zeros((10, 3, 4, 4), np.float32), np.zeros((10, 1, 4, 4), np.float32), batch=4)
    assert [len(reader.get_next()["rgb"]) for _ in range(3)] == [4, 4, 2] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is not None
    frags = FrameReader(np.zeros((3, 3, 4, 4), np.float32), np.zeros((3, 1, 4, 4), np.float32), batch=2,
                        fragments=np.ones((3, 3, 8, 8), np.float32))
    assert [b["fragments"].shape[0] for b in (frags.get_next(), frags.get_next())] == [2, 1]


def test_calibration_frames_must_match_the_graphs_views(fp32_file, tmp_path):
    """A two-view graph calibrated without its fragments (or a single-view one with them) would quantise the quality
    path on nothing, or fail deep inside ONNX Runtime: refused up front, naming the way to make the right frames."""
    rgb, depth = np.zeros((2, 3, 192, 192), np.float32), np.zeros((2, 1, 192, 192), np.float32)
    spec = graph_fragments(fp32_file)
    wrong = np.zeros((2, 3, 224, 224), np.float32) if spec is None else None
    with pytest.raises(ValueError, match="fragments input: calibrate with real_frames"):
        quantize_onnx(fp32_file, tmp_path / "x.onnx", rgb, depth, preset="pointwise", fragments=wrong)
