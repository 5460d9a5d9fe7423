"""The Store protocol (where results go) and the rules for scan ids and object keys.

A result is written through a ``StoreSession``: images and scores first, the manifest last.
Nothing is visible as a complete result until ``commit``; ``abort`` (or an exception inside
``with store.open(scan_id)``) leaves the previous result, if any, untouched.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from actors.errors import InvalidParameterError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

    from jobs.golden.candidates import Candidate
    from jobs.golden.manifest import GoldenManifest

_SCAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_scan_id(scan_id: str) -> str:
    """Scan ids name folders and object keys: letters, digits, '.', '_', '-', at most 128."""
    if not isinstance(scan_id, str) or not _SCAN_ID.match(scan_id) or ".." in scan_id:
        raise InvalidParameterError(
            f"invalid scan id {scan_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'")
    return scan_id


def scan_id_from_path(path: str | os.PathLike[str]) -> str:
    """A safe default scan id from a file name (``my scan (1).mp4`` -> ``my-scan-1``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-._")
    stem = stem.replace("..", ".")[:128]
    return stem or "scan"


TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TENANTS_FOLDER = "_tenants"  # no scan id starts with '_': never one scan's folder


def validate_tenant(tenant: str) -> str:
    """Tenant names name folders and key prefixes: letters, digits, '.', '_', '-', at most 64."""
    if not isinstance(tenant, str) or not TENANT_NAME.match(tenant) or ".." in tenant:
        raise InvalidParameterError(
            f"invalid tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit, without '..'")
    return tenant


def tenant_prefix(tenant: str | None) -> str:
    """Where a tenant's results live in a store: ``_tenants/<tenant>/`` ('' without a tenant:
    the single-tenant layout, ``<scan_id>/...`` at the store's root)."""
    return "" if tenant is None else f"{TENANTS_FOLDER}/{validate_tenant(tenant)}/"


def object_key(scan_id: str, frame_index: int, ext: str, tenant: str | None = None) -> str:
    """Deterministic key of a golden frame image: ``<scan_id>/<frame_index>.<ext>``, under the
    tenant's prefix when there is one."""
    return f"{tenant_prefix(tenant)}{validate_scan_id(scan_id)}/{int(frame_index)}.{ext}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@runtime_checkable
class StoreSession(Protocol):
    """One result being written. Use as a context manager: an exception aborts it."""

    def put_image(self, frame_index: int, data: bytes, ext: str, content_type: str) -> tuple[str, str]:
        """Store one image; return ``(key, uri)``."""

    def put_scores(self, table: "pa.Table") -> str:
        """Store the per-frame scores; return their key."""

    def put_candidates(self, frames: "Sequence[Candidate]", ext: str, content_type: str) -> str:
        """Store the candidate pool (jobs/golden/candidates.py), ``frames`` all of it; return
        its key. A frame without its image (``image`` None) is one whose file
        ``carry_candidates`` brought over."""

    def carry_candidates(self) -> frozenset[str]:
        """Bring the scan's current pool images (its pool folder) into this result without
        copying them; the files brought (``candidates/<frame>.<ext>``; none: a pool stored
        otherwise, or none). ``abort`` gives them back."""

    def link_candidate(self, frame_index: int, ext: str, content_type: str) -> tuple[str, str]:
        """Store an image from the pool brought by ``carry_candidates`` (not read, not
        written again); return ``(key, uri)``."""

    def keep_image(self, frame_index: int, data: bytes, ext: str, content_type: str) -> tuple[str, str]:
        """Store an image the scan's current result holds unchanged (``data``, read from it):
        a store may reuse what it has instead of writing or uploading it again."""

    def keep_file(self, name: str, data: bytes, content_type: str) -> str:
        """Store a file the scan's current result holds unchanged, as ``keep_image``."""

    def commit(self, manifest: "GoldenManifest") -> str:
        """Write the manifest last, making the result complete; return its location.

        A store may add a section about itself to ``manifest`` in place (the Supabase store sets
        ``manifest.supabase``: what was uploaded and what is pending), so the caller's result
        shows it.
        """

    def abort(self) -> None:
        """Drop everything written by this session."""

    def __enter__(self) -> "StoreSession": ...

    def __exit__(self, exc_type: object, *rest: object) -> None: ...


class Store(Protocol):
    name: str

    def open(self, scan_id: str) -> StoreSession: ...

    def manifest(self, scan_id: str) -> "GoldenManifest | None":
        """The committed manifest of ``scan_id``, or None when there is no complete result."""
