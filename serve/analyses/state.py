"""Durable analysis records and their event logs, so that an accepted analysis survives the
restart of the service's replicas, on this node or (with PostgreSQL) on another one.

One interface (``AnalysisDB``), two databases: ``SqliteAnalysisDB``, a file under
``FRAMESIFT_STATE_DIR`` (the embedded default, one node), and ``PostgresAnalysisDB``
(``FRAMESIFT_DATABASE_URL``: a Supabase project's Postgres or any PostgreSQL, which every node
reaches). ``open_analysis_db`` picks one from the settings; both run the same SQL.

Writes that decide something are compare-and-set in one transaction, so two coordinators that
overlap for a moment (a replica restarted elsewhere while the old one still runs) cannot both
win: ``change`` updates a record only while it is in the expected state (status, runner, runner
events applied) and appends its event in the same transaction; an event's ``seq`` is allocated
from the record's row (locked by the update) and ``(analysis_id, seq)`` is unique; at most one
queued or running analysis has a given fingerprint (a unique partial index).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

if TYPE_CHECKING:
    from serve.settings import ServiceSettings

log = logging.getLogger("framesift.state")

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
POSTGRES_SCHEMA_SQL = Path(__file__).with_name("postgres_schema.sql")  # = the Supabase migration
POSTGRES_SCHEMA = "framesift_service"

EventData = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
_ANY = object()


class AnalysisDB(Protocol):
    """What the coordinator needs from its database. Records are dicts of the columns."""

    backend: str

    def insert(self, rec: dict[str, Any], event: tuple[str, dict[str, Any]]) -> bool:
        """Insert ``rec`` with its first event in one transaction; False (nothing written) when
        an active analysis already has its fingerprint."""

    def get(self, analysis_id: str) -> dict[str, Any] | None: ...

    def find_active(self, fingerprint: str) -> dict[str, Any] | None: ...

    def list(self, scan_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""

    def with_status(self, status: str) -> list[dict[str, Any]]:
        """In queue order (the order the analyses were accepted)."""

    def count(self, status: str) -> int: ...

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


class _Sql(ABC):
    """The SQL both databases run (``?`` placeholders; PostgreSQL's driver gets ``%s``)."""

    backend = "sql"
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
        return {k: (self._encode_json(v) if k in self.json_fields and v is not None else v)
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

    def _append_event(self, q: Callable, analysis_id: str, type_: str,
                      data: dict[str, Any]) -> int:
        # the UPDATE locks the record's row: concurrent writers of one analysis take turns
        [row] = q(f"UPDATE {self.analyses} SET last_seq = last_seq + 1 WHERE id = ? "
                  "RETURNING last_seq", (analysis_id,))
        seq = int(row["last_seq"])
        q(f"INSERT INTO {self.events_table} (analysis_id, seq, type, data) VALUES (?, ?, ?, ?)",
          (analysis_id, seq, type_, self._encode_json(data)))
        return seq

    def insert(self, rec: dict[str, Any], event: tuple[str, dict[str, Any]]) -> bool:
        rec = self._encode(rec)
        cols = ", ".join(rec)
        marks = ", ".join("?" for _ in rec)
        try:
            with self._tx() as q:
                q(f"INSERT INTO {self.analyses} ({cols}) VALUES ({marks})", tuple(rec.values()))
                self._append_event(q, rec["id"], *event)
        except Exception as exc:  # noqa: BLE001 - only the duplicate is an answer
            if self._is_duplicate_active(exc):
                return False
            raise
        return True

    def update(self, analysis_id: str, **fields: Any) -> None:
        fields = self._encode(fields)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as q:
            q(f"UPDATE {self.analyses} SET {sets} WHERE id = ?", (*fields.values(), analysis_id))

    def change(self, analysis_id: str, fields: dict[str, Any], *,
               status_in: tuple[str, ...] | None = None, runner: Any = _ANY,
               runner_seq_below: int | None = None,
               event: tuple[str, EventData] | None = None) -> dict[str, Any] | None:
        enc = self._encode(fields)
        sets = ", ".join(f"{k} = ?" for k in enc) or "id = id"
        where, args = ["id = ?"], [analysis_id]
        if status_in is not None:
            where.append(f"status IN ({', '.join('?' for _ in status_in)})")
            args += list(status_in)
        if runner is not _ANY:
            where.append("runner IS NULL" if runner is None else "runner = ?")
            args += [] if runner is None else [runner]
        if runner_seq_below is not None:
            where.append("runner_seq < ?")
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
        rows = self._read(f"SELECT * FROM {self.analyses} WHERE id = ?", (analysis_id,))
        return rows[0] if rows else None

    def find_active(self, fingerprint: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT * FROM {self.analyses} WHERE fingerprint = ? AND status IN "
                          f"(?, ?) ORDER BY {self.queue_order} LIMIT 1", (fingerprint, *ACTIVE))
        return rows[0] if rows else None

    def list(self, scan_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        order = f"ORDER BY created_at DESC, {self.queue_order} DESC LIMIT ?"
        if scan_id is None:
            return self._read(f"SELECT * FROM {self.analyses} {order}", (limit,))
        return self._read(f"SELECT * FROM {self.analyses} WHERE scan_id = ? {order}",
                          (scan_id, limit))

    def with_status(self, status: str) -> list[dict[str, Any]]:
        return self._read(f"SELECT * FROM {self.analyses} WHERE status = ? "
                          f"ORDER BY {self.queue_order}", (status,))

    def _scalar(self, sql: str, args: tuple) -> int:
        with self._tx() as q:
            [row] = q(sql, args)
        return int(next(iter(row.values())))

    def count(self, status: str) -> int:
        return self._scalar(f"SELECT COUNT(*) AS n FROM {self.analyses} WHERE status = ?",
                            (status,))

    def count_active(self, owner: str | None) -> int:
        who = "owner IS NULL" if owner is None else "owner = ?"
        return self._scalar(f"SELECT COUNT(*) AS n FROM {self.analyses} WHERE {who} AND "
                            "status IN (?, ?)", (*(() if owner is None else (owner,)), *ACTIVE))

    def active_sources(self, source_kind: str) -> list[str]:
        with self._tx() as q:
            rows = q(f"SELECT source FROM {self.analyses} WHERE source_kind = ? AND "
                     "status IN (?, ?)", (source_kind, *ACTIVE))
        return [r["source"] for r in rows]

    def add_event(self, analysis_id: str, type_: str, data: dict[str, Any]) -> int:
        with self._tx() as q:
            return self._append_event(q, analysis_id, type_, data)

    def events(self, analysis_id: str, after: int = 0) -> list[dict[str, Any]]:
        with self._tx() as q:
            rows = q(f"SELECT seq, type, data FROM {self.events_table} WHERE analysis_id = ? "
                     "AND seq > ? ORDER BY seq", (analysis_id, after))
        return [{"seq": int(r["seq"]), "type": r["type"], "data": self._decode_json(r["data"])}
                for r in rows]

    def last_seq(self, analysis_id: str) -> int:
        return self._scalar(f"SELECT COALESCE(MAX(seq), 0) AS n FROM {self.events_table} "
                            "WHERE analysis_id = ?", (analysis_id,))


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id TEXT PRIMARY KEY,
    scan_id TEXT NOT NULL,
    item_type TEXT,
    source_kind TEXT NOT NULL,      -- 'url' or 'file'
    source TEXT NOT NULL,           -- redacted URL, or the upload's reference
    params TEXT NOT NULL,           -- JSON
    fingerprint TEXT NOT NULL,      -- same scan + same parameters = same fingerprint
    status TEXT NOT NULL,
    progress_current INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    result TEXT,                    -- JSON
    error_code TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    runner TEXT,                     -- name of the detached runner actor while running
    owner TEXT,                      -- who asked: a hash of the API key (never the key)
    source_name TEXT,                -- what the client calls the video (upload name, redacted URL)
    source_secret INTEGER NOT NULL DEFAULT 0,  -- the URL had credentials/a signed query, kept
                                               -- in memory only: 'source' is redacted
    runner_seq INTEGER NOT NULL DEFAULT 0,  -- runner events already applied
    last_seq INTEGER NOT NULL DEFAULT 0,    -- last event's seq (allocates the next one)
    created_at REAL NOT NULL,
    started_at REAL,
    progress_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS analyses_scan ON analyses (scan_id, created_at);
CREATE INDEX IF NOT EXISTS analyses_status ON analyses (status, created_at);
CREATE TABLE IF NOT EXISTS events (
    analysis_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (analysis_id, seq)
);
"""
_SQLITE_ADDED_COLUMNS = (("runner", "TEXT"), ("owner", "TEXT"), ("source_name", "TEXT"),
                         ("source_secret", "INTEGER NOT NULL DEFAULT 0"),
                         ("last_seq", "INTEGER NOT NULL DEFAULT 0"))
_SQLITE_ACTIVE_FINGERPRINT = ("CREATE UNIQUE INDEX IF NOT EXISTS analyses_active_fingerprint ON "
                              "analyses (fingerprint) WHERE status IN ('queued', 'running')")


class SqliteAnalysisDB(_Sql):
    """A SQLite file on this node; safe to share between threads of one process (and, through
    SQLite's locking, between processes on this node)."""

    backend = "sqlite"
    queue_order = "rowid"

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                     timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SQLITE_SCHEMA)
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(analyses)")}
            for column, decl in _SQLITE_ADDED_COLUMNS:  # databases written by earlier versions
                if column not in have:
                    self._conn.execute(f"ALTER TABLE analyses ADD COLUMN {column} {decl}")
                    if column == "last_seq":
                        self._conn.execute("UPDATE analyses SET last_seq = (SELECT COALESCE("
                                           "MAX(seq), 0) FROM events WHERE analysis_id = "
                                           "analyses.id)")
            self._conn.execute(_SQLITE_ACTIVE_FINGERPRINT)

    def __repr__(self) -> str:
        return f"SqliteAnalysisDB({str(self.path)!r})"

    @contextmanager
    def _tx(self) -> Iterator[Callable[[str, tuple], list[dict[str, Any]]]]:
        def q(sql: str, args: tuple = ()) -> list[dict[str, Any]]:
            return [dict(r) for r in self._conn.execute(sql, args).fetchall()]

        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield q
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _encode_json(self, value: Any) -> Any:
        return json.dumps(value)

    def _decode_json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def _is_duplicate_active(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "fingerprint" in str(exc)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresAnalysisDB(_Sql):
    """PostgreSQL (``FRAMESIFT_DATABASE_URL``), in the ``framesift_service`` schema.

    The schema is created at start-up if missing (``postgres_schema.sql``, the same file as the
    Supabase migration; safe to apply twice; under an advisory lock, so coordinators starting
    together do not race). One connection per process, used under a lock; a broken connection
    is dropped and the next call opens a new one (the failing call raises). Server-side
    prepared statements are off, so Supabase's transaction pooler (port 6543) works too.
    The URL is a secret (it may hold a password): only its redacted form is ever shown.
    """

    backend = "postgres"
    analyses = f"{POSTGRES_SCHEMA}.analyses"
    events_table = f"{POSTGRES_SCHEMA}.events"
    MIGRATION_LOCK = 0x6672616D65  # pg_advisory_xact_lock key ("frame")

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0,
                 apply_schema: bool = True) -> None:
        import psycopg  # noqa: F401 - a clear ImportError here, not at the first query

        self._url = url
        self._timeout = connect_timeout_s
        self._lock = threading.RLock()
        self._conn: Any = None
        if apply_schema:
            self.apply_schema()

    def __repr__(self) -> str:
        return f"PostgresAnalysisDB({self.where!r})"

    @property
    def where(self) -> str:
        """The database's URL without credentials or options (safe to log)."""
        from jobs.redact import redact_url

        if "://" in self._url:
            return redact_url(self._url)
        keys = dict(p.split("=", 1) for p in self._url.split() if "=" in p)  # key=value form
        return f"postgresql://{keys.get('host', '')}:{keys.get('port', '5432')}/" \
               f"{keys.get('dbname', '')}"

    def _connection(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self._url, autocommit=True, row_factory=dict_row,
                                             prepare_threshold=None,
                                             connect_timeout=max(1, int(self._timeout)),
                                             application_name="framesift-coordinator")
            except psycopg.OperationalError as exc:
                # libpq's message names host and user, never the password; redact anyway
                from jobs.redact import redact_text

                raise ConnectionError(f"cannot connect to the analysis database {self.where}: "
                                      f"{redact_text(str(exc).strip())}") from None
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[Callable[[str, tuple], list[dict[str, Any]]]]:
        import psycopg

        with self._lock:
            conn = self._connection()

            def q(sql: str, args: tuple = ()) -> list[dict[str, Any]]:
                cur = conn.execute(sql.replace("?", "%s"), args)
                return cur.fetchall() if cur.description is not None else []

            try:
                with conn.transaction():
                    yield q
            except psycopg.OperationalError:
                self._drop()
                raise

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            self._conn = None

    def apply_schema(self) -> None:
        """Create the schema, tables and indexes if missing (idempotent)."""
        import psycopg

        sql = POSTGRES_SCHEMA_SQL.read_text()
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.MIGRATION_LOCK,))
                    conn.execute(sql)
            except psycopg.errors.InsufficientPrivilege as exc:
                # a role that may not create: the migration must have been applied already
                log.warning("could not apply the framesift_service schema on %s (%s); "
                            "expecting it applied with `supabase db push`", self.where,
                            str(exc).strip().splitlines()[0])
            except psycopg.OperationalError:
                self._drop()
                raise

    def _encode_json(self, value: Any) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def _decode_json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def _is_duplicate_active(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation) and \
            getattr(exc.diag, "constraint_name", None) == "analyses_active_fingerprint"

    def close(self) -> None:
        with self._lock:
            self._drop()


def open_analysis_db(settings: "ServiceSettings") -> AnalysisDB:
    """PostgreSQL when ``FRAMESIFT_DATABASE_URL`` is set, else SQLite under the state dir."""
    if settings.database_url is not None:
        return PostgresAnalysisDB(settings.database_url.get_secret_value())
    return SqliteAnalysisDB(Path(settings.state_dir).resolve() / "analyses.sqlite3")


def now() -> float:
    return time.time()
