"""Re-picks from stored scores (jobs/golden/repick.py): the same result as a full run with the
same parameters, only new picks decoded, stale frames removed, failures leave the old result."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from actors.synthetic_holds import make_hold_video
from jobs.golden.job import GoldenParams, VideoJob, run_golden
from jobs.golden.manifest import GoldenManifest
from jobs.golden.repick import (RepickSourceError, ScoresNotStoredError, StoredResult,
                                preview, repick_params, repick_video, stream_repick)
from jobs.stores.local import LocalStore

BASE = GoldenParams()
PARAM_SETS = [
    {"top_k": 8},
    {"min_gap_s": 1.5},
    {"motion_max": 0.3, "top_k": 6},
    {"motion_max": 3.0, "top_k": 3},
    {"still_window_s": 0.0, "dup_max_diff": 0.0, "min_hold_s": 0.2},
    {"top_k": 40, "min_gap_s": 0.4},  # more than exist: relaxation and the shortfall note
]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("repick") / "scan.mp4"
    make_hold_video(path, holds=4, soft_holds=1, size=(320, 180), seed=7)
    return path


def _full_run(video: Path, root: Path, params: GoldenParams, scan_id: str = "s") -> GoldenManifest:
    [result] = run_golden([VideoJob(str(video), scan_id)], params, LocalStore(root),
                          distributed=False)
    assert result.ok, result.error
    assert result.manifest is not None
    return result.manifest


@pytest.fixture(scope="module")
def base_store(scan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("base")
    _full_run(scan, root, BASE)
    return root


def _copy(root: Path, dest: Path) -> LocalStore:
    shutil.copytree(root, dest)
    return LocalStore(dest)


def _frames(m: GoldenManifest) -> list[dict]:
    return [{k: v for k, v in g.to_dict().items() if k != "uri"} for g in m.golden_frames]


@pytest.mark.parametrize("changes", PARAM_SETS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_repick_equals_a_full_run_with_the_same_parameters(scan, base_store, tmp_path, changes):
    params = repick_params(BASE, **changes)
    full = _full_run(scan, tmp_path / "full", params)
    store = _copy(base_store, tmp_path / "re")
    _, previewed = preview(store, "s", changes)
    result = repick_video(StoredResult.of(store, "s"), params, store)
    assert result.ok and result.manifest is not None
    re = result.manifest
    # picks, holds and notes, bit for bit; and the preview is that same selection
    assert re.selection == full.selection
    assert _frames(re) == _frames(full)
    assert [p.score.frame_index for p in previewed.selection.picks] == \
        [g.frame_index for g in full.golden_frames]
    assert list(previewed.notes) == full.selection.notes
    assert re.parameters == full.parameters and re.gaps == full.gaps
    # the stored scores carry the new selection's view, exactly as the full run wrote them
    assert pq.read_table(store.root / re.scores_key).equals(
        pq.read_table(tmp_path / "full" / full.scores_key))
    # the images are the full run's, and nothing else is in the folder
    for g in full.golden_frames:
        name = g.key.split("/")[1]
        assert (store.root / "s" / name).read_bytes() == (tmp_path / "full" / "s" / name).read_bytes()
    assert sorted(p.name for p in (store.root / "s").iterdir()) == \
        sorted(p.name for p in (tmp_path / "full" / "s").iterdir())


def test_stored_picks_need_no_source_and_unpicked_frames_are_removed(scan, base_store, tmp_path):
    store = _copy(base_store, tmp_path / "re")
    before = store.manifest("s")
    assert before is not None and len(before.golden_frames) == 5
    base = StoredResult.of(store, "s")
    gone = replace_source(base, tmp_path / "moved-away.mp4")
    result = repick_video(gone, repick_params(BASE, top_k=2), store)  # picks a subset
    assert result.ok and result.manifest is not None
    kept = {g.key.split("/")[1] for g in result.manifest.golden_frames}
    assert len(kept) == 2
    assert {p.name for p in (store.root / "s").glob("*.jpg")} == kept
    old = {g.frame_index: g for g in before.golden_frames}
    for g in result.manifest.golden_frames:  # glint and size carried over, not recomputed
        assert g.glint == old[g.frame_index].glint and g.width == old[g.frame_index].width


def replace_source(base: StoredResult, path: Path) -> StoredResult:
    return replace(base, source=str(path), manifest=None)


def _pool(root: Path, scan_id: str = "s") -> set[int]:
    return set(pq.read_table(root / scan_id / "candidates.parquet")["frame_index"].to_pylist())


@pytest.mark.parametrize("changes", [{"top_k": 8}, {"min_gap_s": 1.0}, {"motion_max": 2.0},
                                     {"top_k": 8, "min_gap_s": 0.42, "motion_max": 1.41}],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_picks_around_the_run_come_from_its_candidate_pool(scan, base_store, tmp_path, changes):
    """A run stores the frames the selections around its parameters pick; a re-pick there
    decodes nothing (the video is gone) and still equals a full run, images included."""
    before = LocalStore(base_store).manifest("s")
    assert before is not None and before.candidates_key == "s/candidates.parquet"
    pool = _pool(base_store)
    assert {g.frame_index for g in before.golden_frames} < pool
    assert len(pool) <= len(before.golden_frames) + BASE.candidates
    params = repick_params(BASE, **changes)
    full = _full_run(scan, tmp_path / "full", params)
    store = _copy(base_store, tmp_path / "re")
    gone = replace_source(StoredResult.of(store, "s"), tmp_path / "moved-away.mp4")
    result = repick_video(gone, params, store)
    assert result.ok and result.manifest is not None
    assert _frames(result.manifest) == _frames(full) and result.manifest.selection == full.selection
    for g in full.golden_frames:
        name = g.key.split("/")[1]
        assert (store.root / "s" / name).read_bytes() == (tmp_path / "full" / "s" / name).read_bytes()
    assert _pool(store.root) == pool  # nothing new decoded: the pool is the same file


def test_frames_decoded_by_a_repick_join_the_pool_for_the_next(scan, base_store, tmp_path):
    store = _copy(base_store, tmp_path / "re")
    pool = _pool(store.root)
    far = repick_params(BASE, top_k=40, min_gap_s=0.4)
    first = repick_video(StoredResult.of(store, "s"), far, store)
    assert first.ok and first.manifest is not None
    picked = {g.frame_index for g in first.manifest.golden_frames}
    assert not picked <= pool  # some were decoded ...
    assert _pool(store.root) == pool | picked  # ... and kept with the pool
    # back to the first parameters: every pick is at hand, the video is not needed
    gone = replace_source(StoredResult.of(store, "s"), tmp_path / "moved-away.mp4")
    back = repick_video(gone, BASE, store)
    original = LocalStore(base_store).manifest("s")
    assert back.ok and back.manifest is not None and original is not None
    assert _frames(back.manifest) == _frames(original)


def _inode(path: Path) -> int:
    return path.stat().st_ino


def test_the_local_pool_is_a_folder_and_a_repick_links_its_picks_from_it(base_store, tmp_path):
    """The local store keeps each pool image as a file in candidates/ (a pick is the same file
    as its golden image), listed by candidates.parquet without the images; a re-pick moves the
    folder into its result and hard-links its new picks from it: no image is written again."""
    folder = base_store / "s"
    before = LocalStore(base_store).manifest("s")
    assert before is not None
    listed = pq.read_table(folder / "candidates.parquet")
    assert "image" not in listed.column_names
    assert sorted(listed["file"].to_pylist()) == \
        sorted(f"candidates/{p.name}" for p in (folder / "candidates").iterdir())
    for g in before.golden_frames:
        assert _inode(folder / g.key.split("/")[1]) == \
            _inode(folder / "candidates" / f"{g.frame_index}.jpg")
    store = _copy(base_store, tmp_path / "re")
    pool = {p.name: _inode(p) for p in (store.root / "s" / "candidates").iterdir()}
    stored = {g.frame_index: _inode(store.root / g.key) for g in before.golden_frames}
    gone = replace_source(StoredResult.of(store, "s"), tmp_path / "moved-away.mp4")
    result = repick_video(gone, repick_params(BASE, top_k=8), store)
    assert result.ok and result.manifest is not None
    assert {p.name: _inode(p) for p in (store.root / "s" / "candidates").iterdir()} == pool
    new = [g for g in result.manifest.golden_frames if g.frame_index not in stored]
    assert len(new) == 3
    for g in result.manifest.golden_frames:
        assert _inode(store.root / g.key) == stored.get(g.frame_index) or \
            _inode(store.root / g.key) == pool[f"{g.frame_index}.jpg"]
    for g in new:
        assert _inode(store.root / g.key) == pool[f"{g.frame_index}.jpg"]
    assert not (store.root / ".staging").exists()


def test_a_repick_that_fails_after_taking_the_pool_gives_it_back(base_store, tmp_path,
                                                                  monkeypatch):
    from jobs.golden import repick as module

    store = _copy(base_store, tmp_path / "re")
    files = sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, "result_manifest", broken)
    with pytest.raises(RuntimeError):
        repick_video(StoredResult.of(store, "s"), repick_params(BASE, top_k=8), store)
    assert sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")) == files
    monkeypatch.undo()
    gone = replace_source(StoredResult.of(store, "s"), tmp_path / "moved-away.mp4")
    assert repick_video(gone, repick_params(BASE, top_k=8), store).ok  # the pool is whole


def test_pool_images_that_are_gone_are_decoded_again(scan, base_store, tmp_path):
    """The pool is a cache: a folder lost (copied without it, removed) costs decoding, not a
    wrong or failed result; the new pool holds what this result has."""
    store = _copy(base_store, tmp_path / "re")
    shutil.rmtree(store.root / "s" / "candidates")
    params = repick_params(BASE, top_k=8)
    full = _full_run(scan, tmp_path / "full", params)
    result = repick_video(StoredResult.of(store, "s"), params, store)
    assert result.ok and result.manifest is not None
    assert _frames(result.manifest) == _frames(full)
    for g in full.golden_frames:
        assert (store.root / g.key).read_bytes() == (tmp_path / "full" / g.key).read_bytes()
    picked = {g.frame_index for g in full.golden_frames}
    assert _pool(store.root) == picked
    assert {p.name for p in (store.root / "s" / "candidates").iterdir()} == \
        {f"{i}.jpg" for i in picked}


def test_a_pool_stored_in_one_file_serves_a_repick_and_becomes_a_folder(base_store, tmp_path):
    """candidates.parquet with the images in it (the Supabase store's form, and local results
    of earlier versions) serves a re-pick the same way; kept as it is while unchanged, written
    as a folder once a re-pick adds to it."""
    from jobs.golden.candidates import candidates_table, read_candidates

    store = _copy(base_store, tmp_path / "re")
    folder = store.root / "s"
    pool = read_candidates(pq.read_table(folder / "candidates.parquet"))
    images = {f"{i}.jpg": (folder / "candidates" / f"{i}.jpg").read_bytes() for i in pool}
    pq.write_table(candidates_table(replace(c, image=images[f"{i}.jpg"]) for i, c in pool.items()),
                   folder / "candidates.parquet")
    one_file = (folder / "candidates.parquet").read_bytes()
    shutil.rmtree(folder / "candidates")
    gone = replace_source(StoredResult.of(store, "s"), tmp_path / "moved-away.mp4")
    result = repick_video(gone, repick_params(BASE, top_k=8), store)  # no decoding: no video
    assert result.ok and (folder / "candidates.parquet").read_bytes() == one_file
    far = repick_video(StoredResult.of(store, "s"), repick_params(BASE, top_k=40, min_gap_s=0.4),
                       store)
    assert far.ok and far.manifest is not None
    assert "image" not in pq.read_table(folder / "candidates.parquet").column_names
    now = {p.name: p.read_bytes() for p in (folder / "candidates").iterdir()}
    assert {name: now[name] for name in images} == images
    assert set(now) == {f"{i}.jpg" for i in _pool(store.root)}
    assert {g.frame_index for g in far.manifest.golden_frames} <= _pool(store.root)


def test_no_candidates_stores_no_pool(scan, tmp_path):
    params = GoldenParams(candidates=0)
    manifest = _full_run(scan, tmp_path / "none", params)
    assert manifest.candidates_key is None
    assert not (tmp_path / "none" / "s" / "candidates.parquet").exists()
    assert "candidates_key" not in (tmp_path / "none" / "s" / "manifest.json").read_text()
    store = LocalStore(tmp_path / "none")
    result = repick_video(StoredResult.of(store, "s"), repick_params(params, top_k=7), store)
    assert result.ok and not (tmp_path / "none" / "s" / "candidates.parquet").exists()


def test_unreadable_source_fails_typed_and_leaves_the_previous_result(base_store, tmp_path):
    store = _copy(base_store, tmp_path / "re")
    manifest_before = (store.root / "s" / "manifest.json").read_bytes()
    files_before = sorted(p.name for p in (store.root / "s").iterdir())
    gone = replace_source(StoredResult.of(store, "s"), tmp_path / "moved-away.mp4")
    far = repick_params(BASE, top_k=40, min_gap_s=0.4)  # many picks: not all in the pool
    with pytest.raises(RepickSourceError) as err:
        repick_video(gone, far, store)
    assert err.value.code == "repick_source_unavailable"
    assert "cannot be read" in str(err.value) and re.search(r"\d+ new pick\(s\)", str(err.value))
    assert "previous result is unchanged" in str(err.value)
    assert (store.root / "s" / "manifest.json").read_bytes() == manifest_before
    assert sorted(p.name for p in (store.root / "s").iterdir()) == files_before
    assert not (store.root / ".staging").exists()


def test_rerun_with_the_same_parameters_is_idempotent(base_store, tmp_path):
    store = _copy(base_store, tmp_path / "re")
    [first] = stream_repick(["s"], {"top_k": 3}, store)
    assert first.ok
    text = (store.root / "s" / "manifest.json").read_bytes()
    [again] = stream_repick(["s"], {"top_k": 3}, store)
    assert again.ok and again.manifest == first.manifest
    assert (store.root / "s" / "manifest.json").read_bytes() == text


def test_old_scores_without_thumbnails_say_so(base_store, tmp_path):
    store = _copy(base_store, tmp_path / "re")
    path = store.root / "s" / "scores.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["thumb"]), path)
    [result] = stream_repick(["s"], {"top_k": 2}, store)
    assert not result.ok and result.error_code == "scores_not_stored"
    assert "thumb" in (result.error or "")
    path.unlink()
    with pytest.raises(ScoresNotStoredError, match="no scores.parquet"):
        preview(store, "s", {"top_k": 2})
    [missing] = stream_repick(["nope"], {"top_k": 2}, store)
    assert missing.error_code == "no_result"


def test_cli_repick_over_a_manifest_streams_results(scan, base_store, tmp_path):
    from jobs.cli.commands import app

    root = tmp_path / "out"
    shutil.copytree(base_store, root)
    shutil.copytree(root / "s", root / "t")
    (root / "t" / "manifest.json").write_text(
        (root / "t" / "manifest.json").read_text().replace('"scan_id": "s"', '"scan_id": "t"')
        .replace('"s/', '"t/').replace("/s/", "/t/"))
    listing = tmp_path / "batch.csv"
    listing.write_text(f"video,scan_id\n{scan},s\n{scan},t\n")
    out = CliRunner().invoke(app, ["repick", "--manifest", str(listing), "--top-k", "7",
                                   "--out", str(root), "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "done s" in out.output and "done t" in out.output
    for scan_id in ("s", "t"):
        m = LocalStore(root).manifest(scan_id)
        assert m is not None and m.params.top_k == 7 and len(m.golden_frames) == 7
    bad = CliRunner().invoke(app, ["repick", "nope", "--out", str(root), "--no-progress"])
    assert bad.exit_code == 2 and "no_result" in bad.output


def test_repick_on_supabase_reads_scores_and_picks_from_storage(scan, tmp_path):
    from dataclasses import replace

    from jobs.golden.stored import ResultFiles
    from jobs.stores.supabase import SupabaseStore
    from jobs.stores.supabase_client import RetryPolicy, SupabaseClient, SupabaseCredentials
    from supabase_standin import FakeSupabase

    fake = FakeSupabase("service-key-for-tests").start()
    try:
        def node(name: str) -> SupabaseStore:
            client = SupabaseClient(SupabaseCredentials(fake.url, "service-key-for-tests"),
                                    retry=RetryPolicy(2, 0.001, 0.01), timeout_s=10)
            return SupabaseStore(LocalStore(tmp_path / name), client)

        ran_here = node("a")
        [first] = run_golden([VideoJob(str(scan), "s")], BASE, ran_here, distributed=False)
        assert first.ok and first.manifest is not None
        scores = fake.objects[("golden-frames", "s/scores.parquet")]
        assert scores.content_type == "application/vnd.apache.parquet"
        assert scores.data == (tmp_path / "a" / "s" / "scores.parquet").read_bytes()

        pool = fake.objects[("golden-frames", "s/candidates.parquet")]
        assert pool.data == (tmp_path / "a" / "s" / "candidates.parquet").read_bytes()

        # where the result is: the kept picks and the pool are in the bucket already, only the
        # scores go up
        posts = len(fake.requests_to("POST", "/storage/v1/object/golden-frames/"))
        here = repick_video(StoredResult.of(ran_here, "s"), repick_params(BASE, top_k=3), ran_here)
        assert here.ok and here.manifest.supabase.complete
        sent = fake.requests_to("POST", "/storage/v1/object/golden-frames/")[posts:]
        assert [r.path.rsplit("/", 1)[1] for r in sent] == ["scores.parquet"]

        elsewhere = node("b")  # a node without a local copy: everything comes from Storage
        base = replace(StoredResult.from_manifest(first.manifest), source=str(tmp_path / "gone.mp4"),
                       manifest=None)
        params = repick_params(BASE, top_k=3)
        result = repick_video(base, params, elsewhere)
        assert result.ok and result.manifest is not None
        assert result.manifest.supabase is not None and result.manifest.supabase.complete
        picked = {g.key for g in result.manifest.golden_frames}
        assert picked < {g.key for g in first.manifest.golden_frames}
        assert {k for (_, k) in fake.objects} == picked | {"s/scores.parquet", "s/candidates.parquet"}
        assert {r["storage_key"] for r in fake.rows("golden_frames", scan_id="s")} == picked
        again = ResultFiles(node("c"), "s").scores()
        assert [s.frame_index for s in again.scores] == [s.frame_index for s in
                                                          ResultFiles(ran_here, "s").scores().scores]
        table = pq.read_table(pa.BufferReader(fake.objects[("golden-frames", "s/scores.parquet")].data))
        assert sorted(i for i, p in zip(table["frame_index"].to_pylist(),
                                        table["picked"].to_pylist()) if p) == \
            sorted(g.frame_index for g in result.manifest.golden_frames)

        del fake.objects[("golden-frames", "s/scores.parquet")]  # an old result: no scores there
        with pytest.raises(ScoresNotStoredError, match="Supabase bucket"):
            repick_video(base, repick_params(BASE, top_k=2), node("d"))
    finally:
        fake.stop()


def test_a_local_result_repicked_through_supabase_links_locally_and_uploads(base_store, tmp_path):
    """A result the local store wrote (its pool a folder), re-picked through the Supabase store
    over the same folder: new picks hard-linked locally and uploaded; once the re-pick adds to
    the pool, the bucket gets it in one file, every image in it."""
    from jobs.golden.candidates import read_candidates
    from jobs.stores.supabase import SupabaseStore
    from jobs.stores.supabase_client import RetryPolicy, SupabaseClient, SupabaseCredentials
    from supabase_standin import FakeSupabase

    fake = FakeSupabase("service-key-for-tests").start()
    try:
        client = SupabaseClient(SupabaseCredentials(fake.url, "service-key-for-tests"),
                                retry=RetryPolicy(2, 0.001, 0.01), timeout_s=10)
        root = tmp_path / "a"
        shutil.copytree(base_store, root)
        images = {p.name: p.read_bytes() for p in (root / "s" / "candidates").iterdir()}
        store = SupabaseStore(LocalStore(root), client)
        gone = replace_source(StoredResult.of(store, "s"), tmp_path / "moved-away.mp4")
        more = repick_video(gone, repick_params(BASE, top_k=8), store)
        assert more.ok and more.manifest is not None and more.manifest.supabase.complete
        for g in more.manifest.golden_frames:
            assert fake.objects[("golden-frames", g.key)].data == \
                (root / g.key).read_bytes() == images[g.key.split("/")[1]]
        far = repick_video(StoredResult.of(store, "s"),
                           repick_params(BASE, top_k=40, min_gap_s=0.4), store)
        assert far.ok and far.manifest is not None and far.manifest.supabase.complete
        pool = read_candidates(pq.read_table(pa.BufferReader(
            fake.objects[("golden-frames", "s/candidates.parquet")].data)))
        assert {f"{i}.jpg" for i in pool} >= set(images)
        assert all(pool[int(name.split(".")[0])].image == data for name, data in images.items())
        assert {g.frame_index for g in far.manifest.golden_frames} <= pool.keys()
    finally:
        fake.stop()
