"""The checks on one answer of an http(s) range reader (``jobs.sources.http_range``): the
``Content-Range`` of a ``206``, the body's encoding, and any other status as the video's typed
error (Supabase Storage's HTTP 400 with the real status in its body included)."""

from __future__ import annotations

import json
import re

import httpx

from actors.errors import RangeProtocolError, SourceAccessDeniedError, SourceError, SourceGoneError

CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def check_encoding(name: str, response: httpx.Response) -> None:
    """The body must come as asked: not compressed (``Accept-Encoding: identity``)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RangeProtocolError(name, f"the server encoded the body "
                                       f"(Content-Encoding: {encoding}) although "
                                       "identity was asked")


def content_range(name: str, response: httpx.Response) -> tuple[int, int, int]:
    """(start, end, total) of a ``206``'s ``Content-Range``, which must be usable and possible."""
    value = response.headers.get("content-range", "")
    match = CONTENT_RANGE.match(value)
    if not match or match.group(3) == "*":
        raise RangeProtocolError(name, f"HTTP 206 without a usable Content-Range "
                                       f"({value!r})")
    start, end, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not start <= end < total:
        raise RangeProtocolError(name, f"impossible Content-Range {value!r}")
    return start, end, total


def status_error(name: str, response: httpx.Response, *, opening: bool) -> SourceError:
    """An answer that is neither ``206`` nor ``200`` as the typed error of the video
    (``opening``: the first request; otherwise a request during the run)."""
    status = response.status_code
    when = "" if opening else " (during the run)"
    if status in (404, 410):
        return SourceGoneError(name, f"HTTP {status}: no object at this address{when}")
    if status in (401, 403):
        return SourceAccessDeniedError(name, f"HTTP {status}: access refused (missing, "
                                             f"wrong or expired credentials or "
                                             f"signature){when}")
    if status == 400:  # Supabase Storage: HTTP 400 with the real status in the body
        storage = _storage_status(response)
        if storage == "404":
            return SourceGoneError(name, f"Storage answered statusCode 404: no such "
                                         f"object{when}")
        if storage in ("400", "401", "403"):
            return SourceAccessDeniedError(name, f"Storage answered statusCode "
                                                 f"{storage}: the signed URL is invalid "
                                                 f"or expired{when}")
    return SourceError(name, f"HTTP {status}{when}; expected 206 (or 200 from a server "
                             f"without ranges)")


def _storage_status(response: httpx.Response) -> str | None:
    """The ``statusCode`` of a Storage error body (read at most 4 KiB), if it has one."""
    try:
        raw = b""
        for piece in response.iter_raw():
            raw += piece
            if len(raw) > 4096:
                return None
        body = json.loads(raw)
    except (httpx.HTTPError, ValueError):
        return None
    value = body.get("statusCode") if isinstance(body, dict) else None
    return str(value) if value is not None else None
