"""Durable analysis records and their event logs, so that an accepted analysis survives the
restart of the service's replicas, on this node or (with PostgreSQL) on another one.

One interface (``AnalysisDB``, here, with the statuses, the schema file and ``json_safe`` both
databases share), two databases: ``SqliteAnalysisDB`` (serve/analyses/sqlite_state.py), a file
under ``FRAMESIFT_STATE_DIR`` (the embedded default, one node), and ``PostgresAnalysisDB``
(serve/analyses/postgres_state.py; ``FRAMESIFT_DATABASE_URL``: a Supabase project's Postgres or
any PostgreSQL, which every node reaches). ``open_analysis_db`` (serve/analyses/open_db.py)
picks one from the settings; both run the same SQL (serve/analyses/sql_state.py).

Writes that decide something are compare-and-set in one transaction, so two coordinators that
overlap for a moment (a replica restarted elsewhere while the old one still runs) cannot both
win: ``change`` updates a record only while it is in the expected state (status, runner, runner
events applied) and appends its event in the same transaction; an event's ``seq`` is allocated
from the record's row (locked by the update) and ``(analysis_id, seq)`` is unique; at most one
queued or running analysis has a given fingerprint (a unique partial index).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Protocol

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
POSTGRES_SCHEMA_SQL = Path(__file__).with_name("postgres_schema.sql")  # = the Supabase migration
POSTGRES_SCHEMA = "framesift_service"

EventData = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
_ANY = object()



def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no Infinity or NaN (PostgreSQL's
    jsonb and browsers' JSON.parse refuse them; a selection relaxed to any motion has an
    infinite bar), and the API shows them as null anyway."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

class AnalysisDB(Protocol):
    """What the coordinator needs from its database. Records are dicts of the columns."""

    backend: str

    def insert(self, rec: dict[str, Any], event: tuple[str, dict[str, Any]]) -> bool:
        """Insert ``rec`` with its first event in one transaction; False (nothing written) when
        an active analysis already has its fingerprint."""

    def get(self, analysis_id: str) -> dict[str, Any] | None: ...

    def find_active(self, fingerprint: str) -> dict[str, Any] | None: ...

    def list(self, scan_id: str | None = None, limit: int = 100,
             owner: str | None = None) -> list[dict[str, Any]]:
        """Newest first; only ``owner``'s when given."""

    def with_status(self, status: str) -> list[dict[str, Any]]:
        """In queue order (the order the analyses were accepted)."""

    def count(self, status: str) -> int: ...

    def last_started(self) -> dict[str | None, float]:
        """When each owner's (tenant's) most recently started analysis started."""

    def count_active(self, owner: str | None) -> int:
        """Queued and running analyses of ``owner``."""

    def active_sources(self, source_kind: str) -> list[str]:
        """``source`` of every queued or running analysis of that kind (uploads still needed)."""

    def update(self, analysis_id: str, **fields: Any) -> None:
        """Set fields unconditionally (nothing another coordinator could race on)."""

    def change(self, analysis_id: str, fields: dict[str, Any], *,
               status_in: tuple[str, ...] | None = None, runner: Any = _ANY,
               runner_seq_below: int | None = None,
               event: tuple[str, EventData] | None = None) -> dict[str, Any] | None:
        """Compare-and-set: update the record only while its status is in ``status_in``, its
        runner is ``runner`` and fewer than ``runner_seq_below`` runner events were applied;
        append ``event`` (its data, or a function of the updated record) in the same
        transaction. Returns the updated record, or None when the record was not in that
        state (another coordinator got there first)."""

    def add_event(self, analysis_id: str, type_: str, data: dict[str, Any]) -> int: ...

    def events(self, analysis_id: str, after: int = 0) -> list[dict[str, Any]]: ...

    def last_seq(self, analysis_id: str) -> int: ...

    def close(self) -> None: ...


def now() -> float:
    return time.time()
