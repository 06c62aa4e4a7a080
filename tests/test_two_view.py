"""The two-view student (model v2): quality from native-resolution fragments, flags from the whole frame.

What is pinned: the decoder hands every sampled frame's fragments at native resolution while ``rgb`` is downscaled;
the pipeline scores with those (not with fragments of the downscaled frame); the exported ONNX graph, the shared
batcher and the PyTorch model agree; a v1 (single-view) checkpoint runs exactly as before.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_iqa import fragments
from stream_iqa.nn.checkpoint import save_checkpoint
from stream_iqa.nn.lite import DGIQALite, LiteConfig, lite_from_checkpoint
from stream_iqa.pipeline import Pipeline
from stream_iqa.settings import Settings
from stream_iqa.video import VideoSettings, open_video

from test_video_decode import write_clip

SPEC = fragments.FragmentSpec(grid=4, patch=32)  # 128² fragments: small, quick on CPU


@pytest.fixture(scope="module")
def two_view_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = DGIQALite(LiteConfig(input_size=(128, 128), fragments=(SPEC.grid, SPEC.patch))).eval()
    with torch.no_grad():  # a quality head that reacts to fine texture, so native vs resampled fragments differ
        model.head_quality[1].weight.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("ckpt2") / "two-view.safetensors"
    save_checkpoint(path, model.state_dict(), {
        "model": "dgiqa-lite", "version": "test-v2", "arch": model.config.to_dict(), "depth_source": "prior",
        "calibration": {"kind": "identity"}})
    return path


@pytest.fixture(scope="module")
def textured_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640×480, fine texture (a real photo with noise) that a downscale to 192 px short side blurs away."""
    from skimage import data

    rng = np.random.default_rng(0)
    photo = np.asarray(data.astronaut())  # 512×512
    base = np.zeros((480, 640 + 24, 3), np.uint8)
    base[:, :512] = photo[16:496]
    base[:, 512:] = photo[16:496, : 640 + 24 - 512]
    frames = [np.clip(base[:, 2 * i: 2 * i + 640].astype(int) + rng.integers(-20, 21, (480, 640, 3)), 0, 255)
              .astype(np.uint8) for i in range(12)]
    return write_clip(tmp_path_factory.mktemp("clip2") / "textured.mp4", frames, fps=6)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_decoder_gathers_fragments_from_the_native_frame_while_rgb_is_downscaled(textured_clip, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    s = VideoSettings(sampling="every_n", every_n=5, backend=backend)
    with open_video(textured_clip, s, short_side=192, fragments=SPEC) as clip:
        small = list(clip.frames())
    with open_video(textured_clip, s) as clip:
        native = list(clip.frames())
    assert [f.index for f in small] == [f.index for f in native] == [0, 5, 10]
    for a, b in zip(small, native):
        assert a.rgb.shape == (192, 256, 3) and b.rgb.shape == (480, 640, 3) and b.fragments is None
        assert np.array_equal(a.fragments, fragments.gather(b.rgb, SPEC))


def test_pipeline_scores_quality_from_native_fragments(two_view_checkpoint, textured_clip):
    settings = Settings.load(model={"device": "cpu", "checkpoint": str(two_view_checkpoint), "backend": "torch"},
                             depth={"source": "prior"}, engine={"analysis_short_side": 192},
                             video={"sampling": "every_n", "every_n": 5})
    pipe = Pipeline(settings)
    assert pipe.fragment_spec == SPEC
    records = pipe.analyze(textured_clip, clip_id="c").frames
    with open_video(textured_clip, settings.video, short_side=192, fragments=SPEC) as clip:
        frames = list(clip.frames())
    model = pipe.scorer.model
    rgb = torch.from_numpy(np.stack([f.rgb for f in frames])).permute(0, 3, 1, 2).float() / 255
    native = torch.from_numpy(np.stack([f.fragments for f in frames])).permute(0, 3, 1, 2).float() / 255
    depth = pipe.scorer.depth(rgb, (128, 128))
    want = model.score(rgb, depth, native).quality.numpy()
    resampled = model.score(rgb, depth).quality.numpy()  # fragments of the 192-px frame
    got = np.array([r.quality for r in records])
    np.testing.assert_allclose(got, want, atol=0.011)
    assert np.abs(got - resampled).min() > 0.5  # the downscale changed what the quality view saw


def test_onnx_graph_and_shared_batcher_agree_with_the_model(two_view_checkpoint, tmp_path):
    from stream_iqa.model.batcher import SharedBatcher
    from stream_iqa.model.export import export_onnx
    from stream_iqa.model.onnx_runtime import OnnxRuntimeModel
    from stream_iqa.model.scorer import load_scorer

    model, _ = lite_from_checkpoint(two_view_checkpoint)
    meta = export_onnx(model, tmp_path / "m.onnx")
    assert meta["fragments"] == "[4, 32]"
    ort = OnnxRuntimeModel(tmp_path / "m.onnx")
    assert ort.card.fragments == SPEC
    assert ort.card == dataclasses.replace(model.card, backend="onnxruntime")  # the whole card survives the export
    g = torch.Generator().manual_seed(1)
    rgb, depth = torch.rand(3, 3, 200, 300, generator=g), torch.rand(3, 1, 128, 128, generator=g)
    frags = torch.rand(3, 3, 128, 128, generator=g)
    ref = model.score(rgb, depth, frags)
    out = ort.score(rgb, depth, frags)
    torch.testing.assert_close(out.quality, ref.quality, atol=1e-3, rtol=0)
    torch.testing.assert_close(out.distortions, ref.distortions, atol=1e-4, rtol=0)
    torch.testing.assert_close(ort.score(rgb, depth).quality, model.score(rgb, depth).quality, atol=1e-3, rtol=0)

    scorer = load_scorer(Settings.load(model={"device": "cpu", "checkpoint": str(two_view_checkpoint),
                                              "backend": "torch"}, depth={"source": "prior"}))
    batcher = SharedBatcher(scorer, batch_size=64, max_wait_ms=300)
    try:
        import threading

        res: dict[int, object] = {}
        threads = [threading.Thread(target=lambda i=i: res.__setitem__(i, batcher.score(
            rgb[i:i + 1], depth[i:i + 1], frags[i:i + 1] if i else None))) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        batcher.close()
    own = [scorer.model.score(rgb[i:i + 1], depth[i:i + 1], frags[i:i + 1] if i else None).quality for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(res[i].quality, own[i], atol=1e-3, rtol=0)


def test_without_depth_guidance_the_flags_ignore_depth_and_the_onnx_graph_still_takes_it(tmp_path):
    """LiteConfig(depth_guidance=False), the ablation: the same network reading a constant depth map. Its outputs do
    not move with the depth input (with guidance they do), and the exported graph keeps its depth input."""
    from stream_iqa.model.export import export_onnx
    from stream_iqa.model.onnx_runtime import OnnxRuntimeModel

    torch.manual_seed(0)
    cfg = dict(input_size=(128, 128), fragments=(SPEC.grid, SPEC.patch))
    guided, blind = (DGIQALite(LiteConfig(**cfg, depth_guidance=on)).eval() for on in (True, False))
    with torch.no_grad():  # off its initialisation, where the attention's zero-started output hides the depth path
        for p in guided.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    blind.load_state_dict(guided.state_dict())
    g = torch.Generator().manual_seed(2)
    rgb, frags = torch.rand(2, 3, 160, 200, generator=g), torch.rand(2, 3, 128, 128, generator=g)
    near, far = torch.rand(2, 1, 128, 128, generator=g), torch.rand(2, 1, 128, 128, generator=g)
    assert not torch.allclose(guided.score(rgb, near, frags).distortions, guided.score(rgb, far, frags).distortions)
    torch.testing.assert_close(blind.score(rgb, near, frags).distortions, blind.score(rgb, far, frags).distortions)
    torch.testing.assert_close(blind.score(rgb, near, frags).quality, guided.score(rgb, far, frags).quality)
    export_onnx(blind, tmp_path / "blind.onnx")
    ort = OnnxRuntimeModel(tmp_path / "blind.onnx")
    torch.testing.assert_close(ort.score(rgb, far, frags).distortions, blind.score(rgb, near, frags).distortions,
                               atol=1e-4, rtol=0)


def test_a_two_view_model_refuses_to_guess_its_quality_input(two_view_checkpoint):
    model, _ = lite_from_checkpoint(two_view_checkpoint)
    x, d = torch.rand(1, 3, 128, 128), torch.rand(1, 1, 128, 128)
    with pytest.raises(ValueError, match="fragments"):
        model(x, d)
    with pytest.raises(ValueError, match="128"):
        model.score(x, d, torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="fragments must be"):
        DGIQALite(LiteConfig(fragments=(7,)), pretrained_trunk=False)


def test_a_single_view_checkpoint_gets_no_fragments_and_scores_as_before(student_checkpoint, textured_clip):
    settings = Settings.load(model={"device": "cpu", "checkpoint": str(student_checkpoint), "backend": "torch"},
                             depth={"source": "prior"}, engine={"analysis_short_side": 192},
                             video={"sampling": "every_n", "every_n": 5})
    pipe = Pipeline(settings)
    assert pipe.fragment_spec is None and pipe.scorer.model.card.fragments is None
    records = pipe.analyze(textured_clip, clip_id="c").frames
    with open_video(textured_clip, settings.video, short_side=192) as clip:
        frames = list(clip.frames())
    assert all(f.fragments is None for f in frames)
    rgb = torch.from_numpy(np.stack([f.rgb for f in frames])).permute(0, 3, 1, 2).float() / 255
    want = pipe.scorer.model.score(rgb, pipe.scorer.depth(rgb, (128, 128))).quality.numpy()
    np.testing.assert_allclose([r.quality for r in records], want, atol=0.011)


@pytest.mark.data
def test_two_stage_recipe_quality_from_fragments_then_flags_on_the_frozen_trunk(shared_data, tmp_path):
    """Stage 1 (train.quality_view) fine-tunes trunk + lean head on native fragments and fits the calibration;
    stage 2 (train with init_from + train_only) trains the flag path on that trunk and leaves quality exactly as it
    was. A stage-2 recipe that would move the quality path is refused."""
    from stream_iqa.nn.registry import create_model
    from stream_iqa.train.quality_view import QualityViewConfig, predict, write_final
    from stream_iqa.train.trainer import TrainConfig, train

    settings = Settings.load(data={"root": shared_data, "cache_dir": tmp_path / "cache"}, depth={"source": "prior"})
    qcfg = QualityViewConfig(fragments=(4, 32), epochs=1, batch_size=8, max_mos=24, threads=2)
    stage1 = tmp_path / "q.safetensors"
    meta = write_final(qcfg, settings, stage1, command="test")
    q = create_model("dgiqa-lite", checkpoint=stage1)
    assert q.fragment_spec == SPEC and meta["calibration"]["kind"] == "piecewise_linear"
    assert meta["preprocess"]["fragments"] == {"grid": 4, "patch": 32, "sampling": meta["preprocess"]["fragments"]["sampling"]}
    photo = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert predict(q, [photo]) == pytest.approx(predict(q, [photo]))  # centred grid: deterministic

    common = dict(variants=2, val_variants=1, steps_per_epoch=2, batch_size=8, max_natural=4, max_mos=24,
                  clive_val_fraction=0.0, epochs=1, mos_share=0.0, w_mos=0.0, w_mos_rank=0.0, w_weak=0.0, w_rank=0.0)
    flags_only = ["tcbs", "tcbs_depth", "depth_encoder", "rgb_proj", "depth_proj", "car", "dilated", "global_stats",
                  "head_distortions"]
    out = tmp_path / "v2.safetensors"
    meta2 = train(TrainConfig(init_from=str(stage1), train_only=flags_only, **common), settings, out=out,
                  run_dir=tmp_path / "s2", command="test")
    v2 = create_model("dgiqa-lite", checkpoint=out)
    assert list(meta2["training"]["quality_view"]["config"]["fragments"]) == [4, 32]
    assert v2.calibration == q.calibration and meta2["preprocess"]["fragments"]["grid"] == 4
    q_state, v_state = q.state_dict(), v2.state_dict()
    for name in v_state:
        if name.startswith(("trunk.", "head_quality.")):
            assert torch.equal(v_state[name], q_state[name]), name
    assert any(not torch.equal(v_state[n], q_state[n]) for n in v_state if n.startswith("head_distortions."))
    rgb, depth = torch.rand(2, 3, 300, 400), torch.rand(2, 1, 128, 128)
    torch.testing.assert_close(v2.score(rgb, depth).quality, q.score(rgb, depth).quality, rtol=0, atol=0)

    for bad in (dict(train_only=["trunk", *flags_only]), dict(train_only=flags_only, w_mos_override=1.0)):
        kw = dict(common)
        if "w_mos_override" in bad:
            kw["w_mos"] = bad.pop("w_mos_override")
        with pytest.raises(ValueError, match="two-view"):
            train(TrainConfig(init_from=str(stage1), **bad, **kw), settings, out=tmp_path / "x.safetensors",
                  run_dir=tmp_path / "x", command="test")


def test_ladder_loss_prefers_the_less_degraded_rung_within_a_ladder_only():
    from stream_iqa.train.quality_view import _ladder_loss

    sev = np.array([0.0, 0.5, 1.0, 0.0, 1.0], np.float32)
    grp = np.array([0, 0, 0, 1, 1])
    right = torch.tensor([0.9, 0.6, 0.2, 0.1, 0.05])  # ladder 1 scores low overall: no cross-ladder pair is judged
    wrong = torch.tensor([0.2, 0.6, 0.9, 0.1, 0.05])
    assert _ladder_loss(right, sev, grp, 0.05) < 0.1 < _ladder_loss(wrong, sev, grp, 0.05)


@pytest.mark.data
def test_severity_ladders_share_one_seed_and_start_pristine(shared_data):
    from stream_iqa.data.mos import natural_split
    from stream_iqa.images import read_rgb
    from stream_iqa.train.quality_view import SeverityLadders

    photos = natural_split(shared_data / "natural")["train"][:2]
    ladders = SeverityLadders(photos, (0.0, 0.5, 1.0), np.random.default_rng(0))
    imgs, sev, grp = ladders.draw(3)
    assert len(imgs) == 9 and sev.tolist() == [0.0, 0.5, 1.0] * 3 and grp.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    originals = [read_rgb(p) for p in photos]
    for g in range(3):
        assert any(np.array_equal(imgs[3 * g], o) for o in originals)  # rung 0 is the pristine photo itself
        assert not np.array_equal(imgs[3 * g + 1], imgs[3 * g + 2])


def test_ramp_report_reads_the_direction_of_quality_against_severity(textured_clip):
    """A 'model' whose quality is the mean brightness: a low-light ramp must give Spearman −1 and the clean clip
    the brightness jitter of the pan."""
    from stream_iqa.depth.prior import PriorDepth
    from stream_iqa.nn.api import IQAOutput
    from stream_iqa.train.evaluate import ramp_report

    class Brightness:
        def score(self, rgb, depth, fragments=None):
            return IQAOutput(quality=rgb.mean(dim=(1, 2, 3)) * 100, distortions=None)

    r = ramp_report(Brightness(), PriorDepth(), textured_clip, kinds=("low_light",), steps=6, stride=2)
    assert r["frames"] == 6 and r["static"]["frames"] == 50
    for view in ("moving", "held"):
        assert r["low_light"][view]["spearman"] == pytest.approx(-1.0)
        assert r["low_light"][view]["first"] > r["low_light"][view]["last"]
    assert 0 <= r["static"]["mean_abs_step"] < 1 and r["clean"]["range"] >= 0


@pytest.mark.data
def test_real_train_photos_join_the_flag_data_with_only_their_own_flag_known(shared_data, tmp_path):
    from stream_iqa.data.real import load_real
    from stream_iqa.depth.prior import PriorDepth
    from stream_iqa.train.dataset import build_real
    from stream_iqa.train.trainer import REAL_GROUPS, BatchSampler, TrainConfig, prepare_data

    photos = load_real(shared_data / "real", "train")
    assert photos and all(p.split == "train" for p in photos)
    kinds = {}
    for p in photos:
        kinds.setdefault((p.distortion, p.positive), p)
    sample = list(kinds.values())
    real = build_real(sample, PriorDepth(), (64, 64), first_group=REAL_GROUPS)
    for p, row in zip(sample, real.flags):
        j = ["low_light", "haze", "flare"].index(p.distortion)
        assert row[j] == float(p.positive) and (np.delete(row, j) == -1).all()
    assert np.isnan(real.mos).all() and np.isnan(real.weak).all() and (real.group >= REAL_GROUPS).all()

    settings = Settings.load(data={"root": shared_data, "cache_dir": tmp_path / "cache"}, depth={"source": "prior"})
    cfg = TrainConfig(arch={"input_size": [64, 64]}, variants=1, val_variants=1, max_natural=4, max_mos=8,
                      real_train=True, real_repeat=2, mos_share=0.0)
    data = prepare_data(cfg, settings, (64, 64))
    in_real = data.train.group >= REAL_GROUPS
    assert in_real.sum() == 2 * len(photos) and len(np.unique(data.train.group[in_real])) == 2 * len(photos)
    dev_names = {p.relpath for p in load_real(shared_data / "real", "dev")}
    assert not dev_names & set(np.asarray(data.train.names)[in_real])
    drawn = BatchSampler(data.train, cfg, np.random.default_rng(0))()
    assert len(drawn) == cfg.batch_size


def test_a_quality_view_recipe_refuses_typos_and_bad_geometry(tmp_path):
    from stream_iqa.train.quality_view import QualityViewConfig

    p = tmp_path / "r.yaml"
    p.write_text("fragment: [7, 32]\n")
    with pytest.raises(ValueError, match=r"unknown quality-view settings \['fragment'\]"):
        QualityViewConfig.from_yaml(p)
    p.write_text("fragments: [7]\n")
    with pytest.raises(ValueError, match="r.yaml: fragments must be"):
        QualityViewConfig.from_yaml(p)
    p.write_text("- 1\n")
    with pytest.raises(ValueError, match="mapping"):
        QualityViewConfig.from_yaml(p)
    p.write_text("fragments: [5, 16]\nw_severity_rank: 0.5\nrank_severities: [0, 1]\n")
    cfg = QualityViewConfig.from_yaml(p)
    assert cfg.fragments == (5, 16) and cfg.rank_severities == (0, 1)


def _tiny_quality_cfg(**kw):
    from stream_iqa.train.quality_view import QualityViewConfig

    return QualityViewConfig(**{**dict(fragments=(4, 32), epochs=1, batch_size=8, max_mos=24, threads=2,
                                       distill_variants=1, distill_batch=4), **kw})


@pytest.mark.data
def test_distilled_student_refuses_a_teacher_that_saw_its_held_out_photos(shared_data, tmp_path):
    """The teacher's scores on unrated photos carry what it learnt from MOS; a teacher trained on CLIVE photos the
    student holds out would leak their scores into the student's held-out figure, so it is refused by its record."""
    import json
    import shutil

    from stream_iqa.nn.checkpoint import load_checkpoint
    from stream_iqa.train.quality_view import compare_split_seeds

    settings = Settings.load(data={"root": shared_data}, depth={"source": "prior"})
    teachers = tmp_path / "teachers"
    compare_split_seeds(_tiny_quality_cfg(fragments=(4, 40), max_mos=40), settings, [0], keep=teachers)
    assert load_checkpoint(teachers / "split-0.safetensors")[1]["training"]["quality_view"]["split"] == {
        "val_fraction": 0.2, "seed": 0}
    student = _tiny_quality_cfg(teacher=str(teachers / "split-{split}.safetensors"), max_mos=40)
    rows = compare_split_seeds(student, settings, [0], keep=tmp_path / "students")
    assert rows[0]["n"] >= 3 and -1 <= rows[0]["srocc"] <= 1
    record = load_checkpoint(tmp_path / "students" / "split-0.safetensors")[1]["training"]["quality_view"]
    d = record["distillation"]
    assert [m["fragments"] for m in d["members"]] == [[4, 40]] and d["teacher_draws"] == 4
    assert d["photos"] == {"natural": 40, "real": 40, "synthetic": 40}
    assert "teacher's scores" in record["data"]

    shutil.copy(teachers / "split-0.safetensors", teachers / "split-1.safetensors")  # a mislabelled file
    shutil.copy(teachers / "split-0.json", teachers / "split-1.json")
    with pytest.raises(ValueError, match="seed=0.*holds out val_fraction=0.2, seed=1"):
        compare_split_seeds(student, settings, [1])
    meta_path = teachers / "split-0.json"  # the record --final writes: trained on every photo
    meta = json.loads(meta_path.read_text())
    meta["training"]["quality_view"]["split"] = {"val_fraction": 0, "seed": None}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="every CLIVE photo"):
        compare_split_seeds(student, settings, [0])
    with pytest.raises(FileNotFoundError, match="recipe key 'teacher'"):
        compare_split_seeds(_tiny_quality_cfg(teacher=str(tmp_path / "none-{split}.safetensors")), settings, [0])


@pytest.mark.data
def test_distillation_pulls_the_student_toward_the_teachers_scores(shared_data):
    """Same photos, same seeds; only the teacher's scores differ (all 90 vs all 10): the student trained on the
    high ones must score those unrated photos higher."""
    from stream_iqa.data.mos import split_items
    from stream_iqa.train.quality_view import DistillSet, load_clive, predict, train_quality_view

    settings = Settings.load(data={"root": shared_data}, depth={"source": "prior"})
    items, images = load_clive(settings, 16)
    train, _ = split_items(items, 0.2, seed=0)
    rng = np.random.default_rng(0)
    unrated = [rng.integers(0, 256, (200, 260, 3), dtype=np.uint8) for _ in range(8)]
    means = {}
    for level in (10.0, 90.0):
        cfg = _tiny_quality_cfg(epochs=3, w_distill=5.0, distill_batch=8)
        model, result = train_quality_view(cfg, train, [], images, None,
                                           DistillSet(unrated, np.full(8, level, np.float32), {"teacher": "test"}))
        assert result["distillation"] == {"teacher": "test"}
        means[level] = predict(model, unrated).mean()
    assert means[90.0] > means[10.0] + 5


def test_distillation_settings_are_checked_and_one_teacher_may_be_a_string(tmp_path):
    from stream_iqa.train.quality_view import QualityViewConfig

    assert QualityViewConfig(teacher="t/split-{split}.safetensors").teacher == ("t/split-{split}.safetensors",)
    assert QualityViewConfig().teacher == ()
    with pytest.raises(ValueError, match="distill_sources: unknown \\['clive'\\]"):
        QualityViewConfig(distill_sources=("natural", "clive"))  # rated photos are never pseudo-labelled
    for bad, match in ((dict(teacher="t-{seed}.safetensors"), "only placeholder is {split}"),
                       (dict(teacher="t", distill_sources=()), "needs unrated photos"),
                       (dict(teacher="t", distill_sources=("synthetic",), distill_variants=0), "needs unrated photos"),
                       (dict(teacher="t", teacher_draws=0), "teacher_draws >= 1")):
        with pytest.raises(ValueError, match=match):
            QualityViewConfig(**bad)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("teacher:\n  - a-{split}.safetensors\n  - b-{split}.safetensors\ndistill_sources: [real]\n")
    cfg = QualityViewConfig.from_yaml(recipe)
    assert cfg.teacher == ("a-{split}.safetensors", "b-{split}.safetensors") and cfg.distill_sources == ("real",)
    recipe.write_text("teacher: a-{split}.safetensors\n")
    assert QualityViewConfig.from_yaml(recipe).teacher == ("a-{split}.safetensors",)


def test_scale_onto_maps_a_teacher_onto_the_mos_and_refuses_a_flat_or_inverted_one():
    """The official DGIQA learnt KonIQ's scale: a line fitted on the student's training photos puts it on CLIVE's.
    A teacher that gives every photo one score, or ranks them against the MOS, is refused rather than taught."""
    from stream_iqa.train.quality_view import scale_onto

    raw = np.array([0.2, 0.4, 0.5, 0.9, 0.7])
    a, b = scale_onto(raw, 80.0 * raw + 10.0)
    assert a == pytest.approx(80.0) and b == pytest.approx(10.0)
    with pytest.raises(ValueError, match="one score"):
        scale_onto(np.full(5, 0.5), raw)
    with pytest.raises(ValueError, match="fall as MOS rises.*PLCC -1.00"):
        scale_onto(raw, 100.0 - 50.0 * raw)
    with pytest.raises(ValueError, match="2 training photos"):
        scale_onto(raw[:2], raw[:2])
    noise = np.random.default_rng(1)
    mos = noise.random(64) * 100
    unrelated = mos[noise.permutation(64)] * 0.01 + noise.random(64)  # ranks the photos about as well as chance
    with pytest.raises(ValueError, match="barely follow the MOS.*at least 0.3"):
        scale_onto(unrelated, mos)
    with pytest.raises(ValueError, match="1 of 5 training photos a non-finite score"):
        scale_onto(np.array([0.2, np.nan, 0.5, 0.9, 0.7]), raw)


@pytest.mark.data
def test_a_teacher_on_another_scale_is_fitted_on_the_students_training_photos_only(shared_data, monkeypatch):
    """The line onto the MOS scale is fitted on photos whose MOS the student trains on: for a split run its
    training part (never a held-out photo), for --final every CLIVE photo."""
    import stream_iqa.train.quality_view as qv
    from stream_iqa.data.mos import split_items

    settings = Settings.load(data={"root": shared_data}, depth={"source": "prior"})
    fits = []
    teacher = qv.Teacher(score=lambda imgs: np.arange(len(imgs), dtype=float), member={"kind": "test"},
                         fit_scale=True)
    monkeypatch.setattr(qv, "load_teacher", lambda *a, **k: [teacher])
    monkeypatch.setattr(qv, "teacher_set", lambda cfg, t, images, counts, fit=None: fits.append(fit) or "distill")
    monkeypatch.setattr(qv, "train_quality_view",
                        lambda cfg, train, val, images, photos, distill: (None, {"metrics": {"distill": distill}}))
    monkeypatch.setattr(qv, "save_quality_view", lambda *a, **k: {})
    cfg = _tiny_quality_cfg(teacher="dgiqa:/x/DGIQA_Koniq10k.pth", distill_sources=("real",), max_mos=24)
    rows = qv.compare_split_seeds(cfg, settings, [0, 1])
    assert [r["distill"] for r in rows] == ["distill", "distill"]
    items, images = qv.load_clive(settings, 24)
    for (fit_imgs, fit_mos), seed in zip(fits, (0, 1)):
        train, _ = split_items(items, 0.2, seed=seed)
        assert len(fit_imgs) == len(train) < len(items)
        assert all(np.array_equal(a, images[i.path]) for a, i in zip(fit_imgs, train))
        assert fit_mos.tolist() == [i.mos for i in train]
    fits.clear()
    qv.write_final(cfg, settings, Path("unused.safetensors"), "test")
    (fit_imgs, fit_mos), = fits
    assert len(fit_imgs) == len(items) and sorted(fit_mos.tolist()) == sorted(i.mos for i in items)


def test_an_official_dgiqa_teacher_trained_on_clive_is_refused_for_split_runs_and_a_missing_one_is_named():
    from stream_iqa.train.quality_view import QualityViewConfig, load_teacher

    for name in ("DGIQA_LIVEC.pth", "dgiqa-live_challenge.pth", "DGIQA_CLIVE_best.pth"):
        cfg = QualityViewConfig(teacher=f"dgiqa:/nowhere/{name}")
        with pytest.raises(ValueError, match="trained on CLIVE"):  # before the file is even looked for
            load_teacher(cfg, (0.2, 0))
        with pytest.raises(FileNotFoundError, match="dgiqa:PATH names the official"):
            load_teacher(cfg, None)  # --final: every CLIVE photo is training data, so the name is no objection
    with pytest.raises(FileNotFoundError, match="DGIQA_Koniq10k.pth not found"):
        load_teacher(QualityViewConfig(teacher="dgiqa:/nowhere/DGIQA_Koniq10k.pth"), (0.2, 0))
    with pytest.raises(ValueError, match="teacher_crops >= 1"):
        QualityViewConfig(teacher="dgiqa:/x.pth", teacher_crops=0)


def test_the_official_dgiqa_teaches_on_the_students_scale_through_one_pass_per_photo_list(tmp_path):
    """A randomly initialised DGIQA in the official layout (the weights cannot be had here): loaded strictly from a
    bare .pth, its scores mapped onto the MOS by the line through the training photos, its raw scores computed once
    per photo list and the model shared between split runs (it never saw the splits)."""
    from stream_iqa.nn.checkpoint import file_sha256
    from stream_iqa.nn.dgiqa import DGIQA
    from stream_iqa.train.quality_view import QualityViewConfig, load_teacher, teacher_set

    torch.manual_seed(0)
    path = tmp_path / "DGIQA_Koniq10k.pth"
    torch.save(DGIQA(crops=1).state_dict(), path)
    cfg = QualityViewConfig(teacher=f"dgiqa:{path}", teacher_crops=1, teacher_fit_photos=4)
    settings = Settings.load(depth={"source": "prior"})
    shared: dict = {}
    (teacher,) = load_teacher(cfg, (0.2, 0), settings, shared)
    assert load_teacher(cfg, (0.2, 1), settings, shared) == [teacher]  # one model for every split
    rng = np.random.default_rng(0)
    fit = [rng.integers(0, 256, (96, 120, 3), dtype=np.uint8) for _ in range(4)]
    unrated = [rng.integers(0, 256, (80, 100, 3), dtype=np.uint8) for _ in range(3)]
    fit_raw = teacher.score(fit)
    assert fit_raw.std() > 0
    mos = 40.0 * (fit_raw - fit_raw.min()) / np.ptp(fit_raw) + 30.0  # a MOS exactly linear in the teacher's scores
    calls: list[int] = []
    inner = teacher.score
    teacher.score = lambda imgs: calls.append(len(imgs)) or inner(imgs)  # counts the passes
    d = teacher_set(cfg, [teacher], unrated, {"real": 3}, fit=(fit, mos))
    (member,) = d.record["members"]
    a, b = member["scale"]["a"], member["scale"]["b"]
    assert member["kind"] == "dgiqa-official" and member["sha256"] == file_sha256(path) and member["crops"] == 1
    assert member["scale"]["photos"] == 4 and member["scale"]["plcc"] == pytest.approx(1.0)
    raw = inner(unrated)
    np.testing.assert_allclose(d.targets, np.clip(a * raw + b, 0, 100), rtol=1e-4, atol=1e-3)
    assert calls == [3, 4]
    assert inner(unrated) is raw  # the split runs share the pass over the same unrated photos
    with pytest.raises(ValueError, match="needs the student's training photos"):
        teacher_set(cfg, [teacher], unrated, {"real": 3})
