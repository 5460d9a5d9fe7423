"""Where results go. ``LocalStore`` (a folder) is the default; other stores plug in here.

A result is written through a ``StoreSession``: images and scores first, the manifest last.
Nothing is visible as a complete result until ``commit``; ``abort`` (or an exception inside
``with store.open(scan_id)``) leaves the previous result, if any, untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.parquet as pq

from actors.errors import InvalidParameterError

MANIFEST_NAME = "manifest.json"
SCORES_NAME = "scores.parquet"
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


def object_key(scan_id: str, frame_index: int, ext: str) -> str:
    """Deterministic key of a golden frame image: ``<scan_id>/<frame_index>.<ext>``."""
    return f"{validate_scan_id(scan_id)}/{int(frame_index)}.{ext}"


@runtime_checkable
class StoreSession(Protocol):
    """One result being written. Use as a context manager: an exception aborts it."""

    def put_image(self, frame_index: int, data: bytes, ext: str, content_type: str) -> tuple[str, str]:
        """Store one image; return ``(key, uri)``."""

    def put_scores(self, table: pa.Table) -> str:
        """Store the per-frame scores; return their key."""

    def commit(self, manifest: dict[str, Any]) -> str:
        """Write the manifest last, making the result complete; return its location.

        A store may add a section about itself to ``manifest`` in place (the Supabase store adds
        ``supabase``: what was uploaded and what is pending), so the caller's result shows it.
        """

    def abort(self) -> None:
        """Drop everything written by this session."""

    def __enter__(self) -> "StoreSession": ...

    def __exit__(self, *exc: object) -> None: ...


class Store(Protocol):
    name: str

    def open(self, scan_id: str) -> StoreSession: ...

    def manifest(self, scan_id: str) -> dict[str, Any] | None:
        """The committed manifest of ``scan_id``, or None when there is no complete result."""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class LocalSession:
    """Writes into a staging folder; ``commit`` swaps it into ``<root>/<scan_id>/``."""

    def __init__(self, root: Path, scan_id: str) -> None:
        self.root = root
        self.scan_id = validate_scan_id(scan_id)
        self.final = root / scan_id
        self.staging = root / ".staging" / f"{scan_id}.{uuid.uuid4().hex[:12]}"
        self.staging.mkdir(parents=True)
        self._done = False

    def put_image(self, frame_index: int, data: bytes, ext: str, content_type: str) -> tuple[str, str]:
        key = object_key(self.scan_id, frame_index, ext)
        _write_atomic(self.staging / key.split("/", 1)[1], data)
        return key, (self.final / key.split("/", 1)[1]).resolve().as_uri()

    def put_scores(self, table: pa.Table) -> str:
        pq.write_table(table, self.staging / SCORES_NAME)
        return f"{self.scan_id}/{SCORES_NAME}"

    def commit(self, manifest: dict[str, Any]) -> str:
        if self._done:
            raise RuntimeError("session already committed or aborted")
        _write_atomic(self.staging / MANIFEST_NAME,
                      json.dumps(manifest, indent=2, sort_keys=False).encode())
        trash = None
        if self.final.exists():
            trash = self.root / ".staging" / f"{self.scan_id}.old.{uuid.uuid4().hex[:12]}"
            os.replace(self.final, trash)
        os.replace(self.staging, self.final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        self._done = True
        self._drop_empty_staging_root()
        return str(self.final / MANIFEST_NAME)

    def abort(self) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)
            self._done = True
            self._drop_empty_staging_root()

    def _drop_empty_staging_root(self) -> None:
        try:
            self.staging.parent.rmdir()  # only succeeds when no other run is writing
        except OSError:
            pass

    def __enter__(self) -> "LocalSession":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()


class LocalStore:
    """Results under ``<root>/<scan_id>/``: images, ``scores.parquet``, ``manifest.json``."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str] = "output") -> None:
        self.root = Path(root)

    def open(self, scan_id: str) -> LocalSession:
        self.root.mkdir(parents=True, exist_ok=True)
        return LocalSession(self.root, scan_id)

    def manifest(self, scan_id: str) -> dict[str, Any] | None:
        path = self.root / validate_scan_id(scan_id) / MANIFEST_NAME
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def location(self, scan_id: str) -> Path:
        return self.root / validate_scan_id(scan_id)
