"""Quality-over-time plot for one analysed clip (``stream-iqa replay --plot`` and the ``--html`` page).

Rendering uses ``matplotlib.figure.Figure`` with an explicit Agg canvas instead of pyplot: pyplot keeps a global
figure registry and a process-wide backend, which a library called from the Kafka service or a test run must not
touch (other callers may have chosen a different backend, and unclosed pyplot figures leak memory in a long-running
process). A bare ``Figure`` is garbage-collected like any object.

Colours are fixed per distortion type (:data:`TYPE_COLOURS`) so that a reader learns them once and every plot, page
and README picture agrees; the legend always lists all types for the same reason.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from stream_iqa.pipeline import ClipAnalysis
from stream_iqa.schema import DISTORTION_TYPES

#: one colour per distortion type; part of the visual vocabulary shared by the plot and the HTML page
TYPE_COLOURS: dict[str, str] = {"low_light": "#2b4c9b", "haze": "#8a8a8a", "flare": "#f28e2b"}
#: opacity of the segment shading; low enough that the quality line stays readable on top of it
SHADE_ALPHA = 0.25
#: a very long (or hostile) clip id must not push the title off the figure
_TITLE_ID_MAX = 60

_FIGSIZE = (10.0, 5.2)  # inches; at the default dpi=100 this is a 1000×520 px PNG, fits an HTML page unscaled


def shade_rgb(kind: str, background: str = "white") -> tuple[int, int, int]:
    """The 8-bit RGB a segment of ``kind`` shows on the axes background (colour alpha-blended over it).

    Exposed so that tests and image checks can find shaded regions by colour without duplicating the blend maths.
    """
    fg = np.asarray(to_rgb(TYPE_COLOURS[kind]))
    bg = np.asarray(to_rgb(background))
    mixed = SHADE_ALPHA * fg + (1.0 - SHADE_ALPHA) * bg
    r, g, b = (int(round(float(c) * 255)) for c in mixed)
    return r, g, b


def _short(text: str, limit: int = _TITLE_ID_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_figure(analysis: ClipAnalysis, dpi: int = 100) -> Figure:
    """The two-panel figure: quality (0–100) on top, per-type raw probabilities below, segments shaded in both.

    Segments come from the report (smoothed, hysteresis-filtered) while the lower panel shows the raw per-frame
    probabilities, so a reader can see why a segment starts where it does.
    """
    report = analysis.report
    frames = sorted(analysis.frames, key=lambda f: f.t)
    t = np.array([f.t for f in frames], dtype=float)
    quality = np.array([f.quality for f in frames], dtype=float)
    x_end = max(report.duration_s, float(t[-1]) if len(t) else 0.0, 1e-3)

    fig = Figure(figsize=_FIGSIZE, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=(3.0, 1.4))
    ax_q = fig.add_subplot(grid[0])
    ax_p = fig.add_subplot(grid[1], sharex=ax_q)

    for ax in (ax_q, ax_p):
        for seg in report.segments:
            ax.axvspan(seg.start, seg.end, color=TYPE_COLOURS[seg.type], alpha=SHADE_ALPHA, linewidth=0, zorder=0)
        ax.set_xlim(0.0, x_end)
        ax.grid(True, axis="y", color="#efefef", linewidth=0.6, zorder=1)
        ax.set_axisbelow(True)

    if len(t):
        ax_q.plot(t, quality, color="#222222", linewidth=1.6, marker="o", markersize=2.5, zorder=3, label="quality")
        for kind in DISTORTION_TYPES:
            probs = np.array([getattr(f.distortions, kind) for f in frames], dtype=float)
            ax_p.plot(t, probs, color=TYPE_COLOURS[kind], linewidth=1.3, zorder=3)
    else:
        ax_q.text(0.5, 0.5, "no frames analysed", transform=ax_q.transAxes, ha="center", va="center",
                  color="#777777", parse_math=False)
    ax_q.set_ylim(0.0, 100.0)
    ax_q.set_ylabel("quality (0–100)")
    ax_q.tick_params(labelbottom=False)
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_yticks([0.0, 0.5, 1.0])
    ax_p.set_ylabel("probability")
    ax_p.set_xlabel("time (s)")

    handles = [Patch(facecolor=TYPE_COLOURS[k], alpha=SHADE_ALPHA + 0.35, label=k.replace("_", " "))
               for k in DISTORTION_TYPES]
    # outside the axes: inside, it would hide exactly the low-quality stretches the plot is for
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=9,
               title="segment type", title_fontsize=9)

    q = report.quality
    # parse_math=False: a clip id is untrusted text; "$…$" in it must not be parsed (or fail) as mathtext
    ax_q.set_title(f"{_short(report.clip_id)}  ·  quality mean {q.mean:.1f}, p10 {q.p10:.1f}  ·  "
                   f"{report.frames_analyzed} frames, {report.duration_s:.1f} s",
                   loc="left", fontsize=11, parse_math=False)
    return fig


def render_quality_png(analysis: ClipAnalysis, dpi: int = 100) -> bytes:
    """The plot as PNG bytes, for embedding (the HTML page inlines it as a data URI) without a temporary file."""
    fig = build_figure(analysis, dpi=dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def plot_quality(analysis: ClipAnalysis, path: Path, dpi: int = 100) -> Path:
    """Write the quality-over-time plot to ``path`` as PNG (``replay --plot FILE.png``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render_quality_png(analysis, dpi=dpi))
    return path
