"""Limits the HTTP proxy enforces while it reads a request, before the application sees it.

Ray Serve 2.60 runs its HTTP proxy on uvicorn and exposes none of uvicorn's request-reading
options (``HTTPOptions`` has host, port, root path, keep-alive and request timeouts, TLS). With
uvicorn's default parser (httptools) a request's header block has no size limit and neither
the headers nor the body have a read timeout: a 64 MB ``Authorization`` header was read,
forwarded to the ingress and answered after 12 s; a client that sends a byte a minute holds
its connection forever. The one hook Serve offers the proxy process is
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (a function the proxy calls at start-up that
returns ASGI middlewares). ``proxy_middlewares`` is that function: it makes uvicorn use
``GuardedHttpToolsProtocol`` (uvicorn's own httptools protocol plus the limits below) and
returns a middleware that checks the header size again, should the protocol not be in use.

The limits come from the proxy node's environment (``FRAMESIFT_MAX_HEADER_BYTES``,
``FRAMESIFT_HEADER_TIMEOUT_S``, ``FRAMESIFT_BODY_IDLE_TIMEOUT_S``): the proxy starts before,
and apart from, any application and its config. The variable must be set where Ray starts
(``framesift serve`` sets it for the Ray it starts; ``cluster.yaml`` sets it on every node).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("framesift.http_guard")

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "serve.http_guard.proxy_middlewares"
PROTOCOL = "serve.http_guard:GuardedHttpToolsProtocol"


@dataclass(frozen=True)
class GuardLimits:
    max_header_bytes: int = 32 * 1024  # request line + header fields
    header_timeout_s: float = 10.0     # from a request's first byte (or the connection) to
                                       # the end of its headers
    body_idle_timeout_s: float = 30.0  # longest pause between body bytes

    @classmethod
    def from_env(cls) -> "GuardLimits":
        from serve.settings import ServiceSettings

        s = ServiceSettings()
        return cls(s.max_header_bytes, s.header_timeout_s, s.body_idle_timeout_s)


def enable_for_local_ray() -> None:
    """Make the proxies of a Ray started from this process install the guard (the proxy
    inherits this environment). Call before Ray starts; an existing setting is kept."""
    os.environ.setdefault(CALLBACK_ENV, CALLBACK)


def _error(status: int, code: str, message: str) -> bytes:
    reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def _protocol_class() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a header size cap, a header read deadline and a
        body idle timeout (each answered with a JSON error, then the connection closes)."""

        limits = GuardLimits()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._fs_phase = "head"  # "head": reading headers; "body"; "idle": request read
            self._fs_head_bytes = 0  # bytes received while reading headers (an upper bound)
            self._fs_header_size = 0  # exact size of the parsed request line and fields
            self._fs_too_large = False
            self._fs_timer: asyncio.TimerHandle | None = None
            self._fs_arm(self.limits.header_timeout_s)  # a connection that never sends

        def connection_lost(self, exc: Exception | None) -> None:
            self._fs_disarm()
            super().connection_lost(exc)

        # timers ----------------------------------------------------------------------------

        def _fs_arm(self, seconds: float) -> None:
            self._fs_disarm()
            self._fs_timer = self.loop.call_later(seconds, self._fs_timeout)

        def _fs_disarm(self) -> None:
            if self._fs_timer is not None:
                self._fs_timer.cancel()
                self._fs_timer = None

        def _fs_timeout(self) -> None:
            self._fs_timer = None
            if self._fs_phase == "body" and self.flow is not None and self.flow.read_paused:
                self._fs_arm(self.limits.body_idle_timeout_s)  # the app is not reading: wait
                return
            what = ("the request headers were not received within "
                    f"{self.limits.header_timeout_s:g} s" if self._fs_phase == "head" else
                    f"the request body stalled for {self.limits.body_idle_timeout_s:g} s")
            self._fs_reject(408, "request_timeout", what)

        def _fs_reject(self, status: int, code: str, message: str) -> None:
            if self.transport is None or self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete or \
                    not self.cycle.response_started:
                self.transport.write(_error(status, code, message))
            self.transport.close()

        # reading ---------------------------------------------------------------------------

        def data_received(self, data: bytes) -> None:
            if self._fs_phase == "idle":  # the first bytes of the next request on this
                self._fs_phase = "head"   # connection start its header deadline
                self._fs_head_bytes = 0
                self._fs_arm(self.limits.header_timeout_s)
            if self._fs_phase == "head":
                self._fs_head_bytes += len(data)
            elif self._fs_phase == "body":
                self._fs_arm(self.limits.body_idle_timeout_s)
            super().data_received(data)
            if self._fs_phase == "head" and self._fs_head_bytes > self.limits.max_header_bytes:
                self._fs_too_large = True  # one endless header line: never buffered to its end
                self._fs_reject(431, "headers_too_large", self._fs_message())

        def _fs_message(self) -> str:
            return (f"the request line and headers are larger than "
                    f"{self.limits.max_header_bytes} bytes")

        def _fs_count(self, n: int) -> None:
            self._fs_header_size += n
            if self._fs_header_size > self.limits.max_header_bytes:
                self._fs_too_large = True
                raise ValueError("headers too large")  # stops the parser: send_400_response

        def send_400_response(self, msg: str) -> None:
            if self._fs_too_large:
                self._fs_reject(431, "headers_too_large", self._fs_message())
                return
            super().send_400_response(msg)

        def on_message_begin(self) -> None:
            self._fs_header_size = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._fs_count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._fs_count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._fs_phase = "body"
            self._fs_arm(self.limits.body_idle_timeout_s)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._fs_phase = "idle"  # no deadline while the response is produced
            self._fs_disarm()
            super().on_message_complete()

    GuardedHttpToolsProtocol.__module__ = __name__
    GuardedHttpToolsProtocol.__qualname__ = "GuardedHttpToolsProtocol"
    return GuardedHttpToolsProtocol


def __getattr__(name: str) -> Any:  # the class is built on first use (uvicorn imported then)
    if name == "GuardedHttpToolsProtocol":
        cls = _protocol_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


class HeaderLimit:
    """ASGI middleware: 431 when the parsed request line and headers exceed the cap (the
    protocol already refuses them while reading; this covers a proxy not using it)."""

    def __init__(self, app: ASGIApp, max_header_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or [])
            if size > self.max_header_bytes:
                body = json.dumps({"error": {"code": "headers_too_large", "message":
                                   f"the request line and headers are larger than "
                                   f"{self.max_header_bytes} bytes"}}).encode()
                await send({"type": "http.response.start", "status": 431,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def proxy_middlewares() -> list[Any]:
    """The ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` callback, run in each Serve proxy
    before its HTTP server starts: install the guarded protocol, return the header check."""
    from starlette.middleware import Middleware

    limits = GuardLimits.from_env()
    try:
        import uvicorn.config

        cls = __getattr__("GuardedHttpToolsProtocol")
        cls.limits = limits
        uvicorn.config.HTTP_PROTOCOLS["auto"] = PROTOCOL
        uvicorn.config.HTTP_PROTOCOLS["httptools"] = PROTOCOL
    except Exception:  # noqa: BLE001 - keep serving; the middleware still caps headers
        log.exception("could not install the guarded HTTP protocol: header reads are not "
                      "bounded in time, and only checked after they were read")
    return [Middleware(HeaderLimit, max_header_bytes=limits.max_header_bytes)]
