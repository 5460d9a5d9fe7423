"""The local store: results under ``<root>/<scan_id>/`` (images, ``scores.parquet``,
``manifest.json``, the candidate pool: ``candidates.parquet`` and its images in
``candidates/``), written into a staging folder and swapped in at commit. A tenant's results
are under ``<root>/_tenants/<tenant>/<scan_id>/``, their keys prefixed the same way."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from jobs.golden.candidates import Candidate, pool_file, pool_index_table
from jobs.golden.manifest import (CANDIDATES_FOLDER, CANDIDATES_NAME, MANIFEST_NAME, SCORES_NAME,
                                  GoldenManifest)
from jobs.stores.base import object_key, tenant_prefix, validate_scan_id, write_atomic

log = logging.getLogger(__name__)


class LocalSession:
    """Writes into a staging folder; ``commit`` swaps it into ``<root>/<scan_id>/``."""

    def __init__(self, root: Path, scan_id: str, tenant: str | None = None) -> None:
        self.root = root
        self.scan_id = validate_scan_id(scan_id)
        self.tenant = tenant
        self.prefix = tenant_prefix(tenant)
        self.final = root / scan_id
        self.staging = root / ".staging" / f"{scan_id}.{uuid.uuid4().hex[:12]}"
        for attempt in range(5):  # another session may drop the empty staging root meanwhile
            try:
                self.staging.mkdir(parents=True)
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
        self._done = False
        self._carried: frozenset[str] | None = None  # the pool files carry_candidates brought

    def _image(self, frame_index: int, ext: str) -> tuple[str, str]:
        """A golden image's key and its file's name in the result's folder."""
        key = object_key(self.scan_id, frame_index, ext, self.tenant)
        return key, key.rsplit("/", 1)[1]

    def _stored(self, key: str, name: str) -> tuple[str, str]:
        """``(key, uri)`` of an image stored as ``name``: where it is once committed."""
        return key, (self.final / name).resolve().as_uri()

    def put_image(self, frame_index: int, data: bytes, ext: str, content_type: str) -> tuple[str, str]:
        key, name = self._image(frame_index, ext)
        write_atomic(self.staging / name, data)
        return self._stored(key, name)

    def keep_image(self, frame_index: int, data: bytes, ext: str,
                   content_type: str) -> tuple[str, str]:
        """An image the scan's current result already holds, unchanged (a re-pick keeping a
        pick): see ``keep_file``."""
        key, name = self._image(frame_index, ext)
        self.keep_file(name, data, content_type)
        return self._stored(key, name)

    def keep_file(self, name: str, data: bytes, content_type: str) -> str:
        """A file the scan's current result holds, unchanged (``data``, read from it):
        hard-linked from that result (already on disk, nothing written again), written like
        any file when the link cannot be made; its key."""
        try:
            os.link(self.final / name, self.staging / name)
        except OSError:
            write_atomic(self.staging / name, data)
        return f"{self.prefix}{self.scan_id}/{name}"

    def put_scores(self, table: pa.Table) -> str:
        return self.put_table(SCORES_NAME, table)

    def put_candidates(self, frames: Sequence[Candidate], ext: str, content_type: str) -> str:
        """The pool as a folder: each frame's image in ``candidates/`` (those brought by
        ``carry_candidates`` left as they are; a pick of this result hard-linked, the same
        bytes; the others written), then ``candidates.parquet`` listing them."""
        carried = self._carried or frozenset()
        if self._carried is None:
            (self.staging / CANDIDATES_FOLDER).mkdir()
        for frame in frames:
            name = pool_file(frame.frame_index, ext)
            if name in carried:
                continue
            try:
                os.link(self.staging / name.rsplit("/", 1)[1], self.staging / name)
            except FileNotFoundError:
                if frame.image is None:
                    raise ValueError(f"pool frame {frame.frame_index} has no image: neither "
                                     "given nor brought by carry_candidates") from None
                write_atomic(self.staging / name, frame.image)
        return self.put_table(CANDIDATES_NAME, pool_index_table(frames, ext))

    def carry_candidates(self) -> frozenset[str]:
        """Move the current result's pool folder into this one (a rename: nothing copied).
        Until commit the current result is without it (a re-pick of the scan meanwhile decodes
        what it needs); ``abort`` moves it back."""
        if self._carried is None:
            try:
                os.rename(self.final / CANDIDATES_FOLDER, self.staging / CANDIDATES_FOLDER)
            except (FileNotFoundError, NotADirectoryError):
                return frozenset()
            self._carried = frozenset(f"{CANDIDATES_FOLDER}/{name}" for name in
                                      os.listdir(self.staging / CANDIDATES_FOLDER))
        return self._carried

    def link_candidate(self, frame_index: int, ext: str, content_type: str) -> tuple[str, str]:
        key, name = self._image(frame_index, ext)
        os.link(self.staging / pool_file(frame_index, ext), self.staging / name)
        return self._stored(key, name)

    def put_table(self, name: str, table: pa.Table) -> str:
        """A Parquet file of the result (``scores.parquet``, ``candidates.parquet``); its key.
        The pool's images are compressed already: stored as they are (read faster)."""
        pq.write_table(table, self.staging / name,
                       compression="none" if name == CANDIDATES_NAME else "snappy")
        return f"{self.prefix}{self.scan_id}/{name}"

    def commit(self, manifest: GoldenManifest) -> str:
        if self._done:
            raise RuntimeError("session already committed or aborted")
        write_atomic(self.staging / MANIFEST_NAME, manifest.to_json().encode())
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
            if self._carried is not None:  # the current result's pool: given back
                try:
                    os.rename(self.staging / CANDIDATES_FOLDER, self.final / CANDIDATES_FOLDER)
                except OSError:
                    log.warning("could not move the candidate pool of %s back; it is rebuilt "
                                "as re-picks decode", self.scan_id)
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
    """Results under ``<root>/<scan_id>/``: images, ``scores.parquet``, ``manifest.json``;
    with ``tenant``, under ``<root>/_tenants/<tenant>/<scan_id>/`` (one tenant's scan never
    replaces another's)."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str] = "output",
                 tenant: str | None = None) -> None:
        self.tenant = tenant
        self.root = Path(root) / tenant_prefix(tenant)

    def open(self, scan_id: str) -> LocalSession:
        if not self.root.is_dir():  # a stat: cheaper than a mkdir per result
            self.root.mkdir(parents=True, exist_ok=True)
        return LocalSession(self.root, scan_id, self.tenant)

    def manifest(self, scan_id: str) -> GoldenManifest | None:
        """The committed manifest, or None (no result, or one this version cannot read)."""
        path = self.root / validate_scan_id(scan_id) / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            return GoldenManifest.from_json(path.read_bytes())
        except ValidationError as exc:
            log.warning("%s is not a readable framesift manifest (%s): treated as no result",
                        path, exc.errors()[0].get("msg"))
            return None

    def write_manifest(self, manifest: GoldenManifest) -> None:
        """Rewrite the committed manifest of ``manifest.scan_id`` in place (atomically)."""
        write_atomic(self.location(manifest.scan_id) / MANIFEST_NAME, manifest.to_json().encode())

    def location(self, scan_id: str) -> Path:
        return self.root / validate_scan_id(scan_id)
