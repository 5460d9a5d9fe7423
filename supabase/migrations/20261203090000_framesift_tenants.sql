-- framesift: tenants. An API key of the HTTP service belongs to a tenant (FRAMESIFT_API_KEYS=
-- acme:KEY1,...); a tenant's results are its own: objects under _tenants/<tenant>/<scan_id>/,
-- rows with its name in `tenant`. Results of no tenant (the CLI, a server without keys, the
-- admin key) keep tenant '' and the object keys <scan_id>/... they always had.
--
-- Apply after 20261123080000_framesift.sql (`supabase db push`). Safe to apply twice.
-- Row level security follows the tenant: a signed-in user reads the rows and objects of the
-- tenant in the JWT's app_metadata.framesift_tenant (set by the service role; users cannot
-- change app_metadata), and a user without one reads those of no tenant, as before.

alter table public.analyses add column if not exists tenant text not null default '';
alter table public.golden_frames add column if not exists tenant text not null default '';

do $$
begin
    if not exists (select from pg_constraint where conname = 'analyses_tenant_format') then
        alter table public.analyses add constraint analyses_tenant_format
            check (tenant = '' or (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
                                   and tenant !~ '\.\.'));
    end if;
    if not exists (select from pg_constraint where conname = 'golden_frames_tenant_format') then
        alter table public.golden_frames add constraint golden_frames_tenant_format
            check (tenant = '' or (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
                                   and tenant !~ '\.\.'));
    end if;
    -- one golden frame per tenant, scan and frame (two tenants may use the same scan id)
    if not exists (select from pg_constraint
                   where conname = 'golden_frames_tenant_scan_id_frame_index_key') then
        alter table public.golden_frames drop constraint if exists
            golden_frames_scan_id_frame_index_key;
        alter table public.golden_frames add constraint golden_frames_tenant_scan_id_frame_index_key
            unique (tenant, scan_id, frame_index);
    end if;
end
$$;

create index if not exists analyses_tenant_scan_id_idx on public.analyses (tenant, scan_id);

comment on column public.analyses.tenant is
    'framesift: the tenant of the API key that posted the analysis; '''' = no tenant';
comment on column public.golden_frames.tenant is
    'framesift: the tenant whose result this is; '''' = no tenant';

-- the tenant of the signed-in user: app_metadata.framesift_tenant of the JWT ('' = none)
create or replace function public.framesift_jwt_tenant() returns text
    language sql stable
    set search_path = ''
as $$
    select coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb
                    -> 'app_metadata' ->> 'framesift_tenant', '')
$$;

drop policy if exists "framesift authenticated read analyses" on public.analyses;
create policy "framesift authenticated read analyses" on public.analyses
    for select to authenticated using (tenant = public.framesift_jwt_tenant());

drop policy if exists "framesift authenticated read golden frames" on public.golden_frames;
create policy "framesift authenticated read golden frames" on public.golden_frames
    for select to authenticated using (tenant = public.framesift_jwt_tenant());

drop policy if exists "framesift authenticated read golden frame objects" on storage.objects;
create policy "framesift authenticated read golden frame objects" on storage.objects
    for select to authenticated using (
        bucket_id = 'golden-frames' and case
            when public.framesift_jwt_tenant() = '' then split_part(name, '/', 1) <> '_tenants'
            else split_part(name, '/', 1) = '_tenants'
                 and split_part(name, '/', 2) = public.framesift_jwt_tenant()
        end);
