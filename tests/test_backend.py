"""`model.backend: auto`: the shipped ONNX graph on CPU, only for its own weights, with PyTorch as the fallback."""

import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from stream_iqa.model.onnx_runtime import OnnxRuntimeModel
from stream_iqa.images import to_tensor
from stream_iqa.log import configure_logging
from stream_iqa.model.card import ModelCard
from stream_iqa.nn.checkpoint import read_meta
from stream_iqa.nn.lite import DGIQALite
from stream_iqa.model.scorer import load_scorer
from stream_iqa.settings import DEFAULT_CHECKPOINT, Settings

SHIPPED_ONNX = DEFAULT_CHECKPOINT.with_suffix(".onnx")


def _cpu(**model) -> Settings:
    return Settings.load(model={"device": "cpu", **model}, depth={"source": "prior"})


def test_the_shipped_graph_is_an_export_of_the_shipped_weights():
    # fails when the checkpoint is retrained without `make export-default`
    props = {p.key: p.value for p in onnx.load(str(SHIPPED_ONNX), load_external_data=False).metadata_props}
    assert props["tensors_sha256"] == read_meta(DEFAULT_CHECKPOINT)["tensors_sha256"]
    assert not SHIPPED_ONNX.with_name(SHIPPED_ONNX.name + ".data").exists(), "the graph must be self-contained"


def test_auto_runs_the_shipped_graph_on_cpu_with_pytorchs_scores(photos):
    auto, torch_ = load_scorer(_cpu()), load_scorer(_cpu(backend="torch"))
    assert isinstance(auto.model, OnnxRuntimeModel) and isinstance(torch_.model, DGIQALite)
    assert auto.model.card.input_size == torch_.model.card.input_size == (192, 192)
    rgb = torch.cat([torch.nn.functional.interpolate(to_tensor(photos[k]), size=(360, 640), mode="bilinear",
                                                     antialias=True) for k in ("astronaut", "coffee", "chelsea")])
    depth = torch_.depth(rgb, (192, 192))
    a, t = auto.model.score(rgb, depth), torch_.model.score(rgb, depth)
    np.testing.assert_allclose(a.quality.numpy(), t.quality.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(a.distortions.numpy(), t.distortions.numpy(), rtol=1e-3, atol=1e-4)
    assert a.quality.std() > 1.0  # three different photos, three different scores: not a constant graph


@pytest.mark.parametrize("model", [{"backend": "torch"}, {"precision": "bf16"}])
def test_auto_keeps_pytorch_where_the_graph_is_not_the_same_model(model):
    assert isinstance(load_scorer(_cpu(**model)).model, DGIQALite)


def test_a_graph_of_other_weights_is_refused_with_a_warning(tmp_path, capsys):
    ckpt = tmp_path / "model.safetensors"
    shutil.copy(DEFAULT_CHECKPOINT, ckpt)
    shutil.copy(DEFAULT_CHECKPOINT.with_suffix(".json"), ckpt.with_suffix(".json"))
    proto = onnx.load(str(SHIPPED_ONNX))
    for p in proto.metadata_props:
        if p.key == "tensors_sha256":
            p.value = "0" * 64  # an export of some earlier training run
    onnx.save(proto, str(ckpt.with_suffix(".onnx")))
    configure_logging("INFO", "json")
    scorer = load_scorer(_cpu(checkpoint=ckpt))
    assert isinstance(scorer.model, DGIQALite)
    err = capsys.readouterr().err
    assert "exported from other weights" in err and "STREAM_IQA_MODEL__ONNX" in err


def test_a_checkpoint_without_a_graph_runs_on_pytorch(tmp_path):
    ckpt = tmp_path / "other.safetensors"
    shutil.copy(DEFAULT_CHECKPOINT, ckpt)
    shutil.copy(DEFAULT_CHECKPOINT.with_suffix(".json"), ckpt.with_suffix(".json"))
    assert isinstance(load_scorer(_cpu(checkpoint=ckpt)).model, DGIQALite)


def test_set_threads_rebuilds_the_session_and_keeps_the_scores():
    model = load_scorer(_cpu()).model
    rgb, depth = torch.rand(2, 3, 192, 192), torch.rand(2, 1, 192, 192)
    before = model.score(rgb, depth).quality
    session = model.runner.session
    model.set_threads(1)
    assert model.runner.session is not session and model.runner.threads == 1
    torch.testing.assert_close(model.score(rgb, depth).quality, before)


def test_the_cores_are_split_between_models_and_decoders_for_both_backends(monkeypatch):
    import stream_iqa.model.scorer as scoring
    from stream_iqa.model.scorer import model_threads, split_cpu_threads

    scorer = load_scorer(_cpu())
    calls: list[int] = []
    monkeypatch.setattr(scorer.model, "set_threads", calls.append)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(scoring, "cpu_cores", lambda: 8)
    settings = Settings.load(model={"device": "cpu"})
    # replay: half the cores (the decoder runs beside the model); the service: cores / clips in flight
    assert [model_threads(settings, n) for n in (1, 2, 4, 16)] == [4, 4, 2, 1]
    split_cpu_threads(scorer, settings, clips_at_once=4)
    assert calls == [2]
    split_cpu_threads(scorer, Settings.load(model={"device": "cpu", "threads": 3}), clips_at_once=4)
    assert calls == [2]  # model.threads set explicitly is left alone
    assert model_threads(Settings.load(model={"device": "cpu", "threads": 3}), 4) == 3


def test_backend_onnxruntime_without_a_file_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="STREAM_IQA_MODEL__ONNX"):
        load_scorer(_cpu(backend="onnxruntime", onnx=tmp_path / "missing.onnx"))


def test_depth_is_computed_at_the_models_input_size(photos):
    from stream_iqa.model.scorer import Scorer

    scorer = load_scorer(_cpu())
    rgb = to_tensor(photos["coffee"])
    assert scorer.depth_size(rgb) == (192, 192)  # as in training: depth_source(image, size=input_size)
    teacher = SimpleNamespace(card=ModelCard(name="dgiqa", version="0"))  # no input size: it crops frames itself
    teacher_like = Scorer(model=teacher, depth=scorer.depth, device=torch.device("cpu"))  # type: ignore[arg-type]
    assert teacher_like.depth_size(rgb) == tuple(rgb.shape[-2:])  # crops at native resolution need full-size depth
    assert SHIPPED_ONNX.stat().st_size < 20e6


def test_an_unreadable_graph_falls_back_to_pytorch_with_a_warning(tmp_path, capsys):
    ckpt = tmp_path / "model.safetensors"
    shutil.copy(DEFAULT_CHECKPOINT, ckpt)
    shutil.copy(DEFAULT_CHECKPOINT.with_suffix(".json"), ckpt.with_suffix(".json"))
    ckpt.with_suffix(".onnx").write_bytes(b"not an onnx graph")  # e.g. a truncated copy
    configure_logging("INFO", "json")
    assert isinstance(load_scorer(_cpu(checkpoint=ckpt)).model, DGIQALite)
    assert "ONNX graph unusable" in capsys.readouterr().err
