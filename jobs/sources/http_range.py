"""The HTTP side of one open file of an http(s) video (``jobs.sources.http``, whose docstring
gives the rules): the first request and its answer, checked range requests, or the body
spooled once from a server without ranges."""

from __future__ import annotations

import base64
import functools
import logging
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import httpx

from actors.errors import RangeProtocolError, SourceError, SourceGoneError, SourceTimeoutError
from actors.media_source import KnownBlocks, RangeFile
from jobs.sources.http_answers import UNSATISFIED, check_encoding, content_range, status_error
from jobs.sources.options import SourceOptions
from jobs.url_rules import (Allowlist, CheckedTarget, FetchError, check_target,
                            redirect_target, video_content_type)

log = logging.getLogger("jobs.sources.http")  # the logger's name before the split

MAX_REDIRECTS = 5
RETRIES = 2
RETRY_BACKOFF_S = 0.25
RETRY_STATUSES = frozenset({429, 502, 503, 504})
SPOOL_IN_MEMORY = 32 * 1024 * 1024

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


@dataclass(frozen=True)
class FirstAnswer:
    """What a source's first open learned: where the object is (checked), its size and ETag,
    and its body when the server has no ranges (``spool``; reads take ``lock``)."""

    target: CheckedTarget
    size: int
    etag: str | None
    spool: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process for every reader (thread-safe; building one loads the CA
    bundle, ~25 ms: a tenth of a short video's read cost when every reader paid it)."""
    return httpx.create_ssl_context()  # what httpx.Client() builds for each client by default


class HttpRangeReader:
    """The HTTP side of one open file: first answer, range requests, or the spooled body
    (``answer``: the first answer of an earlier open of the same source, not asked again)."""

    def __init__(self, url: str, name: str, options: SourceOptions,
                 answer: FirstAnswer | None = None) -> None:
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

    def answer(self) -> FirstAnswer:
        """This open's first answer, for the later opens of the same source."""
        assert self.target is not None
        return FirstAnswer(self.target, self.size, self.etag, self.spool, self.spool_lock)

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
            check_encoding(self.name, response)
        if status == 206:
            start, end, total = content_range(self.name, response)
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
            unsatisfied = UNSATISFIED.match(response.headers.get("content-range", ""))
            if unsatisfied and int(unsatisfied.group(1)) == 0:
                self.size = 0
                return b""
        raise status_error(self.name, response, opening=True)

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
                check_encoding(self.name, response)
                start, stop, total = content_range(self.name, response)
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
            raise status_error(self.name, response, opening=False)
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

