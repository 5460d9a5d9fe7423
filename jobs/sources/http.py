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

``HttpSource`` is here; the requests and bodies of one open file are ``HttpRangeReader``
(``jobs.sources.http_range``), the checks on each answer ``jobs.sources.http_answers``.
"""

from __future__ import annotations

from actors.errors import SourceGoneError
from actors.media_source import KnownBlocks, RangeFile
from jobs.sources.http_range import FirstAnswer, HttpRangeReader
from jobs.sources.options import SourceOptions


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
        self._answer: FirstAnswer | None = None
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


def same_object(expected: tuple[int, str | None], found: tuple[int, str | None]) -> bool:
    """Same size, and the same ETag when both sides have one."""
    return expected[0] == found[0] and (expected[1] is None or found[1] is None
                                        or expected[1] == found[1])

