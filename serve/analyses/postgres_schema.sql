-- framesift HTTP service: analysis records and their event logs, in PostgreSQL.
--
-- Used when FRAMESIFT_DATABASE_URL is set (a Supabase project's Postgres, or any PostgreSQL 13+):
-- the coordinator replica, wherever Serve starts it, finds the queue and the history here.
-- The service applies this file at start-up (serve/analyses/state.py, under an advisory lock);
-- it is also supabase/migrations/20261201080000_framesift_service.sql, for `supabase db push`
-- (the two files are kept identical by a test). Safe to apply twice: every statement is guarded.
--
-- The tables live in their own schema, which Supabase's API (PostgREST) does not expose; row
-- level security is on with no policy, so only the owner (the role the service connects as)
-- and roles that bypass RLS see rows. Times are Unix epoch seconds (double precision).

create schema if not exists framesift_service;

create table if not exists framesift_service.analyses (
    id                text             primary key,
    queue_order       bigint           generated always as identity,  -- acceptance order
    scan_id           text             not null,
    item_type         text,
    source_kind       text             not null
                      constraint analyses_source_kind_known check (source_kind in ('url', 'file')),
    source            text             not null,  -- redacted URL, or the upload's reference
    params            jsonb            not null,
    fingerprint       text             not null,  -- same scan + video + parameters
    status            text             not null
                      constraint analyses_status_known
                      check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress_current  integer          not null default 0,
    progress_total    integer          not null default 0,
    result            jsonb,
    error_code        text,
    error_message     text,
    attempts          integer          not null default 0,
    runner            text,            -- the detached runner actor's name while running
    owner             text,            -- the tenant of the API key (never the key)
    source_name       text,            -- what the client calls the video
    source_secret     boolean          not null default false,  -- URL kept in memory only
    runner_seq        integer          not null default 0,  -- runner events already applied
    last_seq          integer          not null default 0,  -- last event's seq
    created_at        double precision not null,
    started_at        double precision,
    progress_at       double precision,
    finished_at       double precision
);

-- at most one queued or running analysis per fingerprint, whichever coordinator inserts it
create unique index if not exists analyses_active_fingerprint
    on framesift_service.analyses (fingerprint) where status in ('queued', 'running');
create index if not exists analyses_queue on framesift_service.analyses (status, queue_order);
create index if not exists analyses_scan on framesift_service.analyses (scan_id, created_at desc);
create index if not exists analyses_created on framesift_service.analyses (created_at desc);

create table if not exists framesift_service.events (
    analysis_id  text    not null
                 references framesift_service.analyses (id) on delete cascade,
    seq          integer not null,  -- allocated from analyses.last_seq in the same transaction
    type         text    not null,
    data         jsonb   not null,
    created_at   timestamptz not null default now(),
    primary key (analysis_id, seq)
);

alter table framesift_service.analyses enable row level security;
alter table framesift_service.events enable row level security;
revoke all on schema framesift_service from public;

do $$
begin
    -- Supabase's API roles get nothing here (plain PostgreSQL has no such roles)
    if exists (select from pg_roles where rolname = 'anon') then
        execute 'revoke all on all tables in schema framesift_service from anon';
        execute 'revoke all on schema framesift_service from anon';
    end if;
    if exists (select from pg_roles where rolname = 'authenticated') then
        execute 'revoke all on all tables in schema framesift_service from authenticated';
        execute 'revoke all on schema framesift_service from authenticated';
    end if;
    -- Supabase Storage: a private bucket where uploaded videos wait for their analysis
    -- (FRAMESIFT_UPLOADS_URL defaults to supabase://framesift-uploads with the Supabase store)
    if to_regclass('storage.buckets') is not null then
        execute $sql$
            insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
            values ('framesift-uploads', 'framesift-uploads', false, 536870912,
                    array['application/octet-stream'])
            on conflict (id) do nothing
        $sql$;
    end if;
end
$$;
