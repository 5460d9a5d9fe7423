"""Supabase client for framesift: the official ``supabase`` client with retries, typed errors
and secret hygiene (used by ``jobs.stores.supabase``).

Retries: network errors, HTTP 5xx and 429 are retried with exponential backoff and jitter
(tenacity); other 4xx are not. Uploads are upserts (``x-upsert: true``): Storage then always
writes the object (200) and never answers "duplicate" (``"statusCode": "409"``, which it gives
only to a plain upload of an existing key), so there is no conflict to resolve here.

Credentials come from the environment only (``SUPABASE_URL``, ``SUPABASE_SERVICE_ROLE_KEY``);
the key never appears in logs, messages or reprs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import httpx
from tenacity import (Retrying, retry_if_exception, stop_after_attempt,
                      wait_exponential_jitter)

from actors.errors import FramesiftError

log = logging.getLogger(__name__)

ANALYSES_TABLE = "analyses"
GOLDEN_TABLE = "golden_frames"
GOLDEN_CONFLICT = "tenant,scan_id,frame_index"
URL_ENV = "SUPABASE_URL"
KEY_ENV = "SUPABASE_SERVICE_ROLE_KEY"

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
                 transient: bool = False, reason: str | None = None) -> None:
        super().__init__(message)
        self.target = target
        self.status = status
        self.transient = transient
        self.reason = reason or message  # the message without the operation and target


@dataclass(frozen=True)
class SignedUrls:
    """Signed URLs of the keys Storage signed, and why it refused the others."""

    urls: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # key -> Storage's reason


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
        self._timeout_s = timeout_s
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

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its settings and rebuilt where it lands (a Ray worker that stores a
        finished video): the key travels inside the task's arguments, never in logs, reprs or
        the workers' environment."""
        return (_rebuild_client, (self.url, self._secret, self.bucket, self.retry, self._timeout_s))

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
            wait=wait_exponential_jitter(multiplier=self.retry.backoff_s, exp_base=2,
                                         max=self.retry.backoff_max_s,
                                         jitter=self.retry.backoff_s),
            retry=retry_if_exception(is_transient), reraise=True, before_sleep=before_sleep)
        try:
            return retrying(fn)
        except HTTPStatusFailure as exc:
            raise self._request_error(what, target, exc, attempts) from None
        except httpx.TransportError as exc:
            reason = self.redact(f"Supabase at {self.url} is unreachable ({type(exc).__name__}: "
                                 f"{exc or 'no detail'}; {attempts} attempt(s)).")
            raise SupabaseRequestError(
                self.redact(f"Supabase at {self.url} is unreachable ({what} {target}: "
                            f"{type(exc).__name__}: {exc or 'no detail'}; "
                            f"{attempts} attempt(s))."),
                target=target, transient=True, reason=reason) from None

    def _request_error(self, what: str, target: str, exc: HTTPStatusFailure,
                       attempts: int) -> SupabaseRequestError:
        detail = _body_text(exc.body)
        status = exc.status
        hint = ""
        if exc.transient:
            hint = f" Supabase kept failing after {attempts} attempt(s); try again later."
        elif status == 401 or exc.storage_status == "403" or (
                isinstance(exc.body, dict) and exc.body.get("code") in ("PGRST301", "PGRST303")):
            # Storage answers a bad, expired or non-service JWT with HTTP 400 and statusCode 403
            hint = (f" Check that {KEY_ENV} is the service role key of the project at "
                    f"{URL_ENV} (not expired, not the anon key).")
        elif exc.storage_status == "404" and "bucket" in detail.lower():
            hint = (" Create the bucket: apply supabase/migrations with `supabase db push`, or set "
                    "FRAMESIFT_SUPABASE_BUCKET to an existing bucket.")
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
                                    target=target, status=status, transient=exc.transient,
                                    reason=self.redact(f"{shown}: {detail}.{hint}"))

    # operations --------------------------------------------------------------------------------

    def upload_object(self, key: str, data: bytes, content_type: str) -> None:
        """Upload one object as an upsert: Storage overwrites whatever the key held."""
        bucket = self._client.storage.from_(self.bucket)
        self._call("upload", f"{self.bucket}/{key}",
                   lambda: bucket.upload(key, data, {"content-type": content_type,
                                                     "upsert": "true", "cache-control": "3600"}))

    def remove_objects(self, bucket: str, keys: list[str]) -> None:
        """Delete objects of ``bucket`` (keys that are not there are no error)."""
        if not keys:
            return
        store = self._client.storage.from_(bucket)
        self._call("delete", f"{bucket} ({len(keys)} objects)", lambda: store.remove(keys))

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

    def other_frames(self, scan_id: str, analysis_id: str,
                     tenant: str = "") -> list[dict[str, Any]]:
        """``golden_frames`` rows of ``tenant``'s ``scan_id`` written by other analyses: where
        their objects are (``storage_bucket``, ``storage_key``)."""
        query = (self._client.table(GOLDEN_TABLE)
                 .select("analysis_id,frame_index,storage_bucket,storage_key")
                 .eq("tenant", tenant).eq("scan_id", scan_id).neq("analysis_id", analysis_id))
        rows: Any = self._call("read", GOLDEN_TABLE, query.execute).data or []
        return [dict(row) for row in rows]

    def delete_stale_frames(self, scan_id: str, analysis_id: str, tenant: str = "") -> None:
        """Delete golden_frames rows of ``tenant``'s ``scan_id`` left by other analyses of it."""
        from postgrest.types import ReturnMethod

        query = (self._client.table(GOLDEN_TABLE).delete(returning=ReturnMethod.minimal)
                 .eq("tenant", tenant).eq("scan_id", scan_id).neq("analysis_id", analysis_id))
        self._call("delete stale rows of", GOLDEN_TABLE, query.execute)

    def signed_urls(self, keys: list[str], expires_in_s: int) -> SignedUrls:
        """Signed URLs of ``keys``; the keys Storage refused (missing object, no access) are in
        ``refused`` with its reason, never silently left out."""
        if not keys:
            return SignedUrls()
        bucket = self._client.storage.from_(self.bucket)
        items = self._call("sign", self.bucket, lambda: bucket.create_signed_urls(keys, expires_in_s))
        urls: dict[str, str] = {}
        refused: dict[str, str] = {}
        for item in items:
            path = item.get("path")
            signed = item.get("signedURL")
            if signed and not item.get("error") and path:
                urls[path] = str(signed)
            elif path:
                refused[path] = str(item.get("error") or "no signed URL in Storage's answer")
        for key in keys:
            if key not in urls and key not in refused:
                refused[key] = "missing from Storage's answer"
        return SignedUrls(urls, refused)

    # objects of any size, streamed (uploaded videos of the HTTP service) ------------------------

    def upload_file(self, key: str, path: str, content_type: str) -> None:
        """Upload a local file as a new object (streamed from disk, not read into memory)."""
        bucket = self._client.storage.from_(self.bucket)
        self._call("upload", f"{self.bucket}/{key}",
                   lambda: bucket.upload(key, path, {"content-type": content_type,
                                                     "upsert": "false"}))

    def object_exists(self, key: str) -> bool:
        """Whether ``key`` is in the bucket (Storage answers a missing one with statusCode 404)."""
        bucket = self._client.storage.from_(self.bucket)

        def info() -> bool:
            try:
                bucket.info(key)
            except HTTPStatusFailure as exc:
                if exc.storage_status == "404" or exc.status == 404:
                    return False
                raise
            return True

        return self._call("look up", f"{self.bucket}/{key}", info)

    def list_objects(self, folder: str = "") -> list[dict[str, Any]]:
        """The objects directly in ``folder`` (not its sub-folders): ``{name, created_at}``
        with the name relative to the folder and Storage's ISO timestamp."""
        bucket = self._client.storage.from_(self.bucket)
        out: list[dict[str, Any]] = []
        page = 1000
        while True:
            options: Any = {"limit": page, "offset": len(out),
                            "sortBy": {"column": "name", "order": "asc"}}
            items = self._call("list", f"{self.bucket}/{folder}",
                               functools.partial(bucket.list, folder, options))
            out.extend(items)
            if len(items) < page:
                break
        return [{"name": i["name"], "created_at": i.get("created_at")}
                for i in out if i.get("id") is not None]  # id null = a sub-folder

    def download_to_file(self, key: str, dest: str) -> None:
        """Stream an object into a local file (written whole or not at all)."""
        from urllib.parse import quote

        url = f"{self.url}/storage/v1/object/{quote(self.bucket)}/{quote(key)}"
        headers = {"apikey": self._secret, "Authorization": f"Bearer {self._secret}"}
        tmp = f"{dest}.part"

        def fetch() -> None:
            with self._http.stream("GET", url, headers=headers) as response, \
                    open(tmp, "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dest)

        try:
            self._call("download", f"{self.bucket}/{key}", fetch)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _rebuild_client(url: str, key: str, bucket: str, retry: RetryPolicy,
                    timeout_s: float) -> SupabaseClient:
    return SupabaseClient(SupabaseCredentials(url, key), bucket=bucket, retry=retry,
                          timeout_s=timeout_s)
