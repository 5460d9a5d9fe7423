"""Videos at http(s) URLs, read by the workers with range requests.

The URL rules of ``jobs.url_rules`` hold on every request, in every worker: http/https only,
the host resolved here and refused when it is private, loopback, link-local, multicast,
reserved or a cloud metadata address (unless ``FRAMESIFT_URL_ALLOWLIST`` lists it), each
redirect re-checked, and every request sent to the address that was checked (pinned: no second
DNS lookup). The first request asks for the first block (``Range: bytes=0-...``, no HEAD round
trip):

- ``206``: the server has ranges. Later reads ask for exactly the bytes ``RangeFile`` wants,
  with ``If-Range`` on the first answer's strong ETag. Every ``206`` is checked: the
  ``Content-Range`` start, end and total must match the request and the first answer, and the
  body must hold exactly that many bytes (``range_protocol_violation`` otherwise); a changed
  total or ETag, or a ``200`` answered to ``If-Range``, means the object was replaced
  (``source_gone``).
- ``200``: no ranges. The body is read once into a spooled temporary file (memory up to
  32 MiB, then disk) and served from there: the only case with a full download.

Caps: the object size (``Content-Range`` total or ``Content-Length``) and the bytes read per
open, at most ``max_bytes``; ``request_timeout_s`` per request or stalled body
(``source_timeout``), and ``deadline_s`` per open. Connection failures and HTTP 429/502/503/504
are retried twice with a short back-off. The URL itself is never logged or shown: errors name
``display_name`` (no credentials, no query string, so no signature tokens).

Credentials in the URL (``https://user:pass@host/v.mp4``) are sent as HTTP Basic
authentication to that origin (scheme, host and port) only: never to another origin a redirect
leads to, and never taken from a redirect's ``Location``.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import httpx

from actors.errors import (RangeProtocolError, SourceAccessDeniedError, SourceError,
                           SourceGoneError, SourceTimeoutError)
from actors.media_source import KnownBlocks, RangeFile
from jobs.url_rules import (Allowlist, CheckedTarget, FetchError, check_target,
                            redirect_target, video_content_type)
from jobs.sources.options import SourceOptions

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
RETRIES = 2
RETRY_BACKOFF_S = 0.25
RETRY_STATUSES = frozenset({429, 502, 503, 504})
SPOOL_IN_MEMORY = 32 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)

Origin = tuple[str, str, int]  # scheme, host, port


def origin_of(url: str) -> Origin:
    """The origin of an http(s) URL (scheme, lower-case host, port with the default filled)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def basic_credentials(url: str) -> tuple[Origin, str] | None:
    """The URL's origin and the ``Authorization`` value its ``user:password@`` gives (HTTP
    Basic), or None when it has no credentials."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return None
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return origin_of(url), "Basic " + base64.b64encode(pair.encode()).decode("ascii")


class HttpSource:
    """A video at an http(s) URL (a ``MediaSource``); each ``open`` is a new reader.

    ``identity`` is the object's (size, ETag) as first opened (or as given: what the probe
    saw, carried to the workers that score it); a later open that finds another object fails
    with ``source_gone`` instead of decoding something else. The first open's answer is kept:
    a later open of the same source sends no first request (its range requests still carry
    ``If-Range``, so a replaced object is still ``source_gone``), starts with the blocks the
    last file held (``KnownBlocks``: the head and the index at the tail, which every open
    reads first), and reads a server without ranges from the body downloaded once.
    """

    def __init__(self, url: str, name: str, options: SourceOptions,
                 identity: tuple[int, str | None] | None = None) -> None:
        self.url = url
        self.name = name
        self.options = options
        self.identity = identity
        self._answer: _FirstAnswer | None = None
        self._known = KnownBlocks()

    def __repr__(self) -> str:  # never the URL: it may carry credentials or a signature
        return f"HttpSource({self.name!r})"

    def open(self) -> RangeFile:
        reader = HttpRangeReader(self.url, self.name, self.options, self._answer)
        fh = reader.open(self._known)
        if self._answer is not None:
            return fh
        found = (reader.size, reader.etag)
        if self.identity is None:
            self.identity = found
        elif not same_object(self.identity, found):
            fh.close()
            reader.drop_spool()
            raise SourceGoneError(self.name, f"the object changed since it was probed (it had "
                                             f"{self.identity[0]} bytes, now {found[0]})")
        self._answer = reader.answer()
        return fh


@dataclass(frozen=True)
class _FirstAnswer:
    """What a source's first open learned: where the object is (checked), its size and ETag,
    and its body when the server has no ranges (``spool``; reads take ``lock``)."""

    target: CheckedTarget
    size: int
    etag: str | None
    spool: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def same_object(expected: tuple[int, str | None], found: tuple[int, str | None]) -> bool:
    """Same size, and the same ETag when both sides have one."""
    return expected[0] == found[0] and (expected[1] is None or found[1] is None
                                        or expected[1] == found[1])


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process for every reader (thread-safe; building one loads the CA
    bundle, ~25 ms: a tenth of a short video's read cost when every reader paid it)."""
    return httpx.create_ssl_context()  # what httpx.Client() builds for each client by default


class HttpRangeReader:
    """The HTTP side of one open file: first answer, range requests, or the spooled body
    (``answer``: the first answer of an earlier open of the same source, not asked again)."""

    def __init__(self, url: str, name: str, options: SourceOptions,
                 answer: _FirstAnswer | None = None) -> None:
        self.url = url
        self.name = name
        self.options = options
        self.allow = Allowlist.parse(options.allowlist)
        self.deadline = time.monotonic() + options.deadline_s
        self.client = httpx.Client(timeout=httpx.Timeout(options.request_timeout_s),
                                   follow_redirects=False, trust_env=False,
                                   verify=_tls_context())
        self.basic = basic_credentials(url)  # sent to the URL's own origin only
        self.target: CheckedTarget | None = None
        self.size = -1
        self.etag: str | None = None
        self.received = 0
        self.requests = 0
        self.spool: Any = None
        self.spool_lock = threading.Lock()
        if answer is not None:
            self.target, self.size, self.etag = answer.target, answer.size, answer.etag
            self.spool, self.spool_lock = answer.spool, answer.lock

    # -- open -------------------------------------------------------------------------------

    def open(self, known: KnownBlocks | None = None) -> RangeFile:
        """A file on the object: the first request now, unless an earlier open's answer was
        given (then nothing is sent until a block is read that ``known`` lacks)."""
        prefetched = b""
        if self.target is None:
            try:
                prefetched = self._first()
            except BaseException:
                self.close()
                self.drop_spool()
                raise
        fetch = self._from_spool if self.spool is not None else self._range
        log.debug("opened %s: %d bytes, %s", self.name, self.size,
                  "full download (no ranges)" if self.spool is not None else "range requests")
        return RangeFile(self.name, self.size, fetch, block=self.options.block_bytes,
                         max_block=self.options.max_block_bytes, prefetched=prefetched,
                         known=known, on_close=self.close)

    def answer(self) -> _FirstAnswer:
        """This open's first answer, for the later opens of the same source."""
        assert self.target is not None
        return _FirstAnswer(self.target, self.size, self.etag, self.spool, self.spool_lock)

    @property
    def mode(self) -> str:
        return "full" if self.spool is not None else "range"

    def _check(self, url: str) -> CheckedTarget:
        try:
            return check_target(url, self.allow)
        except FetchError as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: FetchError) -> SourceError:
        """A URL rule's refusal as this video's error, with the rule's code."""
        detail = str(exc)
        prefix = f"{exc.url}: "
        return SourceError(self.name, detail[len(prefix):] if detail.startswith(prefix) else detail,
                           code=exc.code)

    def _first(self) -> bytes:
        current = self.url
        first_block = self.options.block_bytes
        for _ in range(MAX_REDIRECTS + 1):
            target = self._check(current)
            response = self._send(target, {"Range": f"bytes=0-{first_block - 1}"})
            try:
                try:
                    nxt = redirect_target(current, response, self.url)
                except FetchError as exc:
                    raise self._refused(exc) from None
                if nxt is not None:
                    current = nxt
                    continue
                self.target = target
                return self._first_answer(response, first_block)
            finally:
                response.close()
        raise SourceError(self.name, f"more than {MAX_REDIRECTS} redirects",
                          code="too_many_redirects")

    def _first_answer(self, response: httpx.Response, first_block: int) -> bytes:
        status = response.status_code
        if status in (200, 206):
            ctype = response.headers.get("content-type")
            if not video_content_type(ctype):
                raise SourceError(self.name, f"content type {ctype!r} is not a video; expected "
                                             "video/* (e.g. video/mp4)", code="not_video_content")
            self._check_encoding(response)
        if status == 206:
            start, end, total = self._content_range(response)
            if total > self.options.max_bytes:
                raise self._too_large(f"{total} bytes")
            self.size = total
            etag = response.headers.get("etag")
            self.etag = etag if etag and not etag.startswith("W/") else None
            want_end = min(first_block, total) - 1
            if (start, end) != (0, want_end):
                raise RangeProtocolError(self.name, f"asked for bytes 0-{want_end}, the server's "
                                                    f"Content-Range says {start}-{end}")
            return self._body(response, end - start + 1)
        if status == 200:
            self._spool_body(response)
            return b""
        if status == 416:  # an empty object has no byte 0
            unsatisfied = _UNSATISFIED.match(response.headers.get("content-range", ""))
            if unsatisfied and int(unsatisfied.group(1)) == 0:
                self.size = 0
                return b""
        raise self._status_error(response, opening=True)

    # -- requests ---------------------------------------------------------------------------

    def _send(self, target: CheckedTarget, headers: dict[str, str]) -> httpx.Response:
        for attempt in range(RETRIES + 1):
            self._check_deadline()
            if self.basic is not None and origin_of(target.url) == self.basic[0]:
                headers = {**headers, "Authorization": self.basic[1]}
            request = target.request(self.client, {"Accept-Encoding": "identity", **headers})
            self.requests += 1
            try:
                response = self.client.send(request, stream=True)
            except httpx.TimeoutException:
                raise SourceTimeoutError(self.name, f"no answer within "
                                                    f"{self.options.request_timeout_s:g} s") from None
            except httpx.TransportError as exc:
                if attempt < RETRIES:
                    time.sleep(RETRY_BACKOFF_S * (attempt + 1))
                    continue
                raise SourceError(self.name, f"request failed ({type(exc).__name__}) after "
                                             f"{RETRIES + 1} attempts") from None
            if response.status_code in RETRY_STATUSES and attempt < RETRIES:
                response.close()
                time.sleep(RETRY_BACKOFF_S * (attempt + 1))
                continue
            return response
        raise AssertionError("unreachable")

    def _range(self, offset: int, length: int) -> bytes:
        """``RangeFile``'s fetch: exactly ``length`` bytes at ``offset``, checked."""
        assert self.target is not None
        end = offset + length - 1
        headers = {"Range": f"bytes={offset}-{end}"}
        if self.etag:
            headers["If-Range"] = self.etag
        response = self._send(self.target, headers)
        try:
            status = response.status_code
            if status == 206:
                self._check_encoding(response)
                start, stop, total = self._content_range(response)
                if total != self.size:
                    raise SourceGoneError(self.name, f"the object changed during the run (it had "
                                                     f"{self.size} bytes, now {total})")
                etag = response.headers.get("etag")
                if self.etag and etag and etag != self.etag:
                    raise SourceGoneError(self.name, "the object changed during the run (its "
                                                     "ETag changed)")
                if (start, stop) != (offset, end):
                    raise RangeProtocolError(self.name, f"asked for bytes {offset}-{end}, the "
                                                        f"server's Content-Range says "
                                                        f"{start}-{stop}")
                return self._body(response, length)
            if status == 200:
                if self.etag:
                    raise SourceGoneError(self.name, "the object changed during the run (the "
                                                     "server answered If-Range with a new object)")
                raise RangeProtocolError(self.name, "the server answered a range request with "
                                                    "the whole object (HTTP 200) after serving "
                                                    "ranges before")
            if status == 416:
                raise SourceGoneError(self.name, "the object is shorter than when the run started "
                                                 "(HTTP 416)")
            raise self._status_error(response, opening=False)
        finally:
            response.close()

    def _from_spool(self, offset: int, length: int) -> bytes:
        with self.spool_lock:  # the files of one source share it (a read-ahead thread too)
            self.spool.seek(offset)
            return self.spool.read(length)

    # -- bodies -----------------------------------------------------------------------------

    def _body(self, response: httpx.Response, expected: int) -> bytes:
        pieces: list[bytes] = []
        got = 0
        for piece in self._pieces(response):
            got += len(piece)
            if got > expected:
                raise RangeProtocolError(self.name, f"the server sent more than the "
                                                    f"{expected} bytes of the range")
            pieces.append(piece)
        if got != expected:
            raise RangeProtocolError(self.name, f"the range has {expected} bytes, the server "
                                                f"sent {got}")
        self._count(got)
        return b"".join(pieces)

    def _spool_body(self, response: httpx.Response) -> None:
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.options.max_bytes:
            raise self._too_large(f"{int(length)} bytes announced")
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="framesift-")
        self.spool = spool
        got = 0
        for piece in self._pieces(response):
            got += len(piece)
            self._count(len(piece))
            spool.write(piece)
        if length and length.isdigit() and int(length) != got:
            raise SourceError(self.name, f"Content-Length announced {length} bytes, the body had {got}")
        self.size = got

    def _pieces(self, response: httpx.Response) -> Iterator[bytes]:
        """The body as it arrives, within the reader's deadline; a stall or a broken
        connection is the source's typed error."""
        try:
            for piece in response.iter_raw():
                self._check_deadline()
                yield piece
        except httpx.TimeoutException:
            raise SourceTimeoutError(self.name, f"the body stalled for "
                                                f"{self.options.request_timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise SourceError(self.name, f"the connection broke mid-body "
                                         f"({type(exc).__name__})") from None

    # -- checks -----------------------------------------------------------------------------

    def _count(self, n: int) -> None:
        self.received += n
        if self.received > self.options.max_bytes:
            raise self._too_large(f"read more than {self.options.max_bytes} bytes")

    def _too_large(self, what: str) -> SourceError:
        return SourceError(self.name, f"{what}, more than the limit of {self.options.max_bytes} "
                                      "bytes (FRAMESIFT_DOWNLOAD_MAX_BYTES)",
                           code="download_too_large")

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise SourceTimeoutError(self.name, f"reading took longer than "
                                                f"{self.options.deadline_s:g} s "
                                                "(FRAMESIFT_DOWNLOAD_TIMEOUT_S)")

    def _check_encoding(self, response: httpx.Response) -> None:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise RangeProtocolError(self.name, f"the server encoded the body "
                                                f"(Content-Encoding: {encoding}) although "
                                                "identity was asked")

    def _content_range(self, response: httpx.Response) -> tuple[int, int, int]:
        value = response.headers.get("content-range", "")
        match = _CONTENT_RANGE.match(value)
        if not match or match.group(3) == "*":
            raise RangeProtocolError(self.name, f"HTTP 206 without a usable Content-Range "
                                                f"({value!r})")
        start, end, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if not start <= end < total:
            raise RangeProtocolError(self.name, f"impossible Content-Range {value!r}")
        return start, end, total

    def _status_error(self, response: httpx.Response, *, opening: bool) -> SourceError:
        status = response.status_code
        when = "" if opening else " (during the run)"
        if status in (404, 410):
            return SourceGoneError(self.name, f"HTTP {status}: no object at this address{when}")
        if status in (401, 403):
            return SourceAccessDeniedError(self.name, f"HTTP {status}: access refused (missing, "
                                                      f"wrong or expired credentials or "
                                                      f"signature){when}")
        if status == 400:  # Supabase Storage: HTTP 400 with the real status in the body
            storage = _storage_status(response)
            if storage == "404":
                return SourceGoneError(self.name, f"Storage answered statusCode 404: no such "
                                                  f"object{when}")
            if storage in ("400", "401", "403"):
                return SourceAccessDeniedError(self.name, f"Storage answered statusCode "
                                                          f"{storage}: the signed URL is invalid "
                                                          f"or expired{when}")
        return SourceError(self.name, f"HTTP {status}{when}; expected 206 (or 200 from a server "
                                      f"without ranges)")

    def close(self) -> None:
        """The connection; the spooled body stays for the source's later opens (it is freed
        with the source: in memory, or a file already unlinked)."""
        self.client.close()

    def drop_spool(self) -> None:
        """The spooled body of an open that failed: no later open will read it."""
        if self.spool is not None:
            self.spool.close()

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "bytes": self.received, "size": self.size,
                "mode": self.mode}


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
