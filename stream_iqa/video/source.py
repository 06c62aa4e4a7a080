"""Turn what a caller hands us (path, URL, bytes) into something FFmpeg may open, refusing what it must not.

Kept apart from decoding because this is the security boundary, and FFmpeg is generous in what it opens:

* ``scheme:…`` strings are protocols (``concat:``, ``pipe:``, ``http:``…), so local paths are made absolute;
* demuxers open further files named *inside* an input (an ``ffconcat`` list, an HLS playlist, an image2 pattern),
  so every open names the demuxers it may use (FFmpeg's ``format_whitelist``, ``video.allowed_formats``) and the
  protocols (``file`` for a local path, none at all for bytes);
* URLs are fetched by :mod:`stream_iqa.video.fetch` (redirects vetted, timeouts, byte limit), never by FFmpeg's own
  http client, which follows redirects anywhere and waits forever on a silent server;
* HLS, when ``video.allow_playlists`` is on, opens every playlist and segment through :meth:`Source.io_open`, which
  vets each one against the same :class:`InputPolicy` as the job's own URI.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union
from urllib.parse import unquote, urlsplit

from .errors import NotFoundError, TooLargeError, UndecodableVideoError, UriNotAllowedError
from stream_iqa.deadline import Deadline
from stream_iqa.settings import VideoSettings

VideoInput = Union[str, Path, bytes, bytearray, memoryview]

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_ALLOWED_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class InputPolicy:
    """Where an input, and everything it names, may be read from. ``None`` means unrestricted: replay reads what
    its user typed; the service passes ``service.allowed_roots`` / ``service.allowed_hosts``."""

    roots: tuple[Path, ...] | None = None
    hosts: frozenset[str] | None = None

    @classmethod
    def restricted(cls, roots: list[Path], hosts: list[str]) -> InputPolicy:
        return cls(roots=tuple(Path(os.path.realpath(r)) for r in roots), hosts=frozenset(h.lower() for h in hosts))

    def check_path(self, raw: str, label: str) -> Path:
        """An absolute real path inside the roots; refuses NUL, ``..`` and symlinks that lead outside."""
        if "\x00" in raw:
            raise UriNotAllowedError(label, "path contains a NUL byte")
        if self.roots is None:
            return Path(os.path.abspath(raw))
        if ".." in Path(raw).parts:
            raise UriNotAllowedError(label, f"'..' is not allowed in paths ({raw})")
        if not self.roots:
            raise UriNotAllowedError(label, "file inputs are disabled (service.allowed_roots is empty)")
        real = Path(os.path.realpath(raw))
        if not any(real == r or r in real.parents for r in self.roots):
            raise UriNotAllowedError(label, f"{raw} is outside the allowed roots (service.allowed_roots)")
        return real

    def check_url(self, url: str, label: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
        except ValueError as exc:
            raise UriNotAllowedError(label, f"malformed URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in _ALLOWED_SCHEMES:
            raise UriNotAllowedError(label, f"scheme '{scheme or '(none)'}' is not allowed (only http, https)")
        host = (parts.hostname or "").lower()
        if self.hosts is not None and host not in self.hosts:
            raise UriNotAllowedError(label, f"host '{host}' is not in service.allowed_hosts")
        return url


@dataclass
class Source:
    """A vetted input. ``label`` names it in error messages; ``path`` is set only for local files (decord)."""

    label: str
    settings: VideoSettings
    policy: InputPolicy = field(default_factory=InputPolicy)
    path: Path | None = None
    url: str | None = None
    data: bytes | None = None
    #: what the vetting hook refused while FFmpeg ran (a playlist entry outside the roots…): the open or decode that
    #: follows fails as that refusal rather than as an opaque FFmpeg error
    refused: list[UriNotAllowedError] = field(default_factory=list)

    @property
    def playlists(self) -> bool:
        return self.settings.allow_playlists and self.data is None

    def open_args(self, deadline: Deadline | None = None) -> tuple[str | BinaryIO, dict[str, Any]]:
        """A fresh ``av.open`` target and its keyword arguments (probing and decoding each reopen)."""
        formats = [*self.settings.allowed_formats, *(["hls"] if self.playlists else [])]
        options = {"format_whitelist": ",".join(formats)}
        if self.playlists:  # every open, the first included, goes through the vetting hook
            target: str | BinaryIO = self.url or str(self.path)
            # http_persistent off: for the next segment or playlist reload FFmpeg's hls demuxer would reuse the
            # previous http connection through its own http protocol (open_url_keepalive), which asserts that the
            # open file is one of FFmpeg's own; ours (read by the hook) aborts the whole process instead
            return target, {"options": {**options, "http_persistent": "0"},
                            "io_open": lambda url, flags, opts: self.io_open(url, deadline)}
        if self.data is not None:
            return io.BytesIO(self.data), {"options": {**options, "protocol_whitelist": "none"}}
        if self.url is not None:
            from .fetch import fetch

            body = fetch(self.url, self.policy, self.settings, deadline or Deadline.none(), self.label)
            return body, {"options": {**options, "protocol_whitelist": "none"}}
        assert self.path is not None
        return str(self.path), {"options": {**options, "protocol_whitelist": "file"}}

    def io_open(self, url: str, deadline: Deadline | None) -> BinaryIO:
        """FFmpeg's hook for every file an HLS input opens: vetted like a job URI, then read by us."""
        try:
            if _URL.match(url) and not url.lower().startswith("file:"):
                if not self.settings.allow_urls:
                    raise UriNotAllowedError(self.label, f"playlist entry {url} is a URL and video.allow_urls is off")
                from .fetch import fetch

                return fetch(self.policy.check_url(url, self.label), self.policy, self.settings,
                             deadline or Deadline.none(), self.label)
            raw = unquote(urlsplit(url).path) if url.lower().startswith("file:") else url
            path = self.policy.check_path(raw, self.label)
            if not path.is_file():
                raise NotFoundError(self.label, f"playlist entry {raw}: no such file")
            return open(path, "rb")
        except UriNotAllowedError as exc:
            self.refused.append(exc)
            raise


def file_uri_path(uri: str, label: str) -> str:
    """The local path a ``file:`` URI names, percent-decoded (``file:///a%20b.mp4`` is ``/a b.mp4``), as RFC 8089
    reads it: an empty host or ``localhost``; any other host would be a network share, refused. The Kafka jobs and
    the API both read file URIs here, so a URI names the same file in either."""
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise UriNotAllowedError(label, f"malformed URI ({exc})") from None
    if parts.netloc.lower() not in ("", "localhost"):
        raise UriNotAllowedError(label, f"file URI with a host ({parts.netloc}) is not allowed")
    return unquote(parts.path)


def local_file(text: str) -> Path | None:
    """The local file an input string names (a path or a ``file:`` URI), or None for a URL or a refused URI: what
    ``resolve_source`` would open, for checks made before it runs (replay's outputs must not overwrite it)."""
    match = _URL.match(text)
    if match is None:
        return Path(text)
    if match["scheme"].lower() != "file":
        return None
    try:
        return Path(file_uri_path(text, text))
    except UriNotAllowedError:
        return None  # refused again, with its reason, when the input is opened


def resolve_source(src: VideoInput, settings: VideoSettings, name: str | None = None,
                   policy: InputPolicy | None = None) -> Source:
    """Vet ``src`` against the byte limit, the URL policy and ``policy``; raise VideoError before any decoder starts."""
    policy = policy or InputPolicy()
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        label = name or f"<{len(data)} bytes>"
        if not data:
            raise UndecodableVideoError(label, "input is empty (0 bytes)")
        if len(data) > settings.max_bytes:
            raise TooLargeError(label, f"{len(data)} bytes exceeds max_bytes={settings.max_bytes}")
        return Source(label=label, settings=settings, policy=policy, data=data)

    text = os.fspath(src)
    match = _URL.match(text) if isinstance(src, str) else None
    if match and match["scheme"].lower() != "file":
        if not settings.allow_urls:
            raise UriNotAllowedError(name or text, "URLs are disabled (settings.video.allow_urls is false)")
        return Source(label=name or text, settings=settings, policy=policy, url=policy.check_url(text, name or text))
    if match:  # file://
        text = file_uri_path(text, name or text)

    label = name or str(src)
    path = policy.check_path(text, label)
    if not path.exists():
        raise NotFoundError(label, "no such file")
    if not path.is_file():
        raise NotFoundError(label, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise UndecodableVideoError(label, "file is empty (0 bytes)")
    if size > settings.max_bytes:
        raise TooLargeError(label, f"{size} bytes exceeds max_bytes={settings.max_bytes}")
    return Source(label=label, settings=settings, policy=policy, path=path)
