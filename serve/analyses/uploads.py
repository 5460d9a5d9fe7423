"""Uploaded videos, owned by the analysis that refers to them, in a place its runner can read.

One interface (``Uploads``), two kinds of places, chosen by ``open_uploads`` from the settings:

- ``LocalUploads``: a folder on this node (``<state_dir>/uploads``), for a laptop or one node.
- ``ObjectUploads``: object storage every node reads, S3 (``s3://bucket/prefix``, through
  ``pyarrow.fs``) or Supabase Storage (``supabase://bucket/prefix``, through the project's
  Supabase client); with the Supabase store this is the default (``supabase://framesift-uploads``).

The life of an upload: the ingress writes the bytes being received to a file of its own node
(``receive_path``), then ``publish`` makes it an *incoming* upload and returns its reference (a
path, or ``s3://``/``supabase://`` URL). The coordinator *claims* it in the same synchronous step
that records the analysis (no ``await`` between), or deletes it when it refuses the analysis.
A request that ends without knowing the outcome (client gone, coordinator lost) calls
``abandon``. Whatever is still left (a file no queued or running analysis refers to) is deleted
by ``sweep`` at start-up and periodically, once older than a grace period.

- In a folder a claim is an atomic rename to the analysis id, so ``abandon`` can delete the
  incoming name at once: either the claim happened first (nothing left to delete) or it will
  fail (``UploadGoneError``, the analysis is refused).
- In object storage there is no rename (S3 would copy the whole video): a claim checks the
  object is there and the record refers to it as it is; ``abandon`` leaves it to the sweep,
  which deletes it after the grace period unless a record refers to it.

Runners read an upload wherever they run: a path as it is (one node), an object in place
through the batch pipeline's readers (``jobs.sources``: range reads, nothing copied).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from jobs.sources.options import InvalidSourceError, scheme_of
from jobs.sources.options import parse_object_url as parse_source_url

if TYPE_CHECKING:
    from jobs.settings import Settings

INCOMING_PREFIX = "incoming-"
# Uploads are stored without the client's file name or suffix: nothing the client chose
# reaches a path or key, and FFmpeg's format guess cannot be steered by a name (actors/video_open.py
# opens inputs through a container allow-list in any case).
UPLOAD_SUFFIX = ".upload"
CONTENT_TYPE = "application/octet-stream"  # what the uploads bucket accepts (migration)
DEFAULT_SUPABASE_UPLOADS = "supabase://framesift-uploads"
OBJECT_SCHEMES = ("s3", "supabase")


class UploadGoneError(FileNotFoundError):
    """The incoming upload is no longer there (its request ended and deleted it)."""


class Uploads(Protocol):
    """Where uploaded videos wait for their analysis (see the module's docstring)."""

    location: str  # where, for messages and logs (no secrets)

    def receive_path(self) -> Path:
        """A fresh file on this node to write an upload into while it is received."""

    def publish(self, received: Path) -> str:
        """Make the received file an incoming upload; returns its reference. Blocking (run it
        in a thread); the received file is gone afterwards, published or not."""

    def claim(self, incoming: str, analysis_id: str) -> str:
        """Make ``incoming`` the upload of ``analysis_id``; returns the reference to record.
        Raises ``UploadGoneError`` when it is gone."""

    def remove(self, ref: str) -> None:
        """Delete an upload (no error when it is gone)."""

    def abandon(self, incoming: str) -> None:
        """The request that published ``incoming`` ended without knowing whether it was
        claimed: delete it if that cannot race with a claim, else leave it to the sweep."""

    def sweep(self, referenced: Iterable[str], grace_s: float) -> list[str]:
        """Delete uploads older than ``grace_s`` that are not in ``referenced``; returns their
        names."""


class LocalUploads:
    """Uploads in one folder (``<state_dir>/uploads``) of this node."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.location = str(self.root)

    def incoming(self) -> Path:
        """A fresh path for an upload being received (not yet any analysis's)."""
        return self.root / f"{INCOMING_PREFIX}{uuid.uuid4().hex}{UPLOAD_SUFFIX}"

    receive_path = incoming  # received in place: publishing is nothing more

    def publish(self, received: Path) -> str:
        return str(received)

    def claim(self, incoming: str | os.PathLike[str], analysis_id: str) -> str:
        """Atomic rename to the analysis id."""
        src = Path(incoming)
        if src.parent.resolve() != self.root or not src.name.startswith(INCOMING_PREFIX):
            raise UploadGoneError(f"not an incoming upload: {src.name}")
        dst = self.root / f"{analysis_id}{UPLOAD_SUFFIX}"
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            raise UploadGoneError(f"upload {src.name} is gone") from None
        return str(dst)

    def remove(self, ref: str | os.PathLike[str]) -> None:
        Path(ref).unlink(missing_ok=True)

    abandon = remove  # a claim is a rename: deleting the incoming name cannot race with it

    def sweep(self, referenced: Iterable[str], grace_s: float) -> list[str]:
        keep = {Path(p).resolve() for p in referenced}
        cutoff = time.time() - grace_s
        removed = []
        for path in self.root.iterdir():
            try:
                if path.resolve() in keep or not path.is_file() or path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path.name)
        return removed


# ---- object storage ----------------------------------------------------------------------------

def parse_object_url(url: str) -> tuple[str, str, str]:
    """``(scheme, bucket, key or prefix)`` of ``s3://bucket[/key]`` or
    ``supabase://bucket[/key]``: the workers' parser (``jobs.sources.parse_object_url``: no
    query string or fragment, which ``pyarrow.fs.FileSystem.from_uri`` would obey; a valid
    bucket name for the service), with the key optional and no ``..`` segment in it.
    """
    if scheme_of(url) not in OBJECT_SCHEMES:
        raise InvalidSourceError(f"{url!r} is not an s3:// or supabase:// URL")
    scheme, bucket, key = parse_source_url(url, key_required=False)
    if ".." in key.split("/"):
        raise InvalidSourceError(f"{scheme}://{bucket}/{key}: give {scheme}://BUCKET[/PREFIX] "
                                 "without '..'")
    return scheme, bucket, key.strip("/")


class ObjectBucket(Protocol):
    """The few object operations uploads need, on one bucket."""

    def put_file(self, key: str, path: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def listing(self, prefix: str) -> list[tuple[str, float]]:
        """``(key, created at, epoch s)`` of the objects directly under ``prefix``."""

    def get_file(self, key: str, dest: Path) -> None: ...


class S3Bucket:
    """An S3 bucket through ``pyarrow.fs`` (already a dependency: Ray Data, Parquet). The
    endpoint and region come from the settings, never from an object URL; credentials from the
    standard AWS chain (``AWS_*`` variables, config files, instance roles)."""

    def __init__(self, bucket: str, endpoint: str | None = None, region: str | None = None) -> None:
        from pyarrow import fs

        kwargs: dict[str, Any] = {"connect_timeout": 10, "request_timeout": 60,
                                  "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3)}
        if endpoint:
            parts = endpoint.split("://", 1)
            scheme, netloc = (parts[0], parts[1]) if len(parts) == 2 else ("https", parts[0])
            kwargs.update(endpoint_override=netloc.rstrip("/"), scheme=scheme)
        if region:
            kwargs["region"] = region
        self.bucket = bucket
        self.fs = fs.S3FileSystem(**kwargs)

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    def put_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as src, self.fs.open_output_stream(self._path(key)) as out:
            shutil.copyfileobj(src, out, 8 << 20)

    def exists(self, key: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self._path(key)).type == fs.FileType.File

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self._path(key))
        except FileNotFoundError:
            pass

    def listing(self, prefix: str) -> list[tuple[str, float]]:
        from pyarrow import fs

        selector = fs.FileSelector(self._path(prefix).rstrip("/"), allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(selector):
            if info.type == fs.FileType.File:
                key = info.path.split("/", 1)[1]
                out.append((key, info.mtime.timestamp() if info.mtime else time.time()))
        return out

    def get_file(self, key: str, dest: Path) -> None:
        with self.fs.open_input_stream(self._path(key)) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 8 << 20)


class SupabaseBucket:
    """A Supabase Storage bucket through the project's client (``jobs/stores``): retries,
    typed errors, the key from ``SUPABASE_SERVICE_ROLE_KEY`` only."""

    def __init__(self, bucket: str, settings: "Settings | None" = None) -> None:
        from jobs.stores.supabase_client import (RetryPolicy, SupabaseClient,
                                                 SupabaseCredentials)

        retry, timeout = RetryPolicy(), 30.0
        if settings is not None:
            retry = RetryPolicy(settings.supabase_retries, settings.supabase_backoff_s,
                                settings.supabase_backoff_max_s)
            timeout = settings.supabase_timeout_s
        # a video takes longer than an image: the timeout is per read/write, not per object
        self.client = SupabaseClient(SupabaseCredentials.from_env(), bucket=bucket, retry=retry,
                                     timeout_s=timeout)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(key, str(path), CONTENT_TYPE)

    def exists(self, key: str) -> bool:
        return self.client.object_exists(key)

    def delete(self, key: str) -> None:
        self.client.remove_objects(self.client.bucket, [key])

    def listing(self, prefix: str) -> list[tuple[str, float]]:
        out = []
        for item in self.client.list_objects(prefix):
            created = item.get("created_at")
            ts = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() \
                if created else time.time()
            out.append((f"{prefix}/{item['name']}" if prefix else item["name"], ts))
        return out

    def get_file(self, key: str, dest: Path) -> None:
        self.client.download_to_file(key, str(dest))


def object_bucket(scheme: str, bucket: str, settings: "Settings | None" = None) -> ObjectBucket:
    if scheme == "s3":
        return S3Bucket(bucket, getattr(settings, "s3_endpoint", None),
                        getattr(settings, "s3_region", None))
    return SupabaseBucket(bucket, settings)


class ObjectUploads:
    """Uploads as objects under ``s3://`` or ``supabase://`` ``bucket/prefix``."""

    def __init__(self, url: str, settings: "Settings | None" = None,
                 bucket: ObjectBucket | None = None, spool_dir: str | None = None) -> None:
        self.scheme, self.bucket_name, self.prefix = parse_object_url(url.rstrip("/"))
        self.location = f"{self.scheme}://{self.bucket_name}" + \
            (f"/{self.prefix}" if self.prefix else "")
        self.bucket = bucket or object_bucket(self.scheme, self.bucket_name, settings)
        self.spool = Path(spool_dir or tempfile.gettempdir()) / "framesift-receiving"
        self.spool.mkdir(parents=True, exist_ok=True)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _ref(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket_name}/{key}"

    def _own_key(self, ref: str) -> str:
        scheme, bucket, key = parse_object_url(ref)
        if (scheme, bucket) != (self.scheme, self.bucket_name) or \
                key.rpartition("/")[0] != self.prefix:
            raise UploadGoneError(f"not an upload of {self.location}")
        return key

    def receive_path(self) -> Path:
        return self.spool / f"{INCOMING_PREFIX}{uuid.uuid4().hex}{UPLOAD_SUFFIX}"

    def publish(self, received: Path) -> str:
        key = self._key(Path(received).name)
        try:
            self.bucket.put_file(key, Path(received))
        finally:
            Path(received).unlink(missing_ok=True)
        return self._ref(key)

    def claim(self, incoming: str, analysis_id: str) -> str:
        key = self._own_key(incoming)
        if not key.rpartition("/")[2].startswith(INCOMING_PREFIX) or not self.bucket.exists(key):
            raise UploadGoneError(f"upload {key.rpartition('/')[2]} is gone")
        return incoming

    def remove(self, ref: str) -> None:
        try:
            key = self._own_key(ref)
        except (UploadGoneError, ValueError):
            return  # not ours (a record from another configuration): never delete elsewhere
        self.bucket.delete(key)

    def abandon(self, incoming: str) -> None:
        """Left to the sweep: deleting it now could race with a claim that already happened."""

    def sweep(self, referenced: Iterable[str], grace_s: float) -> list[str]:
        keep = set(referenced)
        cutoff = time.time() - grace_s
        removed = []
        for key, created in self.bucket.listing(self.prefix):
            if self._ref(key) in keep or created > cutoff:
                continue
            self.bucket.delete(key)
            removed.append(key.rpartition("/")[2])
        return removed


def uploads_url(settings: "Any") -> str:
    """Where uploads go: ``FRAMESIFT_UPLOADS_URL``, else Supabase Storage with the Supabase
    store, else the state dir's ``uploads`` folder."""
    if settings.uploads_url:
        return settings.uploads_url
    if settings.store == "supabase":
        return DEFAULT_SUPABASE_UPLOADS
    return str(Path(settings.state_dir).resolve() / "uploads")


def open_uploads(settings: "Any") -> Uploads:
    url = uploads_url(settings)
    if url.partition("://")[0] in OBJECT_SCHEMES:
        return ObjectUploads(url, settings)
    if "://" in url:
        raise ValueError(f"FRAMESIFT_UPLOADS_URL: {url.partition('://')[0]}:// is not "
                         "supported; give s3://BUCKET[/PREFIX], supabase://BUCKET[/PREFIX] or a "
                         "folder")
    return LocalUploads(url)
