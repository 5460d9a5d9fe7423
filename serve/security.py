"""API keys, bind-address policy, and the request body cap."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.errors import ApiError


class InsecureBindError(ValueError):
    """Refusing to listen beyond loopback without API keys."""


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_keys: list[str]) -> None:
    """With no API keys configured the server may only bind a loopback address."""
    if not api_keys and not is_loopback_host(host):
        raise InsecureBindError(
            f"refusing to listen on {host} without API keys: set FRAMESIFT_API_KEYS "
            "(comma-separated) or bind 127.0.0.1")


def key_matches(given: str, keys: list[str]) -> bool:
    """Constant-time comparison against every configured key."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given.encode(), key.encode())
    return ok


def require_api_key(request: Request) -> None:
    """FastAPI dependency for /v1 routes; a no-op when no keys are configured."""
    keys: list[str] = request.app.state.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or not key_matches(token.strip(), keys):
        raise ApiError(401, "unauthorized", "missing or invalid API key: send "
                       "'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})


DEFAULT_BODY_LIMIT = 1 << 20


class BodyLimit:
    """ASGI middleware: answer 413 once a request body exceeds the cap for its path.

    Caps come from ``app.state.body_limits`` (path -> bytes); other paths get 1 MiB.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = getattr(scope["app"].state, "body_limits", {}) if "app" in scope else {}
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # an application behind a route prefix
            path = path[len(root):]
        cap = limits.get(path, DEFAULT_BODY_LIMIT)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await _too_large(send, cap)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, cap)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, cap: int) -> None:
    body = (b'{"error":{"code":"payload_too_large","message":"request body is larger than '
            + str(cap).encode() + b' bytes"}}')
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
