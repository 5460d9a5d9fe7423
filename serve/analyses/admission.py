"""Places held for uploads being received, so that admission is decided before a body is read.

An upload is admitted (the queue has room, its key is under its limit) when its request
arrives, before its body is read. Without a hold, thirty concurrent uploads all pass that check
(none is queued yet) and are all read to disk before ``submit`` refuses twenty-five of them. So
admission *reserves* a place: it counts as a queued analysis of its key until the upload is
submitted (``take``), its request ends without one (``release``), or it expires (an ingress
that died mid-upload). The bodies in flight are then at most the queue's free places, and the
disk an upload can take is bounded as the README says: (queued + running) x the largest upload.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable

# A reservation whose ingress never came back (a replica that died mid-upload) frees its place
# after this long (an upload still being received then is checked again when it is submitted).
RESERVATION_TTL_S = 600.0


@dataclass
class _Held:
    owner: str | None
    expires: float


class Reservations:
    """Places held by uploads being received (in the coordinator's memory: a restarted
    coordinator starts with none, and the uploads then in flight are checked at submit)."""

    def __init__(self, ttl_s: float = RESERVATION_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._held: dict[str, _Held] = {}

    def _expire(self) -> None:
        now = self.clock()
        for ticket in [t for t, h in self._held.items() if h.expires <= now]:
            del self._held[ticket]

    def count(self, owner: str | None = None, *, everyone: bool = False) -> int:
        """Places held by ``owner`` (``everyone``: by all)."""
        self._expire()
        return sum(1 for h in self._held.values() if everyone or h.owner == owner)

    def hold(self, owner: str | None) -> str:
        """A new place for ``owner``; its ticket."""
        ticket = uuid.uuid4().hex
        self._held[ticket] = _Held(owner, self.clock() + self.ttl_s)
        return ticket

    def release(self, ticket: str | None) -> None:
        """Give the place back (submitted, refused, or the request ended); no error if gone."""
        if ticket:
            self._held.pop(ticket, None)
