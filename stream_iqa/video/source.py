"""Turn what a caller hands us (path, URL, bytes) into something FFmpeg may open, refusing what it must not.

Kept apart from decoding because this is the security boundary: FFmpeg treats ``scheme:…`` strings as protocols
(``concat:``, ``pipe:``, ``http:``…), so local paths are made absolute (an absolute path never parses as a
protocol) and URLs are let through only when settings allow, and only for http(s).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

from .errors import NotFoundError, TooLargeError, UndecodableVideoError, UriNotAllowedError
from stream_iqa.settings import VideoSettings

VideoInput = Union[str, Path, bytes, bytearray, memoryview]

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_ALLOWED_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class Source:
    """A vetted input. ``label`` names it in error messages; ``path`` is set only for local files (decord)."""

    label: str
    path: Path | None = None
    url: str | None = None
    data: bytes | None = None

    def target(self) -> str | BinaryIO:
        """A fresh argument for ``av.open`` (a new stream each call, since probing and decoding reopen)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.url is not None:
            return self.url
        assert self.path is not None
        return str(self.path)


def resolve_source(src: VideoInput, settings: VideoSettings, name: str | None = None) -> Source:
    """Vet ``src`` against the byte limit and URL policy; raise VideoError before any decoder is started."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        label = name or f"<{len(data)} bytes>"
        if not data:
            raise UndecodableVideoError(label, "input is empty (0 bytes)")
        if len(data) > settings.max_bytes:
            raise TooLargeError(label, f"{len(data)} bytes exceeds max_bytes={settings.max_bytes}")
        return Source(label=label, data=data)

    text = os.fspath(src)
    match = _URL.match(text) if isinstance(src, str) else None
    if match and match["scheme"].lower() != "file":
        scheme = match["scheme"].lower()
        if not settings.allow_urls:
            raise UriNotAllowedError(name or text, "URLs are disabled (settings.video.allow_urls is false)")
        if scheme not in _ALLOWED_SCHEMES:
            raise UriNotAllowedError(name or text, f"scheme '{scheme}' is not allowed (only http, https)")
        return Source(label=name or text, url=text)
    if match:  # file://
        text = text[len(match.group(0)) :]

    path = Path(os.path.abspath(text))
    label = name or str(src)
    if not path.exists():
        raise NotFoundError(label, "no such file")
    if not path.is_file():
        raise NotFoundError(label, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise UndecodableVideoError(label, "file is empty (0 bytes)")
    if size > settings.max_bytes:
        raise TooLargeError(label, f"{size} bytes exceeds max_bytes={settings.max_bytes}")
    return Source(label=label, path=path)
