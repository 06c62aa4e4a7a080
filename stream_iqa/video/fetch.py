"""http(s) inputs, fetched by us rather than by FFmpeg, so that a URL job cannot leave the hosts it was allowed.

FFmpeg's http client follows redirects to any host, opens HLS segments wherever a playlist points and waits as long
as a silent server keeps the socket open. Here every hop is vetted by the :class:`InputPolicy` (a redirect to a host
not allowed is refused, not followed), connecting and each read have their own timeouts, the whole fetch is bounded
by the clip's :class:`Deadline` (a server that drips one byte every few seconds still ends), and the body is capped
at ``video.max_bytes``. The body lands in a spooled temporary file (memory up to 32 MiB, then disk) that FFmpeg
reads like a local file, with seeking, which mp4's index at the end needs.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import ssl
import tempfile
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote, urljoin, urlsplit

from .errors import ClipTimeoutError, NotFoundError, TooLargeError, UriNotAllowedError
from stream_iqa.deadline import Deadline
from stream_iqa.settings import VideoSettings

if TYPE_CHECKING:
    from .source import InputPolicy

MAX_REDIRECTS = 5
#: what may stay as it is in a request's path and query (RFC 3986 unreserved, sub-delims, ":@/?" and "%" so that a
#: URL's own escapes are kept); anything else, non-ASCII above all, goes out as UTF-8 percent-escapes, as browsers send
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def request_target(url: str) -> str:
    """The path and query to send for ``url``. Written as a person or a redirect wrote it (``/café.mp4``, a space),
    not as HTTP needs it: http.client refuses non-ASCII with a UnicodeEncodeError, and a space or control character
    would split the request line."""
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    return path + (f"?{quote(parts.query, safe=_QUERY_SAFE)}" if parts.query else "")
_CHUNK = 256 * 1024
_SPOOL = 32 * 1024**2


def fetch(url: str, policy: InputPolicy, settings: VideoSettings, deadline: Deadline, label: str) -> BinaryIO:
    """GET ``url`` (redirects vetted) into a seekable file positioned at 0; raises VideoError on every failure."""
    for _ in range(MAX_REDIRECTS + 1):
        policy.check_url(url, label)
        deadline.check()
        conn = _connection(url, settings, deadline, label)
        conn.response_class = functools.partial(_BoundedResponse, deadline=deadline,  # type: ignore[assignment]
                                                read_timeout_s=settings.read_timeout_s)
        try:
            parts = urlsplit(url)
            try:
                conn.request("GET", request_target(url),
                             headers={"User-Agent": "stream-iqa", "Accept-Encoding": "identity"})
                resp = conn.getresponse()
            except (TimeoutError, socket.timeout):
                raise _silent(url, settings, deadline, label) from None
            except (OSError, http.client.HTTPException, UnicodeError) as exc:
                raise NotFoundError(label, f"request to {parts.hostname} failed ({exc})") from None
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                if not location:
                    raise NotFoundError(label, f"{url} answered {resp.status} without a Location")
                url = urljoin(url, location)  # vetted at the top of the next round
                continue
            if resp.status != 200:
                raise NotFoundError(label, f"{url} answered HTTP {resp.status} {resp.reason}")
            return _read_body(resp, url, settings, deadline, label)
        finally:
            conn.close()
    raise UriNotAllowedError(label, f"more than {MAX_REDIRECTS} redirects")


def _connection(url: str, settings: VideoSettings, deadline: Deadline, label: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    host = parts.hostname or ""
    timeout = deadline.remaining(settings.connect_timeout_s)
    conn: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    try:
        conn.connect()
    except (TimeoutError, socket.timeout):
        deadline.check()
        raise ClipTimeoutError(label, f"no connection to {host} within {timeout:g} s (video.connect_timeout_s)") from None
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA cannot encode
        raise NotFoundError(label, f"cannot connect to {host} ({getattr(exc, 'strerror', None) or exc})") from None
    return conn


def _read_body(resp: http.client.HTTPResponse, url: str, settings: VideoSettings,
               deadline: Deadline, label: str) -> BinaryIO:
    declared = resp.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > settings.max_bytes:
        raise TooLargeError(label, f"{declared} bytes exceeds max_bytes={settings.max_bytes}")
    body = tempfile.SpooledTemporaryFile(max_size=_SPOOL)
    size = 0
    try:
        while True:
            deadline.check()
            try:
                chunk = resp.read1(_CHUNK)
            except (TimeoutError, socket.timeout):
                raise _silent(url, settings, deadline, label) from None
            except (OSError, http.client.HTTPException) as exc:
                raise NotFoundError(label, f"reading the response failed ({exc})") from None
            if not chunk:
                break
            size += len(chunk)
            if size > settings.max_bytes:
                raise TooLargeError(label, f"more than max_bytes={settings.max_bytes} bytes")
            body.write(chunk)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body  # type: ignore[return-value]


class _BoundedResponse(http.client.HTTPResponse):
    """A response whose every receive, status line and headers included, first checks the clip deadline and then
    waits at most ``min(read_timeout_s, time left)``: http.client reads the head line by line (up to 100 lines of
    64 KiB), so a server dripping it one byte at a time would otherwise hold the fetch for hours."""

    def __init__(self, sock: socket.socket, *args: object, deadline: Deadline, read_timeout_s: float,
                 **kwargs: object) -> None:
        super().__init__(sock, *args, **kwargs)  # type: ignore[arg-type]
        self.fp = io.BufferedReader(_BoundedReader(self.fp.detach(), sock, deadline, read_timeout_s))


class _BoundedReader(io.RawIOBase):
    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: Deadline, read_timeout_s: float) -> None:
        self._raw, self._sock, self._deadline, self._read_timeout_s = raw, sock, deadline, read_timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int | None:  # type: ignore[override]
        self._deadline.check()
        # the socket object outlives conn.close() (an HTTP/1.0 or "Connection: close" answer) while this file is open
        self._sock.settimeout(self._deadline.remaining(self._read_timeout_s))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _silent(url: str, settings: VideoSettings, deadline: Deadline, label: str) -> Exception:
    """A read timed out: the clip deadline if that is what ran out, else the server's silence."""
    try:
        deadline.check()
    except Exception as exc:  # noqa: BLE001 - Cancelled or ClipTimeoutError, whichever applies
        return exc
    return ClipTimeoutError(label, f"{url} sent nothing for {settings.read_timeout_s:g} s (video.read_timeout_s)")
