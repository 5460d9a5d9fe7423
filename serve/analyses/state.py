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
import math
import re
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


# SQLite runs the tables and indexes of postgres_schema.sql, the one schema of both databases,
# translated by these rules (PostgreSQL-only statements, such as row level security, are left
# out): no schema prefix; an identity column is left out (SQLite orders by its rowid, which
# every index entry ends with); PostgreSQL types become the SQLite types that store the same
# values; now() becomes current_timestamp.
_SQLITE_TYPES = ((r"\bjsonb\b", "text"), (r"\bdouble precision\b", "real"),
                 (r"\bbigint\b", "integer"), (r"\bboolean\b", "integer"),
                 (r"\btimestamptz\b", "text"), (r"\bnow\(\)", "current_timestamp"))
_IDENTITY = re.compile(r"\bgenerated\s+(always|by\s+default)\s+as\s+identity\b", re.I)
_STATEMENT = re.compile(r"^create\s+(?:unique\s+)?(?:table|index)\b.*?;", re.I | re.M | re.S)
_TABLE = re.compile(r"create\s+table\s+if\s+not\s+exists\s+(\w+)\s*\((.*)\)\s*;$", re.I | re.S)
_TABLE_CONSTRAINT = re.compile(r"(primary\s+key|constraint|unique|check|foreign\s+key)\b", re.I)


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses and quotes, each part stripped."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def sqlite_schema(postgres_sql: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The SQLite statements (tables, then indexes) of the PostgreSQL schema, and every table's
    column declarations by name (what ``ALTER TABLE ... ADD COLUMN`` gives an older file)."""
    sql = re.sub(r"--[^\n]*", "", postgres_sql).replace(f"{POSTGRES_SCHEMA}.", "")
    for pattern, sqlite_type in _SQLITE_TYPES:
        sql = re.sub(pattern, sqlite_type, sql, flags=re.I)
    statements: list[str] = []
    columns: dict[str, dict[str, str]] = {}
    identity: set[str] = set()
    for match in _STATEMENT.finditer(sql):
        statement = " ".join(match.group(0).split())
        table = _TABLE.match(statement)
        if table is None:
            statements.append(statement)
            continue
        kept = []
        for item in _split_top_level(table.group(2)):
            if _IDENTITY.search(item):
                identity.add(item.split()[0])
                continue
            kept.append(item)
            if not _TABLE_CONSTRAINT.match(item):
                columns.setdefault(table.group(1), {})[item.split()[0]] = item
        statements.append(f"create table if not exists {table.group(1)} ({', '.join(kept)});")
    for i, statement in enumerate(statements):  # identity columns leave the index keys too
        for name in identity:
            statement = re.sub(rf",\s*{name}\b(\s+(asc|desc))?(?=\s*[,)])", "", statement)
        statements[i] = statement
    tables = [s for s in statements if s.lower().startswith("create table")]
    return tables + [s for s in statements if s not in tables], columns


class SqliteAnalysisDB(_Sql):
    """A SQLite file on this node; safe to share between threads of one process (and, through
    SQLite's locking, between processes on this node)."""

    backend = "sqlite"
    mark = "?"  # sqlite3's paramstyle is "qmark"
    queue_order = "rowid"

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                     timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        statements, columns = sqlite_schema(POSTGRES_SCHEMA_SQL.read_text())
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            for statement in statements:
                if statement.lower().startswith("create table"):
                    self._conn.execute(statement)
            for table, declared in columns.items():  # files written by earlier versions
                have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
                for column, declaration in declared.items():
                    if column not in have:
                        self._add_column(table, column, declaration)
            for statement in statements:
                if not statement.lower().startswith("create table"):
                    self._conn.execute(statement)

    def _add_column(self, table: str, column: str, declaration: str) -> None:
        if "current_timestamp" in declaration.lower():
            # SQLite adds no column whose default is not a constant: the type alone (the
            # rows of an older file, and those it gets later, leave it empty; nothing reads it)
            declaration = " ".join(declaration.split()[:2])
        self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {declaration}")
        if (table, column) == ("analyses", "last_seq"):
            self._conn.execute("UPDATE analyses SET last_seq = (SELECT COALESCE(MAX(seq), 0) "
                               "FROM events WHERE analysis_id = analyses.id)")

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
    mark = "%s"  # psycopg's paramstyle is "format"
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
                cur = conn.execute(sql, args)
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
