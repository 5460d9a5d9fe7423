"""The analysis records in PostgreSQL (``FRAMESIFT_DATABASE_URL``), which every node reaches."""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from serve.analyses.sql_state import _Sql
from serve.analyses.state import POSTGRES_SCHEMA, POSTGRES_SCHEMA_SQL

log = logging.getLogger("framesift.state")


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
