"""structlog set-up: JSON lines for services and pipes, a readable console on a terminal. Logs go to stderr so that
``--json`` output on stdout stays a clean document."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure_logging(level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping().get(level.upper(), 20)),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(renderer, level)


def _route_stdlib(renderer: structlog.typing.Processor, level: str) -> None:
    """Send libraries' stdlib logging (kafka-python, urllib3…) through the same renderer, so a service's stderr is
    one JSON stream instead of JSON mixed with Python's plain last-resort lines. kafka-python logs every failed
    reconnect at ERROR; at WARNING and above it still shows, with the service's own context-free fields."""
    handler = logging.StreamHandler(_Stderr())  # type: ignore[arg-type]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.stdlib.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
    ))
    handler._stream_iqa = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_stream_iqa", False)] + [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping().get(level.upper(), 20)))


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of writing: test runners and embedding programs swap it, and a stream
    bound at configuration time may be closed by then."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    if not structlog.is_configured():
        # library use without a command: still keep stdout clean for machine-readable output
        configure_logging()
    return structlog.get_logger(name)
