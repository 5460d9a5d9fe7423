"""The forms of inputs and how workers read them: ``SourceOptions``, parsing and names
(no reader here, so every reader module can import it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from actors.errors import InvalidParameterError
from actors.media_source import DEFAULT_BLOCK, DEFAULT_MAX_BLOCK, MediaSource
from jobs.redact import redact_url

if TYPE_CHECKING:
    from jobs.settings import Settings

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "supabase")
OBJECT_SCHEMES = ("s3", "gs", "supabase")
# Bucket names as the services define them (lower case; S3 allows dots, GCS underscores too).
_BUCKET = {"s3": re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
           "gs": re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$"),
           "supabase": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")}


class InvalidSourceError(InvalidParameterError):
    """An input that names no readable video location (unknown scheme, malformed object URL)."""

    code = "invalid_source"


@dataclass(frozen=True)
class SourceOptions:
    """How workers read inputs: the URL rules, caps, timeouts and object-store endpoints.

    Built from ``Settings`` on the driver and shipped to the workers with the pipeline. The
    S3/GCS endpoints come from here only, never from an input URL.
    """

    allowlist: str | None = None
    max_bytes: int = 4_294_967_296
    request_timeout_s: float = 30.0
    deadline_s: float = 600.0
    block_bytes: int = DEFAULT_BLOCK
    max_block_bytes: int = DEFAULT_MAX_BLOCK
    s3_endpoint: str | None = None
    s3_region: str | None = None
    gcs_endpoint: str | None = None
    gcs_anonymous: bool = False
    signed_url_expiry_s: int = 86_400

    @classmethod
    def from_settings(cls, s: "Settings") -> "SourceOptions":
        return cls(allowlist=s.url_allowlist, max_bytes=s.download_max_bytes,
                   request_timeout_s=s.source_request_timeout_s,
                   deadline_s=s.download_timeout_s, block_bytes=s.source_block_bytes,
                   max_block_bytes=max(s.source_block_bytes, s.source_max_block_bytes),
                   s3_endpoint=s.s3_endpoint, s3_region=s.s3_region, gcs_endpoint=s.gcs_endpoint,
                   gcs_anonymous=s.gcs_anonymous,
                   signed_url_expiry_s=s.supabase_input_url_expiry_s)


def scheme_of(video: str) -> str | None:
    """The input's URL scheme (lower case), or None for a local path."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", video)
    return match.group(1).lower() if match else None


def is_remote(video: str) -> bool:
    return scheme_of(video) in REMOTE_SCHEMES


def parse_object_url(video: str, *, key_required: bool = True) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of an ``s3://``, ``gs://`` or ``supabase://`` input.

    Parsed here, never by a library's URI parser: ``pyarrow.fs.FileSystem.from_uri`` honours
    options in the query string (``?endpoint_override=``), which would let an input choose the
    host a worker connects to. A query string or fragment is refused outright, and the bucket
    must be a valid name for its service. ``key_required=False`` parses a location instead
    (``scheme://BUCKET[/PREFIX]``): the key, then a prefix, may be empty.
    """
    scheme = scheme_of(video)
    if scheme not in OBJECT_SCHEMES:
        raise InvalidSourceError(f"{video!r} is not an s3://, gs:// or supabase:// object URL")
    rest = video.split("://", 1)[1]
    if "?" in rest or "#" in rest:
        raise InvalidSourceError(f"{scheme}://{rest.split('?')[0].split('#')[0]}: a query string "
                                 f"or fragment is not allowed in an object URL; give "
                                 f"{scheme}://BUCKET/KEY")
    bucket, _, key = rest.partition("/")
    if not _BUCKET[scheme].match(bucket):
        raise InvalidSourceError(f"{scheme}://{bucket}/...: {bucket!r} is not a valid bucket name")
    if "\x00" in key or (key_required and (not key or key.endswith("/"))):
        raise InvalidSourceError(f"{scheme}://{bucket}/{key}: the object key is missing; give "
                                 f"{scheme}://BUCKET/KEY")
    return scheme, bucket, key


def check_input(video: str) -> str:
    """Validate the form of an input (not whether it exists); return it unchanged. Raises
    ``InvalidSourceError`` naming what is accepted."""
    scheme = scheme_of(video)
    if scheme is None:
        return video
    if scheme not in REMOTE_SCHEMES:
        raise InvalidSourceError(f"{scheme}:// is not accepted; give a file path, an http(s):// "
                                 f"URL, or an s3://, gs:// or supabase://BUCKET/KEY object")
    if scheme in OBJECT_SCHEMES:
        parse_object_url(video)
    elif not urlsplit(video).hostname:
        raise InvalidSourceError(f"{redact_url(video)}: the URL has no host")
    return video


def display_name(video: str) -> str:
    """How an input is shown in errors, logs and results: URLs lose credentials and query."""
    return redact_url(video) if scheme_of(video) in ("http", "https") else video


def source_identity(source: str | MediaSource) -> tuple[int, str | None] | None:
    """(size, ETag) of the object a source opened last, None for a path."""
    identity = getattr(source, "identity", None)
    return (int(identity[0]), identity[1]) if identity is not None else None
