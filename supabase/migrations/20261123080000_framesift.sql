-- framesift: golden frames and their analyses.
--
-- Apply with the Supabase CLI (`supabase link --project-ref <ref>` then `supabase db push`).
-- Safe to apply twice: every statement is guarded (if not exists / or replace / on conflict).
-- The client (jobs/supabase_store.py) writes with the service role key and upserts:
--   analyses       on conflict (id)                     one row per analysis (run) of a scan
--   golden_frames  on conflict (scan_id, frame_index)   one row per golden frame of a scan
-- Objects go to the storage bucket 'golden-frames' under <scan_id>/<frame_index>.<ext>.

-- analyses ------------------------------------------------------------------------------------
create table if not exists public.analyses (
    id                uuid        primary key,
    scan_id           text        not null
                      constraint analyses_scan_id_format
                      check (scan_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' and scan_id !~ '\.\.'),
    item_type         text,
    status            text        not null
                      constraint analyses_status_known
                      check (status in ('running', 'succeeded', 'failed')),
    parameters        jsonb       not null default '{}'::jsonb,
    timings           jsonb       not null default '{}'::jsonb,
    video             jsonb,
    frame_count       integer     constraint analyses_frame_count_nonneg check (frame_count >= 0),
    still_frames      integer     constraint analyses_still_frames_nonneg check (still_frames >= 0),
    golden_count      integer     not null default 0
                      constraint analyses_golden_count_nonneg check (golden_count >= 0),
    error             text,
    framesift_version text,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint analyses_failed_has_error check (status <> 'failed' or error is not null)
);

create index if not exists analyses_scan_id_idx on public.analyses (scan_id);
create index if not exists analyses_created_at_idx on public.analyses (created_at desc);

comment on table public.analyses is
    'framesift: one row per golden-frame analysis of a scan; status succeeded only once every '
    'golden frame object and row is stored.';

-- golden_frames -------------------------------------------------------------------------------
create table if not exists public.golden_frames (
    id                    uuid             primary key,
    analysis_id           uuid             not null
                          constraint golden_frames_analysis_id_fkey
                          references public.analyses (id) on delete cascade,
    scan_id               text             not null,
    frame_index           integer          not null
                          constraint golden_frames_frame_index_nonneg check (frame_index >= 0),
    rank                  smallint         not null
                          constraint golden_frames_rank_positive check (rank >= 1),
    timestamp_s           double precision not null
                          constraint golden_frames_timestamp_nonneg check (timestamp_s >= 0),
    sharpness             double precision not null
                          constraint golden_frames_sharpness_nonneg check (sharpness >= 0),
    motion                double precision not null
                          constraint golden_frames_motion_nonneg check (motion >= 0),
    still                 boolean          not null,
    glint_share           double precision not null
                          constraint golden_frames_glint_share_range
                          check (glint_share >= 0 and glint_share <= 1),
    glint_blob_count      integer          not null
                          constraint golden_frames_glint_blob_count_nonneg check (glint_blob_count >= 0),
    glint_largest_blob_px integer          not null
                          constraint golden_frames_glint_largest_nonneg check (glint_largest_blob_px >= 0),
    glint                 jsonb            not null default '{}'::jsonb,
    width                 integer          not null
                          constraint golden_frames_width_positive check (width > 0),
    height                integer          not null
                          constraint golden_frames_height_positive check (height > 0),
    storage_bucket        text             not null,
    storage_key           text             not null,
    content_type          text             not null
                          constraint golden_frames_content_type_image check (content_type like 'image/%'),
    created_at            timestamptz      not null default now(),
    updated_at            timestamptz      not null default now(),
    constraint golden_frames_scan_id_frame_index_key unique (scan_id, frame_index)
);

create index if not exists golden_frames_scan_id_idx on public.golden_frames (scan_id);
create index if not exists golden_frames_analysis_id_idx on public.golden_frames (analysis_id);
create index if not exists golden_frames_created_at_idx on public.golden_frames (created_at desc);

comment on table public.golden_frames is
    'framesift: the golden frames of a scan with their metrics; the image is in storage at '
    'storage_bucket/storage_key.';

-- updated_at follows every update (upserts included) ------------------------------------------
create or replace function public.framesift_touch_updated_at() returns trigger
    language plpgsql
    set search_path = ''
as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

drop trigger if exists analyses_touch_updated_at on public.analyses;
create trigger analyses_touch_updated_at before update on public.analyses
    for each row execute function public.framesift_touch_updated_at();

drop trigger if exists golden_frames_touch_updated_at on public.golden_frames;
create trigger golden_frames_touch_updated_at before update on public.golden_frames
    for each row execute function public.framesift_touch_updated_at();

-- row level security: the service role writes, signed-in users read, anon gets nothing ---------
alter table public.analyses enable row level security;
alter table public.golden_frames enable row level security;

drop policy if exists "framesift service role writes analyses" on public.analyses;
create policy "framesift service role writes analyses" on public.analyses
    for all to service_role using (true) with check (true);

drop policy if exists "framesift authenticated read analyses" on public.analyses;
create policy "framesift authenticated read analyses" on public.analyses
    for select to authenticated using (true);

drop policy if exists "framesift service role writes golden frames" on public.golden_frames;
create policy "framesift service role writes golden frames" on public.golden_frames
    for all to service_role using (true) with check (true);

drop policy if exists "framesift authenticated read golden frames" on public.golden_frames;
create policy "framesift authenticated read golden frames" on public.golden_frames
    for select to authenticated using (true);

-- storage: a private bucket for the images; signed-in users may read them ---------------------
insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
values ('golden-frames', 'golden-frames', false, 52428800, array['image/jpeg', 'image/png'])
on conflict (id) do nothing;

drop policy if exists "framesift authenticated read golden frame objects" on storage.objects;
create policy "framesift authenticated read golden frame objects" on storage.objects
    for select to authenticated using (bucket_id = 'golden-frames');
