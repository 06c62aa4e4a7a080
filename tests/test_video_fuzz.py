"""Corrupted and cut clips through the decoder: whatever the bytes, the only failure is a VideoError with a
contract code (the service turns anything else into an 'internal' error, i.e. a bug of ours). Found this way:
non-UTF-8 container tags (PyAV decodes them strictly on open) and a video stream with no decoder."""

from __future__ import annotations

import random

import pytest

from stream_iqa.synthesis.clips import ClipSpec, build_clip
from stream_iqa.schema import ERROR_CODES
from stream_iqa.settings import VideoSettings
from stream_iqa.video import VideoError, sample_frames


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    return build_clip(ClipSpec(scenes=["coffee"], scene_s=1.0), tmp_path_factory.mktemp("fuzz") / "c.mp4").read_bytes()


def test_corrupted_clips_fail_only_with_contract_errors(clip_bytes):
    rng = random.Random(7)
    settings = VideoSettings(fps=4.0)
    outcomes = {"frames": 0, **{code: 0 for code in ERROR_CODES}}
    for i in range(300):
        data = bytearray(clip_bytes)
        mode = i % 3
        if mode == 0:  # flipped bytes, anywhere (headers included)
            for _ in range(rng.choice([1, 20, 500])):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif mode == 1:  # cut
            data = data[: rng.randrange(1, len(data))]
        else:  # a run of garbage inside
            at = rng.randrange(len(data))
            data[at : at + 64] = rng.randbytes(64)
        try:
            list(sample_frames(bytes(data), settings, name=f"fuzz{i}"))
            outcomes["frames"] += 1
        except VideoError as exc:
            assert exc.code in ERROR_CODES and exc.code != "internal", (i, exc)
            outcomes[exc.code] += 1
    assert outcomes["frames"] > 0 and outcomes["undecodable_video"] > 0, outcomes
