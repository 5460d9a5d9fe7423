"""Supabase store: golden frames to Storage, rows to Postgres (through PostgREST), nothing lost.

``SupabaseStore`` writes every result through a ``LocalStore`` first (the durable copy), then
uploads it:

1. an ``analyses`` row with status ``running`` (``id`` = the analysis id, chosen at ``open``),
2. every image to the bucket under ``<scan_id>/<frame_index>.<ext>`` (upsert),
3. one ``golden_frames`` row per image, upserted on ``(scan_id, frame_index)``; rows of an
   earlier analysis of the same scan that are no longer golden are deleted,
4. the ``analyses`` row again, now ``succeeded``: only once everything above is in.

What is not uploaded yet is written to ``pending_upload.json`` next to the manifest *before*
the first request, and the file is removed when the upload completes, so a crash, an outage or
a refused request leaves a list that ``framesift sync`` works off later (every step is an
idempotent upsert: running it twice is safe). The manifest gets a ``supabase`` section saying
what was uploaded and what was not.

Retries: network errors, HTTP 5xx and 429 are retried with exponential backoff and jitter
(tenacity); other 4xx are not. An upload answered as a duplicate (Storage answers HTTP 400
with ``"statusCode": "409"``) counts as success when the stored bytes are ours.

Credentials come from the environment only (``SUPABASE_URL``, ``SUPABASE_SERVICE_ROLE_KEY``);
the key never appears in logs, messages, manifests or reprs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import httpx
import pyarrow as pa
from tenacity import (Retrying, retry_if_exception, stop_after_attempt,
                      wait_exponential_jitter)

from actors.errors import FramesiftError
from jobs.store import (MANIFEST_NAME, LocalSession, LocalStore, _write_atomic, object_key,
                        validate_scan_id)

log = logging.getLogger(__name__)

PENDING_NAME = "pending_upload.json"
ANALYSES_TABLE = "analyses"
GOLDEN_TABLE = "golden_frames"
GOLDEN_CONFLICT = "scan_id,frame_index"
URL_ENV = "SUPABASE_URL"
KEY_ENV = "SUPABASE_SERVICE_ROLE_KEY"
ROWS_ITEM = f"{GOLDEN_TABLE} rows"
ANALYSIS_ITEM = f"{ANALYSES_TABLE} row"
# Namespace of the deterministic golden_frames row ids: uuid5(NS, "<scan_id>/<frame_index>").
ROW_NAMESPACE = uuid.UUID("6f1c2a4e-6a43-5c1e-9a8e-2f0d7b1c9e55")

T = TypeVar("T")


# errors ----------------------------------------------------------------------------------------

class SupabaseError(FramesiftError):
    """Base class of the Supabase store's errors."""

    code = "supabase_error"


class SupabaseConfigError(SupabaseError):
    """The Supabase store cannot be used as configured (missing or malformed settings)."""

    code = "supabase_config"


class SupabaseRequestError(SupabaseError):
    """A request to Supabase failed for good (after retries where retrying made sense)."""

    code = "supabase_request_failed"

    def __init__(self, message: str, *, target: str, status: int | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.target = target
        self.status = status
        self.transient = transient


class SupabaseConflictError(SupabaseRequestError):
    """Storage holds an object under our key whose bytes are not ours."""

    code = "supabase_conflict"


class HTTPStatusFailure(Exception):
    """An HTTP error answer, with its status and body (raised by the client's response hook)."""

    def __init__(self, status: int, method: str, path: str, body: Any) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.body = body
        super().__init__(f"HTTP {status} from {method} {path}: {_body_text(body)}")

    @property
    def storage_status(self) -> str | None:
        """Storage's own status in the body (``"409"`` for a duplicate answered with HTTP 400)."""
        if isinstance(self.body, dict) and "statusCode" in self.body:
            return str(self.body["statusCode"])
        return None

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500 or self.storage_status in {"429", "500",
                                                                                   "502", "503",
                                                                                   "504"}


def _body_text(body: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("code", "error", "message", "details", "hint")
                 if body.get(k) not in (None, "")]
        return "; ".join(dict.fromkeys(parts)) or json.dumps(body)[:300]
    return str(body)[:300] or "(empty body)"


def is_transient(exc: BaseException) -> bool:
    """Network errors, HTTP 5xx and 429 are worth retrying; anything else is not."""
    if isinstance(exc, HTTPStatusFailure):
        return exc.transient
    return isinstance(exc, httpx.TransportError)


# credentials and client ------------------------------------------------------------------------

@dataclass(frozen=True)
class SupabaseCredentials:
    """Project URL and service role key, from the environment only. The key is never shown."""

    url: str
    key: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "SupabaseCredentials":
        env = os.environ if environ is None else environ
        url = (env.get(URL_ENV) or "").strip()
        key = (env.get(KEY_ENV) or "").strip()
        missing = [name for name, value in ((URL_ENV, url), (KEY_ENV, key)) if not value]
        if missing:
            raise SupabaseConfigError(
                f"the Supabase store needs {' and '.join(missing)} in the environment "
                f"(project URL, e.g. https://<ref>.supabase.co, and the service role key from "
                f"Project Settings > API). Set them, or use --store local.")
        if not url.startswith(("https://", "http://")):
            raise SupabaseConfigError(
                f"{URL_ENV} must be an http(s) URL such as https://<ref>.supabase.co; "
                f"found a value starting with {url[:8]!r}.")
        return cls(url.rstrip("/"), key)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0


class SupabaseClient:
    """The official ``supabase`` client, with retries, typed errors and secret hygiene.

    Every HTTP error answer becomes an ``HTTPStatusFailure`` in a response hook (so its status
    is known for PostgREST too); ``_call`` retries the transient ones and turns the rest into a
    ``SupabaseRequestError`` whose message never contains the key.
    """

    def __init__(self, credentials: SupabaseCredentials, *, bucket: str = "golden-frames",
                 retry: RetryPolicy = RetryPolicy(), timeout_s: float = 30.0) -> None:
        from supabase import ClientOptions, create_client

        self._secret = credentials.key
        self.url = credentials.url
        self.bucket = bucket
        self.retry = retry
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=False,
                                  event_hooks={"response": [self._check_response]})
        options = ClientOptions(httpx_client=self._http, postgrest_client_retry=False,
                                auto_refresh_token=False, persist_session=False)
        try:
            self._client = create_client(credentials.url, credentials.key, options=options)
        except Exception as exc:  # supabase validates URL and key shape
            raise SupabaseConfigError(self.redact(
                f"could not create the Supabase client for {credentials.url}: {exc}")) from None

    def __repr__(self) -> str:
        return f"SupabaseClient(url={self.url!r}, bucket={self.bucket!r})"

    def close(self) -> None:
        self._http.close()

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    @staticmethod
    def _check_response(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:300]
        raise HTTPStatusFailure(response.status_code, response.request.method,
                                response.request.url.path, body)

    def _call(self, what: str, target: str, fn: Callable[[], T], attempts: int | None = None) -> T:
        attempts = attempts or self.retry.attempts
        def before_sleep(state: Any) -> None:
            exc = state.outcome.exception()
            log.warning("supabase %s %s: %s; retry %d/%d in %.2fs", what, target,
                        self.redact(str(exc)), state.attempt_number, attempts - 1,
                        state.next_action.sleep if state.next_action else 0.0)

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(initial=self.retry.backoff_s, exp_base=2,
                                         max=self.retry.backoff_max_s,
                                         jitter=self.retry.backoff_s),
            retry=retry_if_exception(is_transient), reraise=True, before_sleep=before_sleep)
        try:
            return retrying(fn)
        except HTTPStatusFailure as exc:
            raise self._request_error(what, target, exc, attempts) from None
        except httpx.TransportError as exc:
            raise SupabaseRequestError(
                self.redact(f"Supabase at {self.url} is unreachable ({what} {target}: "
                            f"{type(exc).__name__}: {exc or 'no detail'}; "
                            f"{attempts} attempt(s))."),
                target=target, transient=True) from None

    def _request_error(self, what: str, target: str, exc: HTTPStatusFailure,
                       attempts: int) -> SupabaseRequestError:
        detail = _body_text(exc.body)
        status = exc.status
        hint = ""
        if exc.transient:
            hint = f" Supabase kept failing after {attempts} attempt(s); try again later."
        elif status == 401 or (isinstance(exc.body, dict) and exc.body.get("code") == "PGRST301"):
            hint = (f" Check that {KEY_ENV} is the service role key of the project at "
                    f"{URL_ENV}.")
        elif exc.storage_status == "404" and "bucket" in detail.lower():
            hint = (f" Create the bucket: apply supabase/migrations with `supabase db push`, or set "
                    f"FRAMESIFT_SUPABASE_BUCKET to an existing bucket.")
        elif exc.storage_status == "413":
            hint = " The image is larger than the bucket's file size limit; raise the limit."
        elif exc.storage_status == "415":
            hint = " The bucket does not accept this content type; allow image/jpeg and image/png."
        elif isinstance(exc.body, dict) and str(exc.body.get("code", "")).startswith(("PGRST2", "42P01")):
            hint = " Apply the framesift migration (supabase/migrations) with `supabase db push`."
        elif isinstance(exc.body, dict) and exc.body.get("code") == "42501":
            hint = f" Row level security refused the write: use the service role key ({KEY_ENV})."
        shown = f"HTTP {status}" + (f" (statusCode {exc.storage_status})"
                                    if exc.storage_status and exc.storage_status != str(status) else "")
        return SupabaseRequestError(self.redact(f"Supabase {what} {target} failed: {shown}: {detail}.{hint}"),
                                    target=target, status=status, transient=exc.transient)

    # operations --------------------------------------------------------------------------------

    def upload_object(self, key: str, data: bytes, content_type: str) -> str:
        """Upload (upsert) one object; return ``"uploaded"`` or ``"duplicate"`` (ours already)."""
        bucket = self._client.storage.from_(self.bucket)
        target = f"{self.bucket}/{key}"

        def upload() -> None:
            bucket.upload(key, data, {"content-type": content_type, "upsert": "true",
                                      "cache-control": "3600"})

        try:
            self._call("upload", target, _raise_duplicates(upload))
            return "uploaded"
        except _Duplicate:
            pass
        stored = self._call("download", target, lambda: bucket.download(key))
        if hashlib.sha256(stored).digest() != hashlib.sha256(data).digest():
            raise SupabaseConflictError(
                f"Storage already holds {target} with other content ({len(stored)} bytes, ours "
                f"{len(data)}) and refused to overwrite it. Delete that object, or check that the "
                f"bucket's policies let the service role update objects, then run `framesift sync`.",
                target=target, status=400)
        return "duplicate"

    def download_object(self, key: str) -> bytes:
        bucket = self._client.storage.from_(self.bucket)
        return self._call("download", f"{self.bucket}/{key}", lambda: bucket.download(key))

    def upsert_rows(self, table: str, rows: list[dict[str, Any]], on_conflict: str,
                    attempts: int | None = None) -> None:
        if not rows:
            return
        from postgrest.types import ReturnMethod

        query = self._client.table(table).upsert(rows, on_conflict=on_conflict,
                                                 returning=ReturnMethod.minimal)
        self._call("upsert", table, query.execute, attempts)

    def delete_stale_frames(self, scan_id: str, analysis_id: str) -> None:
        """Delete golden_frames rows of ``scan_id`` left by other analyses of it."""
        from postgrest.types import ReturnMethod

        query = (self._client.table(GOLDEN_TABLE).delete(returning=ReturnMethod.minimal)
                 .eq("scan_id", scan_id).neq("analysis_id", analysis_id))
        self._call("delete stale rows of", GOLDEN_TABLE, query.execute)

    def signed_urls(self, keys: list[str], expires_in_s: int) -> dict[str, str]:
        if not keys:
            return {}
        bucket = self._client.storage.from_(self.bucket)
        items = self._call("sign", self.bucket, lambda: bucket.create_signed_urls(keys, expires_in_s))
        return {item["path"]: item["signedURL"] for item in items
                if item.get("signedURL") and not item.get("error")}


class _Duplicate(Exception):
    pass


def _raise_duplicates(fn: Callable[[], None]) -> Callable[[], None]:
    def wrapped() -> None:
        try:
            fn()
        except HTTPStatusFailure as exc:
            if exc.storage_status == "409" or exc.status == 409:
                raise _Duplicate() from None
            raise
    return wrapped


# rows ------------------------------------------------------------------------------------------

def golden_frame_row(scan_id: str, analysis_id: str, frame: dict[str, Any], bucket: str,
                     content_type: str) -> dict[str, Any]:
    """The ``golden_frames`` row of one golden frame (a ``GoldenFrame.to_dict()``)."""
    glint = frame["glint"]
    return {
        "id": str(uuid.uuid5(ROW_NAMESPACE, f"{scan_id}/{int(frame['frame_index'])}")),
        "analysis_id": analysis_id,
        "scan_id": scan_id,
        "frame_index": int(frame["frame_index"]),
        "rank": int(frame["rank"]),
        "timestamp_s": float(frame["time_s"]),
        "sharpness": float(frame["sharpness"]),
        "motion": float(frame["motion"]),
        "still": bool(frame["still"]),
        "glint_share": float(glint["share"]),
        "glint_blob_count": int(glint["blob_count"]),
        "glint_largest_blob_px": int(glint["largest_blob_area_px"]),
        "glint": glint,
        "width": int(frame["width"]),
        "height": int(frame["height"]),
        "storage_bucket": bucket,
        "storage_key": frame["key"],
        "content_type": content_type,
    }


def analysis_row(analysis_id: str, scan_id: str, status: str, manifest: dict[str, Any] | None = None,
                 error: str | None = None) -> dict[str, Any]:
    """The ``analyses`` row: status, parameters, timings, counts, error."""
    m = manifest or {}
    selection = m.get("selection") or {}
    video = m.get("video") or None
    return {
        "id": analysis_id,
        "scan_id": scan_id,
        "item_type": m.get("item_type"),
        "status": status,
        "parameters": m.get("parameters") or {},
        "timings": m.get("timings_s") or {},
        "video": video,
        "frame_count": (video or {}).get("frame_count"),
        "still_frames": selection.get("still_frames"),
        "golden_count": len(m.get("golden_frames") or []),
        "error": error,
        "framesift_version": m.get("framesift_version"),
    }


# pending uploads -------------------------------------------------------------------------------

@dataclass
class UploadReport:
    """What one upload attempt (a run or a sync) achieved for one scan."""

    scan_id: str
    analysis_id: str
    bucket: str
    uploaded: list[str] = field(default_factory=list)      # object keys uploaded (or already ours)
    not_uploaded: list[str] = field(default_factory=list)  # keys, "golden_frames rows", "analyses row"
    error: str | None = None
    signed_urls: dict[str, str] = field(default_factory=dict)
    signed_urls_expire_at: str | None = None

    @property
    def complete(self) -> bool:
        return not self.not_uploaded

    def section(self) -> dict[str, Any]:
        """The manifest's ``supabase`` section."""
        out: dict[str, Any] = {
            "bucket": self.bucket, "analysis_id": self.analysis_id,
            "status": "uploaded" if self.complete else "pending",
            "not_uploaded": list(self.not_uploaded), "error": self.error,
        }
        if not self.complete:
            out["retry"] = f"framesift sync --scan-id {self.scan_id}"
        if self.signed_urls:
            out["signed_urls"] = dict(self.signed_urls)
            out["signed_urls_expire_at"] = self.signed_urls_expire_at
        return out


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


def upload_pending(client: SupabaseClient, folder: Path, state: dict[str, Any]) -> UploadReport:
    """Upload what ``state`` (a ``pending_upload.json``) lists as pending; keep the file current.

    Order: analysis row (running), objects, golden_frames rows (+ stale rows deleted), analysis
    row (succeeded). A permanent refusal of one object does not stop the other objects; an
    unreachable Supabase stops at once. The file is removed when nothing is pending.
    """
    scan_id, analysis_id = state["scan_id"], state["analysis_id"]
    report = UploadReport(scan_id, analysis_id, state["bucket"])
    pending_path = folder / PENDING_NAME
    errors: list[str] = []

    def save() -> None:
        state["updated_at"] = _now()
        state["last_error"] = errors[-1] if errors else None
        _write_atomic(pending_path, json.dumps(state, indent=2).encode())

    def fail(exc: SupabaseRequestError) -> None:
        errors.append(client.redact(str(exc)))
        log.warning("supabase upload of %s incomplete: %s", scan_id, errors[-1])

    state["attempts"] = int(state.get("attempts", 0)) + 1
    manifest_row = state["analysis"]
    try:
        if not state.get("analysis_done"):
            client.upsert_rows(ANALYSES_TABLE, [{**manifest_row, "status": "running", "error": None}],
                               "id")
        stop = False
        done = set(state.get("uploaded", []))
        for obj in state["objects"]:
            if obj["key"] in done:
                continue
            try:
                data = (folder / obj["file"]).read_bytes()
            except OSError as exc:
                errors.append(f"local image {folder / obj['file']} is missing ({exc}); re-run the "
                              f"analysis of {scan_id}")
                continue
            try:
                client.upload_object(obj["key"], data, obj["content_type"])
            except SupabaseRequestError as exc:
                fail(exc)
                if exc.transient:
                    stop = True
                    break
                continue
            state.setdefault("uploaded", []).append(obj["key"])
            report.uploaded.append(obj["key"])
            save()
        all_objects = {o["key"] for o in state["objects"]} <= set(state.get("uploaded", []))
        if not stop and all_objects and not state.get("rows_done"):
            client.upsert_rows(GOLDEN_TABLE, state["golden_frames"], GOLDEN_CONFLICT)
            client.delete_stale_frames(scan_id, analysis_id)
            state["rows_done"] = True
            save()
        if not stop and all_objects and state.get("rows_done") and not state.get("analysis_done"):
            client.upsert_rows(ANALYSES_TABLE, [{**manifest_row, "status": "succeeded"}], "id")
            state["analysis_done"] = True
    except SupabaseRequestError as exc:
        fail(exc)
    report.not_uploaded = _pending_items(state)
    report.error = "; ".join(errors) if errors else None
    if report.complete:
        pending_path.unlink(missing_ok=True)
    else:
        save()
    return report


def _rewrite_manifest_section(folder: Path, analysis_id: str, section: dict[str, Any]) -> None:
    """Record the upload outcome in the manifest on disk, if it still is this analysis's."""
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if (manifest.get("supabase") or {}).get("analysis_id") != analysis_id:
        return  # a newer result replaced this one meanwhile
    manifest["supabase"] = {k: v for k, v in section.items()
                            if k not in ("signed_urls", "signed_urls_expire_at")}
    _write_atomic(path, json.dumps(manifest, indent=2, sort_keys=False).encode())


# store -----------------------------------------------------------------------------------------

class SupabaseSession:
    """A ``LocalSession`` whose commit then uploads the result to Supabase."""

    def __init__(self, store: "SupabaseStore", local: LocalSession) -> None:
        self.store = store
        self.local = local
        self.scan_id = local.scan_id
        self.analysis_id = str(uuid.uuid4())
        self._objects: list[dict[str, Any]] = []

    def put_image(self, frame_index: int, data: bytes, ext: str, content_type: str) -> tuple[str, str]:
        key, uri = self.local.put_image(frame_index, data, ext, content_type)
        self._objects.append({"key": key, "file": key.split("/", 1)[1],
                              "content_type": content_type, "frame_index": int(frame_index),
                              "sha256": hashlib.sha256(data).hexdigest()})
        return key, uri

    def put_scores(self, table: pa.Table) -> str:
        return self.local.put_scores(table)

    def commit(self, manifest: dict[str, Any]) -> str:
        """Commit locally (with the pending list), then upload; adds ``manifest["supabase"]``."""
        bucket = self.store.bucket
        types = {o["key"]: o["content_type"] for o in self._objects}
        state = {
            "version": 1, "scan_id": self.scan_id, "analysis_id": self.analysis_id,
            "bucket": bucket, "created_at": _now(),
            "objects": self._objects,
            "golden_frames": [golden_frame_row(self.scan_id, self.analysis_id, g, bucket,
                                               types.get(g["key"], "image/jpeg"))
                              for g in manifest.get("golden_frames", [])],
            "analysis": analysis_row(self.analysis_id, self.scan_id, "running", manifest),
            "uploaded": [], "rows_done": False, "analysis_done": False, "attempts": 0,
        }
        manifest["supabase"] = UploadReport(self.scan_id, self.analysis_id, bucket,
                                            not_uploaded=_pending_items(state)).section()
        _write_atomic(self.local.staging / PENDING_NAME, json.dumps(state, indent=2).encode())
        location = self.local.commit(manifest)  # the durable, complete local result
        try:
            report = upload_pending(self.store.client, self.local.final, state)
        except Exception as exc:  # the local result stands; pending_upload.json says what is left
            log.exception("upload of %s to Supabase stopped", self.scan_id)
            report = UploadReport(self.scan_id, self.analysis_id, bucket,
                                  not_uploaded=_pending_items(state),
                                  error=self.store.client.redact(f"{type(exc).__name__}: {exc}"))
        if report.complete and self.store.signed_url_expiry_s:
            self.store.add_signed_urls(report)
        _rewrite_manifest_section(self.local.final, self.analysis_id, report.section())
        manifest["supabase"] = report.section()
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
                                              error=message)], "id", attempts=1)
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
    def from_settings(cls, settings: Any, environ: dict[str, str] | None = None) -> "SupabaseStore":
        """Build from ``Settings`` and ``SUPABASE_URL`` / ``SUPABASE_SERVICE_ROLE_KEY``."""
        creds = SupabaseCredentials.from_env(environ)
        client = SupabaseClient(
            creds, bucket=settings.supabase_bucket, timeout_s=settings.supabase_timeout_s,
            retry=RetryPolicy(settings.supabase_retries, settings.supabase_backoff_s,
                              settings.supabase_backoff_max_s))
        expiry = settings.supabase_signed_url_expiry_s if settings.supabase_signed_urls else None
        return cls(LocalStore(settings.out_dir), client, signed_url_expiry_s=expiry)

    def __repr__(self) -> str:
        return f"SupabaseStore(root={str(self.local.root)!r}, client={self.client!r})"

    def open(self, scan_id: str) -> SupabaseSession:
        return SupabaseSession(self, self.local.open(scan_id))

    def manifest(self, scan_id: str) -> dict[str, Any] | None:
        return self.local.manifest(scan_id)

    def add_signed_urls(self, report: UploadReport) -> None:
        """Signed URLs of the uploaded objects (in the result only: they expire)."""
        expiry = self.signed_url_expiry_s
        if not expiry:
            return
        manifest = self.local.manifest(report.scan_id) or {}
        keys = [g["key"] for g in manifest.get("golden_frames", [])]
        try:
            report.signed_urls = self.client.signed_urls(keys, expiry)
            report.signed_urls_expire_at = (datetime.now(timezone.utc)
                                            + timedelta(seconds=expiry)).isoformat()
        except SupabaseRequestError as exc:
            log.warning("could not sign URLs for %s: %s", report.scan_id, exc)

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
        manifest = self.local.manifest(scan_id) or {}
        if (manifest.get("supabase") or {}).get("analysis_id") != state.get("analysis_id"):
            log.warning("%s belongs to an analysis that is no longer the result of %s; dropped",
                        path, scan_id)
            path.unlink(missing_ok=True)
            return None
        if state.get("bucket") != self.bucket:
            log.warning("%s was pending for bucket %r; uploading to %r as configured now",
                        scan_id, state.get("bucket"), self.bucket)
            state["bucket"] = self.bucket
            for row in state["golden_frames"]:
                row["storage_bucket"] = self.bucket
        report = upload_pending(self.client, folder, state)
        if report.complete and self.signed_url_expiry_s:
            self.add_signed_urls(report)
        _rewrite_manifest_section(folder, state["analysis_id"], report.section())
        return report

    def close(self) -> None:
        self.client.close()


def iter_sections(results: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(scan_id, supabase section) of each golden result that went through this store."""
    for r in results:
        section = (getattr(r, "manifest", None) or {}).get("supabase")
        if section:
            yield r.scan_id, section


__all__ = ["SupabaseStore", "SupabaseSession", "SupabaseClient", "SupabaseCredentials",
           "RetryPolicy", "UploadReport", "SupabaseError", "SupabaseConfigError",
           "SupabaseRequestError", "SupabaseConflictError", "golden_frame_row", "analysis_row",
           "upload_pending", "object_key", "PENDING_NAME"]
