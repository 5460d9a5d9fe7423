"""One schema for the analysis records on both databases (``postgres_schema.sql``, translated
for SQLite), and statements that reach each driver in its own placeholder style, so that no
rewriting can touch a literal."""

from __future__ import annotations

import sqlite3

from serve.analyses.sqlite_state import SqliteAnalysisDB, sqlite_schema
from serve.analyses.state import POSTGRES_SCHEMA, POSTGRES_SCHEMA_SQL, now


def _open(settings: dict):
    from serve.analyses.open_db import open_analysis_db
    from serve.settings import ServiceSettings

    return open_analysis_db(ServiceSettings(**settings))


def _columns(db) -> dict[str, list[str]]:
    with db._tx() as q:
        if db.backend == "sqlite":
            return {t: [r["name"] for r in q(f"PRAGMA table_info({t})")]
                    for t in ("analyses", "events")}
        rows = q("SELECT table_name AS t, column_name AS c FROM information_schema.columns "
                 f"WHERE table_schema = {db.mark} ORDER BY ordinal_position", (POSTGRES_SCHEMA,))
    found: dict[str, list[str]] = {}
    for r in rows:
        found.setdefault(r["t"], []).append(r["c"])
    return found


def test_both_databases_have_the_columns_of_the_one_schema_file(db_settings):
    _, declared = sqlite_schema(POSTGRES_SCHEMA_SQL.read_text())
    db = _open(db_settings)
    try:
        have = _columns(db)
    finally:
        db.close()
    for table in ("analyses", "events"):
        extra = {"queue_order"} if db.backend == "postgres" and table == "analyses" else set()
        assert set(have[table]) == set(declared[table]) | extra, (db.backend, table)
    assert "queue_order" not in declared["analyses"]  # identity: SQLite orders by rowid


def test_the_sqlite_translation_keeps_the_constraints_and_indexes():
    statements, _ = sqlite_schema(POSTGRES_SCHEMA_SQL.read_text())
    text = "\n".join(statements)
    assert "framesift_service." not in text and "jsonb" not in text and "now()" not in text
    assert "check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled'))" in text
    assert ("create unique index if not exists analyses_active_fingerprint on analyses "
            "(fingerprint) where status in ('queued', 'running');") in statements
    assert "create index if not exists analyses_queue on analyses (status);" in statements
    conn = sqlite3.connect(":memory:")
    for statement in statements:
        conn.execute(statement)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"analyses_active_fingerprint", "analyses_queue", "analyses_scan",
            "analyses_created"} <= names


def test_a_sqlite_file_of_an_earlier_version_gets_the_missing_columns(tmp_path):
    path = tmp_path / "analyses.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE analyses (id TEXT PRIMARY KEY, scan_id TEXT NOT NULL, item_type TEXT,
            source_kind TEXT NOT NULL, source TEXT NOT NULL, params TEXT NOT NULL,
            fingerprint TEXT NOT NULL, status TEXT NOT NULL,
            progress_current INTEGER NOT NULL DEFAULT 0, progress_total INTEGER NOT NULL DEFAULT 0,
            result TEXT, error_code TEXT, error_message TEXT, attempts INTEGER NOT NULL DEFAULT 0,
            runner_seq INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,
            progress_at REAL, finished_at REAL);
        CREATE TABLE events (analysis_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
            data TEXT NOT NULL, PRIMARY KEY (analysis_id, seq));
        INSERT INTO analyses (id, scan_id, source_kind, source, params, fingerprint, status,
            created_at) VALUES ('a1', 's1', 'file', 'x.upload', '{}', 'f1', 'succeeded', 1.0);
        INSERT INTO events VALUES ('a1', 1, 'status', '{}'), ('a1', 2, 'done', '{}');
    """)
    old.close()
    db = SqliteAnalysisDB(path)
    try:
        rec = db.get("a1")
        assert rec["last_seq"] == 2 and rec["owner"] is None and rec["source_secret"] == 0
        assert db.add_event("a1", "note", {"n": 1}) == 3
        assert [e["seq"] for e in db.events("a1")] == [1, 2, 3]
        _, declared = sqlite_schema(POSTGRES_SCHEMA_SQL.read_text())
        assert set(_columns(db)["events"]) == set(declared["events"])
    finally:
        db.close()


def test_literals_in_a_statement_reach_the_driver_untouched(db_settings):
    """A ``?`` inside a literal is no placeholder: each statement carries its driver's own
    marks, and nothing rewrites the text (a blanket ``?`` -> ``%s`` broke this on PostgreSQL)."""
    db = _open(db_settings)
    try:
        assert db.insert({"id": "a1", "scan_id": "what? 100%", "item_type": None,
                          "source_kind": "file", "source": "x.upload", "params": {"q": "?"},
                          "fingerprint": "f1", "status": "queued", "created_at": now()},
                         ("status", {"status": "queued"}))
        m = db.mark
        rows = db._read(f"SELECT id, scan_id, 'why?' AS question FROM {db.analyses} "
                        f"WHERE id = {m} AND scan_id <> 'not?this'", ("a1",))
        assert rows == [{"id": "a1", "scan_id": "what? 100%", "question": "why?"}]
        assert db.list(scan_id="what? 100%")[0]["params"] == {"q": "?"}
        assert db.change("a1", {"error_message": "a ? and a %s"}, status_in=("queued",),
                         event=("note", {"text": "?"}))["error_message"] == "a ? and a %s"
        assert db.events("a1")[-1]["data"] == {"text": "?"}
    finally:
        db.close()
