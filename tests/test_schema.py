"""The output models against ../shared/docs/output-contract.md: names, versions, round trips, rejected shapes."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from stream_iqa.schema import (
    CLIP_REPORT_SCHEMA,
    DISTORTION_TYPES,
    ERROR_CODES,
    ClipReport,
    ErrorRecord,
    FrameRecord,
    Segment,
)
from stream_iqa.settings import REPO_ROOT

CONTRACT = REPO_ROOT.parent / "shared" / "docs" / "output-contract.md"

# The contract's examples (with its "…" placeholders filled in), kept here so the tests run without ../shared.
CLIP_EXAMPLE = {
    "schema": "stream-iqa/clip-report/1",
    "clip_id": "c1", "stream_id": "s1",
    "duration_s": 10.0, "frames_analyzed": 20,
    "quality": {"mean": 63.1, "min": 21.4, "p10": 30.2},
    "segments": [{"type": "low_light", "start": 2.0, "end": 4.1, "confidence": 0.93}],
    "model": {"name": "dgiqa-lite", "version": "1"},
    "source": {"topic": "in", "partition": 0, "offset": 42},
}
FRAME_EXAMPLE = {"frame_index": 50, "t": 2.0, "quality": 31.7,
                 "distortions": {"low_light": 0.97, "haze": 0.02, "flare": 0.01}}
ERROR_EXAMPLE = {"schema": "stream-iqa/error/1", "clip_id": "c1", "code": "undecodable_video",
                 "message": "truncated mp4", "source": {"topic": "in", "partition": 0, "offset": 43}}
SHARE = {"low_light": 0.21, "haze": 0.0, "flare": 0.0}


def _keys(obj: object, prefix: str = "") -> set[str]:
    """Every key path in a JSON value (list items share their parent's path)."""
    if isinstance(obj, dict):
        return {p for k, v in obj.items() for p in {prefix + k} | _keys(v, prefix + k + ".")}
    if isinstance(obj, list):
        return {p for item in obj for p in _keys(item, prefix)}
    return set()


def _contract_examples() -> list[dict]:
    """The JSON blocks of the contract, with '…' made valid JSON."""
    if not CONTRACT.is_file():
        pytest.skip(f"contract not found at {CONTRACT}")
    blocks = re.findall(r"```json\n(.*?)```", CONTRACT.read_text(), re.S)
    return [json.loads(b.replace("…", "x")) for b in blocks]


def test_examples_match_the_contract_document():
    examples = _contract_examples()
    for ours in (CLIP_EXAMPLE, FRAME_EXAMPLE, ERROR_EXAMPLE):
        assert any(_keys(ex) == _keys(ours) for ex in examples), sorted(_keys(ours))


def test_clip_report_json_has_exactly_the_contract_fields_plus_documented_additions():
    report = ClipReport.model_validate({**CLIP_EXAMPLE, "distortion_share": SHARE})
    out = json.loads(report.model_dump_json())
    added = {"distortion_share", "idempotency_key", "integrity"} | {f"distortion_share.{k}" for k in SHARE}
    assert _keys(out) - _keys(CLIP_EXAMPLE) == added
    assert _keys(CLIP_EXAMPLE) <= _keys(out)
    assert out["schema"] == CLIP_REPORT_SCHEMA
    assert ClipReport.model_validate_json(report.model_dump_json()) == report
    assert {k: v for k, v in out.items() if k not in ("distortion_share", "idempotency_key", "integrity")} == CLIP_EXAMPLE
    assert out["idempotency_key"] is None and out["integrity"] is None  # set by Kafka output / the pipeline


def test_replay_report_serialises_source_as_null():
    report = ClipReport.model_validate({**CLIP_EXAMPLE, "source": None, "distortion_share": SHARE})
    assert json.loads(report.model_dump_json())["source"] is None
    absent = {k: v for k, v in CLIP_EXAMPLE.items() if k != "source"}
    assert ClipReport.model_validate({**absent, "distortion_share": SHARE}).source is None


def test_frame_and_error_records_round_trip():
    frame = FrameRecord.model_validate(FRAME_EXAMPLE)
    out = json.loads(frame.model_dump_json())
    assert {k: out[k] for k in FRAME_EXAMPLE} == FRAME_EXAMPLE
    assert set(out) - set(FRAME_EXAMPLE) == {"depth_fresh", "flags", "latency_ms"}  # documented optional additions
    assert FrameRecord.model_validate_json(frame.model_dump_json()) == frame
    with_extras = FrameRecord.model_validate({**FRAME_EXAMPLE, "depth_fresh": True, "flags": {"low_light": True}})
    assert FrameRecord.model_validate_json(with_extras.model_dump_json()) == with_extras

    err = ErrorRecord.model_validate(ERROR_EXAMPLE)  # an error/1 record still parses, and is written as error/2
    assert json.loads(err.model_dump_json()) == {**ERROR_EXAMPLE, "schema": "stream-iqa/error/1", "idempotency_key": None}
    assert json.loads(ErrorRecord(clip_id=None, code="invalid_message", message="not JSON").model_dump_json()) == {
        "schema": "stream-iqa/error/2", "clip_id": None, "code": "invalid_message", "message": "not JSON",
        "source": None, "idempotency_key": None}


def test_closed_sets_match_the_contract_and_the_model():
    from stream_iqa.model.served import DISTORTIONS
    from stream_iqa.synthesis.degradations import FLAG_KINDS

    # one list, the contract's, in the heads' order (checkpoints store their flag thresholds by these names)
    assert DISTORTION_TYPES == ("low_light", "haze", "flare") and DISTORTIONS is FLAG_KINDS is DISTORTION_TYPES
    assert set(ERROR_CODES) == {"invalid_message", "uri_not_allowed", "not_found", "undecodable_video",
                                "no_video_stream", "too_large", "too_long", "timeout", "internal"}
    with pytest.raises(ValidationError):
        ErrorRecord.model_validate({**ERROR_EXAMPLE, "code": "oops"})


@pytest.mark.parametrize("bad", [
    {"type": "blur", "start": 0.0, "end": 1.0, "confidence": 0.9},
    {"type": "haze", "start": 2.0, "end": 1.0, "confidence": 0.9},
    {"type": "haze", "start": -1.0, "end": 1.0, "confidence": 0.9},
    {"type": "haze", "start": 0.0, "end": 1.0, "confidence": 1.5},
])
def test_invalid_segments_are_rejected(bad: dict):
    with pytest.raises(ValidationError):
        Segment.model_validate(bad)


def test_report_rejects_wrong_version_overlaps_and_spans_past_the_clip():
    base = {**CLIP_EXAMPLE, "distortion_share": SHARE}
    with pytest.raises(ValidationError):
        ClipReport.model_validate({**base, "schema": "stream-iqa/clip-report/2"})
    seg = {"type": "haze", "start": 1.0, "end": 3.0, "confidence": 0.8}
    with pytest.raises(ValidationError, match="overlapping"):
        ClipReport.model_validate({**base, "segments": [seg, {**seg, "start": 2.0, "end": 5.0}]})
    with pytest.raises(ValidationError, match="after the clip"):
        ClipReport.model_validate({**base, "segments": [{**seg, "end": 11.0}]})
    touching_and_other_type = [seg, {**seg, "start": 3.0, "end": 4.0}, {**seg, "type": "flare"}]
    assert len(ClipReport.model_validate({**base, "segments": touching_and_other_type}).segments) == 3
    with pytest.raises(ValidationError):
        FrameRecord.model_validate({**FRAME_EXAMPLE, "quality": 101.0})
