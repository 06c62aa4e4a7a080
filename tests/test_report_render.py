"""replay's --plot/--html renderers on a short clip built from real footage with known degraded spans.

One clip is built and analysed per module (the expensive part); each test renders from that analysis. The Chromium
test proves the page actually renders (images decode, layout is not blank) and is skipped where Chromium is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip
from stream_iqa.pipeline import ClipAnalysis, Pipeline
from stream_iqa.report.html import decode_thumbnail, write_html
from stream_iqa.report.plot import plot_quality, render_quality_png, shade_rgb
from stream_iqa.settings import Settings

HOSTILE_ID = "<script>alert(1)</script>"
SPANS = [Span("low_light", 1.0, 3.0), Span("haze", 5.0, 7.0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = ClipSpec(scenes=["china", "coffee"], scene_s=4.0, spans=SPANS)
    return build_clip(spec, tmp_path_factory.mktemp("report") / "degraded.mp4")


@pytest.fixture(scope="module")
def analysis(clip: Path) -> ClipAnalysis:
    pipeline = Pipeline(Settings.load(model={"device": "cpu"}, depth={"source": "prior"}))
    result = pipeline.analyze(clip, clip_id=HOSTILE_ID, depth_state=pipeline.new_depth_state())
    assert {s.type for s in result.report.segments} == {"low_light", "haze"}, result.report.segments
    return result


def _without_segments(analysis: ClipAnalysis) -> ClipAnalysis:
    """The same frames with no segments: isolates what the shading contributes to the picture."""
    return ClipAnalysis(report=analysis.report.model_copy(update={"segments": []}), frames=analysis.frames)


def _count_colour(img_bgr: np.ndarray, rgb: tuple[int, int, int], tol: int = 6) -> int:
    target = np.array(rgb[::-1], dtype=np.int16)
    return int(np.all(np.abs(img_bgr.astype(np.int16) - target) <= tol, axis=-1).sum())


def test_plot_is_a_valid_png_of_reasonable_size(analysis: ClipAnalysis, tmp_path: Path) -> None:
    out = plot_quality(analysis, tmp_path / "sub" / "quality.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img is not None
    h, w = img.shape[:2]
    assert 800 <= w <= 1600 and 400 <= h <= 1000, (w, h)
    assert img.std() > 10  # not a blank canvas


def test_plot_shades_segments_by_type(analysis: ClipAnalysis) -> None:
    def decode(png: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)

    shaded = decode(render_quality_png(analysis))
    plain = decode(render_quality_png(_without_segments(analysis)))
    for kind in ("low_light", "haze"):
        with_seg, without = _count_colour(shaded, shade_rgb(kind)), _count_colour(plain, shade_rgb(kind))
        # anti-aliased lines and text hit any colour now and then: a few hundred pixels, against tens of thousands
        assert with_seg > 20000 and without < 2000, (kind, with_seg, without)
    assert _count_colour(shaded, shade_rgb("flare")) < 2000  # no flare segment, no flare shading


def test_plot_survives_mathtext_in_clip_id(analysis: ClipAnalysis) -> None:
    report = analysis.report.model_copy(update={"clip_id": r"cam$\frac{1}{$_^{"})
    assert render_quality_png(ClipAnalysis(report=report, frames=analysis.frames))[:4] == b"\x89PNG"


def test_thumbnail_is_the_frame_at_that_time(clip: Path) -> None:
    dark = cv2.imdecode(np.frombuffer(decode_thumbnail(clip, 2.0) or b"", np.uint8), cv2.IMREAD_COLOR)
    clean = cv2.imdecode(np.frombuffer(decode_thumbnail(clip, 3.5) or b"", np.uint8), cv2.IMREAD_COLOR)
    assert dark is not None and clean is not None
    assert dark.shape[1] == 240 and dark.shape[0] == 180  # 320×240 clip, downscaled to 240 wide
    assert dark.mean() < clean.mean() - 30  # the low_light span really is what the thumbnail shows


def test_a_thumbnail_is_vetted_like_every_input(clip: Path, tmp_path: Path) -> None:
    """The report's thumbnails open the video through stream_iqa.video: an ffconcat list (a demuxer that reads other
    files) named like a video gives no thumbnail, though FFmpeg alone would decode the clip it points at."""
    import av

    listing = tmp_path / "innocent.mp4"
    listing.write_text(f"ffconcat version 1.0\nfile '{clip}'\n")
    with av.open(str(listing), format="concat", options={"safe": "0"}) as raw:  # what a raw open would read
        assert raw.streams.video
    assert decode_thumbnail(listing, 2.0) is None
    assert decode_thumbnail(clip, 2.0) is not None


def test_html_is_self_contained_with_segments_and_thumbnails(analysis: ClipAnalysis, clip: Path,
                                                             tmp_path: Path) -> None:
    page = write_html(analysis, clip, tmp_path / "report.html").read_text(encoding="utf-8")
    segments = analysis.report.segments
    assert page.count('<tr class="segment">') == len(segments)
    for s in segments:
        assert f"{s.start:.2f} s" in page and f"{s.end:.2f} s" in page and f"{s.confidence:.2f}" in page
    assert page.count("<img") == len(segments) + 1  # the plot and one middle-frame thumbnail per segment
    assert page.count('src="data:image/jpeg;base64,') == len(segments)
    assert page.count('src="data:image/png;base64,') == 1
    assert "http://" not in page and "https://" not in page
    assert "thumbnail unavailable" not in page
    report = analysis.report
    for key in (f"{report.duration_s:.2f} s", f"{report.quality.mean:.1f}", f"{report.quality.p10:.1f}",
                report.model.name, report.model.version):
        assert key in page


def test_html_escapes_hostile_input(analysis: ClipAnalysis, clip: Path, tmp_path: Path) -> None:
    page = write_html(analysis, clip, tmp_path / "report.html").read_text(encoding="utf-8")
    assert HOSTILE_ID not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_placeholder_when_video_cannot_be_decoded(analysis: ClipAnalysis, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    for video in (broken, tmp_path / "missing.mp4"):
        page = write_html(analysis, video, tmp_path / "report.html").read_text(encoding="utf-8")
        assert page.count("thumbnail unavailable") == len(analysis.report.segments)
        assert page.count("<img") == 1  # the plot still renders
        assert page.count('<tr class="segment">') == len(analysis.report.segments)


def test_html_renders_in_headless_chromium(analysis: ClipAnalysis, clip: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("TEST_REQUIRE_CHROMIUM"):  # set by .ci/run, which installs it
            pytest.fail("chromium is required here (TEST_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")
    page = write_html(analysis, clip, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (1600, 1200)
    assert img.std() > 15, "screenshot is blank"
    # the embedded plot decoded and was laid out: its low_light shading is on screen
    assert _count_colour(img, shade_rgb("low_light"), tol=8) > 3000
    # and a thumbnail decoded too: the low_light frame is a block of near-black pixels
    assert int((img.max(axis=-1) < 40).sum()) > 5000
