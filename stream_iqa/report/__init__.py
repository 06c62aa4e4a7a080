"""Human-readable renderings of one analysed clip: the quality plot (``replay --plot``) and the self-contained HTML
page (``replay --html``). Kept apart from the pipeline so the Kafka service, which never renders, does not import
matplotlib; import this package only where a report is drawn."""

from stream_iqa.report.html import decode_thumbnail, render_html, write_html
from stream_iqa.report.plot import TYPE_COLOURS, build_figure, plot_quality, render_quality_png, shade_rgb

__all__ = ["TYPE_COLOURS", "build_figure", "decode_thumbnail", "plot_quality", "render_html", "render_quality_png",
           "shade_rgb", "write_html"]
