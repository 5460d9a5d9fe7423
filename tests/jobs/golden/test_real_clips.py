"""Real clips that other people recorded (tests/realclips.py: OpenCV's and imageio's sample
videos from Debian packages, and the codec/container variants made from them): every one
decodes as FFmpeg decodes it, runs end to end, gives the same result distributed as
sequentially, reports its gaps, and calls still what a person calls still. Skipped, saying
why, where `make realclips` could not fetch them (no apt-get, not root)."""

from __future__ import annotations

import json
import random
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

import realclips
from actors.records import FrameRange
from actors.video import probe
from actors.video_decode import iter_frames
from jobs.golden.finish import VideoJob
from jobs.golden.params import GoldenParams
from jobs.golden.stream import run_golden
from jobs.stores.local import LocalStore

pytestmark = pytest.mark.skipif(realclips.skip_reason() is not None,
                                reason=realclips.skip_reason() or "")

ORIGINALS = [o.name for o in realclips.ORIGINALS]
VARIANTS = [v.name for v in realclips.VARIANTS]


@pytest.fixture(scope="module")
def clips() -> dict[str, str]:
    paths = realclips.real_clips() + realclips.derived_clips()
    return {p.name: str(p) for p in paths}


def _ffmpeg_gray(path: str, width: int, height: int) -> list[bytes]:
    """Every frame FFmpeg's command line decodes, as grey bytes."""
    raw = subprocess.run([realclips.ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    size = width * height
    return [raw[i * size:(i + 1) * size] for i in range(len(raw) // size)]


@pytest.mark.parametrize("name", ORIGINALS + VARIANTS)
def test_frames_are_what_ffmpeg_decodes(clips, name):
    """The index and the range decoder deliver FFmpeg's frames, bit for bit, from anywhere."""
    path = clips[name]
    info = probe(path)
    whole = {i: f.to_ndarray(format="gray").tobytes()
             for i, f in iter_frames(path, FrameRange(0, info.frame_count), info.index)}
    ffmpeg = _ffmpeg_gray(path, info.width, info.height)
    assert len(whole) == len(ffmpeg) and [whole[i] for i in sorted(whole)] == ffmpeg
    delivered = sorted(whole)
    rng = random.Random(name)
    for _ in range(3):
        a = rng.randrange(info.frame_count)
        b = min(info.frame_count, a + rng.randrange(1, 60))
        got = list(iter_frames(path, FrameRange(a, b), info.index, predecessor=True))
        before = [i for i in delivered if i < a]
        assert [i for i, _ in got] == before[-1:] + [i for i in delivered if a <= i < b]
        assert all(f.to_ndarray(format="gray").tobytes() == whole[i] for i, f in got)


# The classes that broke before (packed B-frames, composition offsets that disagree with the
# pictures, parameter sets only in the first packet, a frame never delivered, empty packets,
# a raw elementary stream, a Matroska remux of packed B-frames) and a plain one.
END_TO_END = ["Megamind.avi", "box.mp4", "cockatoo.mp4", "cup.mp4", "tree.avi", "realshort.mp4",
              "box-theora.ogv", "box-mpeg1-es.mpg", "Megamind-remux.mkv", "box-x264-bf3.mov"]


@pytest.fixture(scope="module")
def sequential(clips, tmp_path_factory):
    """Every END_TO_END clip run sequentially in this process (the reference)."""
    store = LocalStore(tmp_path_factory.mktemp("seq"))
    jobs = [VideoJob(clips[n], f"rc-{i}") for i, n in enumerate(END_TO_END)]
    results = run_golden(jobs, GoldenParams(), store, distributed=False)
    return store, {n: r for n, r in zip(END_TO_END, results)}


def test_every_clip_runs_end_to_end(sequential):
    _, results = sequential
    failed = {n: r.error for n, r in results.items() if not r.ok}
    assert not failed
    assert all(len(r.manifest.golden_frames) >= 2 for r in results.values())


@pytest.mark.parametrize("name", END_TO_END)
def test_distributed_equals_sequential(ray_cluster, sequential, clips, tmp_path, name):
    """Split into three chunks on the private Ray: every chunk decodes from its own keyframe,
    yet the scores and picks are the sequential run's, bit for bit."""
    store, results = sequential
    seq = results[name]
    dist = run_golden([VideoJob(clips[name], seq.scan_id)], GoldenParams(workers=3),
                      LocalStore(tmp_path))[0]
    assert dist.ok, dist.error
    assert len(dist.manifest.plan.chunks) > 1
    assert [(g.frame_index, g.sharpness, g.motion, g.glint) for g in dist.manifest.golden_frames] \
        == [(g.frame_index, g.sharpness, g.motion, g.glint) for g in seq.manifest.golden_frames]
    assert dist.manifest.selection == seq.manifest.selection
    assert dist.manifest.gaps == seq.manifest.gaps
    a = pq.read_table(store.root / seq.manifest.scores_key)
    b = pq.read_table(tmp_path / dist.manifest.scores_key)
    assert a.equals(b) and a.schema.metadata == b.schema.metadata


def test_a_frame_never_decoded_is_reported_not_fatal(sequential):
    """box.mp4 lists 456 frames; FFmpeg decodes 455 (a broken slice in its first IDR)."""
    store, results = sequential
    manifest = results["box.mp4"].manifest
    assert manifest.video.frame_count == 456 and manifest.gaps == [455]
    assert any("1 of 456 listed frame(s) never decoded (frame 455)" in n
               for n in manifest.selection.notes)
    table = pq.read_table(store.root / manifest.scores_key)
    assert table.num_rows == 455 and 455 not in table.column("frame_index").to_pylist()
    assert json.loads(table.schema.metadata[b"framesift.gaps"]) == [455]
    assert all(g.frame_index != 455 for g in manifest.golden_frames)


def _still_share(path: str, frames: int = 300) -> float:
    from actors.records import VideoChunk
    from actors.scoring import ChunkScorer

    info = probe(path)
    scores = ChunkScorer().score(VideoChunk.of("v", info,
                                               FrameRange(0, min(frames, info.frame_count))))
    motion_max = GoldenParams().motion_max
    return float(np.mean([s.motion <= motion_max for s in scores]))


def test_a_tripod_shot_with_people_walking_is_still(clips):
    """vtest.avi: a fixed surveillance camera over a square with a few people walking."""
    assert _still_share(clips["vtest.avi"]) >= 0.85


def test_a_box_moved_by_hand_is_not_still(clips):
    """box.mp4: a hand holds a box up and moves it about in front of a static room."""
    assert _still_share(clips["box.mp4"]) <= 0.4
