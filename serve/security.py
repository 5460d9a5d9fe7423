"""API keys, bind-address policy, and the request body caps."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.errors import ApiError
from serve.tenants import NO_KEYS, ApiKey, Caller, caller_of, identify

# Declares the scheme in the OpenAPI document, so /docs has an "Authorize" button and sends the
# key; the check itself is ``require_api_key`` (a no-op without configured keys).
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="apiKey",
                           description="an API key from FRAMESIFT_API_KEYS, sent as "
                                       "`Authorization: Bearer <key>` (needed only when the "
                                       "server has keys)")


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


def require_api_key(request: Request,
                    _credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
                    ) -> None:
    """FastAPI dependency for /v1 routes: who is asking goes to ``request.state.caller``
    (``NO_KEYS`` when no keys are configured)."""
    keys: list[ApiKey] = request.app.state.api_keys
    if not keys:
        request.state.caller = NO_KEYS
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = identify(token.strip(), keys) if scheme.lower() == "bearer" and token else None
    if key is None:
        raise ApiError(401, "unauthorized", "missing or invalid API key: send "
                       "'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    request.state.caller = caller_of(key)


def request_caller(request: Request) -> Caller:
    """Who sent ``request`` (routes guarded by ``require_api_key``)."""
    caller = getattr(request.state, "caller", None)
    if caller is None:  # a route without the dependency: authenticate now
        require_api_key(request)
        caller = request.state.caller
    return caller


def key_owner(request: Request) -> str | None:
    """The tenant an analysis posted with ``request`` belongs to, for its storage and limits:
    the key's tenant (never the key), or None without keys and for the admin key."""
    return request_caller(request).tenant


DEFAULT_BODY_LIMIT = 1 << 20
DEFAULT_SMALL_BODY_LIMIT = 64 << 10


@dataclass(frozen=True)
class BodyCap:
    """The body cap of one path. Only the content types in ``large_types`` (prefixes; None =
    any type that is not JSON or text) may use ``max_bytes``; every other body, JSON above all,
    gets the small cap: a JSON body is parsed in memory, several times its size."""

    max_bytes: int
    large_types: tuple[str, ...] | None = None

    def for_type(self, content_type: str, small: int) -> int:
        if self.large_types is None:
            large = not (_is_text(content_type))
        else:
            large = content_type.startswith(self.large_types)
        return self.max_bytes if large else min(self.max_bytes, small)


def _is_text(content_type: str) -> bool:
    return (content_type in ("application/json", "application/x-www-form-urlencoded")
            or content_type.endswith("+json") or content_type.startswith("text/"))


class BodyLimit:
    """ASGI middleware: answer 413 once a request body exceeds the cap for its path and type.

    Caps come from ``app.state.body_limits`` (path -> ``BodyCap``) and
    ``app.state.small_body_limit`` (JSON and text bodies, and other types where a path's cap
    does not allow them); paths without a cap get 1 MiB.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state if "app" in scope else None
        limits = getattr(state, "body_limits", {})
        small = getattr(state, "small_body_limit", DEFAULT_SMALL_BODY_LIMIT)
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # an application behind a route prefix
            path = path[len(root):]
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        cap = limits.get(path, BodyCap(DEFAULT_BODY_LIMIT)).for_type(ctype, small)
        declared = headers.get(b"content-length")
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
