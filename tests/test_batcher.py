"""Shared device batches: concurrent clips' frames in one model call, with the same results as calls of their own."""

import threading

import numpy as np
import pytest
import torch

from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip
from stream_iqa.model.batcher import SharedBatcher
from stream_iqa.images import to_tensor
from stream_iqa.pipeline import Pipeline
from stream_iqa.model.scorer import load_scorer
from stream_iqa.settings import Settings


@pytest.fixture(scope="module")
def scorer():
    return load_scorer(Settings.load(model={"device": "cpu"}, depth={"source": "prior"}))


def _concurrently(fns):
    results = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i):
        barrier.wait()
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_frames_of_different_sizes_share_one_call_and_match_their_own_calls(scorer, photos):
    batcher = SharedBatcher(scorer, batch_size=64, max_wait_ms=500)
    try:
        inputs = []
        for name, size in (("coffee", (240, 320)), ("astronaut", (360, 360)), ("chelsea", (288, 512))):
            rgb = torch.nn.functional.interpolate(to_tensor(photos[name]), size=size, mode="area")
            rgb = torch.cat([rgb, rgb.flip(-1)])  # two frames per request
            inputs.append((rgb, scorer.depth(rgb)))
        shared = _concurrently([lambda r=r, d=d: batcher.score(r, d) for r, d in inputs])
        assert batcher.calls == 1 and batcher.requests == 3
    finally:
        batcher.close()
    for (rgb, depth), out in zip(inputs, shared):
        own = scorer.model.score(rgb, depth)
        assert out.quality.shape == (2,) and out.distortions.shape == (2, 3)
        torch.testing.assert_close(out.quality, own.quality, atol=1e-3, rtol=0)
        torch.testing.assert_close(out.distortions, own.distortions, atol=1e-4, rtol=0)


def test_a_failing_shared_call_releases_every_caller_with_the_cause(scorer):
    batcher = SharedBatcher(scorer, batch_size=64, max_wait_ms=300)
    try:
        good = torch.rand(1, 3, 64, 64)
        bad = torch.rand(1, 5, 64, 64)  # five channels: the network cannot take it
        outcome = _concurrently([lambda: _try(batcher, good), lambda: _try(batcher, bad)])
        assert all(isinstance(o, RuntimeError) for o in outcome)
        assert batcher.score(good, torch.rand(1, 1, 64, 64)).quality.shape == (1,)  # and it goes on
    finally:
        batcher.close()


def _try(batcher, rgb):
    try:
        return batcher.score(rgb, torch.rand(1, 1, 64, 64))
    except RuntimeError as exc:
        return exc


def test_two_clips_analysed_at_once_through_shared_batches_report_as_alone(scorer, tmp_path):
    settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
    a = build_clip(ClipSpec(scenes=["coffee"], scene_s=6.0, spans=[Span("low_light", 1.5, 4.5)]), tmp_path / "a.mp4")
    b = build_clip(ClipSpec(scenes=["china"], scene_s=6.0, size=(480, 270)), tmp_path / "b.mp4")
    alone = Pipeline(settings, scorer=scorer)
    expected = [alone.analyze(p, clip_id=p.name, depth_state=alone.new_depth_state()).report for p in (a, b)]
    batcher = SharedBatcher(scorer, batch_size=64, max_wait_ms=50)
    try:
        shared = Pipeline(settings, scorer=scorer, batcher=batcher)
        got = _concurrently([lambda p=p: shared.analyze(p, clip_id=p.name, depth_state=shared.new_depth_state()).report
                             for p in (a, b)])
        assert batcher.calls < batcher.requests  # some calls really were shared
    finally:
        batcher.close()
    for e, g in zip(expected, got):
        assert [s.type for s in g.segments] == [s.type for s in e.segments]
        assert np.isclose(g.quality.mean, e.quality.mean, atol=0.05)


@pytest.mark.parametrize("shared, clips, batched", [("on", 2, True), ("on", 1, False), ("off", 4, False),
                                                    ("auto", 4, False)])  # auto: shared on CUDA only
def test_a_pipeline_for_concurrent_clips_shares_batches_where_the_settings_say(scorer, shared, clips, batched):
    settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"}, engine={"shared_batches": shared})
    pipe = Pipeline.for_concurrent_clips(settings, clips, scorer=scorer)
    try:
        assert (pipe.batcher is not None) == batched and pipe.scorer is scorer
    finally:
        pipe.close()
