"""Frame timeline and clip duration (stream_iqa.video.decode): timestamps that jump, containers whose duration is not
the video's own.

Concatenated MPEG-TS segments (DVR/HLS recordings) restart their pts mid-file; Matroska declares one duration for
every stream, counted from timestamp 0. Clips are tiny synthetic ones written with PyAV in tmp_path.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import stream_iqa
from stream_iqa.video import VideoSettings, open_video, sample_frames

SIZE = (64, 48)  # width, height: small, even (yuv420p)
CPU = {"model": {"device": "cpu"}, "depth": {"source": "prior"}}


def _frame(i: int) -> av.VideoFrame:
    rgb = np.random.default_rng(i).integers(60, 200, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def write_video(path: Path, n: int, *, fps: int = 10, first: int = 0, fmt: str | None = None,
                codec: str = "libx264", audio_s: float = 0.0) -> Path:
    """``n`` frames at ``fps``, the first at pts ``first`` (in 1/fps units); ``audio_s`` seconds of silent audio
    (aac, or opus for WebM) muxed after the video."""
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        if codec == "libx264":
            video.options = {"preset": "ultrafast"}
        audio = out.add_stream("libopus" if codec.startswith("libvpx") else "aac", rate=48000) if audio_s else None
        for i in range(n):
            frame = _frame(i)
            frame.pts, frame.time_base = first + i, Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            _mux_silence(out, audio, audio_s)
    return path


def _mux_silence(out: av.container.OutputContainer, audio: av.audio.stream.AudioStream, seconds: float) -> None:
    size = audio.codec_context.frame_size or 960
    for i in range(int(seconds * 48000) // size):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, size), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, i * size
        for packet in audio.encode(frame):
            out.mux(packet)
    for packet in audio.encode():
        out.mux(packet)


def concatenated_ts(tmp_path: Path, *parts: tuple[int, int]) -> Path:
    """MPEG-TS segments (frames, first pts) joined byte for byte, as a DVR or an HLS download stores them."""
    data = b"".join(write_video(tmp_path / f"seg{i}.ts", n, first=first, fmt="mpegts").read_bytes()
                    for i, (n, first) in enumerate(parts))
    path = tmp_path / "joined.ts"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def analyzer() -> stream_iqa.Analyzer:
    return stream_iqa.create_analyzer(**CPU)


def _times(path: Path, settings: VideoSettings) -> list[float]:
    return [f.t for f in sample_frames(path, settings)]


def _increasing(ts: list[float]) -> bool:
    return all(b > a for a, b in zip(ts, ts[1:]))


def test_concatenated_ts_segments_are_analysed_whole_on_one_timeline(tmp_path: Path, analyzer) -> None:
    path = concatenated_ts(tmp_path, (30, 0), (30, 0))  # 2 × 3 s, pts restarting at the join
    ts = _times(path, VideoSettings(sampling="fps", fps=2.0))
    assert len(ts) == 12 and _increasing(ts)
    assert ts == pytest.approx([0.5 * i for i in range(12)], abs=0.051)
    with open_video(path, VideoSettings(sampling="every_n", every_n=1)) as clip:
        n = sum(1 for _ in clip.frames())
        assert n == 60 and clip.timestamp_discontinuities == 1
        assert clip.decoded_duration_s == pytest.approx(6.0, abs=0.11)

    seen: list[float] = []
    report = analyzer.analyze(path, on_frame=lambda r: seen.append(r.t))
    assert report.frames_analyzed == 12 and _increasing(seen) and seen[-1] == pytest.approx(5.5, abs=0.051)
    assert report.duration_s == pytest.approx(6.0, abs=0.11)
    assert report.integrity is not None and report.integrity.timestamp_discontinuities == 1
    assert report.integrity.truncated is False
    assert report.integrity.decoded_duration_s == pytest.approx(6.0, abs=0.11)


def test_backward_pts_in_every_n_sampling_continues_the_timeline(tmp_path: Path) -> None:
    path = concatenated_ts(tmp_path, (20, 40), (10, 5))  # 2 s from pts 4 s, then 1 s from 0.5 s
    ts = _times(path, VideoSettings(sampling="every_n", every_n=5))
    assert ts == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=0.001)
    with open_video(path, VideoSettings(sampling="every_n", every_n=5)) as clip:
        assert [f.index for f in clip.frames()] == [0, 5, 10, 15, 20, 25]
        assert clip.timestamp_discontinuities == 1


def test_key_frames_after_a_pts_reset_keep_increasing_times(tmp_path: Path) -> None:
    path = concatenated_ts(tmp_path, (30, 0), (30, 0))  # one key frame per segment, both at the same pts
    ts = _times(path, VideoSettings(sampling="keyframes"))
    assert len(ts) == 2 and _increasing(ts)


def test_forward_pts_jump_far_past_the_next_frame_is_closed(tmp_path: Path) -> None:
    path = concatenated_ts(tmp_path, (10, 0), (10, 600))  # 1 s, then 1 s stamped a minute later
    ts = _times(path, VideoSettings(sampling="every_n", every_n=1))
    assert len(ts) == 20 and _increasing(ts)
    assert ts == pytest.approx([0.1 * i for i in range(20)], abs=0.001)
    with open_video(path) as clip:
        list(clip.frames())
        assert clip.timestamp_discontinuities == 1 and clip.info.duration_s == pytest.approx(2.0, abs=0.11)


@pytest.mark.parametrize("suffix, codec", [("mkv", "libx264"), ("webm", "libvpx")])
def test_matroska_with_longer_audio_reports_the_video_duration(tmp_path: Path, analyzer, suffix, codec) -> None:
    path = write_video(tmp_path / f"av.{suffix}", 20, codec=codec, audio_s=6.0)  # 2 s of video, 6 s of audio
    with open_video(path) as clip:
        assert clip.info.duration_s == pytest.approx(2.0, abs=0.11)
    report = analyzer.analyze(path)
    assert report.duration_s == pytest.approx(2.0, abs=0.11)
    assert all(s.end <= 2.1 for s in report.segments)
    assert report.integrity is not None and report.integrity.truncated is False
    assert report.integrity.declared_duration_s == pytest.approx(2.0, abs=0.11)
    assert report.integrity.timestamp_discontinuities == 0


def test_matroska_with_a_start_offset_reports_the_video_extent(tmp_path: Path, analyzer) -> None:
    path = write_video(tmp_path / "offset.mkv", 30, first=50)  # first frame at 5 s, 3 s long
    with open_video(path) as clip:
        assert clip.info.duration_s == pytest.approx(3.0, abs=0.11)
    seen: list[float] = []
    report = analyzer.analyze(path, on_frame=lambda r: seen.append(r.t))
    assert seen == pytest.approx([0.5 * i for i in range(6)], abs=0.001)
    assert report.duration_s == pytest.approx(3.0, abs=0.11)
    assert report.integrity is not None and report.integrity.truncated is False
    assert report.integrity.declared_duration_s == pytest.approx(3.0, abs=0.11)


def test_a_normal_mp4_keeps_its_duration_and_times(tmp_path: Path, analyzer) -> None:
    path = write_video(tmp_path / "plain.mp4", 30)
    with open_video(path) as clip:
        assert clip.info.duration_s == pytest.approx(3.0, abs=0.01)
        assert [f.t for f in clip.frames()] == pytest.approx([0.5 * i for i in range(6)], abs=1e-9)
        assert clip.timestamp_discontinuities == 0
    report = analyzer.analyze(path)
    assert report.frames_analyzed == 6 and report.duration_s == pytest.approx(3.0, abs=0.01)
    assert report.integrity is not None and report.integrity.truncated is False
    assert report.integrity.timestamp_discontinuities == 0


def _write_pts(path: Path, pts: list[int], fps: int, fmt: str | None, gop: int = 5,
               options: dict[str, str] | None = None) -> bytes:
    """One frame per entry of ``pts`` (in 1/fps units), a key frame every ``gop``, no B-frames; ``options`` for the
    muxer (mp4's ``movflags``)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        video = out.add_stream("libx264", rate=fps, options={"g": str(gop), "bf": "0", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        for i, p in enumerate(pts):
            frame = _frame(i)
            frame.pts, frame.time_base = p, Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return path.read_bytes()


def test_a_paused_mp4_steps_one_frame_interval_across_the_pause(tmp_path: Path) -> None:
    """4 s of 5-fps video stamped with a minute's pause half-way. mp4's average rate is frames over the whole
    duration (5/16 fps), so stepping by it put 3.2 s, not 0.2 s, across the pause: 10 s of video reported."""
    path = tmp_path / "paused.mp4"
    _write_pts(path, [*range(10), *range(310, 320)], 5, "mp4")
    with open_video(path, VideoSettings(sampling="every_n", every_n=1)) as clip:
        assert clip.info.fps == 5
        ts = [f.t for f in clip.frames()]
        assert ts == pytest.approx([0.2 * i for i in range(20)], abs=1e-6)
        assert clip.timestamp_discontinuities == 1 and clip.info.duration_s == pytest.approx(4.0, abs=0.01)


def _flv_with(tmp_path: Path, framerate: float, video_ms: list[int] | None = None,
              duration: float | None = None) -> Path:
    """30 frames of 5-fps FLV whose onMetaData declares ``framerate`` (and ``duration``, where given: AMF0 doubles
    the producer writes) and, where given, whose video tags carry these millisecond timestamps instead of their own."""
    data = bytearray(_write_pts(tmp_path / "plain.flv", list(range(30)), 5, "flv"))
    for name, value in ((b"framerate", framerate), (b"duration", duration)):
        if value is not None:
            i = data.find(name) + len(name)
            assert data[i] == 0  # an AMF0 number follows
            data[i + 1 : i + 9] = struct.pack(">d", value)
    if video_ms is not None:
        tag, k = 9 + 4, 0  # the header, then PreviousTagSize0
        while tag + 11 <= len(data):
            size = int.from_bytes(data[tag + 1 : tag + 4], "big")
            if data[tag] == 9:  # a video tag: 24-bit timestamp, then its 8 high bits
                ms = video_ms[k % len(video_ms)]
                data[tag + 4 : tag + 8] = (ms & 0xFFFFFF).to_bytes(3, "big") + bytes([ms >> 24])
                k += 1
            tag += 11 + size + 4
    path = tmp_path / f"rate{framerate:g}.flv"
    path.write_bytes(bytes(data))
    return path


def test_a_declared_negative_frame_rate_does_not_run_the_timeline_backwards(tmp_path: Path, analyzer) -> None:
    """framerate -5 in the FLV header, every video tag at 0 ms: the rebase step was -0.2 s and the report failed its
    own validation (decoded_duration_s -6.0), answered 'internal'. FFmpeg's guess from the tags is 5 fps."""
    path = _flv_with(tmp_path, -5.0, video_ms=[0])
    report = analyzer.analyze(path)
    assert report.integrity is not None and report.integrity.decoded_duration_s == pytest.approx(6.0, abs=0.01)
    assert report.duration_s > 0 and report.integrity.timestamp_discontinuities == 29


def test_a_declared_frame_rate_cannot_shrink_the_clip_under_max_duration(tmp_path: Path) -> None:
    """framerate 1000 and duration 0 in the header, tags alternating 0 / 1 ms: the 1 ms step fitted 6 s of video
    into 0.03 s, past max_duration_s=1, and a one-frame report came back."""
    from stream_iqa.video.errors import TooLongError

    path = _flv_with(tmp_path, 1000.0, video_ms=[0, 1], duration=0.0)
    with pytest.raises(TooLongError, match="max_duration_s=1"):
        with open_video(path, VideoSettings(sampling="every_n", every_n=1, max_duration_s=1)) as clip:
            list(clip.frames())


@pytest.mark.parametrize("guessed, average, fps", [(5, Fraction(5, 16), 5), (None, 25, 25), (-5, 5, 5),
                                                   (0, None, None), (Fraction(1, 1000), 10**6, None)])
def test_the_nominal_rate_is_a_plausible_one(guessed, average, fps) -> None:
    from types import SimpleNamespace

    from stream_iqa.video.decode import nominal_rate

    rate = nominal_rate(SimpleNamespace(guessed_rate=None if guessed is None else Fraction(guessed),
                                        average_rate=None if average is None else Fraction(average)))
    assert rate == fps


def _with_mdhd_duration(data: bytes, duration: int) -> bytes:
    """The mp4 with its (only) track's media header rewritten as version 1, declaring ``duration`` (signed 64 bits
    here, as a crafted file may); moov must follow mdat, so that no chunk offset moves."""
    data = bytearray(data)
    found: dict[str, tuple[int, int]] = {}

    def walk(start: int, end: int) -> None:
        i = start
        while i + 8 <= end:
            size, kind = struct.unpack(">I4s", data[i : i + 8])
            name = kind.decode("latin-1")
            found.setdefault(name, (i, size))
            if name in ("moov", "trak", "mdia"):
                walk(i + 8, i + size)
            i += size

    walk(0, len(data))
    at, size = found["mdhd"]
    assert found["mdat"][0] < found["moov"][0]
    _, created, modified, scale, _, lang = struct.unpack(">IIIIIH", data[at + 8 : at + 30])
    data[at : at + size] = struct.pack(">I4sIQQIqH2x", 44, b"mdhd", 1 << 24, created, modified, scale, duration, lang)
    for name in ("moov", "trak", "mdia"):
        j, sz = found[name]
        struct.pack_into(">I", data, j, sz + 44 - size)
    return bytes(data)


def test_a_negative_declared_duration_is_measured_by_decoding(tmp_path: Path, analyzer) -> None:
    """A media header declaring -(2**62) reached the report's integrity and failed its validation ('internal')."""
    path = tmp_path / "negative.mp4"
    path.write_bytes(_with_mdhd_duration(write_video(tmp_path / "plain.mp4", 20).read_bytes(), -(1 << 62)))
    with av.open(str(path)) as probe:
        assert probe.streams.video[0].duration < 0  # FFmpeg passes the field on as it is
    report = analyzer.analyze(path)
    assert report.frames_analyzed == 4 and report.duration_s == pytest.approx(2.0, abs=0.11)
    assert report.integrity is not None and report.integrity.declared_duration_s is None


def _faststart(path: Path, n: int, fps: int = 25) -> Path:
    """``n`` frames of mp4 with its index first (as uploads are written), a key frame every 25."""
    _write_pts(path, list(range(n)), fps, "mp4", gop=25, options={"movflags": "+faststart"})
    return path


@pytest.mark.parametrize("threads", [1, 0])
@pytest.mark.parametrize("sampling", ["every_n", "keyframes"])
def test_an_upload_cut_off_mid_packet_is_a_truncated_report(tmp_path: Path, threads: int, sampling: str) -> None:
    """The partial last packet is invalid data to the decoder: with one decoder thread, or key frames only, the
    whole clip was refused as undecodable_video and its decoded first half thrown away."""
    data = _faststart(tmp_path / "full.mp4", 100).read_bytes()  # 4 s
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    settings = VideoSettings(sampling=sampling, every_n=10, threads=threads)
    with open_video(cut, settings) as clip:
        frames = list(clip.frames())
        assert frames and frames[0].t == 0.0 and clip.info.duration_s == pytest.approx(4.0)
        assert clip.decoded_duration_s < 2.5 and clip.damaged_packets <= 1


def test_a_damaged_first_key_frame_loses_its_gop_not_the_clip(tmp_path: Path, analyzer) -> None:
    """FFmpeg skips the packet it cannot decode and goes on at the next key frame; the clip was undecodable_video.
    The frames that survive keep their own times (the clip still starts at the damaged frame's)."""
    path = tmp_path / "ok.mp4"
    _write_pts(path, list(range(50)), 25, "mp4")  # 2 s, a key frame every 5
    with av.open(str(path)) as probe:
        first = next(p for p in probe.demux(video=0) if p.size)
        pos, size = first.pos, first.size
    data = bytearray(path.read_bytes())
    data[pos + 8 : pos + size] = np.random.default_rng(0).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    report = analyzer.analyze(damaged)
    assert report.frames_analyzed >= 3 and report.integrity is not None
    assert report.integrity.damaged_packets == 1 and report.integrity.truncated is False
    with open_video(damaged, VideoSettings(sampling="every_n", every_n=1)) as clip:
        ts = [f.t for f in clip.frames()]
    assert len(ts) < 50 and ts[0] >= 0.19 and _increasing(ts)  # the first GOP (0.2 s) is lost, not re-timed


def _both(path: Path, **settings: object) -> dict[str, tuple]:
    """What each backend makes of ``path``: frame times, indices, the clip's duration, its decoded extent."""
    out = {}
    for backend in ("pyav", "decord"):
        with open_video(path, VideoSettings(backend=backend, **settings)) as clip:
            frames = list(clip.frames())
            out[backend] = ([round(f.t, 3) for f in frames], [f.index for f in frames],
                            round(clip.info.duration_s or 0.0, 2), round(clip.decoded_duration_s, 2), type(clip).__name__)
    return out


def _long_gop(path: Path) -> Path:
    """4 s at 25 fps with one key frame (a phone's long GOP)."""
    _write_pts(path, list(range(100)), 25, "mp4", gop=250)
    return path


CLIPS = {
    # decord's pts table sorted while its pictures stayed in file order: other frames' times, half the duration
    "concatenated ts": lambda d: concatenated_ts(d, (10, 0), (10, 0)),
    # decord timed the mp4 edit list's hidden pre-roll frames and showed one picture twice
    "edit-list pre-roll": lambda d: write_video(d / "preroll.mp4", 20, first=-5),
    # a container duration stretched by a longer audio track, which PyAV brings down and decord kept
    "flv, longer audio": lambda d: write_video(d / "audio.flv", 20, fmt="flv", audio_s=4.0),
    # decord reported the last *sampled* frame's end as decoded: sparse sampling read as truncated
    "long gop": lambda d: _long_gop(d / "gop.mp4"),
}


@pytest.mark.parametrize("sampling", [{"sampling": "every_n", "every_n": 1}, {"sampling": "fps", "fps": 0.5}])
@pytest.mark.parametrize("name", list(CLIPS))
def test_decord_reads_these_as_pyav_does_or_hands_them_to_pyav(tmp_path: Path, name: str, sampling: dict) -> None:
    pytest.importorskip("decord")
    got = _both(CLIPS[name](tmp_path), **sampling)
    assert got["decord"][:4] == got["pyav"][:4], got


def test_decord_hands_over_what_it_would_misread(tmp_path: Path) -> None:
    pytest.importorskip("decord")
    opened = {}
    for name, make in CLIPS.items():
        folder = tmp_path / name.replace(" ", "-").replace(",", "")
        folder.mkdir()
        opened[name] = _both(make(folder), sampling="every_n", every_n=1)["decord"][4]
    assert opened == {"concatenated ts": "PyAVClip", "edit-list pre-roll": "PyAVClip", "flv, longer audio": "DecordClip",
                      "long gop": "DecordClip"}
    with open_video(CLIPS["long gop"](tmp_path), VideoSettings(backend="decord", sampling="keyframes")) as clip:
        assert type(clip).__name__ == "PyAVClip"  # decord's key indices are in decode order


def test_decord_fits_a_rotated_frame_in_its_displayed_orientation(tmp_path: Path) -> None:
    """decord rotates before it scales: the short side fitted to the stored 1280x720 squashed a portrait frame."""
    pytest.importorskip("decord")
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 320, 192, "yuv420p"
        video.set_display_rotation(90)
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((192, 320, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    shapes = {}
    for backend in ("pyav", "decord"):
        with open_video(path, VideoSettings(backend=backend, sampling="every_n", every_n=1), short_side=96) as clip:
            shapes[backend] = {f.rgb.shape for f in clip.frames()}
    assert shapes["decord"] == shapes["pyav"] == {(160, 96, 3)}
    from stream_iqa.video.decord_backend import DecordClip
    from stream_iqa.video.source import resolve_source

    clip = DecordClip(resolve_source(path, VideoSettings()), VideoSettings(backend="decord"), short_side=96)
    # decord itself scales into the displayed box: a native decode resized after would cost a full frame per frame
    assert clip._scaled and clip._reader is not None and clip._reader[0].shape == (160, 96, 3)


KEYFRAME_CLIPS = {
    "pts back to an earlier time": lambda d: concatenated_ts(d, (20, 40), (10, 5)),
    "two segments from pts 0": lambda d: concatenated_ts(d, (30, 0), (30, 0)),
    "a splice 10 minutes ahead": lambda d: concatenated_ts(d, (10, 0), (10, 6000)),
    "edit-list pre-roll": lambda d: _preroll(d / "preroll.mp4"),
    # the first version of the key-frame clock put time 0 at the stream's start time: one frame late here (AVI
    # with B-frames declares a start of 0 while the first frame's pts is 1), 0.6 s late on a cut recording
    "avi with b-frames": lambda d: _avi_bframes(d / "bf.avi"),
    "ts cut mid-gop": lambda d: _cut_mid_gop(d),
    # the packet before a pause carries a duration spanning it: the first clock ended there (62 s for 4)
    "paused mp4": lambda d: _paused(d / "paused.mp4"),
}


def _paused(path: Path) -> Path:
    _write_pts(path, [*range(10), *range(310, 320)], 5, "mp4")  # 4 s of 5-fps video, a minute's pause half-way
    return path


def _avi_bframes(path: Path) -> Path:
    with av.open(str(path), "w", format="avi") as out:
        video = out.add_stream("libx264", rate=25, options={"bf": "3", "g": "12", "preset": "medium"})
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        for i in range(36):
            frame = _frame(i)
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return path


def _cut_mid_gop(folder: Path) -> Path:
    """A TS recording whose first bytes were cut at a 188-byte packet boundary inside its first GOP (a DVR or HLS
    download): it starts with frames nothing can decode."""
    full = folder / "full.ts"
    _write_pts(full, list(range(100)), 25, "mpegts", gop=25)
    with av.open(str(full)) as probe:
        pos = [p.pos for p in probe.demux(video=0) if p.size][10]
    cut = folder / "cut.ts"
    cut.write_bytes(full.read_bytes()[(pos // 188) * 188 :])
    return cut


def _preroll(path: Path) -> Path:
    """30 frames at 25 fps, a key frame every 5, the first 3 before pts 0: an mp4 edit list's hidden pre-roll."""
    _write_pts(path, list(range(-3, 27)), 25, "mp4")
    return path


@pytest.mark.parametrize("name", list(KEYFRAME_CLIPS))
def test_key_frame_sampling_places_key_frames_as_decoding_them_all_does(tmp_path: Path, name: str) -> None:
    """Key-frame sampling decodes key frames only, and took their times and indices from them alone: at a pts
    restart indices repeated (0, 5, 10, 15, 0, 5) and the clip came out shorter; a splice put a frame at 600 s; an
    edit list's pre-roll shifted every key frame by its length."""
    path = KEYFRAME_CLIPS[name](tmp_path)
    every: dict[str, list] = {}
    with open_video(path, VideoSettings(sampling="every_n", every_n=1)) as clip:
        every = {"t": [], "index": []}
        for f in clip.frames():
            if f.keyframe:
                every["t"].append(round(f.t, 3))
                every["index"].append(f.index)
        every_duration, every_jumps = clip.info.duration_s, clip.timestamp_discontinuities
    with open_video(path, VideoSettings(sampling="keyframes")) as clip:
        frames = list(clip.frames())
        assert [round(f.t, 3) for f in frames] == every["t"] and [f.index for f in frames] == every["index"]
        assert clip.info.duration_s == pytest.approx(every_duration, abs=0.011)
        assert clip.timestamp_discontinuities == every_jumps


def test_the_decoded_extent_can_be_read_after_the_clip_is_closed(tmp_path: Path) -> None:
    """It read the closed stream's time base: -587664883.75 here, 30720.0 or 777600000.0 elsewhere, for 3.0 (the
    pipeline read it before closing; another caller of the clip API got garbage)."""
    path = write_video(tmp_path / "plain.mp4", 30)
    with open_video(path) as clip:
        list(clip.frames())
        before = clip.decoded_duration_s
    assert before == pytest.approx(3.0, abs=0.01)
    for _ in range(3):  # other clips opened and closed meanwhile reuse the freed memory
        with open_video(path) as other:
            list(other.frames())
        assert clip.decoded_duration_s == before
