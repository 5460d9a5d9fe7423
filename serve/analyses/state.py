"""Durable analysis records and their event logs (SQLite), so that an accepted analysis
survives the restart of the service's replicas."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id TEXT PRIMARY KEY,
    scan_id TEXT NOT NULL,
    item_type TEXT,
    source_kind TEXT NOT NULL,      -- 'url' or 'file'
    source TEXT NOT NULL,
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

_JSON_FIELDS = ("params", "result")
_ADDED_COLUMNS = (("runner", "TEXT"), ("owner", "TEXT"), ("source_name", "TEXT"),
                  ("source_secret", "INTEGER NOT NULL DEFAULT 0"))


class AnalysisDB:
    """A small SQLite database; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(analyses)")}
            for column, decl in _ADDED_COLUMNS:  # databases written by earlier versions
                if column not in have:
                    self._conn.execute(f"ALTER TABLE analyses ADD COLUMN {column} {decl}")

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        out = []
        for row in rows:
            rec = dict(row)
            for f in _JSON_FIELDS:
                if rec.get(f) is not None:
                    rec[f] = json.loads(rec[f])
            out.append(rec)
        return out

    def insert(self, rec: dict[str, Any]) -> None:
        rec = {k: (json.dumps(v) if k in _JSON_FIELDS and v is not None else v) for k, v in rec.items()}
        cols = ", ".join(rec)
        marks = ", ".join("?" for _ in rec)
        with self._lock:
            self._conn.execute(f"INSERT INTO analyses ({cols}) VALUES ({marks})", tuple(rec.values()))

    def update(self, analysis_id: str, **fields: Any) -> None:
        fields = {k: (json.dumps(v) if k in _JSON_FIELDS and v is not None else v)
                  for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._conn.execute(f"UPDATE analyses SET {sets} WHERE id = ?", (*fields.values(), analysis_id))

    def get(self, analysis_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM analyses WHERE id = ?", (analysis_id,))
        return rows[0] if rows else None

    def find_active(self, fingerprint: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM analyses WHERE fingerprint = ? AND status IN (?, ?) "
                          "ORDER BY created_at LIMIT 1", (fingerprint, *ACTIVE))
        return rows[0] if rows else None

    def list(self, scan_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if scan_id is None:
            return self._rows("SELECT * FROM analyses ORDER BY created_at DESC LIMIT ?", (limit,))
        return self._rows("SELECT * FROM analyses WHERE scan_id = ? ORDER BY created_at DESC "
                          "LIMIT ?", (scan_id, limit))

    def with_status(self, status: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM analyses WHERE status = ? ORDER BY created_at, rowid",
                          (status,))

    def count(self, status: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM analyses WHERE status = ?",
                                     (status,)).fetchone()
        return int(row[0])

    def count_active(self, owner: str | None) -> int:
        """Queued and running analyses of ``owner``."""
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM analyses WHERE owner IS ? AND "
                                     "status IN (?, ?)", (owner, *ACTIVE)).fetchone()
        return int(row[0])

    def active_sources(self, source_kind: str) -> list[str]:
        """``source`` of every queued or running analysis of that kind (files still needed)."""
        with self._lock:
            rows = self._conn.execute("SELECT source FROM analyses WHERE source_kind = ? AND "
                                      "status IN (?, ?)", (source_kind, *ACTIVE)).fetchall()
        return [r[0] for r in rows]

    def add_event(self, analysis_id: str, type_: str, data: dict[str, Any]) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE analysis_id = ?",
                                     (analysis_id,)).fetchone()
            seq = int(row[0]) + 1
            self._conn.execute("INSERT INTO events (analysis_id, seq, type, data) VALUES (?, ?, ?, ?)",
                               (analysis_id, seq, type_, json.dumps(data)))
        return seq

    def events(self, analysis_id: str, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT seq, type, data FROM events WHERE analysis_id = ? "
                                      "AND seq > ? ORDER BY seq", (analysis_id, after)).fetchall()
        return [{"seq": r[0], "type": r[1], "data": json.loads(r[2])} for r in rows]

    def last_seq(self, analysis_id: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE analysis_id = ?",
                                     (analysis_id,)).fetchone()
        return int(row[0])


def now() -> float:
    return time.time()
