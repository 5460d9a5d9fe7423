"""The URL rules (jobs/url_rules.py) as the workers' HTTP reader applies them on every request
(jobs/sources/http.py), against a real HTTP server on 127.0.0.1 started here (no other
network). This server has no ranges: each read is one download of the whole body."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from actors.errors import FramesiftError, SourceError, SourceGoneError, SourceTimeoutError
from jobs.redact import redact_url
from jobs.sources import SourceOptions
from jobs.sources.http import HttpSource
from jobs.url_rules import Allowlist, address_refusal

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64  # 16 KiB, an MP4-looking body


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    hits: list = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        path = self.path.split("?", 1)[0]
        Handler.hits.append((self.path, self.headers.get("Host")))
        route = Handler.routes.get(path)
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        route(self)

    def log_message(self, *args: object) -> None:
        pass


def _body(status: int, body: bytes, ctype: str | None, length: bool = True):
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        if length:
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        else:  # HTTP/1.0-style body: no length announced, ends when the connection closes
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body)
            h.close_connection = True
    return send


def _redirect(location: str, status: int = 302):
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return send


def _slow(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "video/mp4")
    h.send_header("Content-Length", str(10 * len(VIDEO)))
    h.end_headers()
    for _ in range(10):  # bounded: 10 x 0.5 s, far beyond the client's timeout
        try:
            h.wfile.write(VIDEO[:1024])
            h.wfile.flush()
        except OSError:
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    base = f"http://127.0.0.1:{port}"
    Handler.routes = {
        "/video.mp4": _body(200, VIDEO, "video/mp4"),
        "/octet.bin": _body(200, VIDEO, "application/octet-stream"),
        "/page.html": _body(200, b"<html>nope</html>", "text/html; charset=utf-8"),
        "/image.jpg": _body(200, b"\xff\xd8\xff", "image/jpeg"),
        "/big.mp4": _body(200, VIDEO * 8, "video/mp4"),
        "/big-unannounced.mp4": _body(200, VIDEO * 8, "video/mp4", length=False),
        "/to-video": _redirect("/video.mp4"),
        "/to-video-abs": _redirect(f"{base}/video.mp4", 301),
        "/to-private": _redirect("http://10.0.0.1/video.mp4"),
        "/to-metadata": _redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-metadata6": _redirect("http://[fd00:ec2::254]/latest/meta-data/"),
        "/to-file": _redirect("file:///etc/passwd"),
        "/loop": _redirect("/loop"),
        "/slow.mp4": _slow,
        "/server-error": _body(500, b"boom", "text/plain"),
    }
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    yield base
    httpd.shutdown()
    httpd.server_close()


LOOPBACK = "127.0.0.1:*"  # the test server listens on a free port, not 80/443


def _read(url, allowlist=LOOPBACK, **kw) -> bytes:
    """The whole body of ``url`` through a worker's reader (a ``SourceError`` if refused)."""
    kw.setdefault("max_bytes", 1 << 20)
    kw.setdefault("deadline_s", 10.0)
    options = SourceOptions(allowlist=allowlist if isinstance(allowlist, str) or allowlist is None
                            else ",".join(allowlist), **kw)
    with HttpSource(url, "v", options).open() as fh:
        return fh.read()


def test_reads_an_allow_listed_loopback_video(server):
    assert _read(f"{server}/video.mp4?sig=abc") == VIDEO
    # generic binary type (object stores' default) is accepted; probing proves it is a video
    assert _read(f"{server}/octet.bin") == VIDEO


def test_host_header_is_the_original_host_although_the_checked_address_is_dialled(server):
    port = server.rsplit(":", 1)[1]
    Handler.hits.clear()
    _read(f"http://localhost:{port}/video.mp4", allowlist=f"localhost:{port}")
    assert Handler.hits[-1][1] == f"localhost:{port}"


@pytest.mark.parametrize("allowlist", ["127.0.0.0/8:*", "10.0.0.0/8, 127.0.0.1:{port}",
                                       ["127.0.0.1:*"], "127.0.0.1/32:{port}"])
def test_allow_list_forms(server, allowlist):
    port = server.rsplit(":", 1)[1]
    allowlist = ([a.format(port=port) for a in allowlist] if isinstance(allowlist, list)
                 else allowlist.format(port=port))
    assert _read(f"{server}/video.mp4", allowlist=allowlist) == VIDEO


def test_allow_list_entries_are_port_scoped(server):
    """An entry without a port opens 80 and 443 only: allow-listing a media host must not open
    its other services, e.g. the API's own port reached through a redirect."""
    port = int(server.rsplit(":", 1)[1])
    for allowlist in ("127.0.0.1", "127.0.0.0/8", f"127.0.0.1:{port + 1}", "localhost"):
        with pytest.raises(SourceError, match=f"127.0.0.1:{port}") as info:
            _read(f"{server}/video.mp4", allowlist=allowlist)
        assert info.value.code == "url_blocked"
    with socket.socket() as other:  # another loopback service (say, this API)
        other.bind(("127.0.0.1", 0))
        other.listen()
        other_port = other.getsockname()[1]
        Handler.routes["/to-other-port"] = _redirect(f"http://127.0.0.1:{other_port}/v1/analyses")
        with pytest.raises(SourceError, match=f"127.0.0.1:{other_port}") as info:
            _read(f"{server}/to-other-port", allowlist=f"127.0.0.1:{port}")
        assert info.value.code == "url_blocked"
    assert _read(f"{server}/video.mp4", allowlist=f"127.0.0.1:{port}") == VIDEO


@pytest.mark.parametrize("entry, host, port, allowed", [
    ("media.internal", "media.internal", 443, True),
    ("media.internal", "media.internal", 8443, False),
    ("media.internal:8443", "media.internal", 8443, True),
    ("media.internal:8443", "media.internal", 443, False),
    (".example.com:*", "cdn.example.com", 9000, True),
])
def test_host_entries_and_ports(entry, host, port, allowed):
    assert Allowlist.parse(entry).allows_host(host, port) is allowed


@pytest.mark.parametrize("entry, addr, port, allowed", [
    ("[::1]:8080", "::1", 8080, True), ("[::1]:8080", "::1", 80, False),
    ("fd00::/8", "fd00::5", 443, True), ("fd00::/8", "fd00::5", 8080, False),
    ("[fd00::/8]:*", "fd00::5", 8080, True), ("10.0.0.0/8:*", "10.9.9.9", 1, True),
])
def test_address_entries_and_ports(entry, addr, port, allowed):
    assert Allowlist.parse(entry).allows_address(ipaddress.ip_address(addr), port) is allowed


@pytest.mark.parametrize("allowlist", [None, "", "10.0.0.0/8", "media.example.com"])
def test_loopback_is_refused_unless_allow_listed(server, allowlist):
    Handler.hits.clear()
    with pytest.raises(SourceError) as info:
        _read(f"{server}/video.mp4?token=s3cret", allowlist=allowlist)
    assert info.value.code == "url_blocked"
    assert isinstance(info.value, FramesiftError)
    assert "loopback" in str(info.value) and "FRAMESIFT_URL_ALLOWLIST" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert Handler.hits == []  # refused before any connection


def test_localhost_name_is_refused_like_its_address(server):
    port = server.rsplit(":", 1)[1]
    with pytest.raises(SourceError) as info:
        _read(f"http://localhost:{port}/video.mp4", allowlist=None)
    assert info.value.code == "url_blocked"


@pytest.mark.parametrize("route, where", [("/to-private", "private"),
                                          ("/to-metadata", "metadata"),
                                          ("/to-metadata6", "metadata")])
def test_redirect_to_a_private_or_metadata_address_is_refused(server, route, where):
    with pytest.raises(SourceError) as info:
        _read(f"{server}{route}")
    assert info.value.code == "url_blocked" and where in str(info.value)


def test_metadata_address_needs_an_exact_allow_list_entry():
    wide = Allowlist.parse("169.254.0.0/16")
    exact = Allowlist.parse("169.254.169.254")
    md = ipaddress.ip_address("169.254.169.254")
    assert not wide.allows_address(md, 80) and exact.allows_address(md, 80)
    assert wide.allows_address(ipaddress.ip_address("169.254.1.1"), 80)


def test_relative_and_absolute_redirects_are_followed(server):
    assert _read(f"{server}/to-video") == VIDEO
    assert _read(f"{server}/to-video-abs") == VIDEO


def test_redirects_are_bounded(server):
    Handler.hits.clear()
    with pytest.raises(SourceError) as info:
        _read(f"{server}/loop")
    assert info.value.code == "too_many_redirects"
    assert len(Handler.hits) == 6  # the first request and five redirects followed


@pytest.mark.parametrize("route", ["/big.mp4", "/big-unannounced.mp4"])
def test_size_cap(server, route):
    with pytest.raises(SourceError) as info:
        _read(f"{server}{route}", max_bytes=len(VIDEO) * 2)
    assert info.value.code == "download_too_large"
    assert "FRAMESIFT_DOWNLOAD_MAX_BYTES" in str(info.value)
    assert len(_read(f"{server}{route}", max_bytes=len(VIDEO) * 8)) == len(VIDEO) * 8


@pytest.mark.parametrize("route, ctype", [("/page.html", "text/html"), ("/image.jpg", "image/jpeg")])
def test_non_video_content_type_is_refused(server, route, ctype):
    with pytest.raises(SourceError) as info:
        _read(f"{server}{route}")
    assert info.value.code == "not_video_content" and ctype in str(info.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/v.mp4",
                                 "gopher://127.0.0.1:70/", "127.0.0.1/video.mp4",
                                 "http:///video.mp4"])
def test_bad_scheme_or_url_is_refused(url):
    with pytest.raises(SourceError) as info:
        _read(url)
    assert info.value.code == "url_scheme_not_allowed"


def test_redirect_to_a_file_url_is_refused(server):
    with pytest.raises(SourceError) as info:
        _read(f"{server}/to-file")
    assert info.value.code == "url_scheme_not_allowed"


def test_http_errors_and_timeouts_are_typed(server):
    with pytest.raises(SourceGoneError) as info:
        _read(f"{server}/missing.mp4")
    assert "404" in str(info.value) and info.value.code == "source_gone"
    with pytest.raises(SourceError, match="500"):
        _read(f"{server}/server-error")
    t = time.monotonic()
    with pytest.raises(SourceTimeoutError, match="longer than 0.8 s"):
        _read(f"{server}/slow.mp4", deadline_s=0.8)
    assert time.monotonic() - t < 3  # the deadline holds while the body trickles in


def test_logs_and_errors_never_show_credentials_or_query(server, caplog):
    port = server.rsplit(":", 1)[1]
    caplog.set_level(logging.DEBUG, logger="jobs.sources.http")
    url = f"http://alice:hunter2@127.0.0.1:{port}/video.mp4?X-Amz-Signature=s3cret#frag"
    source = HttpSource(url, redact_url(url), SourceOptions(allowlist=LOOPBACK))
    with source.open() as fh:
        assert fh.read() == VIDEO
    with pytest.raises(SourceError) as info:
        bad = url.replace("/video.mp4", "/page.html")
        HttpSource(bad, redact_url(bad), SourceOptions(allowlist=LOOPBACK)).open()
    text = caplog.text + str(info.value) + repr(source)
    assert "127.0.0.1" in caplog.text
    for secret in ("alice", "hunter2", "s3cret", "frag"):
        assert secret not in text


@pytest.mark.parametrize("addr, refused", [
    ("8.8.8.8", False), ("2606:4700:4700::1111", False),
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("fd00:ec2::254", True), ("::1", True), ("fe80::1", True),
    ("224.0.0.1", True), ("0.0.0.0", True), ("240.0.0.1", True), ("100.64.0.1", True),
    ("::ffff:127.0.0.1", True), ("::ffff:8.8.8.8", False),
    ("2002:a00:1::1", True), ("2002:808:808::1", True),  # 6to4 (embeds 10.0.0.1 / 8.8.8.8)
    ("fec0::1", True),  # site-local
])
def test_address_classification(addr, refused):
    assert (address_refusal(ipaddress.ip_address(addr)) is not None) is refused


@pytest.mark.parametrize("entry", ["exa mple.com", "media.internal:0", "media.internal:http",
                                   "[::1", "[::1]8080"])
def test_bad_allow_list_entry_is_rejected(entry):
    with pytest.raises(ValueError, match="allow-list entry"):
        Allowlist.parse(entry)
