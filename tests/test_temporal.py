"""Temporal analysis on synthetic probability tracks: smoothing, hysteresis, spans, merging, aggregation, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_iqa.schema import DISTORTION_TYPES, ClipReport, Distortions, FrameRecord, ModelInfo, Segment, Source
from stream_iqa.temporal import (
    TemporalSettings,
    aggregate_quality,
    build_report,
    distortion_share,
    find_segments,
    frame_cells,
    smooth,
)

TH = {k: 0.5 for k in DISTORTION_TYPES}
RAW = TemporalSettings(half_life_s=0.0)  # no smoothing: thresholds act on the probabilities as given


def _track(t: np.ndarray, spans: dict[str, list[tuple[float, float]]], on: float = 0.9, off: float = 0.05):
    """(N, 3) probabilities: ``on`` inside the given [a, b) spans per type, ``off`` elsewhere."""
    p = np.full((t.size, len(DISTORTION_TYPES)), off)
    for kind, intervals in spans.items():
        for a, b in intervals:
            p[(t >= a) & (t < b), DISTORTION_TYPES.index(kind)] = on
    return p


def _spans(segments: list[Segment], kind: str) -> list[tuple[float, float]]:
    return [(round(s.start, 6), round(s.end, 6)) for s in segments if s.type == kind]


def test_settings_resolve_thresholds_with_hysteresis_defaults_and_overrides():
    levels = TemporalSettings(enter={"flare": 0.7}, exit={"haze": 0.2}).thresholds({"low_light": 0.6, "haze": 0.5,
                                                                                      "flare": 0.5})
    assert levels["low_light"] == pytest.approx((0.6, 0.45))
    assert levels["haze"] == (0.5, 0.2)
    assert levels["flare"] == pytest.approx((0.7, 0.55))
    assert TemporalSettings().thresholds({**TH, "haze": 0.12})["haze"] == (0.12, 0.05)  # exit floor
    assert TemporalSettings().thresholds({**TH, "haze": 0.03})["haze"] == (0.03, 0.03)  # never above enter
    with pytest.raises(ValueError, match="above its enter"):
        TemporalSettings(exit={"haze": 0.6}).thresholds(TH)
    with pytest.raises(ValueError, match="no enter threshold"):
        TemporalSettings().thresholds({"haze": 0.5})
    with pytest.raises(ValueError):
        TemporalSettings(enter={"haze": 1.5})
    with pytest.raises(ValueError):
        TemporalSettings(min_duration_s=-1)


def test_smoothing_uses_time_not_frame_counts():
    # one half-life between samples gives alpha = 0.5 in both directions
    t, p = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    assert smooth(t, p, 1.0) == pytest.approx([0.25, 0.75])
    # the same signal sampled densely and irregularly (VFR) is smoothed alike at common instants
    step = lambda tt: (tt >= 5.0).astype(float)  # noqa: E731
    dense = np.arange(0.0, 10.0, 0.05)
    rng = np.random.default_rng(0)
    vfr = np.sort(np.concatenate([[0.0, 2.0, 4.9, 5.0, 8.0], rng.uniform(0, 10, 150)]))
    s_dense, s_vfr = smooth(dense, step(dense), 0.3), smooth(vfr, step(vfr), 0.3)
    for instant in (2.0, 4.9, 8.0):
        assert s_vfr[np.searchsorted(vfr, instant)] == pytest.approx(
            s_dense[np.argmin(abs(dense - instant))], abs=0.08)
    # two-sided: no lag, a symmetric step crosses 0.5 at the step
    assert s_dense[np.argmin(abs(dense - 4.9))] < 0.5 < s_dense[np.argmin(abs(dense - 5.0))]
    # constant and multi-column input, and a zero half-life, pass through
    assert smooth(dense, np.full((dense.size, 3), 0.4), 0.5) == pytest.approx(np.full((dense.size, 3), 0.4))
    assert smooth(t, p, 0.0) == pytest.approx(p)
    with pytest.raises(ValueError, match="non-decreasing"):
        smooth(np.array([1.0, 0.0]), p, 1.0)


def test_frame_cells_tile_the_clip():
    t = np.array([0.0, 0.5, 1.5, 2.0])
    lo, hi = frame_cells(t, duration_s=2.4)
    assert lo == pytest.approx([0.0, 0.25, 1.0, 1.75]) and hi == pytest.approx([0.25, 1.0, 1.75, 2.4])
    lo, hi = frame_cells(t)  # duration unknown: last timestamp plus half the previous interval
    assert hi[-1] == pytest.approx(2.25)


def test_empty_input_gives_no_segments():
    assert find_segments(np.array([]), np.zeros((0, 3)), TemporalSettings(), TH) == []
    assert find_segments(np.array([]), np.array([]), TemporalSettings(), TH, duration_s=0.0) == []
    with pytest.raises(ValueError, match="shape"):
        find_segments(np.arange(3.0), np.zeros((3, 2)), TemporalSettings(), TH)


def test_all_flagged_clip_is_one_segment_spanning_it():
    t = np.arange(0.0, 10.0, 0.5)
    p = np.full((t.size, 3), 0.9)
    segs = find_segments(t, p, TemporalSettings(), TH, duration_s=10.0)
    assert [(s.type, s.start, s.end) for s in segs] == [(k, 0.0, 10.0) for k in DISTORTION_TYPES]
    assert all(s.confidence == pytest.approx(0.9) for s in segs)


def test_boundaries_follow_timestamps_with_half_interval_rule():
    t = np.arange(0.0, 10.0, 0.5)  # 2 fps
    segs = find_segments(t, _track(t, {"haze": [(2.0, 4.5)]}), RAW, TH, duration_s=10.0)
    # frames 2.0 … 4.0 inside: start 2.0 - 0.25, end 4.0 + 0.25
    assert _spans(segs, "haze") == [(1.75, 4.25)] and _spans(segs, "low_light") == []
    assert segs[0].confidence == pytest.approx(0.9)


def test_brief_dip_between_thresholds_does_not_split_a_segment():
    t = np.arange(0.0, 20.0, 0.5)
    p = _track(t, {"low_light": [(2.0, 12.0)]})
    p[(t >= 6.0) & (t < 9.0), 0] = 0.4  # 3 s below enter (0.5) but above exit (0.35): longer than the merge gap
    settings = TemporalSettings(half_life_s=0.0, merge_gap_s=0.0)
    assert _spans(find_segments(t, p, settings, TH, 20.0), "low_light") == [(1.75, 11.75)]
    p[(t >= 6.0) & (t < 9.0), 0] = 0.2  # below exit: it closes
    assert _spans(find_segments(t, p, settings, TH, 20.0), "low_light") == [(1.75, 5.75), (8.75, 11.75)]
    # a track that only hovers between exit and enter never opens a segment
    p[:, 0] = 0.45
    assert find_segments(t, p, settings, TH, 20.0) == []


def test_smoothing_removes_a_single_frame_dropout_and_a_single_frame_spike():
    t = np.arange(0.0, 20.0, 0.5)
    p = _track(t, {"flare": [(2.0, 12.0), (15.0, 15.5)]})
    p[t == 7.0, 2] = 0.0  # one bad frame inside the span
    # at the default settings (half-life 0.25 s, 1-s minimum and merge gap) the dropout does not split the span
    # and the one-frame spike at 15 s is no segment
    assert _spans(find_segments(t, p, TemporalSettings(), TH, 20.0), "flare") == [(1.75, 11.75)]
    # a longer half-life alone damps both below the levels (spike ~0.47 < enter 0.5, dropout above exit 0.35)
    segs = find_segments(t, p, TemporalSettings(half_life_s=0.5, merge_gap_s=0.0, min_duration_s=0.0), TH, 20.0)
    assert len(_spans(segs, "flare")) == 1


def test_smoothing_decides_whether_and_the_frames_decide_where_a_segment_ends():
    """A high threshold (0.90, v2's flare) on a smoothed step: the EMA crosses it late and falls below the exit
    early, so the span used to come out shrunk by about a second at each end; the frames flagged on their own now
    set the boundaries, and a lone frame above the exit still opens nothing."""
    t = np.arange(0.0, 18.0, 0.5)
    p = _track(t, {"flare": [(11.5, 16.5)]}, on=0.99, off=0.0)
    high = {**TH, "flare": 0.90}
    segs = find_segments(t, p, TemporalSettings(), high, 18.0)
    assert _spans(segs, "flare") == [(11.25, 16.25)]  # frames 11.5 … 16.0, half an interval either side
    p[t == 5.0, 2] = 0.8  # above the exit (0.75), below the enter, alone: not a segment, and not joined to anything
    assert _spans(find_segments(t, p, TemporalSettings(), high, 18.0), "flare") == [(11.25, 16.25)]
    p[t == 11.0, 2] = 0.8  # next to the run: it belongs to it
    assert _spans(find_segments(t, p, TemporalSettings(), high, 18.0), "flare") == [(10.75, 16.25)]


def test_min_duration_drops_blips():
    t = np.arange(0.0, 20.0, 0.5)
    p = _track(t, {"haze": [(3.0, 3.5), (10.0, 14.0)]})  # a one-frame blip (0.5 s) and a 4 s span
    segs = find_segments(t, p, TemporalSettings(half_life_s=0.0, min_duration_s=1.0), TH, 20.0)
    assert _spans(segs, "haze") == [(9.75, 13.75)]
    assert len(find_segments(t, p, TemporalSettings(half_life_s=0.0, min_duration_s=0.0), TH, 20.0)) == 2


def test_gap_merging_joins_near_segments_only():
    t = np.arange(0.0, 30.0, 0.5)
    p = _track(t, {"haze": [(2.0, 5.0), (5.5, 8.0), (15.0, 18.0)]})  # 0.5 s gap, then a 7 s gap
    segs = find_segments(t, p, TemporalSettings(half_life_s=0.0, merge_gap_s=1.0), TH, 30.0)
    assert _spans(segs, "haze") == [(1.75, 7.75), (14.75, 17.75)]
    no_merge = find_segments(t, p, TemporalSettings(half_life_s=0.0, merge_gap_s=0.0), TH, 30.0)
    assert len(_spans(no_merge, "haze")) == 3


def test_variable_frame_rate_timestamps():
    # 2 fps, then a 10 fps burst, then a 1 s keyframe spacing; a low-light span 4 s .. 9 s
    t = np.concatenate([np.arange(0.0, 4.0, 0.5), np.arange(4.0, 6.0, 0.1), np.arange(6.0, 16.0, 1.0)])
    t = np.round(t, 6)
    segs = find_segments(t, _track(t, {"low_light": [(4.0, 9.5)]}), TemporalSettings(), TH, duration_s=16.0)
    [(start, end)] = _spans(segs, "low_light")
    assert start == pytest.approx(4.0, abs=0.3) and end == pytest.approx(9.5, abs=0.6)
    # the same span at a uniform 2 fps lands on nearly the same times: time-based, not count-based
    u = np.arange(0.0, 16.0, 0.5)
    [(u_start, u_end)] = _spans(find_segments(u, _track(u, {"low_light": [(4.0, 9.5)]}), TemporalSettings(), TH,
                                              16.0), "low_light")
    assert abs(start - u_start) <= 0.3 and abs(end - u_end) <= 0.6


def test_segments_of_one_type_never_overlap_on_noisy_tracks():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 60, 300))
    p = np.clip(rng.normal(0.5, 0.25, (t.size, 3)).cumsum(0) / np.arange(1, t.size + 1)[:, None]
                + rng.normal(0, 0.3, (t.size, 3)), 0, 1)
    for settings in (TemporalSettings(), TemporalSettings(half_life_s=0.0, merge_gap_s=0.0, min_duration_s=0.0)):
        segs = find_segments(t, p, settings, TH, duration_s=60.0)
        assert segs
        for kind in DISTORTION_TYPES:
            spans = sorted(_spans(segs, kind))
            assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
            assert all(0.0 <= s <= e <= 60.0 for s, e in spans)


def test_aggregate_quality():
    q = np.arange(1.0, 101.0)  # 1 … 100
    agg = aggregate_quality(q)
    assert agg.mean == pytest.approx(50.5) and agg.min == 1.0
    assert agg.p10 == pytest.approx(10.9)  # linear interpolation: 1 + 0.1 * 99
    assert aggregate_quality([42.0]).model_dump() == {"mean": 42.0, "min": 42.0, "p10": 42.0}
    with pytest.raises(ValueError):
        aggregate_quality([])


def test_distortion_share():
    segs = [Segment(type="haze", start=1.0, end=3.0, confidence=0.8),
            Segment(type="haze", start=5.0, end=6.0, confidence=0.8),
            Segment(type="flare", start=0.0, end=10.0, confidence=0.9)]
    assert distortion_share(segs, 10.0).model_dump() == pytest.approx({"low_light": 0.0, "haze": 0.3, "flare": 1.0})
    assert distortion_share([], 0.0) == Distortions(low_light=0.0, haze=0.0, flare=0.0)


def test_build_report_end_to_end():
    t = np.arange(0.0, 10.0, 0.5)
    p = _track(t, {"low_light": [(2.0, 6.0)]})
    frames = [FrameRecord(frame_index=int(i * 15), t=float(ti), quality=80.0 - 60.0 * p[i, 0],
                          distortions=Distortions(**dict(zip(DISTORTION_TYPES, map(float, p[i])))))
              for i, ti in enumerate(t)]
    report = build_report(frames[::-1], clip_id="c", stream_id="s", duration_s=10.0,
                          model=ModelInfo(name="dgiqa-lite", version="1"), thresholds=TH,
                          settings=TemporalSettings(half_life_s=0.0), source=Source(topic="in", partition=1, offset=7))
    assert report.frames_analyzed == 20 and report.source is not None and report.source.offset == 7
    assert [(s.type, s.start, s.end) for s in report.segments] == [("low_light", 1.75, 5.75)]
    assert report.distortion_share.low_light == pytest.approx(0.4)
    assert report.quality.min == pytest.approx(26.0) and report.quality.mean == pytest.approx(80 - 54 * 0.4 - 3 * 0.6)
    assert ClipReport.model_validate_json(report.model_dump_json()) == report
    assert json.loads(report.model_dump_json())["schema"] == "stream-iqa/clip-report/1"
    with pytest.raises(ValueError, match="no frames"):
        build_report([], clip_id="c", stream_id="s", duration_s=1.0, model=ModelInfo(name="m", version="1"),
                     thresholds=TH)
