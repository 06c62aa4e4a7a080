"""The Python API as a user meets it: ``import stream_iqa`` then one call, the same reports as ``stream-iqa replay``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import stream_iqa
from stream_iqa.synthesis.clips import ClipSpec, Span, build_clip
from stream_iqa.cli import main

CPU = {"model": {"device": "cpu"}, "depth": {"source": "prior"}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("api-clips")
    return build_clip(ClipSpec(scenes=["coffee"], scene_s=4.0, spans=[Span("low_light", 1.0, 3.0)]), d / "dark.mp4")


@pytest.fixture(scope="module")
def analyzer() -> stream_iqa.Analyzer:
    return stream_iqa.create_analyzer(**CPU)


def test_importing_the_package_loads_neither_torch_nor_the_model():
    code = "import sys, stream_iqa; stream_iqa.ClipReport; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_analyze_gives_the_report_replay_prints(clip, capsys):
    report = stream_iqa.analyze(clip, **CPU)
    assert isinstance(report, stream_iqa.ClipReport) and report.clip_id == "dark.mp4"
    assert [s.type for s in report.segments] == ["low_light"]
    assert main(["replay", str(clip), "--json", "--device", "cpu", "--depth", "prior"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(report.model_dump_json())


def test_an_analyzer_is_reused_and_a_streams_segments_share_depth(analyzer, clip):
    frames: list[list[stream_iqa.FrameRecord]] = [[], []]
    for i in range(2):
        analyzer.analyze(clip, clip_id=f"seg{i}", stream_id="cam", on_frame=frames[i].append)
    assert len(frames[0]) == len(frames[1]) > 0
    # one depth state for the stream across both calls (it has seen both segments' frames), as in the service
    assert analyzer.streams.peek("cam").frames == len(frames[0]) + len(frames[1])
    analyzer.analyze(clip, clip_id="other", stream_id="other")
    assert analyzer.streams.peek("other").frames == len(frames[0])
    assert analyzer.model_info.name == "dgiqa-lite" == analyzer.card.name
    assert dict(analyzer.card.flag_thresholds) == analyzer.flag_thresholds


def test_bytes_in_and_a_bad_input_raises_with_its_contract_code(analyzer, clip):
    assert analyzer.analyze(clip.read_bytes()).clip_id == "clip"
    with pytest.raises(stream_iqa.VideoError) as exc:
        analyzer.analyze(b"this is not a video")
    assert exc.value.code == "undecodable_video"


def test_score_images_takes_paths_folders_and_arrays_and_says_which_flags_fired(analyzer, photos, tmp_path):
    rgb = photos["coffee"]
    cv2.imwrite(str(tmp_path / "coffee.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (tmp_path / "broken.png").write_text("not an image")
    dark = (rgb * 0.04).astype(np.uint8)
    scores = analyzer.score_images([tmp_path, rgb, dark])
    assert [Path(s.path).name if s.path else None for s in scores] == ["broken.png", "coffee.png", None, None]
    assert scores[0].error and scores[0].quality is None
    assert scores[1].quality == scores[2].quality  # a lossless file and its array: the same score
    for s in scores[1:]:
        assert s.flags == {k: p >= analyzer.flag_thresholds[k] for k, p in s.distortions.model_dump().items()}
    assert scores[3].flags["low_light"] and not scores[2].flags["low_light"]
    assert stream_iqa.score_images(rgb, **CPU)[0].quality == scores[2].quality


def test_score_images_refuses_what_is_not_an_image(analyzer):
    with pytest.raises(ValueError, match="RGB uint8"):
        analyzer.score_images(np.zeros((8, 8), np.float32))
    with pytest.raises(TypeError, match="path or an RGB uint8 array"):
        analyzer.score_images([42])
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 16, 3), np.uint8)):  # once a raw OpenCV assertion
        with pytest.raises(ValueError, match=r"RGB uint8 of shape \(H, W, 3\), not uint8 \(0,"):
            analyzer.score_images(empty)


def test_a_folder_without_images_is_an_error_in_its_place_not_silence(analyzer, tmp_path, capsys):
    empty = tmp_path / "frames"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here")
    (record,) = analyzer.score_images(empty)
    assert record.path == str(empty) and "no images" in record.error and record.quality is None
    assert main(["score", "--json", "--depth", "prior", str(empty)]) == 3  # once: no line at all, and exit 0
    assert json.loads(capsys.readouterr().out)["error"].startswith("no images (.bmp, .jpeg")


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height, with one row of pixel data: a decompression bomb's header. Our
    check must refuse it from the header alone (a real one, 1.1 MB of zeros at 20000x20000, took 9.5 GB to score)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(bytes(1 + 3 * width))) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height, said", [(12000, 10000, "12000x10000"),
                                                 (30000, 30000, "over 178956970 pixels")])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(analyzer, tmp_path, capsys, width, height,
                                                                       said):
    bomb = _png_declaring(tmp_path / "bomb.png", width, height)
    (record,) = analyzer.score_images(bomb)
    assert record.quality is None and f"is {said}, more than max_pixels=100000000 (video.max_image_pixels)" in \
        record.error
    assert main(["score", "--json", "--depth", "prior", str(bomb)]) == 3
    assert "video.max_image_pixels" in json.loads(capsys.readouterr().out)["error"]


def test_an_icon_is_not_decoded_to_read_its_size(analyzer, tmp_path):
    """Pillow decodes an .ico whole to open it: a 0.5 MB icon around a 12000x12000 PNG took 1.4 s and 550 MB in the
    header check alone. Its size is not read from such formats (OpenCV cannot decode them anyway)."""
    from PIL import Image

    from stream_iqa.images import declared_pixels

    icon = tmp_path / "a.ico"
    Image.new("RGBA", (64, 64)).save(icon, "ICO", sizes=[(64, 64)])
    assert declared_pixels(icon) is None  # not opened by Pillow at all
    assert declared_pixels(_png_declaring(tmp_path / "p.png", 300, 200)) == (60000, "300x200")


def test_the_image_pixel_limit_is_a_setting(photos, tmp_path):
    small = stream_iqa.create_analyzer(video={"max_image_pixels": 1000}, **CPU)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((40, 30, 3), 128, np.uint8))
    assert "is 30x40, more than max_pixels=1000" in small.score_images(path)[0].error
    assert small.score_images(np.full((40, 30, 3), 128, np.uint8))[0].quality is not None  # arrays are the caller's


def test_a_file_uri_is_percent_decoded_as_the_kafka_jobs_read_it(analyzer, clip, tmp_path):
    # file:///.../a%20b.mp4 names "a b.mp4" (RFC 8089), as in a job message; the API once looked for "a%20b.mp4"
    spaced = tmp_path / "a b#1.mp4"
    spaced.write_bytes(clip.read_bytes())
    expected = analyzer.analyze(spaced).segments
    assert analyzer.analyze(spaced.as_uri()).segments == expected
    assert analyzer.analyze("file://localhost" + spaced.as_uri()[len("file://"):]).segments == expected
    with pytest.raises(stream_iqa.VideoError, match="with a host") as exc:
        analyzer.analyze("file://fileserver" + spaced.as_uri()[len("file://"):])
    assert exc.value.code == "uri_not_allowed"


def test_create_model_pretrained_loads_the_shipped_weights():
    from stream_iqa.settings import DEFAULT_CHECKPOINT

    model = stream_iqa.create_model("dgiqa-lite", pretrained=True)
    meta = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert model.flag_thresholds == pytest.approx(meta["flag_thresholds"])
    assert "dgiqa-lite" in stream_iqa.list_models()
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        stream_iqa.create_model("dgiqa", pretrained=True)


def test_settings_come_one_way_at_a_time():
    with pytest.raises(TypeError, match="not both"):
        stream_iqa.create_analyzer(stream_iqa.Settings.load(), model={"device": "cpu"})
    with pytest.raises(stream_iqa.ConfigError, match="fps"):
        stream_iqa.create_analyzer(video={"fps": -1})


def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch, photos):
    """The README's "From Python" block, executed on files of the names it uses."""
    import shutil

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAM_IQA_DEPTH__SOURCE", "prior")
    build_clip(ClipSpec(scenes=["coffee"], scene_s=2.0), tmp_path / "clip.mp4")
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(tmp_path / "clip.mp4", tmp_path / name)
    cv2.imwrite(str(tmp_path / "photo.jpg"), cv2.cvtColor(photos["coffee"], cv2.COLOR_RGB2BGR))
    (tmp_path / "photos").mkdir()
    shutil.copy(tmp_path / "photo.jpg", tmp_path / "photos" / "more.jpg")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert isinstance(namespace["report"], stream_iqa.ClipReport)
    assert [Path(s.path).name for s in namespace["scores"]] == ["photo.jpg", "more.jpg"]
