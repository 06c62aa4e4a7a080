"""The input boundary (stream_iqa/video/source.py, fetch.py) against inputs that try to leave it.

Most cases are escapes the old boundary let through (``av.open(target)`` with no allow-lists, URLs read by FFmpeg's
own http client): a concat list or HLS playlist making FFmpeg open files it was never given, a redirect or playlist
entry reaching a host not allowed, a silent or dripping server holding a worker forever, a body past the byte limit;
the rest pin the contract code of plain failures (404, refused connection, scheme) and of bugs found here (marked
"Was …"). Where FFmpeg alone would have decoded the input, the test first checks that it still does
(``_ffmpeg_alone``), so a pass means the boundary refused it, not that the input was broken.

Only 127.0.0.1 servers are used (``localhost`` stands for the host that is *not* allowed: the same server under a
name not in ``allowed_hosts``, so a request that escaped would be counted); every wait is bounded.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import pytest

from stream_iqa.deadline import Cancelled, Deadline
from stream_iqa.settings import REPO_ROOT, VideoSettings
from stream_iqa.video import InputPolicy, VideoError, open_video

HOST = "127.0.0.1"
HLS = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\n{}\n#EXT-X-ENDLIST\n"


# --------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1 s mp4 (10 frames), a 1 s MPEG-TS segment (10 frames) and a 4 s MPEG-TS clip (40 frames)."""
    from stream_iqa.synthesis.clips import ClipSpec, build_clip, pan_frame, photo, write_clip

    d = tmp_path_factory.mktemp("media")
    img = photo("coffee")
    return {
        "mp4": build_clip(ClipSpec(scenes=["coffee"], scene_s=1.0), d / "x.mp4"),
        "ts": write_clip([pan_frame(img, i / 9, (160, 120)) for i in range(10)], d / "seg.ts", fps=10,
                         codec="mpeg2video"),
        "long": write_clip([pan_frame(img, i / 39, (160, 120)) for i in range(40)], d / "long.ts", fps=10,
                           codec="mpeg2video"),
    }


def _frames(src, settings: VideoSettings | None = None, policy: InputPolicy | None = None,
            deadline: Deadline | None = None) -> list:
    with open_video(src, settings or VideoSettings(), policy=policy, deadline=deadline) as clip:
        return list(clip.frames())


def _error(src, settings: VideoSettings | None = None, policy: InputPolicy | None = None,
           deadline: Deadline | None = None) -> VideoError:
    """The VideoError that opening-and-decoding ``src`` raises (the test fails if frames come out instead)."""
    with pytest.raises(VideoError) as info:
        frames = _frames(src, settings, policy, deadline)
        pytest.fail(f"{len(frames)} frames decoded from an input that must be refused")
    return info.value


def _ffmpeg_alone(target: str | bytes) -> int:
    """Frames that a bare ``av.open`` (the old boundary) decodes from ``target``: the escape is real."""
    with av.open(io.BytesIO(target) if isinstance(target, bytes) else target) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture
def root(tmp_path: Path, media: dict[str, Path]) -> Path:
    """An allowed root holding in.mp4 and seg.ts, beside outside/ (x.mp4, seg.ts) that it must not reach."""
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    for where in ("root", "outside"):
        (tmp_path / where / "seg.ts").write_bytes(media["ts"].read_bytes())
    (tmp_path / "root" / "in.mp4").write_bytes(media["mp4"].read_bytes())
    (tmp_path / "outside" / "x.mp4").write_bytes(media["mp4"].read_bytes())
    return tmp_path / "root"


# --------------------------------------------------------------------------------------------------- 1. concat


def test_concat_list_as_bytes_is_refused(tmp_path: Path, media, monkeypatch):
    """Bytes that are an ffconcat list would make FFmpeg open x.mp4 from the worker's working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.mp4").write_bytes(media["mp4"].read_bytes())
    data = b"ffconcat version 1.0\nfile x.mp4\n"
    assert _ffmpeg_alone(data) == 10
    assert _error(data).code == "undecodable_video"
    assert _error(data, policy=InputPolicy.restricted([tmp_path], [])).code == "undecodable_video"


@pytest.mark.parametrize("entry", ["link.mp4", "in.mp4"], ids=["symlink-outside", "inside"])
def test_concat_list_file_is_refused(root: Path, entry: str):
    """An .ffconcat inside the root, naming a file outside (by a symlink: concat's safe mode stops absolute and
    '..' paths, not links) or inside: concat opens entries without the vetting hook, so lists are never accepted."""
    (root / "link.mp4").symlink_to(root.parent / "outside" / "x.mp4")
    lst = root / "list.ffconcat"
    lst.write_text(f"ffconcat version 1.0\nfile {entry}\n")
    assert _ffmpeg_alone(str(lst)) == 10
    policy = InputPolicy.restricted([root], [])
    assert _error(lst, policy=policy).code == "undecodable_video"
    assert _error(lst, VideoSettings(allow_playlists=True), policy=policy).code == "undecodable_video"


# --------------------------------------------------------------------------------------------------- 2. HLS files


def test_playlist_refused_unless_allowed(root: Path):
    playlist = root / "p.m3u8"
    playlist.write_text(HLS.format("seg.ts"))
    assert _ffmpeg_alone(str(playlist)) == 10
    assert _error(playlist, policy=InputPolicy.restricted([root], [])).code == "undecodable_video"


def test_playlist_inside_root_decodes_when_allowed(root: Path):
    playlist = root / "p.m3u8"
    playlist.write_text(HLS.format("seg.ts"))
    frames = _frames(playlist, VideoSettings(allow_playlists=True, sampling="every_n", every_n=1),
                     policy=InputPolicy.restricted([root], []))
    assert len(frames) == 10


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "file-url", "symlink"])
def test_playlist_segment_outside_root_is_refused(root: Path, kind: str):
    outside = root.parent / "outside" / "seg.ts"
    (root / "link.ts").symlink_to(outside)
    entry = {"absolute": str(outside), "dotdot": "../outside/seg.ts", "file-url": f"file://{outside}",
             "symlink": "link.ts"}[kind]
    playlist = root / "p.m3u8"
    playlist.write_text(HLS.format(entry))
    assert _ffmpeg_alone(str(playlist)) == 10
    err = _error(playlist, VideoSettings(allow_playlists=True), policy=InputPolicy.restricted([root], []))
    assert err.code == "uri_not_allowed", err


def test_playlist_entry_that_is_a_url_needs_allow_urls(root: Path):
    """A local playlist naming an http segment: refused while video.allow_urls is off (nothing is connected to)."""
    playlist = root / "p.m3u8"
    playlist.write_text(HLS.format("http://127.0.0.1:9/seg.ts"))
    err = _error(playlist, VideoSettings(allow_playlists=True), policy=InputPolicy.restricted([root], [HOST]))
    assert err.code == "uri_not_allowed", err


# --------------------------------------------------------------------------------------------------- 3. URLs


class _Server:
    """A 127.0.0.1 HTTP server with the routes the URL tests need, counting the requests for each path."""

    def __init__(self, media: dict[str, Path], protocol: str = "HTTP/1.0") -> None:
        self.protocol = protocol
        self.mp4 = media["mp4"].read_bytes()
        self.ts = media["ts"].read_bytes()
        self.hits: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((HOST, 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = HOST) -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = server.protocol

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: bytes, length: bool = True, ctype: str = "application/octet-stream") -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True  # the body ends when the server closes
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, to: str, status: int = 302) -> None:
                self.send_response(status)
                self.send_header("Location", to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _drip(self, data: bytes) -> None:
                self.close_connection = True
                for i in range(len(data)):
                    if server.stop.wait(0.3):
                        return
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                with server.lock:
                    server.hits[parts.path] += 1
                try:
                    self._route(parts.path, parse_qs(parts.query))
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _route(self, path: str, query: dict[str, list[str]]) -> None:
                if path in ("/clip.mp4", "/caf%C3%A9.mp4", "/a%20b.mp4"):
                    self._send(server.mp4)
                elif path == "/nolength.mp4":
                    self._send(server.mp4, length=False)
                elif path == "/chunked.mp4":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(server.mp4), 4096):
                        chunk = server.mp4[i : i + 4096]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                elif path == "/seg.ts":
                    self._send(server.ts)
                elif path == "/redirect":
                    self._redirect(query["to"][0], int(query.get("status", ["302"])[0]))
                elif path == "/loop":
                    self._redirect("/loop")
                elif path == "/playlist.m3u8":  # one segment per ?seg=
                    entries = "\n#EXTINF:1.0,\n".join(query["seg"])
                    self._send(HLS.format(entries).encode(), ctype="application/vnd.apple.mpegurl")
                elif path in ("/drip-body", "/drip.ts"):
                    self.send_response(200)
                    self.end_headers()
                    self._drip(b"\0" * 100_000)
                elif path == "/drip-head":  # the status line and headers themselves, one byte at a time
                    self._drip(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 100_000)
                else:
                    self.send_error(404)

        return Handler


@pytest.fixture(params=["HTTP/1.0", "HTTP/1.1"])
def server(media, request) -> Iterator[_Server]:
    """HTTP/1.0 (the server closes after each answer, so http.client drops ``conn.sock`` before the body is read)
    and HTTP/1.1 (keep-alive: the body ends by its length, or by chunked encoding)."""
    s = _Server(media, request.param)
    yield s
    s.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


URLS = VideoSettings(allow_urls=True, sampling="every_n", every_n=1)
HLS_URLS = URLS.model_copy(update={"allow_playlists": True})
ONLY_LOOPBACK = InputPolicy.restricted([], [HOST])


def test_url_served_by_allowed_host_decodes(server: _Server):
    """Was an AttributeError on every HTTP/1.0 or "Connection: close" answer (``conn.sock`` is None by then)."""
    paths = ["/clip.mp4", "/nolength.mp4", *(["/chunked.mp4"] if server.protocol == "HTTP/1.1" else [])]
    for path in paths:
        assert len(_frames(server.url(path), URLS, ONLY_LOOPBACK)) == 10, path
    assert server.hits == Counter({path: 1 for path in paths})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_host_not_allowed_is_not_followed(server: _Server, status: int):
    """The same server as 'localhost': if the redirect were followed, /clip.mp4 would be counted."""
    url = server.url(f"/redirect?status={status}&to={server.url('/clip.mp4', host='localhost')}")
    err = _error(url, URLS, ONLY_LOOPBACK)
    assert err.code == "uri_not_allowed", err
    assert "localhost" in err.message
    assert server.hits == Counter({"/redirect": 1})


@pytest.mark.parametrize("to", ["file:///etc/passwd", "ftp://127.0.0.1/clip.mp4", "gopher://127.0.0.1:70/_x",
                                "http://127.0.0.1:99999/clip.mp4"])
def test_redirect_to_other_scheme_or_malformed_url_is_refused(server: _Server, to: str):
    err = _error(server.url(f"/redirect?to={to}"), URLS, ONLY_LOOPBACK)
    assert err.code == "uri_not_allowed", err
    assert server.hits == Counter({"/redirect": 1})


@pytest.mark.parametrize("to", ["/clip.mp4", "ABS"], ids=["relative", "absolute"])
def test_redirect_within_allowed_host_is_followed(server: _Server, to: str):
    to = server.url("/clip.mp4") if to == "ABS" else to
    assert len(_frames(server.url(f"/redirect?to={to}"), URLS, ONLY_LOOPBACK)) == 10
    assert server.hits == Counter({"/redirect": 1, "/clip.mp4": 1})


def test_redirect_loop_ends(server: _Server):
    err = _error(server.url("/loop"), URLS, ONLY_LOOPBACK)
    assert err.code == "uri_not_allowed", err
    assert server.hits == Counter({"/loop": 6})  # the first request and 5 redirects


@pytest.mark.parametrize("path, sent", [("/caf\u00e9.mp4", "/caf%C3%A9.mp4"), ("/a b.mp4", "/a%20b.mp4"),
                                        ("/a%20b.mp4", "/a%20b.mp4"), ("/redirect?to=/caf\u00e9.mp4", "/caf%C3%A9.mp4")],
                         ids=["non-ascii", "space", "already-escaped", "non-ascii-redirect"])
def test_url_as_a_person_writes_it_is_sent_percent_encoded(server: _Server, path: str, sent: str):
    """A non-ASCII path, in the job or in a redirect's Location, was answered 'internal' (http.client's
    UnicodeEncodeError), which the contract keeps for our own bugs; a space was 'not_found'."""
    assert len(_frames(server.url(path), URLS, ONLY_LOOPBACK)) == 10
    assert server.hits[sent] == 1


def test_request_target_keeps_a_urls_own_escapes():
    from stream_iqa.video.fetch import request_target

    assert request_target("http://h/a%2Fb/c\u00e9 d.mp4?x=%2F&y=\u00e9&z=a b#frag") == \
        "/a%2Fb/c%C3%A9%20d.mp4?x=%2F&y=%C3%A9&z=a%20b"
    assert request_target("http://h") == "/"


def test_http_404_is_not_found(server: _Server):
    assert _error(server.url("/missing.mp4"), URLS, ONLY_LOOPBACK).code == "not_found"


def test_connection_refused_is_not_found():
    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    assert _error(f"http://{HOST}:{port}/clip.mp4", URLS, ONLY_LOOPBACK).code == "not_found"


def test_host_not_allowed_is_refused_before_connecting(server: _Server):
    err = _error(server.url("/clip.mp4", host="localhost"), URLS, ONLY_LOOPBACK)
    assert err.code == "uri_not_allowed"
    assert not server.hits


@pytest.mark.parametrize("url", ["gopher://127.0.0.1:70/_GET", "ftp://127.0.0.1/clip.mp4", "file+http://x/y"])
def test_other_schemes_are_refused(url: str):
    assert _error(url, URLS, ONLY_LOOPBACK).code == "uri_not_allowed"


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/clip.mp4", "http://127.0.0.1:x/clip.mp4", "http://[::1/a"])
def test_malformed_url_is_refused(url: str):
    """Was a bare ValueError from urlsplit (not a VideoError, so no contract code)."""
    assert _error(url, URLS, ONLY_LOOPBACK).code == "uri_not_allowed"
    assert _error(url, URLS).code == "uri_not_allowed"  # replay: no host list, the URL is still checked


def test_silent_server_times_out(silent_port: int):
    t0 = time.monotonic()
    err = _error(f"http://{HOST}:{silent_port}/clip.mp4", URLS.model_copy(update={"read_timeout_s": 1.0}),
                 ONLY_LOOPBACK)
    assert err.code == "timeout", err
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("path", ["/drip-body", "/drip-head"])
def test_dripping_server_ends_at_the_clip_deadline(server: _Server, path: str):
    """One byte every 0.3 s never trips the read timeout; the clip's Deadline still ends the fetch. The head
    (status line, headers) was not bounded at all: http.client reads it line by line, up to 100 × 64 KiB."""
    t0 = time.monotonic()
    err = _error(server.url(path), URLS, ONLY_LOOPBACK, deadline=Deadline(2.0))
    elapsed = time.monotonic() - t0
    assert err.code == "timeout", err
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("path", ["/clip.mp4", "/nolength.mp4"], ids=["content-length", "no-length"])
def test_body_over_max_bytes_is_too_large(server: _Server, path: str):
    limit = len(server.mp4) - 1
    err = _error(server.url(path), URLS.model_copy(update={"max_bytes": limit}), ONLY_LOOPBACK)
    assert err.code == "too_large", err


def test_http_playlist_with_allowed_segments_decodes(server: _Server):
    for seg in ("seg.ts", server.url("/seg.ts")):
        assert len(_frames(server.url(f"/playlist.m3u8?seg={seg}"), HLS_URLS, ONLY_LOOPBACK)) == 10
    assert server.hits == Counter({"/playlist.m3u8": 2, "/seg.ts": 2})


def _isolated(url: str) -> str:
    """'frames N' or 'error CODE' from decoding ``url`` (HLS_URLS, ONLY_LOOPBACK) in a child process, so that an
    abort() inside FFmpeg fails one test instead of killing the test run."""
    code = (
        "from stream_iqa.settings import VideoSettings\n"
        "from stream_iqa.video import InputPolicy, VideoError, open_video\n"
        "s = VideoSettings(allow_urls=True, allow_playlists=True, sampling='every_n', every_n=1)\n"
        "try:\n"
        f"    with open_video({url!r}, s, policy=InputPolicy.restricted([], [{HOST!r}])) as clip:\n"
        "        print('frames', len(list(clip.frames())))\n"
        "except VideoError as exc:\n"
        "    print('error', exc.code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    return " ".join(proc.stdout.split()[-2:])


def test_http_playlist_of_several_segments_does_not_abort_the_process(server: _Server):
    """FFmpeg's hls demuxer reuses the previous segment's http connection (http_persistent) after asserting that
    the open file is its own http one; with ours (read by the hook) it called abort(), ending the worker."""
    assert _isolated(server.url("/playlist.m3u8?seg=seg.ts&seg=/seg.ts&seg=" + server.url("/seg.ts"))) == "frames 30"
    assert server.hits == Counter({"/playlist.m3u8": 1, "/seg.ts": 3})


def test_http_playlist_segment_on_host_not_allowed_is_never_requested(server: _Server):
    seg = server.url("/seg.ts", host="localhost")
    err = _error(server.url(f"/playlist.m3u8?seg={seg}"), HLS_URLS, ONLY_LOOPBACK)
    assert err.code == "uri_not_allowed", err
    assert server.hits == Counter({"/playlist.m3u8": 1})


def test_http_playlist_later_segment_on_host_not_allowed_is_refused(server: _Server):
    url = server.url("/playlist.m3u8?seg=seg.ts&seg=" + server.url("/other.ts", host="localhost"))
    assert _isolated(url) == "error uri_not_allowed"
    assert server.hits == Counter({"/playlist.m3u8": 1, "/seg.ts": 1})


def test_http_playlist_refused_unless_allowed(server: _Server):
    err = _error(server.url(f"/playlist.m3u8?seg={server.url('/seg.ts')}"), URLS, ONLY_LOOPBACK)
    assert err.code == "undecodable_video", err
    assert server.hits == Counter({"/playlist.m3u8": 1})


def test_http_playlist_naming_a_local_file_is_refused(server: _Server, root: Path):
    """A URL job's playlist may not reach local files (no allowed roots here)."""
    err = _error(server.url(f"/playlist.m3u8?seg=file://{root / 'seg.ts'}"), HLS_URLS, ONLY_LOOPBACK)
    assert err.code == "uri_not_allowed", err


def test_http_playlist_dripping_segment_ends_at_the_clip_deadline(server: _Server):
    t0 = time.monotonic()
    err = _error(server.url("/playlist.m3u8?seg=/drip.ts"), HLS_URLS, ONLY_LOOPBACK, deadline=Deadline(2.0))
    assert err.code == "timeout", err
    assert time.monotonic() - t0 < 5
    assert server.hits == Counter({"/playlist.m3u8": 1, "/drip.ts": 1})


# --------------------------------------------------------------------------------------------------- 4. cancel


def test_cancel_stops_decoding_with_cancelled(media):
    cancel = threading.Event()
    seen = []
    with pytest.raises(Cancelled):
        with open_video(media["long"], VideoSettings(sampling="every_n", every_n=1),
                        deadline=Deadline(None, cancel)) as clip:
            for frame in clip.frames():
                seen.append(frame.index)
                cancel.set()
    assert seen == [0], seen  # the decoder checks before each packet; one packet decodes to at most one frame here


@pytest.mark.parametrize("path", ["/drip-body", "/drip-head", "/playlist.m3u8?seg=/drip.ts"])
def test_cancel_during_fetch_is_cancelled_not_a_video_error(server: _Server, path: str):
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            _frames(server.url(path), HLS_URLS, ONLY_LOOPBACK, deadline=Deadline(10.0, cancel))
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 5
