"""The order queued analyses start in: round robin between tenants, first come first served
within one.

The next analysis is the oldest queued one of the tenant with the fewest analyses running,
and among those the tenant served least recently (its last analysis started longest ago; a
tenant never served comes first). So a tenant with five analyses queued takes one slot in
turn with every other tenant, not all of them first. Records are the coordinator's dicts
(``owner`` is the tenant; None, no tenant, is one more tenant here).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Sequence


def fair_order(queued: Sequence[dict[str, Any]], running: Sequence[dict[str, Any]] = (),
               last_started: dict[str | None, float] | None = None) -> list[dict[str, Any]]:
    """``queued`` (in acceptance order) in the order they start, given the analyses
    ``running`` and when each tenant's last analysis started."""
    heads: dict[str | None, deque[tuple[int, dict[str, Any]]]] = {}
    for position, rec in enumerate(queued):
        heads.setdefault(rec.get("owner"), deque()).append((position, rec))
    share: dict[str | None, int] = {}
    for rec in running:
        share[rec.get("owner")] = share.get(rec.get("owner"), 0) + 1
    served = dict(last_started or {})
    turn = max([t for t in served.values() if t is not None] + [0.0])
    order = []
    while heads:
        owner = min(heads, key=lambda o: (share.get(o, 0), served.get(o) or -math.inf,
                                          heads[o][0][0]))
        order.append(heads[owner].popleft()[1])
        if not heads[owner]:
            del heads[owner]
        share[owner] = share.get(owner, 0) + 1
        turn += 1.0  # it starts after everything before it: to the back of the round
        served[owner] = turn
    return order
