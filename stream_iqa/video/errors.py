"""Typed errors for the inputs (videos and Kafka messages), one per code of the output contract's closed set.

Callers (replay's exit 3, the service's errors topic) map ``VideoError.code`` straight into the error record, so the
codes here must stay within ``../shared/docs/output-contract.md``. An empty file is reported as
``undecodable_video`` (with "empty" in the message) rather than a new ``empty_input`` code: the contract's set is
closed and an empty file is, to every consumer, simply input that cannot be decoded.
"""

from __future__ import annotations

import unicodedata
from typing import ClassVar

from stream_iqa.schema import ErrorCode


def one_line(text: object) -> str:
    """``text`` on one line: runs of whitespace (newlines, Unicode line separators) become one space, and other
    control characters (NUL, ESC) are written as ``\\xNN`` escapes, so nothing in it can forge a second line or
    steer a terminal."""
    flat = " ".join(str(text).split())
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in flat)


class InputError(Exception):
    """An input that cannot be answered with a report, with a contract code and a one-line message naming it: the
    base of the error records. A Kafka message that is no job (``InvalidMessageError``) is one; a video that cannot
    be analysed (``VideoError``) is the other kind.

    The message is forced onto one line because replay prints it as the single stderr line of exit 3 and the
    service puts it in a JSON record; a multi-line FFmpeg message would break both.
    """

    code: ClassVar[ErrorCode] = "internal"

    def __init__(self, source: str, cause: str) -> None:
        self.source = one_line(source)  # it may hold a client's clip id: "cam1\nstream-iqa: clip cam2 analysed OK"
        self.cause = one_line(cause)
        super().__init__(f"{self.source}: {self.cause}")

    @property
    def message(self) -> str:
        return str(self)


class VideoError(InputError):
    """A video that cannot be analysed: missing, refused, undecodable, over a limit, or not finished in time."""


class NotFoundError(VideoError):
    code = "not_found"


class UndecodableVideoError(VideoError):
    code = "undecodable_video"


class NoVideoStreamError(VideoError):
    code = "no_video_stream"


class TooLargeError(VideoError):
    code = "too_large"


class TooLongError(VideoError):
    code = "too_long"


class UriNotAllowedError(VideoError):
    code = "uri_not_allowed"


class InvalidMessageError(InputError):
    """A Kafka message that is not a job: bad JSON, missing fields or headers, an unknown content type."""

    code = "invalid_message"


class InternalVideoError(VideoError):
    code = "internal"


class ClipTimeoutError(VideoError):
    """The clip did not finish within its wall-clock deadline (a hung URL, a slow-drip server, a stuck decoder)."""

    code = "timeout"


_BY_CODE: dict[str, type[VideoError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        UndecodableVideoError,
        NoVideoStreamError,
        TooLargeError,
        TooLongError,
        UriNotAllowedError,
        InternalVideoError,
        ClipTimeoutError,
    )
}


def video_error(code: ErrorCode, source: str, cause: str) -> VideoError:
    """Build the subclass for ``code`` (for code paths that pick the code at run time)."""
    return _BY_CODE[code](source, cause)
