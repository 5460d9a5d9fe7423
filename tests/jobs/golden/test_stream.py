"""The streaming pipeline (jobs/golden/stream.py): the batch plan, the driver's collector, and
batches read from loopback HTTP with every kind of bad input, against the sequential run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pyarrow.parquet as pq
import pytest

from actors.records import FrameRange, FrameScore, VideoSummary
from actors.video import probe
from jobs.golden.finish import Hooks, VideoJob
from jobs.golden.params import GoldenParams
from jobs.golden.planner import LONG_VIDEO_WORK_S, ChunkPlan, CostModel, plan_batch
from jobs.golden import ray_runner, stream
from jobs.golden.collector import Collector
from jobs.golden.messages import (ChunkScores, PlannedVideo, VideoDone, VideoFailed, VideoInput,
                                  from_table, to_table)
from jobs.golden.stream import run_golden, stream_golden
from jobs.sources import SourceOptions, open_source
from jobs.stores.local import LocalStore
from source_servers import RangeServer

# ------------------------------------------------------------------------------ batch plan


def test_videos_outnumbering_cpus_become_whole_video_units():
    batch = plan_batch(48, 2)
    assert batch.mode == "whole" and "48 videos for 2 CPUs" in batch.reason
    plan = batch.plan_video(120, 854, 480)
    assert len(plan.chunks) == 1 and plan.reason.startswith("one chunk: 48 videos")
    frames = int(LONG_VIDEO_WORK_S / CostModel().frame_s(1920, 1080)) + 100
    long = batch.plan_video(frames, 1920, 1080)  # a long one is still split: no tail
    assert len(long.chunks) > 1 and "this one has about" in long.reason


def test_few_videos_are_split_for_their_share_of_the_cpus():
    one = plan_batch(1, 8)
    assert one.mode == "chunks" and one.cpus_per_video == 8
    assert len(one.plan_video(600, 1920, 1080).chunks) > 1
    two = plan_batch(2, 8)
    assert two.cpus_per_video == 4 and "chunks within each video" in two.reason
    plan = two.plan_video(600, 1920, 1080)
    assert 1 < len(plan.chunks) <= 8 and plan.cpus == 4 and plan.reason.startswith("2 videos")
    forced = plan_batch(48, 2, workers=3)
    assert forced.mode == "chunks" and len(forced.plan_video(120, 854, 480).chunks) == 3


# ------------------------------------------------------------------------------ collector

def _video(scan: str, n_chunks: int) -> PlannedVideo:
    summary = VideoSummary(scan, 6, 30.0, False, 64, 64, 0.2, "h264", 0)
    plan = ChunkPlan(6, tuple(FrameRange(2 * i, 2 * i + 2) for i in range(n_chunks)), n_chunks,
                     0.1, 0.1, 0, 2, "test", 2)
    return PlannedVideo(VideoInput(scan, scan, scan, None, ord(scan[0])), summary, plan, None,
                        0.01)


def _scores(video: PlannedVideo, chunk: int) -> ChunkScores:
    frames = range(2 * chunk, 2 * chunk + 2)
    return ChunkScores(video, chunk, tuple(FrameScore(i, i, 0.0, 1.0, 0.0) for i in frames),
                       0.0, 1.0, 1.0)


def _done(video: PlannedVideo) -> VideoDone:
    return VideoDone(video.input, video, "x", "{}", 6, 1.0)


def _collector(events: list) -> Collector:
    hooks = Hooks(on_planned=lambda s, info, plan: events.append(("planned", s)),
                  on_frames=lambda s, n: events.append(("frames", s, n)),
                  on_result=lambda r: events.append(("result", r.scan_id, r.status)))
    return Collector(hooks, keep_manifests=False)


def test_chunks_in_any_order_finish_a_video_once_and_leave_no_state():
    events: list = []
    collector = _collector(events)
    a = _video("a", 3)
    ready = [collector.take(m) for m in (_scores(a, 2), a, _scores(a, 0), _scores(a, 1))]
    assert ready[:3] == [None, None, None] and ready[3] is not None
    assert [p.scores[0].frame_index for p in ready[3].parts] == [0, 2, 4]  # chunk order
    assert [s.frame_index for s in ready[3].scores()] == list(range(6))
    collector.take(_done(a))
    assert events[0] == ("planned", "a") and events.count(("planned", "a")) == 1
    assert [e for e in events if e[0] == "frames"] == [("frames", "a", 2)] * 3
    assert events[-1] == ("result", "a", "succeeded")
    assert collector.partial == {}
    [outcome] = list(collector.drain())
    assert outcome.result.ok and outcome.result.manifest is None and outcome.frames == 6


def test_a_failed_chunk_fails_its_video_once_and_the_late_chunks_are_dropped():
    events: list = []
    collector = _collector(events)
    b = _video("b", 3)
    ready = [collector.take(_scores(b, 0)),
             collector.take(VideoFailed(b.input, "b: HTTP 404", "source_gone", b, chunk=1)),
             collector.take(_scores(b, 2)), collector.take(b)]
    c = VideoInput("c", "c", "c", None, ord("c"))
    collector.take(VideoFailed(c, "c: not a video", "not_a_video"))
    assert ready == [None] * 4  # nothing to finish
    results = [e for e in events if e[0] == "result"]
    assert results == [("result", "b", "failed"), ("result", "c", "failed")]
    assert collector.partial == {}
    codes = [o.result.error_code for o in collector.drain()]
    assert codes == ["source_gone", "not_a_video"]


def test_messages_repeated_by_a_retried_task_count_once():
    events: list = []
    collector = _collector(events)
    d = _video("d", 1)
    collector.take(_done(d))
    collector.take(_done(d))  # the video stage task ran again after its node died
    collector.take(d)
    assert [e for e in events if e[0] == "result"] == [("result", "d", "succeeded")]
    assert len(list(collector.drain())) == 1 and collector.partial == {}
    b = _video("b", 2)  # a chunked video that failed and was dropped, its failure repeated
    for m in (b, _scores(b, 0), VideoFailed(b.input, "gone", "source_gone", b, chunk=1)):
        collector.take(m)
    assert collector.partial == {}
    collector.take(VideoFailed(b.input, "gone", "source_gone", b, chunk=1))
    assert collector.partial == {} and len(list(collector.drain())) == 1


def test_every_message_crosses_the_wire_whole():
    d = _video("d", 2)
    messages = [d, _scores(d, 1), VideoFailed(d.input, "e", "c", d, chunk=0), _done(d)]
    assert from_table(to_table(messages)) == messages


# ------------------------------------------------------------------------------ batches

@pytest.fixture(scope="module")
def served(videos, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    a, _ = videos.get(seconds=4, size=(480, 270), seed=41)
    b, _ = videos.get(seconds=4, size=(480, 270), seed=42, bframes=3, gop=40)
    shutil.copy(a, root / "a.mp4")
    shutil.copy(b, root / "b.mp4")
    data = a.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    (root / "notes.mp4").write_text("plain text, not a video")
    server = RangeServer(root).start()
    yield root, server
    server.stop()


def _same_results(store_a: LocalStore, store_b: LocalStore, scan_a: str, scan_b: str) -> None:
    a, b = store_a.manifest(scan_a), store_b.manifest(scan_b)
    assert [(g.frame_index, g.sharpness, g.motion, g.glint) for g in a.golden_frames] == \
        [(g.frame_index, g.sharpness, g.motion, g.glint) for g in b.golden_frames]
    assert pq.read_table(store_a.root / a.scores_key).equals(pq.read_table(store_b.root / b.scores_key))


def test_a_batch_of_urls_with_bad_inputs_each_failing_alone(ray_cluster, served, tmp_path,
                                                            monkeypatch):
    root, http = served
    # several videos per video-stage task (a batch of many short videos): each still fails or
    # succeeds alone, and each result is reported as it is stored
    monkeypatch.setattr(ray_runner, "VIDEO_TASKS_PER_CPU", 1)
    options = SourceOptions(allowlist="127.0.0.1:*", request_timeout_s=5, deadline_s=60)
    http.reset()
    probe(open_source(http.url("r", "a.mp4"), "a", options))
    http.after = http.stats("r", "a.mp4").requests  # honest through the probe, not after it
    jobs = [
        VideoJob(str(root / "a.mp4"), "local-a"),
        VideoJob(http.url("r", "b.mp4") + "?sig=secret", "url-b", "ring"),
        VideoJob(http.url("n", "a.mp4"), "no-ranges-a"),
        VideoJob(http.url("r", "missing.mp4"), "http-404"),
        VideoJob(http.url("r", "notes.mp4"), "non-video"),
        VideoJob(http.url("r", "cut.mp4"), "truncated"),
        VideoJob(http.url("shift", "a.mp4"), "range-lies"),
        VideoJob(http.url("vanish", "a.mp4"), "vanishes-mid-run"),
        VideoJob("http://10.255.255.1/v.mp4", "private"),
        VideoJob("s3://Not_A_Bucket/v.mp4", "bad-object-url"),
    ]
    store = LocalStore(tmp_path / "dist")
    order: list[str] = []
    http.reset()
    results = run_golden(jobs, GoldenParams(top_k=3), store, sources=options,
                         hooks=Hooks(on_result=lambda r: order.append(r.scan_id)))
    assert [r.scan_id for r in results] == [j.scan_id for j in jobs]
    codes = {r.scan_id: r.error_code for r in results if not r.ok}
    assert codes == {"http-404": "source_gone", "non-video": "not_a_video",
                     "truncated": "corrupt_video", "range-lies": "range_protocol_violation",
                     "vanishes-mid-run": "source_gone", "private": "url_blocked",
                     "bad-object-url": "invalid_source"}, [r.error for r in results]
    assert sorted(order) == sorted(j.scan_id for j in jobs)
    errors = json.dumps([r.error for r in results])
    assert "secret" not in errors and "sig=" not in errors
    assert store.manifest("url-b").video.path == http.url("r", "b.mp4") + "?***"
    for scan in codes:
        assert not (tmp_path / "dist" / scan).exists()  # a failure stores nothing
    # the same videos as local files, sequentially: identical results, bit for bit
    ref = LocalStore(tmp_path / "seq")
    run_golden([VideoJob(str(root / "a.mp4"), "a"), VideoJob(str(root / "b.mp4"), "b")],
               GoldenParams(top_k=3), ref, distributed=False)
    _same_results(ref, store, "a", "local-a")
    _same_results(ref, store, "a", "no-ranges-a")
    _same_results(ref, store, "b", "url-b")


def test_a_chunked_url_video_is_finished_by_a_task_and_equals_sequential(ray_cluster, served,
                                                                           tmp_path):
    root, http = served
    http.after = 10**6
    options = SourceOptions(allowlist="127.0.0.1:*")
    events: list = []
    hooks = Hooks(on_batch=lambda b: events.append(("batch", b.mode)),
                  on_planned=lambda s, i, p: events.append(("planned", len(p.chunks))),
                  on_frames=lambda s, n: events.append(("frames", n)),
                  on_pick=lambda s, g: events.append(("pick", g.frame_index)),
                  on_result=lambda r: events.append(("result", r.status)))
    outcomes = list(stream_golden([VideoJob(http.url("r", "b.mp4"), "b3")],
                                  GoldenParams(top_k=3, workers=3), LocalStore(tmp_path / "d"),
                                  sources=options, hooks=hooks))
    assert len(outcomes) == 1 and outcomes[0].result.ok and outcomes[0].frames == 120
    kinds = [e[0] for e in events]
    assert kinds[:2] == ["batch", "planned"] and events[1] == ("planned", 3)
    assert kinds.count("frames") == 3 and sum(e[1] for e in events if e[0] == "frames") == 120
    assert kinds[-4:] == ["pick", "pick", "pick", "result"]
    manifest = outcomes[0].result.manifest
    assert len(manifest.plan.chunks) == 3 and manifest.timings_s["score_cpu_s"] > 0
    ref = LocalStore(tmp_path / "seq")
    run_golden([VideoJob(str(root / "b.mp4"), "b")], GoldenParams(top_k=3, workers=3), ref,
               distributed=False)
    _same_results(ref, LocalStore(tmp_path / "d"), "b", "b3")


def test_long_videos_in_a_batch_of_whole_videos_are_split_and_scored_by_tasks(
        ray_cluster, served, tmp_path, monkeypatch):
    root, http = served
    # every video "long": each is split in two even though videos outnumber the CPUs; its
    # chunks are scored by tasks the driver submits, and one whose source vanishes after the
    # probe fails alone
    monkeypatch.setattr(stream, "plan_batch",
                        lambda videos, cpus, **kw: replace(plan_batch(videos, cpus, **kw),
                                                           workers=2))
    options = SourceOptions(allowlist="127.0.0.1:*", request_timeout_s=5, deadline_s=60)
    http.reset()
    probe(open_source(http.url("vanish", "b.mp4"), "b", options))
    http.after = http.stats("vanish", "b.mp4").requests
    http.reset()
    planned: list[tuple[str, int]] = []
    jobs = [VideoJob(str(root / "a.mp4"), "a"), VideoJob(http.url("r", "b.mp4"), "b"),
            VideoJob(str(root / "a.mp4"), "a-again"), VideoJob(http.url("vanish", "b.mp4"), "gone")]
    # max_finishing=1: one chunk task at a time, the driver waiting on it before taking more rows
    outcomes = stream_golden(jobs, GoldenParams(top_k=3), LocalStore(tmp_path / "d"),
                             sources=options, max_finishing=1,
                             hooks=Hooks(on_batch=lambda b: planned.append(("batch", b.mode)),
                                         on_planned=lambda s, i, p: planned.append((s, len(p.chunks)))))
    results = [o.result for o in sorted(outcomes, key=lambda o: o.seq)]
    assert planned[0] == ("batch", "whole")
    assert all(n > 1 for s, n in planned[1:]) and {s for s, _ in planned[1:]} >= {"a", "b"}
    assert [(r.scan_id, r.ok) for r in results] == [("a", True), ("b", True), ("a-again", True),
                                                    ("gone", False)]
    assert results[3].error_code == "source_gone"
    assert not (tmp_path / "d" / "gone").exists()
    ref = LocalStore(tmp_path / "seq")
    run_golden([VideoJob(str(root / "a.mp4"), "a"), VideoJob(str(root / "b.mp4"), "b")],
               GoldenParams(top_k=3, workers=2), ref, distributed=False)
    store = LocalStore(tmp_path / "d")
    for scan in ("a", "b"):
        _same_results(ref, store, scan, scan)
    _same_results(ref, store, "a", "a-again")
