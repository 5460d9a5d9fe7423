"""Re-pick golden frames from stored scores: new selection parameters, no scoring again.

``scores.parquet`` holds everything the reducer reads, so a selection from it equals the full
run's selection with the same parameters (picks, holds and notes). A re-pick then

1. selects from the stored scores with the new parameters (``preview`` stops here),
2. takes the picks already stored as they are (their image bytes and glint), then those in
   the candidate pool (``candidates.parquet``: frames the run extracted beside its picks, see
   jobs/golden/candidates.py; in the local store a folder of images the new result takes
   over and hard-links its picks from), and decodes only the others from the source video
   (its frame index is stored with the scores: no probe),
3. writes a new result through the store like any run: images, scores (with the new
   selection's view), the pool with the frames it decoded added (kept as it is when it had
   every pick), manifest last. Frames no longer picked disappear the way a re-analysis
   removes them (the local folder is swapped; the Supabase store deletes stale objects/rows);
   they stay in the pool, so going back to earlier parameters decodes nothing.

A rerun with the same parameters changes nothing (the stored result is returned). When picks
need the source and it cannot be read, ``RepickSourceError`` is raised before anything is
written: the previous result stays.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from actors.errors import FramesiftError
from actors.stage import Stage
from actors.records import GoldenFrame, VideoSummary
from jobs.golden.candidates import Candidate, pool_file, read_candidates
from jobs.golden.finish import (IMAGE_TYPES, Hooks, extract_frames, golden_frame,
                                reselected_table, result_manifest, scores_table, selection_notes)
from jobs.golden.manifest import (CANDIDATES_NAME, MANIFEST_NAME, PARQUET_TYPE, GoldenManifest,
                                  GoldenResult)
from jobs.golden.params import GoldenParams
from jobs.golden.planner import ChunkPlan
from jobs.golden.reducer import Selection, select_with
from jobs.golden.stored import (NoStoredResultError, RepickError, RepickSourceError,
                                ResultFiles, ScoresNotStoredError, StoredScores)
from jobs.sources import SourceOptions, open_source, scheme_of
from jobs.stores.base import Store

# The parameters a re-pick may change: the selection's. Everything else (scoring, image
# format) is the stored result's, since the scores and images come from it.
SELECTION_FIELDS = ("top_k", "min_gap_s", "motion_max", "still_window_s", "min_hold_s",
                    "edge_margin_s", "hold_sharpness_ratio", "dup_max_diff")


def repick_params(stored: GoldenParams, **changes: Any) -> GoldenParams:
    """``stored`` with new selection parameters (None = keep); any other field is refused."""
    wrong = sorted(set(changes) - set(SELECTION_FIELDS))
    if wrong:
        raise RepickError(f"a re-pick changes only the selection ({', '.join(SELECTION_FIELDS)}"
                          f"), not {', '.join(wrong)}: run `framesift golden` for those")
    params = replace(stored, **{k: v for k, v in changes.items() if v is not None})
    if params.top_k < 1 or min(getattr(params, k) for k in SELECTION_FIELDS[1:]) < 0:
        raise RepickError(f"top_k must be >= 1 and {', '.join(SELECTION_FIELDS[1:])} >= 0")
    return params


@dataclass(frozen=True)
class Repicked:
    """A selection made from stored scores, with the notes its manifest would carry."""

    selection: Selection
    notes: tuple[str, ...]


def select_stored(stored: StoredScores, params: GoldenParams) -> Repicked:
    """The selection (and notes) a full run with ``params`` makes on these scores."""
    selection = select_with(stored.scores, params)
    return Repicked(selection, tuple(selection_notes(selection, stored.gaps, stored.listed)))


@dataclass(frozen=True)
class StoredResult:
    """What a re-pick builds on: the stored result of one scan, and where its video is."""

    scan_id: str
    item_type: str | None
    video: VideoSummary
    params: GoldenParams
    plan: ChunkPlan
    golden_frames: tuple[GoldenFrame, ...]
    source: str  # what to read the video from (path, URL or object), for picks not stored
    manifest: GoldenManifest | None = None  # the manifest itself, when read from the store
    candidates_key: str | None = None  # its candidate pool (jobs/golden/candidates.py)

    @classmethod
    def from_manifest(cls, manifest: GoldenManifest, source: str | None = None) -> "StoredResult":
        return cls(manifest.scan_id, manifest.item_type, manifest.video, manifest.params,
                   manifest.plan, tuple(manifest.golden_frames),
                   source or manifest.video.path, manifest, manifest.candidates_key)

    @classmethod
    def of(cls, store: Store, scan_id: str) -> "StoredResult":
        manifest = store.manifest(scan_id)
        if manifest is None:
            raise NoStoredResultError(scan_id, f"the {store.name} store")
        return cls.from_manifest(manifest)


def _read_source(base: StoredResult, stored: StoredScores, missing: list[int],
                 params: GoldenParams, sources: SourceOptions) -> dict[int, Candidate]:
    """Decode and extract the ``missing`` frames from the source video; ``RepickSourceError``
    when it cannot be read."""
    shown = ", ".join(str(i) for i in missing[:8]) + (", ..." if len(missing) > 8 else "")
    why = (f"scan {base.scan_id!r}: {len(missing)} new pick(s) (frame {shown}) are not stored "
           f"and need the source video {base.video.path}, ")
    keep = " The previous result is unchanged."
    if stored.index is None:
        raise RepickSourceError(why + "but the stored scores predate the stored frame index: "
                                "run `framesift golden` on the video once more." + keep)
    try:
        url = base.source
        if scheme_of(url) == "supabase":
            from jobs.sources.supabase_inputs import sign_inputs

            signed = sign_inputs([url], sources.signed_url_expiry_s)[url]
            if isinstance(signed, Exception):
                raise signed
            url = signed
        source = open_source(url, base.video.path, sources)
        return extract_frames(params, missing, source, stored.index, base.video.rotation)
    except (FramesiftError, OSError, ValueError) as exc:
        raise RepickSourceError(why + f"which cannot be read ({exc}). Make it readable again, "
                                "or choose parameters whose picks are stored." + keep) from exc


@dataclass(frozen=True)
class _StoredPool:
    """The stored result's candidate pool (jobs/golden/candidates.py): ``candidates.parquet``
    as stored and as read (None: no pool)."""

    data: bytes | None = None
    table: pa.Table | None = None

    @classmethod
    def of(cls, base: StoredResult, files: ResultFiles) -> "_StoredPool":
        data = files.read(base.candidates_key) if base.candidates_key else None
        if data is None:
            return cls()
        return cls(data, pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False))

    @property
    def in_folder(self) -> bool:
        """The folder form: images in ``candidates/``, linked, never read."""
        return self.table is not None and "image" not in self.table.column_names

    @cached_property
    def frames(self) -> dict[int, Candidate]:
        return read_candidates(self.table) if self.table is not None else {}


def repick_video(base: StoredResult, params: GoldenParams, store: Store, *,
                 files: ResultFiles | None = None, sources: SourceOptions | None = None,
                 hooks: Hooks | None = None) -> GoldenResult:
    """Re-pick one stored result with ``params`` (see the module doc); the new result."""
    if base.manifest is not None and base.manifest.decided_by(params):
        folder = (files or ResultFiles(store, base.scan_id)).folder
        return GoldenResult(base.scan_id, base.video.path, "succeeded", manifest=base.manifest,
                            location=str(folder / MANIFEST_NAME) if folder else None)
    t0 = time.perf_counter()
    files = files or ResultFiles(store, base.scan_id)
    stored = files.scores()
    picked = select_stored(stored, params)
    t1 = time.perf_counter()
    ext, ctype = IMAGE_TYPES[params.image_format]
    wanted = [p.score.frame_index for p in picked.selection.picks]
    before = {g.frame_index: g for g in base.golden_frames if g.key.endswith(f".{ext}")}
    stored_pool = _StoredPool.of(base, files)  # it holds the stored picks too
    pool = stored_pool.frames
    # a pool stored as a folder (the local store): its images are linked, never read
    in_folder = files.pool_files() if params.candidates > 0 and stored_pool.in_folder else None
    frames: dict[int, Candidate] = {}  # the new picks, extracted
    kept: set[int] = set()  # those whose image file the stored result holds
    linked: set[int] = set()  # those whose image is in the pool folder
    for i in wanted:
        old = before.get(i)
        if old is None:
            continue
        data = pool[i].image if i in pool else None
        data = data if data is not None else files.read(old.key)
        if data is not None:
            frames[i] = Candidate(i, data, old.width, old.height, old.glint)
            kept.add(i)
    for i in wanted:
        if i in frames or i not in pool:
            continue
        if pool[i].image is not None:  # the pool in one file: its bytes
            frames[i] = pool[i]
        elif in_folder is not None and pool_file(i, ext) in in_folder:
            frames[i] = pool[i]
            linked.add(i)
    missing = [i for i in wanted if i not in frames]
    if missing:
        frames.update(_read_source(base, stored, missing, params, sources or SourceOptions()))
    t2 = time.perf_counter()
    golden: list[GoldenFrame] = []
    with store.open(base.scan_id) as session:
        carried = session.carry_candidates() if in_folder is not None else frozenset()
        if any(pool_file(i, ext) not in carried for i in linked):
            raise RepickError(f"the candidate pool of scan {base.scan_id!r} changed during the "
                              "re-pick (another re-pick of the scan at the same time?): try "
                              "again. The previous result is unchanged.")
        for rank, pick in enumerate(picked.selection.picks, start=1):
            i = pick.score.frame_index
            image = frames[i].image
            if i in linked or image is None:
                key, uri = session.link_candidate(i, ext, ctype)
            else:  # an unchanged image: a store that uploads need not send it again
                put = session.keep_image if i in kept else session.put_image
                key, uri = put(i, image, ext, ctype)
            frame = golden_frame(rank, pick, frames[i], key, uri)
            golden.append(frame)
            if hooks and hooks.on_pick:
                hooks.on_pick(base.scan_id, frame)
        sel = picked.selection
        scores_key = session.put_scores(
            reselected_table(stored.table, sel) if stored.table is not None else
            scores_table(stored.scores, sel, stored.gaps, stored.index))
        candidates_key = _store_pool(session, params, stored_pool, frames, carried, ext, ctype)
        timings = {"select_s": t1 - t0, "extract_s": t2 - t1, "store_s": time.perf_counter() - t2}
        manifest = result_manifest(base.scan_id, base.item_type, base.video, params, base.plan,
                                   sel, list(picked.notes), golden, timings, scores_key, store,
                                   stored.gaps, candidates_key)
        location = session.commit(manifest)
    return GoldenResult(base.scan_id, base.video.path, "succeeded", manifest=manifest,
                        location=location)


def _store_pool(session: Any, params: GoldenParams, stored: _StoredPool,
                picks: dict[int, Candidate], carried: frozenset[str], ext: str,
                ctype: str) -> str | None:
    """The new result's candidate pool: the stored one (less the folder's images that are
    gone) with the new picks added, kept as it is when that changes nothing; None when
    ``params.candidates`` is 0."""
    if params.candidates <= 0:
        return None
    pool = {i: c for i, c in stored.frames.items()
            if not stored.in_folder or pool_file(i, ext) in carried}
    if stored.data is not None and pool.keys() == stored.frames.keys() \
            and picks.keys() <= pool.keys():
        return session.keep_file(CANDIDATES_NAME, stored.data, PARQUET_TYPE)
    return session.put_candidates(list({**pool, **picks}.values()), ext, ctype)


@dataclass(frozen=True)
class RepickPlan:
    """What a batch re-pick will do (the batch progress's first line)."""

    videos: int
    threads: int

    @property
    def reason(self) -> str:
        return (f"re-pick {self.videos} stored result(s) from their scores on {self.threads} "
                f"thread(s): no decoding but new picks outside the "
                "stored frames and candidate pool")


class RepickStage(Stage[str, GoldenResult]):
    """Re-pick one stored scan (by scan id) with the selection ``changes``: its new result, or
    a failed one (a scan that cannot be re-picked is data; the batch goes on). Stateless
    between items: one instance serves every thread of a batch."""

    name = "repick"

    def __init__(self, store: Store, changes: dict[str, Any],
                 sources: SourceOptions | None = None, hooks: Hooks | None = None) -> None:
        self.store, self.changes = store, changes
        self.sources, self.hooks = sources, hooks

    def process(self, item: str) -> Iterator[GoldenResult]:
        try:
            base = StoredResult.of(self.store, item)
            params = repick_params(base.params, **self.changes)
            yield repick_video(base, params, self.store, sources=self.sources, hooks=self.hooks)
        except FramesiftError as exc:
            yield GoldenResult.failed(item, item, exc)
        except Exception as exc:  # noqa: BLE001 - one scan's failure is data, not the batch's
            yield GoldenResult.failed(item, item, f"{type(exc).__name__}: {exc}",
                                      "internal_error")


def stream_repick(scan_ids: Sequence[str], changes: dict[str, Any], store: Store, *,
                  threads: int = 1, sources: SourceOptions | None = None,
                  hooks: Hooks | None = None) -> Iterator[GoldenResult]:
    """Re-pick each scan with the selection ``changes``; yield each result as it finishes (a
    scan that cannot be re-picked is a failed result; the others go on)."""
    hooks = hooks or Hooks()
    threads = max(1, threads)
    if hooks.on_batch:
        hooks.on_batch(RepickPlan(len(scan_ids), threads))  # type: ignore[arg-type]
    stage = RepickStage(store, changes, sources, hooks).ready()

    def one(scan_id: str) -> GoldenResult:
        [result] = stage.process(scan_id)
        return result

    def done(result: GoldenResult) -> GoldenResult:
        if hooks.on_result:
            hooks.on_result(result)
        return result

    if threads == 1:
        for scan_id in scan_ids:
            yield done(one(scan_id))
        return
    todo = iter(scan_ids)
    pending: set[Future[GoldenResult]] = set()
    with ThreadPoolExecutor(threads, thread_name_prefix="repick") as pool:
        while True:
            while len(pending) < 2 * threads and (scan := next(todo, None)) is not None:
                pending.add(pool.submit(one, scan))
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield done(future.result())


def preview(store: Store, scan_id: str, changes: dict[str, Any]) -> tuple[StoredResult, Repicked]:
    """The selection a re-pick of ``scan_id`` would make; nothing extracted or written."""
    base = StoredResult.of(store, scan_id)
    params = repick_params(base.params, **changes)
    return base, select_stored(ResultFiles(store, scan_id).scores(), params)


__all__ = ["NoStoredResultError", "RepickError", "RepickPlan", "RepickSourceError", "Repicked",
           "SELECTION_FIELDS", "ScoresNotStoredError", "StoredResult", "preview",
           "RepickStage", "repick_params", "repick_video", "select_stored", "stream_repick"]
