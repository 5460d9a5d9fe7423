"""A loopback stand-in for the Supabase gateway, Storage API and PostgREST, answering as they do.

Only what framesift uses, but with the real routes, headers, status codes and error bodies:

- gateway (Kong): ``apikey`` header required (401 ``{"message": "No API key found in request"}``
  / ``{"message": "Invalid API key", ...}``); ``Authorization: Bearer <key>`` selects the role.
- Storage (storage-api): ``POST /storage/v1/object/<bucket>/<key>`` (multipart or raw body,
  ``x-upsert``), ``PUT`` (update), ``GET`` (download), ``DELETE /storage/v1/object/<bucket>``
  (``{"prefixes": [...]}``), ``POST /storage/v1/object/sign/<bucket>`` (bulk signed URLs) and
  ``.../sign/<bucket>/<key>``, ``GET /storage/v1/object/sign/<bucket>/<key>?token=`` (a signed
  download, with Range), ``GET /storage/v1/object/info/<bucket>/<key>`` (an object's info)
  and ``POST /storage/v1/object/list/<bucket>`` (``{prefix, limit, offset, sortBy}``: the objects
  and sub-folders directly in that folder, names relative to it; a folder has ``id: null``).
  Errors are answered the way storage-api's error handler does:
  HTTP 400 (500 for internal errors) with the error's own status in the body, e.g.
  ``{"statusCode": "409", "code": "KeyAlreadyExists", "error": "Duplicate", "message": "The
  resource already exists"}`` or ``"413"`` ``EntityTooLarge``. As on the real server, a POST
  with ``x-upsert: true`` always writes (200) and is never answered as a duplicate (only a
  plain POST of an existing key is), and a bad or expired JWT is HTTP 400 with statusCode
  ``"403"`` ``AccessDenied``.
- PostgREST: ``POST /rest/v1/<table>?on_conflict=..&columns=..`` with ``Prefer:
  return=..,resolution=merge-duplicates`` (upsert), ``DELETE`` and ``GET`` with ``eq.``/``neq.``
  filters; PostgreSQL error codes (23502 not-null 400, 23503 foreign key 409, 23505 unique 409,
  23514 check 400, 42501 row level security 401/403, 42P10, PGRST204/205 schema cache,
  PGRST301/303 bad or expired JWT). Deletes cascade along the foreign keys the migration
  declares ``on delete cascade`` (an ``analyses`` row takes its ``golden_frames`` rows).

Faults for tests: ``fail_next(n, status)`` answers the next n matching requests with a gateway
error, ``drop_next(n)`` closes the connection without an answer, ``outage`` answers everything
with that status until cleared. Every request is recorded (method, path, query, headers).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# The tables as the migration defines them: columns, not-null without default, unique keys, FKs.
SCHEMA: dict[str, dict[str, Any]] = {
    "analyses": {
        "columns": ["id", "tenant", "scan_id", "item_type", "status", "parameters", "timings", "video",
                    "frame_count", "still_frames", "golden_count", "error", "framesift_version",
                    "created_at", "updated_at"],
        "required": ["id", "scan_id", "status"],
        "defaults": {"tenant": "", "parameters": {}, "timings": {}, "golden_count": 0},
        "unique": [("id",)],
        "checks": {"status": ("analyses_status_known", {"running", "succeeded", "failed"})},
        "fks": {},
    },
    "golden_frames": {
        "columns": ["id", "analysis_id", "tenant", "scan_id", "frame_index", "rank", "timestamp_s",
                    "sharpness", "motion", "still", "glint_share", "glint_blob_count",
                    "glint_largest_blob_px", "glint", "width", "height", "storage_bucket",
                    "storage_key", "content_type", "created_at", "updated_at"],
        "required": ["id", "analysis_id", "scan_id", "frame_index", "rank", "timestamp_s",
                     "sharpness", "motion", "still", "glint_share", "glint_blob_count",
                     "glint_largest_blob_px", "width", "height", "storage_bucket", "storage_key",
                     "content_type"],
        "defaults": {"tenant": "", "glint": {}},
        "unique": [("id",), ("tenant", "scan_id", "frame_index")],
        "checks": {},
        # column -> (table, column, constraint, on delete); the migration says "cascade"
        "fks": {"analysis_id": ("analyses", "id", "golden_frames_analysis_id_fkey", "cascade")},
    },
}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    status: int | None = None
    response: bytes = b""


@dataclass
class Bucket:
    name: str
    file_size_limit: int = 50 * 1024 * 1024
    # as supabase/migrations configure the golden-frames bucket
    allowed_mime_types: tuple[str, ...] = ("image/jpeg", "image/png", "application/vnd.apache.parquet")


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    version: str = field(default_factory=lambda: uuid.uuid4().hex)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)  # tests may age an object


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Answer(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _storage_error(status_code: str, code: str, error: str, message: str) -> _Answer:
    http = 500 if status_code == "500" else 400
    return _Answer(http, {"statusCode": status_code, "code": code, "error": error,
                          "message": message})


def _pg_error(http: int, code: str, message: str, details: Any = None, hint: Any = None) -> _Answer:
    return _Answer(http, {"code": code, "details": details, "hint": hint, "message": message})


class FakeSupabase:
    """Start with ``start()``; ``url`` is ``http://127.0.0.1:<port>``; ``stop()`` at the end."""

    def __init__(self, service_key: str, anon_key: str = "anon-key-not-secret",
                 buckets: tuple[str, ...] = ("golden-frames",),
                 expired_keys: tuple[str, ...] = ()) -> None:
        self.service_key = service_key
        self.anon_key = anon_key
        self.expired_keys = expired_keys  # keys the gateway knows whose JWT has expired
        self.buckets = {b: Bucket(b) for b in buckets}
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {t: [] for t in SCHEMA}
        self.requests: list[Recorded] = []
        self.outage: int | None = None
        self._faults: list[tuple[str | None, str | None, int | None]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> "FakeSupabase":
        fake = self

        class Handler(_Handler):
            app = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # faults ----------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503, method: str | None = None,
                  path_contains: str | None = None) -> None:
        with self._lock:
            self._faults.extend([(method, path_contains, status)] * n)

    def drop_next(self, n: int, method: str | None = None, path_contains: str | None = None) -> None:
        """Close the connection without answering (a network error for the client)."""
        with self._lock:
            self._faults.extend([(method, path_contains, None)] * n)

    def _take_fault(self, method: str, path: str) -> tuple[bool, int | None]:
        with self._lock:
            for i, (m, p, status) in enumerate(self._faults):
                if (m is None or m == method) and (p is None or p in path):
                    del self._faults[i]
                    return True, status
        return False, None

    # queries for tests -----------------------------------------------------------------------

    def rows(self, table: str, **eq: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.tables[table]
                    if all(r.get(k) == v for k, v in eq.items())]

    def requests_to(self, method: str, path_contains: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    # request handling ------------------------------------------------------------------------

    def handle(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        if rec.method == "GET" and rec.path.startswith("/storage/v1/object/sign/"):
            return self._signed_download(rec)
        try:
            role = self._gateway(rec)
            if rec.path.startswith("/storage/v1/"):
                return self._storage(rec, role)
            if rec.path.startswith("/rest/v1/"):
                return self._rest(rec, role)
            raise _Answer(404, {"message": "no Route matched with those values"})
        except _Answer as a:
            return a.status, a.body, a.headers

    def _signed_download(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        """What Storage does for a signed URL: ``GET /storage/v1/object/sign/<bucket>/<key>
        ?token=...`` without any key, Range answered with 206; a missing object (or a bad
        token) is HTTP 400 with the real status in the body."""
        bucket, _, key = unquote(rec.path[len("/storage/v1/object/sign/"):]).partition("/")
        token = (rec.query.get("token") or [""])[0]
        if not token.startswith("tok-"):
            return 400, {"statusCode": "400", "error": "InvalidJWT", "message": "jwt malformed"}, {}
        obj = self.objects.get((bucket, key))
        if obj is None:
            return 400, {"statusCode": "404", "error": "not_found",
                         "message": "Object not found"}, {}
        headers = {"Content-Type": obj.content_type, "ETag": f'"{obj.version}"',
                   "Accept-Ranges": "bytes"}
        rng = rec.headers.get("range", "")
        if rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a), min(int(b), len(obj.data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(obj.data)}"
            return 206, obj.data[start:end + 1], headers
        return 200, obj.data, headers

    def _gateway(self, rec: Recorded) -> str:
        apikey = rec.headers.get("apikey")
        if not apikey:
            raise _Answer(401, {"message": "No API key found in request"})
        if apikey not in (self.service_key, self.anon_key, *self.expired_keys):
            raise _Answer(401, {"message": "Invalid API key",
                                "hint": "Double check your Supabase `anon` or `service_role` API key."})
        auth = rec.headers.get("authorization")
        if auth is None:
            if rec.path.startswith("/storage/v1/"):
                raise _storage_error("403", "InvalidJWT", "Unauthorized",
                                     "headers must have required property 'authorization'")
            return "anon"
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if token == self.service_key:
            return "service_role"
        if token == self.anon_key:
            return "anon"
        expired = token in self.expired_keys
        if rec.path.startswith("/storage/v1/"):
            raise _storage_error("403", "AccessDenied", "Unauthorized",
                                 "jwt expired" if expired else "invalid signature")
        if expired:
            raise _pg_error(401, "PGRST303", "JWT expired")
        raise _pg_error(401, "PGRST301", "JWSError JWSInvalidSignature")

    # storage ---------------------------------------------------------------------------------

    def _storage(self, rec: Recorded, role: str) -> tuple[int, Any, dict[str, str]]:
        parts = [unquote(p) for p in rec.path[len("/storage/v1/"):].split("/")]
        if parts[:2] == ["object", "sign"] and rec.method == "POST":
            return self._sign(rec, parts[2], "/".join(parts[3:]) or None, role)
        if parts[0] == "object" and len(parts) == 2 and rec.method == "DELETE":
            return self._remove(rec, parts[1], role)
        if parts[:2] == ["object", "list"] and len(parts) == 3 and rec.method == "POST":
            return self._list(rec, parts[2], role)
        if parts[:2] == ["object", "info"] and len(parts) >= 4 and rec.method == "GET":
            return self._info(parts[2], "/".join(parts[3:]), role)
        if parts[0] != "object" or len(parts) < 3:
            raise _storage_error("404", "NotFound", "Not Found", f"Route {rec.method}:{rec.path} not found")
        bucket_name, key = parts[1], "/".join(parts[2:])
        if parts[1] == "authenticated":
            bucket_name, key = parts[2], "/".join(parts[3:])
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            raise _storage_error("404", "NoSuchBucket", "Bucket not found", "Bucket not found")
        if rec.method == "GET":
            obj = self.objects.get((bucket_name, key))
            if obj is None or role != "service_role":
                raise _storage_error("404", "NoSuchKey", "not_found", "Object not found")
            return 200, obj.data, {"Content-Type": obj.content_type, "ETag": f'"{obj.version}"'}
        if rec.method not in ("POST", "PUT"):
            raise _storage_error("404", "NotFound", "Not Found", f"Route {rec.method}:{rec.path} not found")
        if role != "service_role":
            raise _storage_error("403", "AccessDenied", "Unauthorized",
                                 "new row violates row-level security policy")
        data, content_type = self._upload_body(rec)
        if content_type not in bucket.allowed_mime_types:
            raise _storage_error("415", "InvalidMimeType", "invalid_mime_type",
                                 f"mime type {content_type} is not supported")
        if len(data) > bucket.file_size_limit:
            raise _storage_error("413", "EntityTooLarge", "Payload too large",
                                 "The object exceeded the maximum allowed size")
        with self._lock:
            exists = (bucket_name, key) in self.objects
            if rec.method == "POST" and exists and rec.headers.get("x-upsert") != "true":
                raise _storage_error("409", "KeyAlreadyExists", "Duplicate",
                                     "The resource already exists")
            if rec.method == "PUT" and not exists:
                raise _storage_error("404", "NoSuchKey", "not_found", "Object not found")
            self.objects[(bucket_name, key)] = StoredObject(data, content_type)
        return 200, {"Id": str(uuid.uuid4()), "Key": f"{bucket_name}/{key}"}, {}

    def _info(self, bucket_name: str, key: str, role: str) -> tuple[int, Any, dict[str, str]]:
        if bucket_name not in self.buckets:
            raise _storage_error("404", "NoSuchBucket", "Bucket not found", "Bucket not found")
        obj = self.objects.get((bucket_name, key))
        if obj is None or role != "service_role":
            raise _storage_error("404", "NoSuchKey", "not_found", "Object not found")
        return 200, {"id": obj.id, "name": key, "version": obj.version, "bucket_id": bucket_name,
                     "size": len(obj.data), "content_type": obj.content_type,
                     "etag": f'"{obj.version}"', "created_at": _iso(obj.created),
                     "last_modified": _iso(obj.created), "metadata": {}}, {}

    def _list(self, rec: Recorded, bucket_name: str, role: str) -> tuple[int, Any, dict[str, str]]:
        if bucket_name not in self.buckets:
            raise _storage_error("404", "NoSuchBucket", "Bucket not found", "Bucket not found")
        try:
            body = json.loads(rec.body or b"{}")
            prefix = str(body["prefix"]).strip("/")
        except (ValueError, KeyError, TypeError):
            raise _storage_error("400", "InvalidRequest", "Bad Request",
                                 "body must have required property 'prefix'") from None
        limit, offset = int(body.get("limit", 100)), int(body.get("offset", 0))
        if role != "service_role":  # RLS: nothing visible
            return 200, [], {}
        base = f"{prefix}/" if prefix else ""
        files: dict[str, StoredObject] = {}
        folders: set[str] = set()
        with self._lock:
            for (b, key), obj in self.objects.items():
                if b != bucket_name or not key.startswith(base):
                    continue
                head, sep, _ = key[len(base):].partition("/")
                if sep:
                    folders.add(head)
                else:
                    files[head] = obj
        entries = [{"name": f, "id": None, "updated_at": None, "created_at": None,
                    "last_accessed_at": None, "metadata": None} for f in folders]
        entries += [{"name": n, "id": o.id, "updated_at": _iso(o.created),
                     "created_at": _iso(o.created), "last_accessed_at": _iso(o.created),
                     "metadata": {"eTag": f'"{o.version}"', "size": len(o.data),
                                  "mimetype": o.content_type, "cacheControl": "max-age=3600",
                                  "lastModified": _iso(o.created), "contentLength": len(o.data),
                                  "httpStatusCode": 200}} for n, o in files.items()]
        order = (body.get("sortBy") or {}).get("order", "asc")
        entries.sort(key=lambda e: e["name"], reverse=order == "desc")
        return 200, entries[offset:offset + limit], {}

    def _remove(self, rec: Recorded, bucket_name: str, role: str) -> tuple[int, Any, dict[str, str]]:
        if bucket_name not in self.buckets:
            raise _storage_error("404", "NoSuchBucket", "Bucket not found", "Bucket not found")
        prefixes = json.loads(rec.body or b"{}").get("prefixes", [])
        removed = []
        with self._lock:
            for key in prefixes:
                if role == "service_role" and self.objects.pop((bucket_name, key), None) is not None:
                    removed.append({"bucket_id": bucket_name, "name": key})
        return 200, removed, {}

    @staticmethod
    def _upload_body(rec: Recorded) -> tuple[bytes, str]:
        ctype = rec.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + rec.body)
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    return part.get_payload(decode=True) or b"", part.get_content_type()
            raise _storage_error("400", "InvalidRequest", "Bad Request",
                                 "The request is not properly formed: no file field")
        if not ctype:
            raise _storage_error("400", "InvalidRequest", "Bad Request", "content-type is required")
        return rec.body, ctype.split(";")[0].strip()

    def _sign(self, rec: Recorded, bucket_name: str, key: str | None,
              role: str) -> tuple[int, Any, dict[str, str]]:
        if bucket_name not in self.buckets:
            raise _storage_error("404", "NoSuchBucket", "Bucket not found", "Bucket not found")
        try:
            body = json.loads(rec.body or b"{}")
            expires = int(body["expiresIn"])
        except (ValueError, KeyError, TypeError):
            raise _storage_error("400", "InvalidRequest", "Bad Request",
                                 "body must have required property 'expiresIn'") from None

        def url(k: str) -> str:
            return f"/object/sign/{bucket_name}/{k}?token=tok-{uuid.uuid4().hex}-{expires}"

        if key is not None:
            if (bucket_name, key) not in self.objects or role != "service_role":
                raise _storage_error("404", "NoSuchKey", "not_found", "Object not found")
            return 200, {"signedURL": url(key)}, {}
        out = []
        for k in body.get("paths", []):
            if (bucket_name, k) in self.objects and role == "service_role":
                out.append({"error": None, "path": k, "signedURL": url(k)})
            else:
                out.append({"error": "Either the object does not exist or you do not have access to it",
                            "path": k, "signedURL": None})
        return 200, out, {}

    # postgrest -------------------------------------------------------------------------------

    def _rest(self, rec: Recorded, role: str) -> tuple[int, Any, dict[str, str]]:
        table = rec.path[len("/rest/v1/"):].strip("/")
        schema = SCHEMA.get(table)
        if schema is None:
            raise _pg_error(404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache")
        prefer = {p.split("=")[0].strip(): p.split("=", 1)[1].strip()
                  for p in rec.headers.get("prefer", "").split(",") if "=" in p}
        filters = {k: v[0] for k, v in rec.query.items()
                   if k not in ("on_conflict", "columns", "select")}
        if rec.method == "GET":
            rows = self._match(table, filters) if role == "service_role" else []
            return 200, rows, {"Content-Type": "application/json"}
        if rec.method == "DELETE":
            if role != "service_role":  # RLS: no row is visible to delete
                return 204, None, {}
            with self._lock:
                gone = self._delete(table, self._match(table, filters))
            if prefer.get("return") == "representation":
                return 200, gone, {"Content-Type": "application/json"}
            return 204, None, {}
        if rec.method != "POST":
            raise _pg_error(405, "PGRST117", f"Unsupported HTTP method: {rec.method}")
        if not rec.headers.get("content-type", "").startswith("application/json"):
            raise _pg_error(415, "PGRST107", "None of these media types are available: "
                            + rec.headers.get("content-type", "(none)"))
        try:
            payload = json.loads(rec.body)
        except ValueError:
            raise _pg_error(400, "PGRST102", "Empty or invalid json") from None
        rows = payload if isinstance(payload, list) else [payload]
        if "columns" in rec.query:
            wanted = [c.strip().strip('"') for c in rec.query["columns"][0].split(",")]
            for col in wanted:
                if col not in schema["columns"]:
                    raise _pg_error(400, "PGRST204",
                                    f"Could not find the '{col}' column of '{table}' in the schema cache")
            rows = [{c: r.get(c) for c in wanted} for r in rows]
        for row in rows:
            for col in row:
                if col not in schema["columns"]:
                    raise _pg_error(400, "PGRST204",
                                    f"Could not find the '{col}' column of '{table}' in the schema cache")
        if role != "service_role":
            raise _pg_error(401, "42501",
                            f'new row violates row-level security policy for table "{table}"')
        on_conflict = tuple(c.strip() for c in rec.query.get("on_conflict", [""])[0].split(",") if c.strip())
        resolution = prefer.get("resolution")
        if on_conflict and on_conflict not in schema["unique"]:
            raise _pg_error(400, "42P10", "there is no unique or exclusion constraint matching "
                            "the ON CONFLICT specification")
        written = self._insert(table, schema, rows, on_conflict or schema["unique"][0], resolution)
        if prefer.get("return") == "representation":
            return 201, written, {"Content-Type": "application/json"}
        return 201, None, {}

    def _delete(self, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Delete ``rows`` of ``table`` and, along ``on delete cascade`` foreign keys, the rows
        that reference them (as PostgreSQL does). Caller holds the lock."""
        self.tables[table] = [r for r in self.tables[table] if r not in rows]
        for child, schema in SCHEMA.items():
            for col, (ref_table, ref_col, _name, on_delete) in schema["fks"].items():
                if ref_table != table or on_delete != "cascade":
                    continue
                keys = {str(r.get(ref_col)) for r in rows}
                self._delete(child, [r for r in self.tables[child] if str(r.get(col)) in keys])
        return rows

    def _match(self, table: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        def ok(row: dict[str, Any]) -> bool:
            for col, expr in filters.items():
                op, _, value = expr.partition(".")
                have = "" if row.get(col) is None else str(row.get(col))
                if op == "eq" and have != value:
                    return False
                if op == "neq" and have == value:
                    return False
                if op not in ("eq", "neq"):
                    raise _pg_error(400, "PGRST100", f'"failed to parse filter ({expr})"')
            return True

        return [r for r in self.tables[table] if ok(r)]

    def _insert(self, table: str, schema: dict[str, Any], rows: list[dict[str, Any]],
                conflict: tuple[str, ...], resolution: str | None) -> list[dict[str, Any]]:
        with self._lock:  # one transaction: all rows or none
            current = [dict(r) for r in self.tables[table]]
            written = []
            for row in rows:
                full = {c: None for c in schema["columns"]}
                full.update({k: v for k, v in schema["defaults"].items()})
                full.update(row)
                for col in schema["required"]:
                    if full.get(col) is None:
                        raise _pg_error(400, "23502", f'null value in column "{col}" of relation '
                                        f'"{table}" violates not-null constraint')
                for col, (name, allowed) in schema["checks"].items():
                    if full.get(col) not in allowed:
                        raise _pg_error(400, "23514", f'new row for relation "{table}" violates '
                                        f'check constraint "{name}"')
                for col, (ref_table, ref_col, name, _on_delete) in schema["fks"].items():
                    refs = self.tables[ref_table] if ref_table != table else current
                    if not any(str(r.get(ref_col)) == str(full[col]) for r in refs):
                        raise _pg_error(409, "23503", f'insert or update on table "{table}" '
                                        f'violates foreign key constraint "{name}"',
                                        f'Key ({col})=({full[col]}) is not present in table "{ref_table}".')
                hit = next((r for r in current
                            if all(r.get(c) == full.get(c) for c in conflict)), None)
                if hit is None:
                    for cols in schema["unique"]:
                        if any(all(r.get(c) == full.get(c) for c in cols) for r in current):
                            raise _pg_error(409, "23505", "duplicate key value violates unique "
                                            f'constraint "{table}_{"_".join(cols)}_key"')
                    full["created_at"] = full["updated_at"] = "now"
                    current.append(full)
                    written.append(full)
                elif resolution == "merge-duplicates":
                    hit.update(row)
                    hit["updated_at"] = "now"
                    written.append(dict(hit))
                elif resolution == "ignore-duplicates":
                    continue
                else:
                    raise _pg_error(409, "23505", "duplicate key value violates unique constraint "
                                    f'"{table}_{"_".join(conflict)}_key"',
                                    f"Key ({', '.join(conflict)}) already exists.")
            self.tables[table] = current
            return written


class _Handler(BaseHTTPRequestHandler):
    app: FakeSupabase
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, split.path, parse_qs(split.query, keep_blank_values=True),
                       {k.lower(): v for k, v in self.headers.items()}, body)
        self.app.requests.append(rec)
        faulted, fault_status = self.app._take_fault(self.command, split.path)
        if faulted and fault_status is None:
            rec.status = -1
            self.close_connection = True
            self.connection.close()
            return
        if faulted:
            status, payload, headers = fault_status, {"message": "upstream unavailable"}, {}
        elif self.app.outage:
            status, payload, headers = self.app.outage, {"message": "upstream unavailable"}, {}
        else:
            status, payload, headers = self.app.handle(rec)
        rec.status = status
        if payload is None:
            data = b""
        elif isinstance(payload, bytes):
            data = payload
        else:
            data = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", **headers}
        rec.response = data
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve
