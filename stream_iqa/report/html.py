"""One self-contained HTML page per analysed clip (``stream-iqa replay --html FILE.html``).

Self-contained means the page is a single file that renders the same when mailed, attached to a ticket or opened from
an air-gapped moderation desk: no external URLs, no scripts, CSS inline, and every image (the plot and one thumbnail
per flagged segment) embedded as a base64 data URI. A Content-Security-Policy meta tag makes that a property the
browser enforces, not just a habit of this module.

Clip ids, stream ids and file names come from producers we do not control, so every string taken from the input is
HTML-escaped; numbers are formatted here. A thumbnail that cannot be decoded (truncated file, missing path, odd
codec) becomes a placeholder text: the report is still worth having without it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np

from stream_iqa import __version__
from stream_iqa.pipeline import ClipAnalysis
from stream_iqa.report.plot import TYPE_COLOURS, render_quality_png
from stream_iqa.schema import DISTORTION_TYPES, Segment
from stream_iqa.video.thumbnail import frame_at

#: thumbnail width in px: enough to recognise the scene and the distortion, small enough for a page of many segments
THUMB_WIDTH = 240
#: stop decoding after this many frames past the seek point: bounds the cost when a stream has no usable pts


def _esc(text: object) -> str:
    """Escape any input-derived text for element content and quoted attributes alike."""
    return html.escape(str(text), quote=True)


def _label(kind: str) -> str:
    return kind.replace("_", " ")


def decode_thumbnail(video_path: Path, t: float, width: int = THUMB_WIDTH) -> bytes | None:
    """JPEG bytes of the frame shown at ``t`` seconds, about ``width`` px wide; ``None`` if the video cannot be opened
    or decoded there. The frame comes through ``stream_iqa.video`` (``frame_at``): the same vetting of the input and
    the same colour conversion as the frames the model scored."""
    rgb = frame_at(video_path, t)
    return _jpeg(rgb, width) if rgb is not None else None


def _jpeg(rgb: np.ndarray, width: int) -> bytes | None:
    h, w = rgb.shape[:2]
    if w > width:  # never upscale: a blown-up thumbnail suggests detail that is not there
        rgb = cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else None


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _chip(kind: str) -> str:
    return f'<span class="chip" style="background:{TYPE_COLOURS.get(kind, "#999")}"></span>{_esc(_label(kind))}'


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2330;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 40px; }
header h1 { margin: 0 0 2px; font-size: 22px; }
header .id { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 14px; color: #4a5263;
             overflow-wrap: anywhere; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 16px 20px; margin-top: 18px; }
h2 { margin: 0 0 12px; font-size: 16px; color: #2b3445; }
.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin: 0; }
.stats div { background: #f7f8fa; border-radius: 6px; padding: 8px 10px; }
.stats dt { font-size: 12px; color: #5d6678; text-transform: uppercase; letter-spacing: .03em; }
.stats dd { margin: 2px 0 0; font-size: 18px; font-weight: 600; overflow-wrap: anywhere; }
.stats dd small { font-size: 12px; font-weight: 400; color: #5d6678; }
.plot img { display: block; width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #e7e9ee; }
th { font-size: 12px; color: #5d6678; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; }
.chip { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 7px;
        vertical-align: -1px; opacity: .8; }
.thumbs { display: flex; flex-wrap: wrap; gap: 14px; }
.thumbs figure { margin: 0; width: 242px; border-radius: 6px; overflow: hidden; background: #f7f8fa; }
.thumbs figure img { display: block; width: 100%; height: auto; }
.thumbs figcaption { padding: 6px 9px 8px; font-size: 13px; border-top: 4px solid var(--c, #999); }
.placeholder { height: 150px; display: flex; align-items: center; justify-content: center; text-align: center;
               padding: 10px; color: #8a6d3b; background: #fcf8e3; font-size: 13px; }
.empty { color: #4f6b3a; margin: 0; }
footer { margin-top: 18px; font-size: 12px; color: #7a8292; }
"""


def _summary(analysis: ClipAnalysis, video_path: Path) -> str:
    r = analysis.report
    q = r.quality
    share = " · ".join(f"{_esc(_label(k))} {getattr(r.distortion_share, k):.0%}" for k in DISTORTION_TYPES)
    items = [
        ("duration", f"{r.duration_s:.2f} s"),
        ("frames analysed", f"{r.frames_analyzed}"),
        ("quality mean", f"{q.mean:.1f} <small>/ 100</small>"),
        ("quality min", f"{q.min:.1f}"),
        ("quality p10", f"{q.p10:.1f}"),
        ("segments", f"{len(r.segments)}"),
        ("model", f"{_esc(r.model.name)} <small>{_esc(r.model.version)}</small>"),
        ("stream", _esc(r.stream_id)),
        ("file", _esc(Path(video_path).name)),
    ]
    cells = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in items)
    return (f'<section><h2>Summary</h2><dl class="stats">{cells}</dl>'
            f'<p style="margin:10px 0 0;font-size:13px;color:#5d6678">share of time: {share}</p></section>')


def _segment_table(segments: list[Segment]) -> str:
    if not segments:
        return '<section><h2>Segments</h2><p class="empty">No degraded segments found.</p></section>'
    rows = "".join(
        f'<tr class="segment"><td class="num">{i}</td><td>{_chip(s.type)}</td><td class="num">{s.start:.2f} s</td>'
        f'<td class="num">{s.end:.2f} s</td><td class="num">{s.end - s.start:.2f} s</td>'
        f'<td class="num">{s.confidence:.2f}</td></tr>'
        for i, s in enumerate(segments, 1)
    )
    head = ('<tr><th class="num">#</th><th>type</th><th class="num">start</th><th class="num">end</th>'
            '<th class="num">duration</th><th class="num">confidence</th></tr>')
    return f"<section><h2>Segments</h2><table><thead>{head}</thead><tbody>{rows}</tbody></table></section>"


def _thumbnails(segments: list[Segment], video_path: Path) -> str:
    if not segments:
        return ""
    cards = []
    for i, s in enumerate(segments, 1):
        mid = (s.start + s.end) / 2.0
        jpeg = decode_thumbnail(video_path, mid)
        caption = f"#{i} {_esc(_label(s.type))} · {mid:.2f} s <small>({s.start:.2f}–{s.end:.2f} s)</small>"
        if jpeg is None:
            body = f'<div class="placeholder">thumbnail unavailable<br>(frame at {mid:.2f} s could not be decoded)</div>'
        else:
            body = (f'<img src="{_data_uri("image/jpeg", jpeg)}" '
                    f'alt="middle frame of {_esc(_label(s.type))} segment {i} at {mid:.2f} s">')
        colour = TYPE_COLOURS.get(s.type, "#999")
        cards.append(f'<figure class="thumb" style="--c:{colour}">{body}<figcaption>{caption}</figcaption></figure>')
    return f'<section><h2>Flagged segments: middle frames</h2><div class="thumbs">{"".join(cards)}</div></section>'


def render_html(analysis: ClipAnalysis, video_path: Path) -> str:
    """The page as a string (``write_html`` writes it); separate so the service could serve it without a file."""
    r = analysis.report
    plot = _data_uri("image/png", render_quality_png(analysis))
    plot_alt = f"quality over time for clip {_esc(r.clip_id)}, segments shaded by type"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>stream-iqa report · {_esc(r.clip_id)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header><h1>Video quality report</h1><div class="id">clip {_esc(r.clip_id)}</div></header>
{_summary(analysis, video_path)}
<section class="plot"><h2>Quality over time</h2><img src="{plot}" alt="{plot_alt}"></section>
{_segment_table(r.segments)}
{_thumbnails(r.segments, video_path)}
<footer>stream-iqa {_esc(__version__)} · report schema {_esc(r.schema_)} · quality on a 0–100 scale, higher is better;
confidence is the mean smoothed probability inside the segment.</footer>
</main>
</body>
</html>
"""


def write_html(analysis: ClipAnalysis, video_path: Path, path: Path) -> Path:
    """Write the self-contained report page for ``analysis`` of ``video_path`` to ``path``; returns the path.

    ``video_path`` is re-opened only to decode thumbnails; the analysis itself is not repeated.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(analysis, Path(video_path)), encoding="utf-8")
    return path
