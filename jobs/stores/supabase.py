"""Supabase store: golden frames to Storage, rows to Postgres (through PostgREST), nothing lost.

``SupabaseStore`` writes every result through a ``LocalStore`` first (the durable copy), then
uploads it:

1. an ``analyses`` row with status ``running`` (``id`` = the analysis id, chosen at ``open``),
2. every image to the bucket under ``<scan_id>/<frame_index>.<ext>`` (upsert; a tenant's
   under ``_tenants/<tenant>/<scan_id>/...``, and its rows carry ``tenant``), and the scores
   under ``<scan_id>/scores.parquet``,
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
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from actors.records import GoldenFrame
from jobs.golden.manifest import SCORES_NAME, GoldenManifest, UploadSection
from jobs.stores.base import tenant_prefix, validate_scan_id, write_atomic
from jobs.stores.local import LocalSession, LocalStore
from jobs.stores.supabase_client import (ANALYSES_TABLE, GOLDEN_CONFLICT, GOLDEN_TABLE,
                                         RetryPolicy, SupabaseClient, SupabaseCredentials,
                                         SupabaseError, SupabaseRequestError)

log = logging.getLogger(__name__)

PENDING_NAME = "pending_upload.json"
SCORES_TYPE = "application/vnd.apache.parquet"  # the bucket must allow it (supabase/migrations)
ROWS_ITEM = f"{GOLDEN_TABLE} rows"
ANALYSIS_ITEM = f"{ANALYSES_TABLE} row"
# Namespace of the deterministic golden_frames row ids
ROW_NAMESPACE = uuid.UUID("6f1c2a4e-6a43-5c1e-9a8e-2f0d7b1c9e55")


# rows ------------------------------------------------------------------------------------------

def golden_frame_row(scan_id: str, analysis_id: str, frame: GoldenFrame, bucket: str,
                     content_type: str, tenant: str | None = None) -> dict[str, Any]:
    """The ``golden_frames`` row of one golden frame (``tenant`` '' without one)."""
    glint = frame.to_dict()["glint"]
    return {
        "id": str(uuid.uuid5(ROW_NAMESPACE,
                             f"{tenant_prefix(tenant)}{scan_id}/{int(frame.frame_index)}")),
        "analysis_id": analysis_id,
        "tenant": tenant or "",
        "scan_id": scan_id,
        "frame_index": int(frame.frame_index),
        "rank": int(frame.rank),
        "timestamp_s": float(frame.time_s),
        "sharpness": float(frame.sharpness),
        "motion": float(frame.motion),
        "still": bool(frame.still),
        "glint_share": float(frame.glint.share),
        "glint_blob_count": int(frame.glint.blob_count),
        "glint_largest_blob_px": int(frame.glint.largest_blob_area_px),
        "glint": glint,
        "width": int(frame.width),
        "height": int(frame.height),
        "storage_bucket": bucket,
        "storage_key": frame.key,
        "content_type": content_type,
    }


def analysis_row(analysis_id: str, scan_id: str, status: str,
                 manifest: GoldenManifest | None = None, error: str | None = None,
                 tenant: str | None = None) -> dict[str, Any]:
    """The ``analyses`` row: status, parameters, timings, counts, error."""
    row: dict[str, Any] = {
        "id": analysis_id, "tenant": tenant or "", "scan_id": scan_id, "item_type": None, "status": status,
        "parameters": {}, "timings": {}, "video": None, "frame_count": None,
        "still_frames": None, "golden_count": 0, "error": error, "framesift_version": None,
    }
    if manifest is not None:
        m = manifest.model_dump(mode="json", include={"video"})
        row.update(item_type=manifest.item_type, parameters=manifest.parameters,
                   timings=dict(manifest.timings_s), video=m["video"],
                   frame_count=manifest.video.frame_count,
                   still_frames=manifest.selection.still_frames,
                   golden_count=len(manifest.golden_frames),
                   framesift_version=manifest.framesift_version)
    return row


# pending uploads -------------------------------------------------------------------------------

@dataclass
class UploadReport:
    """What one upload attempt (a run or a sync) achieved for one scan."""

    scan_id: str
    analysis_id: str
    bucket: str
    tenant: str | None = None
    uploaded: list[str] = field(default_factory=list)      # object keys uploaded (or already ours)
    not_uploaded: list[str] = field(default_factory=list)  # keys, "golden_frames rows", "analyses row"
    error: str | None = None
    signed_urls: dict[str, str] = field(default_factory=dict)
    signed_urls_expire_at: str | None = None
    signed_url_errors: dict[str, str] = field(default_factory=dict)  # key -> why not signed

    @property
    def complete(self) -> bool:
        return not self.not_uploaded

    def section(self) -> UploadSection:
        """The manifest's ``supabase`` section."""
        return UploadSection(
            bucket=self.bucket, analysis_id=self.analysis_id,
            status="uploaded" if self.complete else "pending",
            not_uploaded=list(self.not_uploaded), error=self.error,
            retry=None if self.complete else f"framesift sync --scan-id {self.scan_id}"
            + (f" --tenant {self.tenant}" if self.tenant else ""),
            signed_urls=dict(self.signed_urls) if self.signed_urls else None,
            signed_urls_expire_at=self.signed_urls_expire_at if self.signed_urls else None,
            signed_url_errors=dict(self.signed_url_errors) if self.signed_url_errors else None)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _pending_items(state: dict[str, Any]) -> list[str]:
    done = set(state.get("uploaded", []))
    items = [o["key"] for o in state["objects"] if o["key"] not in done]
    if not state.get("rows_done"):
        items.append(ROWS_ITEM)
    if not state.get("analysis_done"):
        items.append(ANALYSIS_ITEM)
    return items


def _grouped(failures: list[tuple[str, SupabaseRequestError]], bucket: str) -> list[str]:
    """One message per distinct reason, with how many objects it refused and which."""
    by_reason: dict[str, list[str]] = {}
    for key, exc in failures:
        by_reason.setdefault(exc.reason, []).append(key)
    out = []
    for reason, keys in by_reason.items():
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        what = "1 object" if len(keys) == 1 else f"{len(keys)} objects"
        out.append(f"Supabase refused the upload of {what} to bucket {bucket} ({shown}): {reason}")
    return out


class _PendingUpload:
    """One upload attempt of a ``pending_upload.json`` state, kept current on disk."""

    def __init__(self, client: SupabaseClient, folder: Path, state: dict[str, Any]) -> None:
        self.client, self.folder, self.state = client, folder, state
        self.path = folder / PENDING_NAME
        self.errors: list[str] = []
        self.refused: list[tuple[str, SupabaseRequestError]] = []  # (key, why), per object
        self.report = UploadReport(state["scan_id"], state["analysis_id"], state["bucket"],
                                   state.get("tenant"))

    def messages(self) -> list[str]:
        return _grouped(self.refused, self.state["bucket"]) + self.errors

    def save(self) -> None:
        self.state["updated_at"] = _now()
        messages = self.messages()
        self.state["last_error"] = "; ".join(messages) if messages else None
        write_atomic(self.path, json.dumps(self.state, indent=2).encode())

    def failed(self, exc: SupabaseRequestError) -> None:
        self.errors.append(self.client.redact(str(exc)))
        log.warning("supabase upload of %s incomplete: %s", self.state["scan_id"], self.errors[-1])

    def upload_objects(self) -> bool:
        """Upload the images not yet uploaded; False when Supabase is unreachable (stop)."""
        done = set(self.state.get("uploaded", []))
        for obj in self.state["objects"]:
            if obj["key"] in done:
                continue
            try:
                data = (self.folder / obj["file"]).read_bytes()
            except OSError as exc:
                self.errors.append(f"local image {self.folder / obj['file']} is missing ({exc}); "
                                   f"re-run the analysis of {self.state['scan_id']}")
                continue
            try:
                self.client.upload_object(obj["key"], data, obj["content_type"])
            except SupabaseRequestError as exc:
                if exc.transient:
                    self.failed(exc)
                    return False
                self.refused.append((obj["key"], exc))  # said once per reason, at the end
                continue
            self.state.setdefault("uploaded", []).append(obj["key"])
            self.report.uploaded.append(obj["key"])
            self.save()
        for message in _grouped(self.refused, self.state["bucket"]):
            log.warning("supabase upload of %s incomplete: %s", self.state["scan_id"], message)
        return True

    def _stale_objects(self) -> dict[str, list[str]]:
        """Objects to delete, by bucket: those earlier analyses' rows name (read before our rows
        replace them) and those an abandoned upload left in another bucket, minus ours."""
        state = self.state
        if "previous_objects" not in state:  # once, before our rows overwrite theirs
            rows = self.client.other_frames(state["scan_id"], state["analysis_id"],
                                            state.get("tenant") or "")
            state["previous_objects"] = [{"bucket": r["storage_bucket"], "key": r["storage_key"]}
                                         for r in rows]
            self.save()
        ours = {(state["bucket"], o["key"]) for o in state["objects"]}
        stale: dict[str, list[str]] = {}
        for obj in state["previous_objects"] + state.get("abandoned", []):
            if (obj["bucket"], obj["key"]) not in ours and obj["key"] not in \
                    stale.setdefault(obj["bucket"], []):
                stale[obj["bucket"]].append(obj["key"])
        return {b: keys for b, keys in stale.items() if keys}

    def upsert_rows(self) -> None:
        """Golden frame rows, then stale objects and rows deleted, then the analysis marked
        succeeded."""
        state = self.state
        if not state.get("rows_done"):
            stale = self._stale_objects()
            self.client.upsert_rows(GOLDEN_TABLE, state["golden_frames"], GOLDEN_CONFLICT)
            for bucket, keys in stale.items():
                self.client.remove_objects(bucket, keys)
            self.client.delete_stale_frames(state["scan_id"], state["analysis_id"],
                                            state.get("tenant") or "")
            state["rows_done"] = True
            state.pop("abandoned", None)
            self.save()
        if not state.get("analysis_done"):
            self.client.upsert_rows(ANALYSES_TABLE, [{**state["analysis"], "status": "succeeded"}],
                                    "id")
            state["analysis_done"] = True

    def run(self) -> UploadReport:
        state = self.state
        state["attempts"] = int(state.get("attempts", 0)) + 1
        try:
            if not state.get("analysis_done"):
                self.client.upsert_rows(
                    ANALYSES_TABLE, [{**state["analysis"], "status": "running", "error": None}], "id")
            reachable = self.upload_objects()
            every_object = {o["key"] for o in state["objects"]} <= set(state.get("uploaded", []))
            if reachable and every_object:
                self.upsert_rows()
        except SupabaseRequestError as exc:
            self.failed(exc)
        self.report.not_uploaded = _pending_items(state)
        messages = self.messages()
        self.report.error = "; ".join(messages) if messages else None
        if self.report.complete:
            self.path.unlink(missing_ok=True)
        else:
            self.save()
        return self.report


def switch_bucket(state: dict[str, Any], bucket: str) -> None:
    """Point a pending upload at another bucket: every image goes up again (what reached the
    old bucket is not in the new one), the rows are rewritten to name it, and the objects left
    in the old bucket are deleted once the new upload is complete."""
    old = state.get("bucket")
    log.warning("%s was pending for bucket %r; uploading everything again to %r as configured "
                "now", state["scan_id"], old, bucket)
    state.setdefault("abandoned", []).extend({"bucket": old, "key": key}
                                             for key in state.get("uploaded", []))
    state["bucket"] = bucket
    state["uploaded"] = []
    state["rows_done"] = False
    state["analysis_done"] = False
    for row in state["golden_frames"]:
        row["storage_bucket"] = bucket


def upload_pending(client: SupabaseClient, folder: Path, state: dict[str, Any]) -> UploadReport:
    """Upload what ``state`` (a ``pending_upload.json``) lists as pending; keep the file current.

    Order: analysis row (running), objects, golden_frames rows (+ stale objects and rows
    deleted), analysis row (succeeded). A permanent refusal of one object does not stop the other objects; an
    unreachable Supabase stops at once. The file is removed when nothing is pending.
    """
    return _PendingUpload(client, folder, state).run()


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
        self._objects.append({"key": key, "file": key.rsplit("/", 1)[1],
                              "content_type": content_type, "frame_index": int(frame_index),
                              "sha256": hashlib.sha256(data).hexdigest()})
        return key, uri

    def keep_image(self, frame_index: int, data: bytes, ext: str,
                   content_type: str) -> tuple[str, str]:
        """An image the scan's current result already holds, unchanged (a re-pick keeping a
        pick): written locally and counted as uploaded when that result's upload to this bucket
        is complete, so it is not sent again; otherwise uploaded like any image."""
        key, uri = self.put_image(frame_index, data, ext, content_type)
        current = self.store.local.manifest(self.scan_id)
        section = current.supabase if current else None
        if current is not None and section is not None and section.complete \
                and section.bucket == self.store.bucket \
                and any(g.key == key for g in current.golden_frames) \
                and self.store.client.object_exists(key):  # a local copy may be behind
            self._in_bucket.add(key)
        return key, uri

    def put_scores(self, table: pa.Table) -> str:
        """Written locally, and uploaded with the images under the scan's prefix (the scores
        route and re-picks read it from the bucket where there is no local copy)."""
        key = self.local.put_scores(table)
        data = (self.local.staging / SCORES_NAME).read_bytes()
        self._objects.append({"key": key, "file": SCORES_NAME, "content_type": SCORES_TYPE,
                              "sha256": hashlib.sha256(data).hexdigest()})
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


__all__ = ["SupabaseStore", "SupabaseSession", "UploadReport", "golden_frame_row", "analysis_row",
           "upload_pending", "switch_bucket", "PENDING_NAME"]
