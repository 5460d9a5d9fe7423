"""``s3://`` and ``gs://`` videos, read by the workers through ``pyarrow.fs``.

Why pyarrow.fs and not fsspec (s3fs/gcsfs): it is already a dependency (Ray Data and our
Parquet scores use it), so workers import nothing new (s3fs adds aiobotocore/aiohttp and cost
about 1 s more to import and connect in each fresh worker process, measured); its reads release
the GIL; connect and request timeouts and the retry strategy are plain arguments; and its
``read_at`` does exactly the positioned reads ``RangeFile`` asks for. s3fs's default 50 MiB
read-ahead made every chunk download the whole object.

The filesystem is built from ``SourceOptions`` (endpoint, region, anonymous access), never from
the input: bucket and key are parsed by ``jobs.sources.parse_object_url``, which refuses query
strings, because ``FileSystem.from_uri`` would take ``?endpoint_override=`` from the URL and
connect wherever it says. Credentials come from each worker's environment through the
providers' standard chains (``AWS_*`` variables, config files, instance roles; Google
application default credentials), so they never travel with the job.
"""

from __future__ import annotations

import functools
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from actors.errors import (SourceAccessDeniedError, SourceError, SourceGoneError,
                           SourceTimeoutError)
from actors.media_source import KnownBlocks, RangeFile
from jobs.sources.options import SourceOptions

_GONE = ("NO_SUCH_KEY", "NoSuchKey", "NoSuchBucket", "NO_SUCH_BUCKET", "does not exist",
         "Not Found", "not found")
_DENIED = ("ACCESS_DENIED", "AccessDenied", "Forbidden", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "Unauthorized", "credentials")
_TIMEOUT = ("curlCode: 28", "Timeout", "timed out", "TIMEOUT")


class ObjectSource:
    """A video in S3 or GCS (a ``MediaSource``); each ``open`` is a new ranged reader."""

    def __init__(self, scheme: str, bucket: str, key: str, name: str,
                 options: SourceOptions, identity: tuple[int, str | None] | None = None) -> None:
        self.scheme, self.bucket, self.key = scheme, bucket, key
        self.name = name
        self.options = options
        self.identity = identity  # (size, None) as first opened or probed: see HttpSource
        self._known = KnownBlocks()  # what the last file held, for the next open (HttpSource)

    def __repr__(self) -> str:
        return f"ObjectSource({self.name!r})"

    def open(self) -> RangeFile:
        fs = filesystem(self.scheme, self.options)
        deadline = time.monotonic() + self.options.deadline_s
        try:
            handle = fs.open_input_file(f"{self.bucket}/{self.key}")
            size = handle.size()
        except Exception as exc:  # noqa: BLE001 - every library error becomes a typed one
            raise object_error(self.name, exc) from None
        if size > self.options.max_bytes:
            handle.close()
            raise SourceError(self.name, f"{size} bytes, more than the limit of "
                                         f"{self.options.max_bytes} bytes "
                                         "(FRAMESIFT_DOWNLOAD_MAX_BYTES)", code="download_too_large")
        if self.identity is None:
            self.identity = (size, None)
        elif self.identity[0] != size:
            handle.close()
            raise SourceGoneError(self.name, f"the object changed since it was probed (it had "
                                             f"{self.identity[0]} bytes, now {size})")

        def fetch(offset: int, length: int) -> bytes:
            if time.monotonic() > deadline:
                raise SourceTimeoutError(self.name, f"reading took longer than "
                                                    f"{self.options.deadline_s:g} s "
                                                    "(FRAMESIFT_DOWNLOAD_TIMEOUT_S)")
            try:
                data = handle.read_at(length, offset)
            except Exception as exc:  # noqa: BLE001
                raise object_error(self.name, exc) from None
            if len(data) != length:
                raise SourceGoneError(self.name, f"the object is shorter than when it was opened "
                                                 f"({size} bytes): replaced or deleted during "
                                                 "the run")
            return data

        return RangeFile(self.name, size, fetch, block=self.options.block_bytes,
                         max_block=self.options.max_block_bytes, known=self._known,
                         on_close=handle.close)


def object_error(name: str, exc: BaseException) -> SourceError:
    """A pyarrow filesystem error as a typed source error (first line of its message)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, FileNotFoundError) or any(s in text for s in _GONE):
        return SourceGoneError(name, f"no such object ({text})")
    if isinstance(exc, PermissionError) or any(s in text for s in _DENIED):
        return SourceAccessDeniedError(name, f"access refused; check the workers' credentials "
                                             f"({text})")
    if isinstance(exc, TimeoutError) or any(s in text for s in _TIMEOUT):
        return SourceTimeoutError(name, f"the object store did not answer in time ({text})")
    return SourceError(name, f"reading failed ({type(exc).__name__}: {text})")


def _endpoint(value: str) -> dict[str, Any]:
    parts = urlsplit(value if "://" in value else f"https://{value}")
    return {"endpoint_override": parts.netloc, "scheme": parts.scheme}


@functools.lru_cache(maxsize=8)
def filesystem(scheme: str, options: SourceOptions) -> Any:
    """One pyarrow filesystem per worker process and configuration (they pool connections)."""
    from pyarrow import fs

    if scheme == "s3":
        kwargs: dict[str, Any] = {"connect_timeout": options.request_timeout_s,
                                  "request_timeout": options.request_timeout_s,
                                  "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3)}
        if options.s3_endpoint:
            kwargs.update(_endpoint(options.s3_endpoint))
        if options.s3_region:
            kwargs["region"] = options.s3_region
        return fs.S3FileSystem(**kwargs)
    if scheme == "gs":
        kwargs = {"anonymous": options.gcs_anonymous,
                  "retry_time_limit": timedelta(seconds=options.request_timeout_s)}
        if options.gcs_endpoint:
            kwargs.update(_endpoint(options.gcs_endpoint))
        return fs.GcsFileSystem(**kwargs)
    raise ValueError(f"no object-store filesystem for {scheme}://")
