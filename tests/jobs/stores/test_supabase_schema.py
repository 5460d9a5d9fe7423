"""The Supabase migration on a real PostgreSQL server started for this test session.

The server is the session's (``postgres`` in tests/conftest.py); each test gets a database with
the few things a Supabase migration expects: the roles ``anon``, ``authenticated`` and
``service_role`` (which bypasses RLS, as in Supabase), Supabase's default grants on ``public``,
and ``storage.buckets`` / ``storage.objects``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from jobs.golden.params import GoldenParams
from jobs.stores.supabase_rows import analysis_row, golden_frame_row
from jobs.stores.supabase_client import GOLDEN_CONFLICT
from manifest_fixtures import golden_frame, sample_manifest
from supabase_standin import SCHEMA

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")

MIGRATIONS = sorted(p for p in (Path(__file__).resolve().parents[3] / "supabase" / "migrations")
                    .glob("*_framesift*.sql") if not p.name.endswith("_framesift_service.sql"))

SCAFFOLD = """
do $$ begin
  if not exists (select from pg_roles where rolname = 'anon') then create role anon nologin noinherit; end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then create role authenticated nologin noinherit; end if;
  if not exists (select from pg_roles where rolname = 'service_role') then create role service_role nologin noinherit bypassrls; end if;
end $$;
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
create schema if not exists storage;
grant usage on schema storage to anon, authenticated, service_role;
create table if not exists storage.buckets (
    id text primary key, name text not null, owner uuid, owner_id text,
    public boolean default false, avif_autodetection boolean default false,
    file_size_limit bigint, allowed_mime_types text[],
    created_at timestamptz default now(), updated_at timestamptz default now());
create unique index if not exists bname on storage.buckets (name);
create table if not exists storage.objects (
    id uuid primary key default gen_random_uuid(), bucket_id text references storage.buckets (id),
    name text, owner uuid, owner_id text, metadata jsonb, version text,
    created_at timestamptz default now(), updated_at timestamptz default now(),
    last_accessed_at timestamptz default now());
alter table storage.objects enable row level security;
grant all on storage.buckets, storage.objects to anon, authenticated, service_role;
"""


@pytest.fixture
def db(postgres):
    """A fresh database with the Supabase scaffolding and the migration applied once."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    conninfo = postgres.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SCAFFOLD)
        apply_migration(conn)
        yield conn
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"drop database {name} with (force)")


def apply_migration(conn) -> None:
    assert MIGRATIONS, "no supabase/migrations/*_framesift.sql"
    for path in MIGRATIONS:
        with conn.transaction():  # the Supabase CLI applies each file in a transaction
            conn.execute(path.read_text())


def columns(conn, table: str) -> dict[str, tuple[str, bool]]:
    rows = conn.execute("select column_name, data_type, is_nullable = 'NO' from "
                        "information_schema.columns where table_schema = 'public' and "
                        "table_name = %s", (table,)).fetchall()
    return {name: (dtype, notnull) for name, dtype, notnull in rows}


def sample_rows(analysis_id: str, scan_id: str = "scan-1", n: int = 2, sharp: float = 120.5):
    frames = [replace(golden_frame(10 * (i + 1), i + 1, scan_id), sharpness=sharp, time_s=0.3 * (i + 1))
              for i in range(n)]
    base = sample_manifest(scan_id, frames, item_type="shoe", parameters=GoldenParams(top_k=n).recorded())
    manifest = base.model_copy(update={"selection": base.selection.model_copy(
        update={"still_frames": 40})})
    analysis = analysis_row(analysis_id, scan_id, "running", manifest)
    rows = [golden_frame_row(scan_id, analysis_id, f, "golden-frames", "image/jpeg") for f in frames]
    return analysis, rows


def postgrest_upsert(conn, table: str, rows: list[dict], on_conflict: str, role: str = "service_role"):
    """The statement PostgREST runs for ``POST /<table>?on_conflict=..`` with
    ``Prefer: resolution=merge-duplicates`` (json_populate_recordset + ON CONFLICT DO UPDATE)."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    col_list = ", ".join(f'"{c}"' for c in cols)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in cols)
    with conn.transaction():
        conn.execute(f"set local role {role}")
        conn.execute(
            f"insert into public.{table} ({col_list}) select {col_list} from "
            f"json_populate_recordset(null::public.{table}, %s::json) "
            f"on conflict ({on_conflict}) do update set {updates}",
            (json.dumps(rows),))


# tests -----------------------------------------------------------------------------------------

def test_the_migration_applies_cleanly_twice(db):
    apply_migration(db)  # second time
    for table in ("analyses", "golden_frames"):
        assert columns(db, table), f"{table} missing"
        assert db.execute("select relrowsecurity from pg_class where oid = %s::regclass",
                          (f"public.{table}",)).fetchone() == (True,)
    indexes = {r[0] for r in db.execute("select indexname from pg_indexes where schemaname = 'public'")}
    assert {"analyses_scan_id_idx", "analyses_created_at_idx", "golden_frames_scan_id_idx",
            "golden_frames_created_at_idx", "golden_frames_tenant_scan_id_frame_index_key",
            "analyses_tenant_scan_id_idx"} <= indexes
    policies = db.execute("select tablename, cmd, roles::text[] from pg_policies "
                          "where schemaname = 'public' order by 1, 2").fetchall()
    assert ("analyses", "ALL", ["service_role"]) in policies
    assert ("golden_frames", "SELECT", ["authenticated"]) in policies
    assert len(policies) == 4
    assert db.execute("select id, public, allowed_mime_types from storage.buckets").fetchall() == [
        ("golden-frames", False, ["image/jpeg", "image/png", "application/vnd.apache.parquet"])]


def test_the_standin_and_the_client_match_the_real_tables(db):
    for table, spec in SCHEMA.items():
        real = columns(db, table)
        assert set(real) == set(spec["columns"]), table
        required = {c for c, (_, notnull) in real.items() if notnull}
        defaults = {r[0] for r in db.execute(
            "select column_name from information_schema.columns where table_schema = 'public' "
            "and table_name = %s and column_default is not null", (table,))}
        assert required - defaults == set(spec["required"]), table
        fks = {r[0]: (r[1], r[2], r[3], r[4].lower()) for r in db.execute(
            "select kcu.column_name, ccu.table_name, ccu.column_name, rc.constraint_name, "
            "rc.delete_rule from information_schema.referential_constraints rc "
            "join information_schema.key_column_usage kcu on kcu.constraint_name = rc.constraint_name "
            "join information_schema.constraint_column_usage ccu "
            "on ccu.constraint_name = rc.constraint_name where kcu.table_name = %s", (table,))}
        assert fks == spec["fks"], table  # the stand-in cascades deletes where the schema does
    analysis, frames = sample_rows(str(uuid.uuid4()))
    assert set(analysis) <= set(columns(db, "analyses"))
    assert set(frames[0]) <= set(columns(db, "golden_frames"))


def test_constraints_reject_bad_rows(db):
    aid = str(uuid.uuid4())
    analysis, frames = sample_rows(aid)
    postgrest_upsert(db, "analyses", [analysis], "id")

    def rejected(table: str, row: dict, sqlstate: str) -> None:
        with pytest.raises(psycopg.Error) as info:
            postgrest_upsert(db, table, [row], "id")
        assert info.value.sqlstate == sqlstate, info.value

    rejected("analyses", {**analysis, "id": str(uuid.uuid4()), "scan_id": None}, "23502")
    rejected("analyses", {**analysis, "id": str(uuid.uuid4()), "status": "done"}, "23514")
    rejected("analyses", {**analysis, "id": str(uuid.uuid4()), "scan_id": "../etc"}, "23514")
    rejected("analyses", {**analysis, "id": str(uuid.uuid4()), "status": "failed", "error": None}, "23514")
    rejected("golden_frames", {**frames[0], "analysis_id": str(uuid.uuid4())}, "23503")
    rejected("golden_frames", {**frames[0], "frame_index": -1}, "23514")
    rejected("golden_frames", {**frames[0], "glint_share": 1.5}, "23514")
    rejected("golden_frames", {**frames[0], "width": 0}, "23514")
    rejected("golden_frames", {**frames[0], "storage_key": None}, "23502")
    rejected("golden_frames", {**frames[0], "content_type": "text/plain"}, "23514")
    postgrest_upsert(db, "golden_frames", [frames[0]], "id")
    # a second row for the same (scan_id, frame_index) under another id violates the unique key
    rejected("golden_frames", {**frames[0], "id": str(uuid.uuid4())}, "23505")


def test_the_upsert_the_client_sends_is_idempotent(db):
    aid = str(uuid.uuid4())
    analysis, frames = sample_rows(aid, n=3)
    for _ in range(2):
        postgrest_upsert(db, "analyses", [analysis], "id")
        postgrest_upsert(db, "golden_frames", frames, GOLDEN_CONFLICT)
    assert db.execute("select count(*) from golden_frames").fetchone() == (3,)
    first = db.execute("select frame_index, sharpness, created_at, updated_at from golden_frames "
                       "order by frame_index").fetchall()

    # a later analysis of the same scan updates the same rows in place
    aid2 = str(uuid.uuid4())
    analysis2, frames2 = sample_rows(aid2, n=3, sharp=300.0)
    postgrest_upsert(db, "analyses", [analysis2], "id")
    postgrest_upsert(db, "golden_frames", frames2, GOLDEN_CONFLICT)
    postgrest_upsert(db, "analyses", [{**analysis2, "status": "succeeded"}], "id")
    rows = db.execute("select frame_index, sharpness, analysis_id::text, created_at, updated_at "
                      "from golden_frames order by frame_index").fetchall()
    assert len(rows) == 3
    assert all(r[1] == 300.0 and r[2] == aid2 for r in rows)
    assert [r[3] for r in rows] == [f[2] for f in first]  # same rows, not new ones
    assert db.execute("select status from analyses where id = %s", (aid2,)).fetchone() == ("succeeded",)
    parameters, timings = db.execute("select parameters, timings from analyses where id = %s",
                                     (aid2,)).fetchone()
    assert (parameters, timings) == (analysis2["parameters"], analysis2["timings"])
    assert parameters["top_k"] == 3 and "total_s" in timings


def test_row_level_security_blocks_anon_writes_and_lets_signed_in_users_read(db):
    aid = str(uuid.uuid4())
    analysis, frames = sample_rows(aid)
    postgrest_upsert(db, "analyses", [analysis], "id")
    postgrest_upsert(db, "golden_frames", frames, GOLDEN_CONFLICT)

    for role in ("anon", "authenticated"):
        other = str(uuid.uuid4())
        with pytest.raises(psycopg.Error) as info:
            postgrest_upsert(db, "analyses", [{**analysis, "id": other}], "id", role=role)
        assert info.value.sqlstate == "42501" and "row-level security" in str(info.value)
        with pytest.raises(psycopg.Error) as info:
            postgrest_upsert(db, "golden_frames", [{**frames[0], "id": other, "frame_index": 99}],
                             GOLDEN_CONFLICT, role=role)
        assert info.value.sqlstate == "42501"

    def visible(role: str) -> int:
        with db.transaction():
            db.execute(f"set local role {role}")
            # updates and deletes by anon touch nothing: no row is visible to them
            db.execute("update golden_frames set sharpness = 0")
            db.execute("delete from analyses")
            return db.execute("select count(*) from golden_frames").fetchone()[0]

    assert visible("anon") == 0
    assert visible("authenticated") == 2
    assert db.execute("select count(*) from analyses").fetchone() == (1,)
    assert db.execute("select min(sharpness) from golden_frames").fetchone()[0] > 0


SERVICE_MIGRATION = next((Path(__file__).resolve().parents[3] / "supabase" / "migrations")
                         .glob("*_framesift_service.sql"))


def test_the_service_state_migration_is_what_the_service_applies_and_api_roles_see_nothing(db):
    from serve.analyses.state import POSTGRES_SCHEMA_SQL

    # `supabase db push` and the service's start-up apply the same file (a byte-identical copy)
    assert SERVICE_MIGRATION.read_text() == POSTGRES_SCHEMA_SQL.read_text()
    for _ in range(2):  # safe to apply twice (and again at every start of the service)
        with db.transaction():
            db.execute(SERVICE_MIGRATION.read_text())
    assert db.execute("select public, file_size_limit, allowed_mime_types from storage.buckets "
                      "where id = 'framesift-uploads'").fetchone() == \
        (False, 536870912, ["application/octet-stream"])
    db.execute("insert into framesift_service.analyses (id, scan_id, source_kind, source, params, "
               "fingerprint, status, created_at) values ('a1', 's1', 'url', 'u', '{}', 'f', "
               "'queued', 0)")
    for role in ("anon", "authenticated"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with db.transaction():
                db.execute(f"set local role {role}")
                db.execute("select count(*) from framesift_service.analyses")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with db.transaction():
            db.execute("set local role service_role")  # bypasses RLS, but has no grant either
            db.execute("select count(*) from framesift_service.events")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("update framesift_service.analyses set status = 'lost' where id = 'a1'")


def test_row_level_security_follows_the_tenant_of_the_signed_in_user(db):
    """Two tenants store the same scan id: both rows stand (unique per tenant), and a signed-in
    user reads only the rows and objects of the tenant in the JWT's app_metadata; a user with
    no tenant reads the results of no tenant, as before tenants."""
    rows = {}
    for tenant in ("acme", "beta", None):
        aid = str(uuid.uuid4())
        analysis, frames = sample_rows(aid)
        analysis = {**analysis, "tenant": tenant or ""}
        frames = [golden_frame_row("scan-1", aid, replace(golden_frame(10 * (i + 1), i + 1, "scan-1")),
                                   "golden-frames", "image/jpeg", tenant) for i in range(2)]
        postgrest_upsert(db, "analyses", [analysis], "id")
        postgrest_upsert(db, "golden_frames", frames, GOLDEN_CONFLICT)
        rows[tenant] = frames
        db.execute("insert into storage.objects (bucket_id, name) values ('golden-frames', %s)",
                   (f"{'_tenants/' + tenant + '/' if tenant else ''}scan-1/10.jpg",))
    assert db.execute("select count(*) from golden_frames").fetchone() == (6,)

    def seen(tenant: str | None) -> tuple:
        claims = json.dumps({"role": "authenticated",
                             "app_metadata": {"framesift_tenant": tenant} if tenant else {}})
        with db.transaction():
            db.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
            db.execute("set local role authenticated")
            frames = db.execute("select distinct tenant from golden_frames").fetchall()
            analyses = db.execute("select distinct tenant from analyses").fetchall()
            objects = db.execute("select name from storage.objects order by name").fetchall()
        return frames, analyses, objects

    assert seen("acme") == ([("acme",)], [("acme",)], [("_tenants/acme/scan-1/10.jpg",)])
    assert seen("beta") == ([("beta",)], [("beta",)], [("_tenants/beta/scan-1/10.jpg",)])
    assert seen(None) == ([("",)], [("",)], [("scan-1/10.jpg",)])
