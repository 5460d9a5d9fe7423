"""A stored golden-frame result read back for a re-pick: its scores, its images, its video.

``StoredScores`` is ``scores.parquet`` turned back into the ``FrameScore``s the reducer reads
(thumbnails included), the frames never delivered, and the video's frame index.
``ResultFiles`` reads a result's files where they are: the local store's folder (the local
store, or the local copy the Supabase store keeps), else the Supabase bucket (a cluster node
where the analysis did not run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actors.errors import FramesiftError
from actors.records import FrameIndex, FrameScore
from jobs.golden.finish import GAPS_META, INDEX_META
from jobs.golden.manifest import CANDIDATES_FOLDER, SCORES_NAME
from jobs.stores.base import Store, tenant_prefix, validate_scan_id


class RepickError(FramesiftError):
    """A re-pick could not be made; the previous result is unchanged."""

    code = "repick_failed"


class NoStoredResultError(RepickError):
    code = "no_result"

    def __init__(self, scan_id: str, where: str) -> None:
        super().__init__(f"scan {scan_id!r} has no complete result in {where}: run "
                         f"`framesift golden` on its video first")


class ScoresNotStoredError(RepickError):
    """The result has no ``scores.parquet`` here, or one written before it held everything a
    selection reads (the near-duplicate thumbnails)."""

    code = "scores_not_stored"


class ResultSupersededError(RepickError):
    """The store holds a later result of the scan than the one asked to re-pick."""

    code = "result_superseded"


class RepickSourceError(RepickError):
    """Picks that are not stored need the source video, and it cannot be read."""

    code = "repick_source_unavailable"


@dataclass(frozen=True)
class StoredScores:
    """What a selection needs, read back from ``scores.parquet``."""

    scores: tuple[FrameScore, ...]
    gaps: tuple[int, ...]
    index: FrameIndex | None  # None: scores written before the index was stored
    table: pa.Table | None = None  # as read (the re-pick writes it back with its selection)

    @property
    def listed(self) -> int:
        """Frames the container lists (delivered + gaps)."""
        return len(self.index) if self.index is not None else len(self.scores) + len(self.gaps)


def stored_scores(table: pa.Table, scan_id: str) -> StoredScores:
    """``scores.parquet`` back as ``FrameScore``s; ``ScoresNotStoredError`` when it lacks a
    field the reducer reads (scores written by a version before re-picks)."""
    names = set(table.column_names)
    missing = [f.name for f in fields(FrameScore) if f.name not in names]
    if missing:
        raise ScoresNotStoredError(
            f"the stored scores of scan {scan_id!r} lack {', '.join(missing)} (written by a "
            f"framesift version before re-picks): run `framesift golden` on its video once more "
            f"to re-pick it later without decoding")
    columns = table.select([f.name for f in fields(FrameScore)]).to_pydict().values()
    scores = tuple(FrameScore(*row) for row in zip(*columns))  # in FrameScore's field order
    meta = table.schema.metadata or {}
    gaps = tuple(int(g) for g in json.loads(meta.get(GAPS_META.encode(), b"[]")))
    raw = meta.get(INDEX_META.encode())
    index = FrameIndex.from_columns(json.loads(raw)) if raw else None
    return StoredScores(scores, gaps, index, table)


def _local_root(store: Store) -> Path | None:
    root = getattr(store, "root", None)  # LocalStore
    if root is None and getattr(store, "local", None) is not None:  # SupabaseStore's copy
        root = store.local.root  # type: ignore[attr-defined]
    return Path(root) if root is not None else None


class ResultFiles:
    """A result's files: from the local folder when it has them, else from the Supabase bucket
    (``store=supabase``), else not at all (None)."""

    def __init__(self, store: Store, scan_id: str) -> None:
        self.store = store
        self.scan_id = validate_scan_id(scan_id)
        tenant = (getattr(store, "tenant", None)  # LocalStore; SupabaseStore: its local copy's
                  or getattr(getattr(store, "local", None), "tenant", None))
        self.prefix = tenant_prefix(tenant)  # a tenant's keys
        root = _local_root(store)
        self.folder = root / scan_id if root is not None else None
        self.client: Any = getattr(store, "client", None)  # SupabaseStore

    def _local(self, name: str) -> bytes | None:
        if self.folder is None:
            return None
        path = self.folder / name
        return path.read_bytes() if path.is_file() else None

    def pool_files(self) -> frozenset[str]:
        """The candidate pool's images in the local folder (``candidates/<frame>.<ext>``); none
        where there is no local folder (the bucket holds a pool in one file)."""
        if self.folder is None:
            return frozenset()
        try:
            names = os.listdir(self.folder / CANDIDATES_FOLDER)
        except OSError:
            return frozenset()
        return frozenset(f"{CANDIDATES_FOLDER}/{name}" for name in names)

    def read(self, key: str) -> bytes | None:
        """The object ``key`` (``[_tenants/<tenant>/]<scan_id>/<name>``) of this result, or
        None when not stored."""
        if not key.startswith(self.prefix):
            return None
        scan, _, name = key[len(self.prefix):].partition("/")
        if scan != self.scan_id or not name or "/" in name:
            return None
        data = self._local(name)
        if data is None and self.client is not None:
            from jobs.stores.supabase_client import SupabaseRequestError

            try:
                data = self.client.download_object(key)
            except SupabaseRequestError as exc:
                if exc.transient:
                    raise RepickError(f"Supabase could not be reached for {key}: {exc}; try "
                                      "again later") from exc
                return None
        return data

    def scores(self) -> StoredScores:
        """The result's stored scores (``ScoresNotStoredError`` when there are none)."""
        data = self.read(f"{self.prefix}{self.scan_id}/{SCORES_NAME}")
        if data is None:
            where = "the local store" + (" or the Supabase bucket" if self.client else "")
            raise ScoresNotStoredError(
                f"scan {self.scan_id!r} has no {SCORES_NAME} in {where} (a result written "
                f"before the Supabase store uploaded its scores, or removed): run `framesift "
                f"golden` on its video once more to re-pick it later without decoding")
        return stored_scores(pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False),
                             self.scan_id)


__all__ = ["NoStoredResultError", "RepickError", "RepickSourceError", "ResultFiles",
           "ResultSupersededError",
           "ScoresNotStoredError", "StoredScores", "stored_scores"]
