"""Video jobs end to end on small generated videos, in the session's private Ray."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from model_fixtures import CLASS_NAMES, make_compact_pth, make_yolo_pt  # noqa: E402

from actors.detector import Detector, DetectorConfig  # noqa: E402
from actors.records import FrameRange  # noqa: E402
from actors.upscaler import Upscaler, UpscalerConfig  # noqa: E402
from actors.video import probe  # noqa: E402
from actors.video_decode import iter_frames, read_frames, to_display_bgr  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-models")
    return {"yolo": make_yolo_pt(root), "compact": make_compact_pth(root, scale=2)}


@pytest.fixture(scope="module")
def clip(videos, tmp_path_factory):
    """2 s, 96x64, B-frames, with an AAC audio track."""
    from jobs.video.annotate import ffmpeg_binary

    src, _ = videos.get(seconds=2, size=(96, 64), seed=41, gop=20)
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run([ffmpeg_binary(), "-y", "-loglevel", "error", "-i", str(src), "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=44100", "-shortest", "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(out)], check=True)
    return out


def test_detect_video_every_nth_frame_matches_the_unit(ray_cluster, models, clip, tmp_path):
    from jobs.video.detect import detect_video

    cfg = DetectorConfig(weights=str(models["yolo"]), conf=0.0005, imgsz=128, batch_size=4,
                         device="cpu")
    result = detect_video(str(clip), str(tmp_path / "det"), cfg, stride=3, workers=2,
                          chunk_frames=16)
    info = probe(str(clip))
    assert result.frames_total == info.frame_count == 60 and result.frames_processed == 20
    table = pq.read_table(result.detections_path).to_pylist()
    assert table and result.detections == len(table)
    assert {r["frame_index"] % 3 for r in table} == {0}
    assert {r["class_name"] for r in table} <= set(CLASS_NAMES.values())
    # the distributed result equals the unit run in-process on the same decoded frames
    wanted = [0, 30, 57]
    frames = read_frames(str(clip), wanted, info.index)
    ref = Detector(cfg).detect([frames[i] for i in wanted])
    for i, dets in zip(wanted, ref):
        got = sorted((round(r["x1"], 1), round(r["confidence"], 4)) for r in table
                     if r["frame_index"] == i)
        assert got == sorted((round(x1, 1), round(c, 4)) for x1, c in zip(dets.xyxy[:, 0],
                                                                          dets.confidence))
    summary = Path(result.summary_path).read_text()
    assert '"frames_processed": 20' in summary and '"per_class"' in summary


def test_upscale_video_keeps_frames_timing_and_audio(ray_cluster, models, clip, tmp_path):
    from jobs.video.upscale import upscale_video

    cfg = UpscalerConfig(weights=str(models["compact"]), tile=0, device="cpu")
    result = upscale_video(str(clip), str(tmp_path / "up.mp4"), cfg, workers=2, chunk_frames=16)
    a, b = probe(str(clip)), probe(result.output)
    assert result.segments == 4 and result.audio_streams == 1
    assert b.frame_count == a.frame_count and (b.width, b.height) == (192, 128)
    times_a = np.array([a.index.time_s(i) for i in range(len(a.index))])
    times_b = np.array([b.index.time_s(i) for i in range(len(b.index))])
    assert np.abs(times_a - times_b).max() < 1e-3
    # a frame from the middle of a later segment is the upscaled source frame (lossy codec)
    src = read_frames(str(clip), [37], a.index)[37]
    out = next(to_display_bgr(f, 0) for _, f in iter_frames(result.output, FrameRange(37, 38),
                                                            b.index))
    expect = Upscaler(cfg).upscale(src)
    err = np.abs(out.astype(float) - expect.astype(float)).mean()
    wrong = np.abs(out.astype(float) - expect[:, ::-1].astype(float)).mean()
    assert err < 10 and err < wrong / 2  # lossy 4:2:0 codec on a random model's noisy output
    import av

    with av.open(result.output) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
    assert not Path(str(tmp_path / "up.mp4") + ".segments").exists()


def test_annotate_draws_boxes_and_compiles_detected_frames(clip, tmp_path):
    import pyarrow as pa

    from jobs.video.annotate import annotate_video

    rows = {"frame_index": [0, 5, 6, 40], "time_s": [0.0] * 4, "x1": [10.0, 10, 10, 0],
            "y1": [10.0, 10, 10, 0], "x2": [60.0, 60, 60, 20], "y2": [50.0, 50, 50, 20],
            "confidence": [0.9, 0.8, 0.8, 0.1], "class_id": [0, 1, 1, 2],
            "class_name": ["person", "car: red", "car: red", "dog"]}
    dets = tmp_path / "d.parquet"
    pq.write_table(pa.table(rows), dets)
    full = annotate_video(str(clip), str(dets), str(tmp_path / "a.mp4"))
    info = probe(full.output)
    assert full.frames_out == 60 and full.boxes_drawn == 4
    src = probe(str(clip))
    before = read_frames(str(clip), [0, 1], src.index)
    after = read_frames(full.output, [0, 1], info.index)
    edge = (slice(9, 12), slice(20, 50))  # the top edge of frame 0's box
    assert np.abs(after[0][edge].astype(int) - before[0][edge].astype(int)).mean() > 40
    assert np.abs(after[1][edge].astype(int) - before[1][edge].astype(int)).mean() < 15
    import av

    with av.open(full.output) as c:
        assert len(c.streams.audio) == 1
    comp = annotate_video(str(clip), str(dets), str(tmp_path / "c.mp4"), compilation=True,
                          min_confidence=0.5)
    assert comp.frames_out == 3 and comp.boxes_drawn == 3


def test_annotate_refuses_a_playlist_that_names_another_file(clip, tmp_path):
    """The ffmpeg binary must never decode what an HLS playlist points to (here: the clip)."""
    import pyarrow as pa

    from actors.errors import ContainerNotAllowedError
    from jobs.video.annotate import annotate_video, ffmpeg_binary

    segment = tmp_path / "private.ts"
    subprocess.run([ffmpeg_binary(), "-y", "-loglevel", "error", "-i", str(clip), "-an",
                    "-c:v", "copy", "-f", "mpegts", str(segment)], check=True)
    playlist = tmp_path / "scan.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
                        f"#EXTINF:10.0,\nfile://{segment}\n#EXT-X-ENDLIST\n")
    dets = tmp_path / "d.parquet"
    pq.write_table(pa.table({"frame_index": [0], "time_s": [0.0], "x1": [1.0], "y1": [1.0],
                             "x2": [9.0], "y2": [9.0], "confidence": [0.9], "class_id": [0],
                             "class_name": ["person"]}), dets)
    with pytest.raises(ContainerNotAllowedError):
        annotate_video(str(playlist), str(dets), str(tmp_path / "out.mp4"))
    assert not (tmp_path / "out.mp4").exists()


def test_annotate_scales_to_thousands_of_boxes_that_move_per_frame(clip, tmp_path):
    import pyarrow as pa

    from jobs.video.annotate import annotate_video

    rows: dict[str, list] = {k: [] for k in ("frame_index", "time_s", "x1", "y1", "x2", "y2",
                                             "confidence", "class_id", "class_name")}
    for n in range(60):  # 25 boxes a frame (20 drawn): one sliding right, small ones on top
        for k in range(25):
            box = (2 + n, 30, 22 + n, 62) if k == 0 else (4 * k, 2, 4 * k + 3, 12)
            for key, value in zip(rows, (n, n / 30, *map(float, box), 0.99 - k / 100, k % 3,
                                         "it's a \\ 'label', with: [specials]; 50%")):
                rows[key].append(value)
    dets = tmp_path / "many.parquet"
    pq.write_table(pa.table(rows), dets)
    result = annotate_video(str(clip), str(dets), str(tmp_path / "many.mp4"))
    assert result.boxes_drawn == 60 * 20 and result.frames_out == 60
    out = read_frames(result.output, [10, 50], probe(result.output).index)
    src = read_frames(str(clip), [10, 50], probe(str(clip)).index)

    def left_edge_changed(n: int, x: int) -> float:  # the sliding box's left edge, below labels
        col = (slice(45, 58), slice(x, x + 2))
        return np.abs(out[n][col].astype(int) - src[n][col].astype(int)).mean()

    assert left_edge_changed(10, 12) > 40 and left_edge_changed(50, 52) > 40
    assert left_edge_changed(50, 12) < 15  # frame 10's position is clear again on frame 50


def test_cli_detect_video_prints_the_plan_and_annotate_uses_it(ray_cluster, models, clip, tmp_path):
    from typer.testing import CliRunner

    from jobs.cli.commands import app

    runner = CliRunner()
    res = runner.invoke(app, ["detect-video", str(clip), "--weights", str(models["yolo"]),
                              "--out", str(tmp_path / "cli"), "--every", "10", "--imgsz", "128",
                              "--conf", "0.0005", "--frame-ms", "5"])
    assert res.exit_code == 0, res.output
    assert "plan: 1 worker" in res.output and '"frames_processed": 6' in res.output
    res = runner.invoke(app, ["annotate", str(clip), "--detections",
                              str(tmp_path / "cli" / "detections.parquet")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli" / "clip-annotated.mp4").is_file()
    res = runner.invoke(app, ["detect-video", str(clip), "--weights",
                              str(tmp_path / "models" / "yolov8n.pt")])
    assert res.exit_code == 2 and "yolov8n.pt" in res.output and "FRAMESIFT_YOLO_WEIGHTS" in res.output
