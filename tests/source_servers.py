"""Loopback servers that videos are read from in tests: HTTP with and without Range support
(and servers that lie, vanish, hang or change), and an S3 API (moto's server mode).

``RangeServer`` serves files of one folder under ``/<mode>/<name>``:

- ``r``       honest: ``Accept-Ranges``, ``206`` with ``Content-Range``, a strong ``ETag``,
              ``If-Range`` honoured (a stale validator gets the whole object with ``200``)
- ``n``       no range support: ``200`` with the whole body, always
- ``shift``   honest for ``after`` requests, then ranges starting past 0 come back with a
              ``Content-Range`` one byte off
- ``vanish``  honest for ``after`` requests to that path, then ``404``
- ``hang``    honest for ``after`` requests, then no answer for ``hang_s`` seconds
- ``change``  honest for ``after`` requests, then the object has a new ETag and size
- ``text``    honest, but ``Content-Type: text/plain``
- ``redir``   ``302`` to ``/r/<name>``; ``redir-meta`` ``302`` to the cloud metadata address
- ``slow``    honest, each answer delayed by ``slow_s`` (a stalled but living source)

Every request is counted (``stats(path)``: requests, body bytes, ranges asked).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PathStats:
    requests: int = 0
    bytes: int = 0
    ranges: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)  # Authorization headers received


class RangeServer:
    def __init__(self, root: Path, *, after: int = 3, hang_s: float = 30.0,
                 slow_s: float = 0.0) -> None:
        self.root = Path(root)
        self.after = after
        self.hang_s = hang_s
        self.slow_s = slow_s
        self.basic: str | None = None  # mode "auth": the Authorization it requires
        self.redirect_to: str | None = None  # mode "redir-to": the origin it redirects to
        self._stats: dict[str, PathStats] = defaultdict(PathStats)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self)

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client that gave up on a hanging answer is expected here

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, mode: str, name: str) -> str:
        return f"{self.base}/{mode}/{name}"

    def start(self) -> "RangeServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def stats(self, mode: str, name: str) -> PathStats:
        with self._lock:
            return self._stats[f"/{mode}/{name}"]

    def reset(self) -> None:
        with self._lock:
            self._stats.clear()

    # -- serving ----------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        parts = path.strip("/").split("/", 1)
        if len(parts) != 2:
            return self._send(h, 404, b"no such route", {})
        mode, name = parts
        rng = h.headers.get("Range")
        with self._lock:
            st = self._stats[path]
            st.requests += 1
            st.ranges.append(rng or "")
            st.auth.append(h.headers.get("Authorization") or "")
            n = st.requests
        # the bytes of this answer count where its request did: a request still answering
        # when the stats are reset (a read-ahead of an earlier test) counts in the old ones
        h.stats_entry = st  # type: ignore[attr-defined]
        if self.slow_s:
            time.sleep(self.slow_s)
        if mode == "redir":
            return self._send(h, 302, b"", {"Location": f"/r/{name}"}, path)
        if mode == "redir-to":
            return self._send(h, 302, b"", {"Location": f"{self.redirect_to}/r/{name}"}, path)
        if mode == "auth" and h.headers.get("Authorization") != self.basic:
            return self._send(h, 401, b"who are you", {"WWW-Authenticate": 'Basic realm="v"'},
                              path)
        if mode == "redir-meta":
            return self._send(h, 302, b"", {"Location": "http://169.254.169.254/latest/v.mp4"}, path)
        file = self.root / os.path.basename(name)
        if mode == "vanish" and n > self.after:
            return self._send(h, 404, b"gone", {}, path)
        if mode == "hang" and n > self.after:
            time.sleep(self.hang_s)
            return self._send(h, 503, b"late", {}, path)
        if not file.is_file():
            return self._send(h, 404, b"no such object", {}, path)
        data = file.read_bytes()
        if mode == "change" and n > self.after:
            data = data + b"\0" * 1024  # replaced by a longer object with a new ETag
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        ctype = "text/plain" if mode == "text" else "video/mp4"
        headers = {"Content-Type": ctype, "ETag": etag}
        if mode == "n":
            return self._send(h, 200, data, headers, path)
        headers["Accept-Ranges"] = "bytes"
        if_range = h.headers.get("If-Range")
        m = _RANGE.match(rng or "")
        if not m or (if_range and if_range != etag):
            return self._send(h, 200, data, headers, path)
        size = len(data)
        a, b = m.groups()
        start = int(a) if a else max(0, size - int(b))
        end = min(int(b), size - 1) if (a and b) else size - 1
        if start >= size:
            return self._send(h, 416, b"", {"Content-Range": f"bytes */{size}"}, path)
        body = data[start:end + 1]
        shifted = mode == "shift" and n > self.after and start > 0
        shown = (start + 1, end + 1) if shifted else (start, end)
        headers["Content-Range"] = f"bytes {shown[0]}-{shown[1]}/{size}"
        return self._send(h, 206, body, headers, path)

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str], path: str | None = None) -> None:
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return
        entry = getattr(h, "stats_entry", None)
        if path is not None and entry is not None:
            with self._lock:
                entry.bytes += len(body)


class MotoS3:
    """moto's S3 server mode in a subprocess on a free loopback port."""

    KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        # moto logs every request: to a file, never to an unread pipe (a full pipe blocks the
        # server, and every client after it waits for its timeouts)
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoS3":
        moto = Path(sys.executable).parent / "moto_server"
        cmd = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     env={**os.environ, **self.KEYS})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.endpoint, timeout=1)
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(Path(self.log.name).read_text()[-2000:]) from None
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start in 60 s")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
