"""The SQL both analysis databases run (serve/analyses/sqlite_state.py and
serve/analyses/postgres_state.py): the ``AnalysisDB`` interface of serve/analyses/state.py as
compare-and-set statements, over each driver's own transactions and placeholders."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Callable

from serve.analyses.state import _ANY, ACTIVE, EventData, json_safe


class _Sql(ABC):
    """The SQL both databases run. Each statement is written with ``mark``, its driver's own
    placeholder (sqlite3's ``?``, psycopg's ``%s``), where a value goes: nothing rewrites the
    statement text afterwards, so literals in it stay as written. Values always travel as
    parameters. (With psycopg, a literal ``%`` in a statement that has parameters is ``%%``.)"""

    backend = "sql"
    mark: str  # the driver's placeholder, as its DB-API paramstyle has it
    analyses = "analyses"
    events_table = "events"
    queue_order = "queue_order"
    json_fields = ("params", "result")

    # -- hooks of the implementations --------------------------------------------------------

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Callable[[str, tuple], list[dict[str, Any]]]]:
        """One transaction; gives the function that runs a statement in it."""

    @abstractmethod
    def _encode_json(self, value: Any) -> Any:
        """A JSON field as this database stores it."""

    @abstractmethod
    def _decode_json(self, value: Any) -> Any:
        """A JSON field as this database returns it, decoded."""

    @abstractmethod
    def _is_duplicate_active(self, exc: Exception) -> bool:
        """Whether ``exc`` is the unique-active-fingerprint violation."""

    # -- shared ------------------------------------------------------------------------------

    def _encode(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {k: (self._encode_json(json_safe(v)) if k in self.json_fields and v is not None
                    else v)
                for k, v in fields.items()}

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        rec = dict(row)
        for f in self.json_fields:
            if rec.get(f) is not None:
                rec[f] = self._decode_json(rec[f])
        return rec

    def _read(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._tx() as q:
            return [self._decode(r) for r in q(sql, args)]

    def _marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    def _append_event(self, q: Callable, analysis_id: str, type_: str,
                      data: dict[str, Any]) -> int:
        m = self.mark
        # the UPDATE locks the record's row: concurrent writers of one analysis take turns
        [row] = q(f"UPDATE {self.analyses} SET last_seq = last_seq + 1 WHERE id = {m} "
                  "RETURNING last_seq", (analysis_id,))
        seq = int(row["last_seq"])
        q(f"INSERT INTO {self.events_table} (analysis_id, seq, type, data) "
          f"VALUES ({self._marks(4)})",
          (analysis_id, seq, type_, self._encode_json(json_safe(data))))
        return seq

    def insert(self, rec: dict[str, Any], event: tuple[str, dict[str, Any]]) -> bool:
        rec = self._encode(rec)
        cols = ", ".join(rec)
        try:
            with self._tx() as q:
                q(f"INSERT INTO {self.analyses} ({cols}) VALUES ({self._marks(len(rec))})",
                  tuple(rec.values()))
                self._append_event(q, rec["id"], *event)
        except Exception as exc:  # noqa: BLE001 - only the duplicate is an answer
            if self._is_duplicate_active(exc):
                return False
            raise
        return True

    def update(self, analysis_id: str, **fields: Any) -> None:
        m = self.mark
        fields = self._encode(fields)
        sets = ", ".join(f"{k} = {m}" for k in fields)
        with self._tx() as q:
            q(f"UPDATE {self.analyses} SET {sets} WHERE id = {m}", (*fields.values(), analysis_id))

    def change(self, analysis_id: str, fields: dict[str, Any], *,
               status_in: tuple[str, ...] | None = None, runner: Any = _ANY,
               runner_seq_below: int | None = None,
               event: tuple[str, EventData] | None = None) -> dict[str, Any] | None:
        m = self.mark
        enc = self._encode(fields)
        sets = ", ".join(f"{k} = {m}" for k in enc) or "id = id"
        where, args = [f"id = {m}"], [analysis_id]
        if status_in is not None:
            where.append(f"status IN ({self._marks(len(status_in))})")
            args += list(status_in)
        if runner is not _ANY:
            where.append("runner IS NULL" if runner is None else f"runner = {m}")
            args += [] if runner is None else [runner]
        if runner_seq_below is not None:
            where.append(f"runner_seq < {m}")
            args.append(runner_seq_below)
        with self._tx() as q:
            rows = q(f"UPDATE {self.analyses} SET {sets} WHERE {' AND '.join(where)} "
                     "RETURNING *", (*enc.values(), *args))
            if not rows:
                return None
            rec = self._decode(rows[0])
            if event is not None:
                type_, data = event
                self._append_event(q, analysis_id, type_, data(rec) if callable(data) else data)
        return rec

    def get(self, analysis_id: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT * FROM {self.analyses} WHERE id = {self.mark}", (analysis_id,))
        return rows[0] if rows else None

    def find_active(self, fingerprint: str) -> dict[str, Any] | None:
        m = self.mark
        rows = self._read(f"SELECT * FROM {self.analyses} WHERE fingerprint = {m} AND status IN "
                          f"({self._marks(len(ACTIVE))}) ORDER BY {self.queue_order} LIMIT 1",
                          (fingerprint, *ACTIVE))
        return rows[0] if rows else None

    def list(self, scan_id: str | None = None, limit: int = 100,
             owner: str | None = None) -> list[dict[str, Any]]:
        m = self.mark
        where, args = ["1 = 1"], []
        if scan_id is not None:
            where.append(f"scan_id = {m}")
            args.append(scan_id)
        if owner is not None:
            where.append(f"owner = {m}")
            args.append(owner)
        return self._read(f"SELECT * FROM {self.analyses} WHERE {' AND '.join(where)} "
                          f"ORDER BY created_at DESC, {self.queue_order} DESC LIMIT {m}",
                          (*args, limit))

    def with_status(self, status: str) -> list[dict[str, Any]]:
        return self._read(f"SELECT * FROM {self.analyses} WHERE status = {self.mark} "
                          f"ORDER BY {self.queue_order}", (status,))

    def _scalar(self, sql: str, args: tuple) -> int:
        with self._tx() as q:
            [row] = q(sql, args)
        return int(next(iter(row.values())))

    def last_started(self) -> dict[str | None, float]:
        rows = self._read(f"SELECT owner, MAX(started_at) AS t FROM {self.analyses} "
                          "WHERE started_at IS NOT NULL GROUP BY owner")
        return {r["owner"]: float(r["t"]) for r in rows}

    def count(self, status: str) -> int:
        return self._scalar(f"SELECT COUNT(*) AS n FROM {self.analyses} WHERE status = "
                            f"{self.mark}", (status,))

    def count_active(self, owner: str | None) -> int:
        who = "owner IS NULL" if owner is None else f"owner = {self.mark}"
        return self._scalar(f"SELECT COUNT(*) AS n FROM {self.analyses} WHERE {who} AND "
                            f"status IN ({self._marks(len(ACTIVE))})",
                            (*(() if owner is None else (owner,)), *ACTIVE))

    def active_sources(self, source_kind: str) -> list[str]:
        with self._tx() as q:
            rows = q(f"SELECT source FROM {self.analyses} WHERE source_kind = {self.mark} AND "
                     f"status IN ({self._marks(len(ACTIVE))})", (source_kind, *ACTIVE))
        return [r["source"] for r in rows]

    def add_event(self, analysis_id: str, type_: str, data: dict[str, Any]) -> int:
        with self._tx() as q:
            return self._append_event(q, analysis_id, type_, data)

    def events(self, analysis_id: str, after: int = 0) -> list[dict[str, Any]]:
        m = self.mark
        with self._tx() as q:
            rows = q(f"SELECT seq, type, data FROM {self.events_table} WHERE analysis_id = {m} "
                     f"AND seq > {m} ORDER BY seq", (analysis_id, after))
        return [{"seq": int(r["seq"]), "type": r["type"], "data": self._decode_json(r["data"])}
                for r in rows]

    def last_seq(self, analysis_id: str) -> int:
        return self._scalar(f"SELECT COALESCE(MAX(seq), 0) AS n FROM {self.events_table} "
                            f"WHERE analysis_id = {self.mark}", (analysis_id,))
