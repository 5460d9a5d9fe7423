"""The web console: one page at ``/`` that drives the public HTTP API from a browser.

(No ``from __future__ import annotations``: FastAPI must see real types through Serve.)
Plain HTML, CSS and JavaScript shipped as package data (``serve/static/``), no build step and
nothing fetched from elsewhere. The page and its two files need no API key (they hold no data);
every call the page makes goes to the ``/v1`` routes with the key the user types in, sent as a
Bearer header. Answers carry a Content-Security-Policy without inline scripts or styles.
"""

import html
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS = {"console.js": "text/javascript; charset=utf-8",
          "console.css": "text/css; charset=utf-8"}
BASE_MARK = "__BASE_HREF__"

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=None)
def _static(name: str) -> bytes:
    return (STATIC_DIR / name).read_bytes()


def store_origin(settings: Any, environ: Mapping[str, str] = os.environ) -> str | None:
    """The Supabase origin golden frames may be redirected to (store=supabase), if any."""
    if settings is None or getattr(settings, "store", "local") != "supabase":
        return None
    parts = urlsplit(environ.get("SUPABASE_URL", "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def security_headers(store_origin: str | None = None) -> dict[str, str]:
    """CSP (scripts and styles from this origin only; images also from blob: URLs the page
    makes from fetched frames), no sniffing, no framing, no referrer."""
    extra = f" {store_origin}" if store_origin else ""
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; "
           f"img-src 'self' blob: data:{extra}; connect-src 'self'{extra}; base-uri 'self'; "
           "form-action 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


@router.get("/")
async def console_page(request: Request) -> Response:
    """The console page, with ``<base href>`` set to where this application is mounted (a bare
    ``/prefix`` is redirected to ``/prefix/`` by Starlette's trailing-slash redirect)."""
    root = request.scope.get("root_path", "").rstrip("/")
    page = _static("index.html").decode().replace(BASE_MARK, html.escape(f"{root}/", quote=True))
    return Response(page, media_type="text/html; charset=utf-8",
                    headers=security_headers(store_origin(getattr(request.app.state, "settings",
                                                                  None))))


@router.get("/console/{name}")
async def console_asset(name: str) -> Response:
    """The page's script and stylesheet (a fixed list: nothing else is readable here)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", f"no console file {name!r}")
    return Response(_static(name), media_type=media_type, headers=security_headers())
