"""Supabase store: golden frames to Storage, rows to Postgres (through PostgREST), nothing lost.

``SupabaseStore`` writes every result through a ``LocalStore`` first (the durable copy), then
uploads it:

1. an ``analyses`` row with status ``running`` (``id`` = the analysis id, chosen at ``open``),
2. every image to the bucket under ``<scan_id>/<frame_index>.<ext>`` (upsert; a tenant's
   under ``_tenants/<tenant>/<scan_id>/...``, and its rows carry ``tenant``), the scores
   under ``<scan_id>/scores.parquet`` and the candidate pool under
   ``<scan_id>/candidates.parquet``,
3. one ``golden_frames`` row per image, upserted on ``(tenant, scan_id, frame_index)``; rows of an
   earlier analysis of the same scan that are no longer golden are deleted, and so are the
   objects those rows (or an abandoned upload to another bucket) named that this result does
   not use: a re-run with fewer picks leaves no image in the bucket without a row,
4. the ``analyses`` row again, now ``succeeded``: only once everything above is in.

What is not uploaded yet is written to ``pending_upload.json`` next to the manifest *before*
the first request, and the file is removed when the upload completes, so a crash, an outage or
a refused request leaves a list that ``framesift sync`` works off later (every step is an
idempotent upsert: running it twice is safe). The manifest gets a ``supabase`` section saying
what was uploaded and what was not.

Requests go through ``jobs.stores.supabase_client.SupabaseClient`` (retries on network errors, 5xx
and 429; uploads are upserts). When ``framesift sync`` runs with another bucket than the one a
pending upload started with, everything is uploaded again to the new bucket and the rows are
rewritten to name it; what had reached the old bucket is deleted there once the new one is
complete. Credentials come from the environment only; the
key never appears in logs, messages, manifests or reprs.

This module is the store and its session; the rows are built in
``jobs.stores.supabase_rows``, and a pending upload is worked off by
``jobs.stores.supabase_pending``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from jobs.golden.candidates import Candidate, candidates_table, pool_file
from jobs.golden.manifest import (CANDIDATES_NAME, PARQUET_TYPE, SCORES_NAME, GoldenManifest,
                                  UploadSection)
from jobs.stores.base import validate_scan_id, write_atomic
from jobs.stores.local import LocalSession, LocalStore
from jobs.stores.supabase_client import (ANALYSES_TABLE, RetryPolicy, SupabaseClient,
                                         SupabaseCredentials, SupabaseError,
                                         SupabaseRequestError)
from jobs.stores.supabase_pending import (PENDING_NAME, UploadReport, _now, _pending_items,
                                          switch_bucket, upload_pending)
from jobs.stores.supabase_rows import analysis_row, golden_frame_row

log = logging.getLogger(__name__)



def _uploading_analysis(manifest: GoldenManifest | None) -> str | None:
    return manifest.supabase.analysis_id if manifest and manifest.supabase else None


def _rewrite_manifest_section(local: LocalStore, scan_id: str, analysis_id: str,
                              section: UploadSection) -> None:
    """Record the upload outcome in the manifest on disk, if it still is this analysis's.
    Signed URLs stay out of it: they expire."""
    manifest = local.manifest(scan_id)
    if manifest is None or _uploading_analysis(manifest) != analysis_id:
        return  # a newer result replaced this one meanwhile
    manifest.supabase = section.model_copy(update={"signed_urls": None,
                                                   "signed_urls_expire_at": None,
                                                   "signed_url_errors": None})
    local.write_manifest(manifest)


# store -----------------------------------------------------------------------------------------

class SupabaseSession:
    """A ``LocalSession`` whose commit then uploads the result to Supabase."""

    def __init__(self, store: "SupabaseStore", local: LocalSession) -> None:
        self.store = store
        self.local = local
        self.scan_id = local.scan_id
        self.analysis_id = str(uuid.uuid4())
        self._objects: list[dict[str, Any]] = []
        self._in_bucket: set[str] = set()  # kept images the bucket already holds

    def put_image(self, frame_index: int, data: bytes, ext: str, content_type: str) -> tuple[str, str]:
        key, uri = self.local.put_image(frame_index, data, ext, content_type)
        self._record(key, data, content_type, int(frame_index))
        return key, uri

    def _record(self, key: str, data: bytes, content_type: str,
                frame_index: int | None = None) -> None:
        """An object this session will upload at commit (unless the bucket holds it)."""
        obj = {"key": key, "file": key.rsplit("/", 1)[1], "content_type": content_type,
               "sha256": hashlib.sha256(data).hexdigest()}
        self._objects.append(obj if frame_index is None else {**obj, "frame_index": frame_index})

    def keep_image(self, frame_index: int, data: bytes, ext: str,
                   content_type: str) -> tuple[str, str]:
        """An image the scan's current result already holds, unchanged (a re-pick keeping a
        pick): written locally and counted as uploaded when that result's upload to this bucket
        is complete, so it is not sent again; otherwise uploaded like any image."""
        key, uri = self.local.keep_image(frame_index, data, ext, content_type)
        self._keep(key, data, content_type, int(frame_index))
        return key, uri

    def keep_file(self, name: str, data: bytes, content_type: str) -> str:
        """A file of the scan's current result, unchanged (a re-pick's candidate pool): as
        ``keep_image``."""
        key = self.local.keep_file(name, data, content_type)
        self._keep(key, data, content_type)
        return key

    def _keep(self, key: str, data: bytes, content_type: str, frame_index: int | None = None
              ) -> None:
        self._record(key, data, content_type, frame_index)
        current = self.store.local.manifest(self.scan_id)
        section = current.supabase if current else None
        if current is not None and section is not None and section.complete \
                and section.bucket == self.store.bucket \
                and key in {g.key for g in current.golden_frames} | {current.candidates_key} \
                and self.store.client.object_exists(key):  # a local copy may be behind
            self._in_bucket.add(key)

    def put_scores(self, table: pa.Table) -> str:
        """Written locally, and uploaded with the images under the scan's prefix (the scores
        route and re-picks read it from the bucket where there is no local copy)."""
        return self.put_table(SCORES_NAME, table)

    def put_candidates(self, frames: Sequence[Candidate], ext: str, content_type: str) -> str:
        """One file with the images in it (one object, one request), written locally and
        uploaded like the scores (re-picks read it from the bucket). Frames whose image is in
        a pool folder the local copy brought over (``carry_candidates``) are read from it."""
        staging = self.local.staging
        return self.put_table(CANDIDATES_NAME, candidates_table(
            f if f.image is not None else
            replace(f, image=(staging / pool_file(f.frame_index, ext)).read_bytes())
            for f in frames))

    def carry_candidates(self) -> frozenset[str]:
        """The local copy's pool folder, if it has one (a result the local store wrote)."""
        return self.local.carry_candidates()

    def link_candidate(self, frame_index: int, ext: str, content_type: str) -> tuple[str, str]:
        """Linked in the local copy, uploaded like any image."""
        key, uri = self.local.link_candidate(frame_index, ext, content_type)
        self._record(key, (self.local.staging / key.rsplit("/", 1)[1]).read_bytes(),
                     content_type, int(frame_index))
        return key, uri

    def put_table(self, name: str, table: pa.Table) -> str:
        key = self.local.put_table(name, table)
        self._record(key, (self.local.staging / name).read_bytes(), PARQUET_TYPE)
        return key

    def commit(self, manifest: GoldenManifest) -> str:
        """Commit locally (with the pending list), then upload; sets ``manifest.supabase``."""
        bucket = self.store.bucket
        types = {o["key"]: o["content_type"] for o in self._objects}
        tenant = self.local.tenant
        state = {
            "version": 1, "scan_id": self.scan_id, "tenant": tenant, "analysis_id": self.analysis_id,
            "bucket": bucket, "created_at": _now(),
            "objects": self._objects,
            "golden_frames": [golden_frame_row(self.scan_id, self.analysis_id, g, bucket,
                                               types.get(g.key, "image/jpeg"), tenant)
                              for g in manifest.golden_frames],
            "analysis": analysis_row(self.analysis_id, self.scan_id, "running", manifest,
                                     tenant=tenant),
            "uploaded": sorted(self._in_bucket), "rows_done": False, "analysis_done": False,
            "attempts": 0,
        }
        manifest.supabase = UploadReport(self.scan_id, self.analysis_id, bucket, tenant,
                                         not_uploaded=_pending_items(state)).section()
        write_atomic(self.local.staging / PENDING_NAME, json.dumps(state, indent=2).encode())
        location = self.local.commit(manifest)  # the durable, complete local result
        try:
            report = upload_pending(self.store.client, self.local.final, state)
        except Exception as exc:  # the local result stands; pending_upload.json says what is left
            log.exception("upload of %s to Supabase stopped", self.scan_id)
            report = UploadReport(self.scan_id, self.analysis_id, bucket, tenant,
                                  not_uploaded=_pending_items(state),
                                  error=self.store.client.redact(f"{type(exc).__name__}: {exc}"))
        if report.complete and self.store.signed_url_expiry_s:
            self.store.add_signed_urls(report)
        _rewrite_manifest_section(self.store.local, self.scan_id, self.analysis_id,
                                  report.section())
        manifest.supabase = report.section()
        return location

    def abort(self) -> None:
        self.local.abort()

    def __enter__(self) -> "SupabaseSession":
        return self

    def __exit__(self, exc_type: object, exc: object = None, *rest: object) -> None:
        failed = exc_type is not None
        self.local.__exit__(exc_type, exc, *rest)
        if failed and isinstance(exc, Exception):
            self._record_failure(exc)

    def _record_failure(self, exc: Exception) -> None:
        """Best effort: an ``analyses`` row with status failed and the error."""
        message = self.store.client.redact(f"{type(exc).__name__}: {exc}")[:2000]
        try:
            self.store.client.upsert_rows(
                ANALYSES_TABLE, [analysis_row(self.analysis_id, self.scan_id, "failed",
                                              error=message, tenant=self.local.tenant)],
                "id", attempts=1)
        except SupabaseError as err:
            log.warning("could not record the failed analysis of %s in Supabase: %s",
                        self.scan_id, err)


class SupabaseStore:
    """Local folder first (durable), then Supabase Storage + Postgres; see the module doc."""

    name = "supabase"

    def __init__(self, local: LocalStore, client: SupabaseClient, *,
                 signed_url_expiry_s: int | None = None) -> None:
        self.local = local
        self.client = client
        self.bucket = client.bucket
        self.signed_url_expiry_s = signed_url_expiry_s

    @classmethod
    def from_settings(cls, settings: Any, environ: dict[str, str] | None = None,
                      tenant: str | None = None) -> "SupabaseStore":
        """Build from ``Settings`` and ``SUPABASE_URL`` / ``SUPABASE_SERVICE_ROLE_KEY``; with
        ``tenant``, its results (local folder, object keys, rows) are that tenant's."""
        creds = SupabaseCredentials.from_env(environ)
        client = SupabaseClient(
            creds, bucket=settings.supabase_bucket, timeout_s=settings.supabase_timeout_s,
            retry=RetryPolicy(settings.supabase_retries, settings.supabase_backoff_s,
                              settings.supabase_backoff_max_s))
        expiry = settings.supabase_signed_url_expiry_s if settings.supabase_signed_urls else None
        return cls(LocalStore(settings.out_dir, tenant), client, signed_url_expiry_s=expiry)

    def __repr__(self) -> str:
        return f"SupabaseStore(root={str(self.local.root)!r}, client={self.client!r})"

    def open(self, scan_id: str) -> SupabaseSession:
        return SupabaseSession(self, self.local.open(scan_id))

    def manifest(self, scan_id: str) -> GoldenManifest | None:
        return self.local.manifest(scan_id)

    def add_signed_urls(self, report: UploadReport) -> None:
        """Signed URLs of the uploaded objects (in the result only: they expire)."""
        expiry = self.signed_url_expiry_s
        if not expiry:
            return
        manifest = self.local.manifest(report.scan_id)
        keys = [g.key for g in manifest.golden_frames] if manifest else []
        try:
            signed = self.client.signed_urls(keys, expiry)
        except SupabaseRequestError as exc:
            log.warning("could not sign URLs for %s: %s", report.scan_id, exc)
            report.signed_url_errors = {key: exc.reason for key in keys}
            return
        report.signed_urls = signed.urls
        report.signed_url_errors = signed.refused
        report.signed_urls_expire_at = (datetime.now(timezone.utc)
                                        + timedelta(seconds=expiry)).isoformat()
        for key, why in signed.refused.items():
            log.warning("Storage did not sign %s: %s", key, why)

    def pending_scan_ids(self) -> list[str]:
        root = self.local.root
        if not root.is_dir():
            return []
        return sorted(p.parent.name for p in root.glob(f"*/{PENDING_NAME}")
                      if not p.parent.name.startswith("."))

    def sync(self, scan_id: str | None = None) -> list[UploadReport]:
        """Upload what earlier runs left pending (all scans, or one). Safe to run again."""
        ids = [validate_scan_id(scan_id)] if scan_id else self.pending_scan_ids()
        return [r for r in (self._sync_one(s) for s in ids) if r is not None]

    def _sync_one(self, scan_id: str) -> UploadReport | None:
        folder = self.local.location(scan_id)
        path = folder / PENDING_NAME
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        if _uploading_analysis(self.local.manifest(scan_id)) != state.get("analysis_id"):
            log.warning("%s belongs to an analysis that is no longer the result of %s; dropped",
                        path, scan_id)
            path.unlink(missing_ok=True)
            return None
        if state.get("bucket") != self.bucket:
            switch_bucket(state, self.bucket)
        report = upload_pending(self.client, folder, state)
        if report.complete and self.signed_url_expiry_s:
            self.add_signed_urls(report)
        _rewrite_manifest_section(self.local, scan_id, state["analysis_id"], report.section())
        return report

    def close(self) -> None:
        self.client.close()


__all__ = ["SupabaseStore", "SupabaseSession"]
