"""The analysis records in a SQLite file on this node (the embedded default), with the tables
and indexes of postgres_schema.sql translated for SQLite."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from serve.analyses.sql_state import _Sql
from serve.analyses.state import POSTGRES_SCHEMA, POSTGRES_SCHEMA_SQL

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
