"""A Supabase upload kept current on disk (jobs/stores/supabase.py): ``pending_upload.json``
lists what is not uploaded yet; ``upload_pending`` works it off in order (analysis row running,
objects, golden_frames rows with stale objects and rows deleted, analysis row succeeded) and
says what it achieved in an ``UploadReport``; ``switch_bucket`` points it at another bucket."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs.golden.manifest import UploadSection
from jobs.stores.base import write_atomic
from jobs.stores.supabase_client import (ANALYSES_TABLE, GOLDEN_CONFLICT, GOLDEN_TABLE,
                                         SupabaseClient, SupabaseRequestError)

log = logging.getLogger(__name__)

PENDING_NAME = "pending_upload.json"
ROWS_ITEM = f"{GOLDEN_TABLE} rows"
ANALYSIS_ITEM = f"{ANALYSES_TABLE} row"


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
