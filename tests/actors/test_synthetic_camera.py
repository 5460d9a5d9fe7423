"""The camera-conditions video: what its truth promises holds on the *decoded* video."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from actors.synthetic import truth_path
from actors.synthetic_camera import (CAMERA_SEGMENTS, DARK_NOISE, STILL_SEGMENTS, CameraTruth,
                                     make_camera_video)

SIZE = (320, 180)
SEGMENT_S = 0.6  # 18 frames a segment at 30 fps


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="bgr24") for f in container.decode(video=0)])


def _gray(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]).astype(np.float32)


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CameraTruth, np.ndarray]:
    path = tmp_path_factory.mktemp("camera") / "camera.mp4"
    truth = make_camera_video(path, size=SIZE, seed=3, segment_s=SEGMENT_S)
    return path, truth, _decode(path)


def _centre(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape[1:]
    return gray[:, h // 4:3 * h // 4, w // 4:3 * w // 4]


def test_segments_in_order_cover_the_video_and_still_follows_the_segment(camera):
    path, truth, frames = camera
    assert len(frames) == truth.frame_count == len(truth.frames)
    assert [name for name, _, _ in truth.segments] == list(CAMERA_SEGMENTS)
    bounds = [(start, stop) for _, start, stop in truth.segments]
    assert bounds[0][0] == 0 and bounds[-1][1] == truth.frame_count
    assert all(a[1] == b[0] and b[1] - b[0] == 18 for a, b in zip(bounds, bounds[1:]))
    for name, start, stop in truth.segments:
        for i in range(start, stop):
            f = truth.frames[i]
            assert f.segment == name
            assert f.cut == (i == start and i > 0)
            assert f.still == (name in STILL_SEGMENTS and not f.cut)
            if not f.cut and name in STILL_SEGMENTS:
                assert f.camera_motion == 0.0
    assert truth.frames[0].still  # the first frame has no predecessor: no cut


def test_sensor_noise_survives_encoding_in_the_flat_static_wall(camera, tmp_path):
    _, truth, frames = camera
    gray = _gray(frames)
    flat = _centre(gray[truth.segment("tripod_flat_noise")])
    noise = float(flat.std(axis=0).mean())  # per-pixel temporal std, averaged over the patch
    assert noise >= 1.5, f"temporal noise {noise:.2f} grey levels: x264 wiped it"
    assert noise <= DARK_NOISE * 1.2
    # the same video without sensor noise: the measure sees (almost) nothing
    clean_path = tmp_path / "clean.mp4"
    clean = make_camera_video(clean_path, size=SIZE, seed=3, segment_s=SEGMENT_S, noise_scale=0.0)
    clean_flat = _centre(_gray(_decode(clean_path))[clean.segment("tripod_flat_noise")])
    assert float(clean_flat.std(axis=0).mean()) < 0.5
    assert all(f.noise == 0.0 for f in clean.frames)
    # the textured still scene keeps milder noise too
    textured = _centre(gray[truth.segment("tripod_textured")][1:])  # its first frame is a cut
    assert float(textured.std(axis=0).mean()) >= 1.0


def test_flicker_changes_the_mean_brightness_by_the_planned_gain(camera):
    _, truth, frames = camera
    seg = truth.segment("flicker")
    gains = np.array([truth.frames[i].flicker_gain for i in seg])
    assert gains.max() - gains.min() >= 0.12  # +-8-12 % sampled at the frame rate
    assert all(f.flicker_gain == 1.0 for f in truth.frames if f.segment != "flicker")
    gray = _gray(frames[seg.start:seg.stop])
    median = np.median(gray, axis=0)
    mid = (median > 40) & (median < 200)  # away from clipping (noise at 0, highlights at 255)
    mean = gray[:, mid].mean(axis=1)
    # x264 at CRF 20 codes a global brightness change a few % short: slope ~0.92-0.97
    slope = np.polyfit(np.log(gains), np.log(mean), 1)[0]
    assert 0.85 <= slope <= 1.1, slope
    measured, planned = mean[1:] / mean[:-1], gains[1:] / gains[:-1]
    assert np.abs(measured - planned).max() < 0.025, (measured, planned)
    assert (mean.max() - mean.min()) / mean.mean() >= 0.10


def test_the_small_subject_covers_the_planned_small_area(camera):
    _, truth, frames = camera
    seg = truth.segment("tripod_small_subject")
    for i in list(seg)[1:]:
        f = truth.frames[i]
        assert 0.02 <= f.subject_area <= 0.04 and 1.5 <= f.subject_motion <= 4.5
        b, _, r = cv2.split(frames[i].astype(np.float32))
        ball = (r - b) > 60  # the orange ball on a grey wall
        assert abs(ball.mean() - f.subject_area) <= 0.25 * f.subject_area, (i, ball.mean(), f.subject_area)
        ys, xs = np.nonzero(ball)
        x0, y0, x1, y1 = f.subject_box
        assert x0 <= xs.mean() <= x1 and y0 <= ys.mean() <= y1


def test_the_hand_moved_item_is_large_and_moves_while_the_camera_does_not(camera):
    _, truth, _ = camera
    moving = [truth.frames[i] for i in list(truth.segment("hand_moved_item"))[1:]]
    assert all(0.18 <= f.subject_area <= 0.32 and f.camera_motion == 0.0 for f in moving)
    assert all(1.5 <= f.subject_motion <= 9 for f in moving)
    assert not any(f.still for f in moving)


def test_the_shake_moves_the_whole_view_by_the_true_amount(camera):
    _, truth, frames = camera
    seg = truth.segment("handheld_shake")
    gray = _gray(frames[seg.start:seg.stop])
    window = cv2.createHanningWindow(gray.shape[1:][::-1], cv2.CV_32F)
    for j in range(1, len(gray)):
        (dx, dy), _ = cv2.phaseCorrelate(gray[j - 1], gray[j], window)
        true = truth.frames[seg.start + j].camera_motion
        assert true >= 2.0
        assert abs(float(np.hypot(dx, dy)) - true) <= 1.5, (j, dx, dy, true)


def test_the_focus_pull_blurs_then_sharpens(camera):
    _, truth, frames = camera
    seg = truth.segment("focus_pull")
    blur = np.array([truth.frames[i].blur for i in seg])
    assert blur[0] == 0.0 and 2.5 <= blur.max() <= 3.0
    sharpness = np.array([cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), 1.0), cv2.CV_32F).var()
                          for g in _gray(frames[seg.start:seg.stop])])  # pre-blur: not the noise
    peak = int(blur.argmax())
    assert sharpness[peak] < 0.5 * sharpness[1] and sharpness[peak] < 0.5 * sharpness[-1]


def test_truth_json_round_trips_and_is_written_next_to_the_video(camera):
    path, truth, _ = camera
    assert CameraTruth.from_json(truth.to_json()) == truth
    assert CameraTruth.from_json(truth_path(path).read_text()) == truth


def test_same_seed_same_truth_other_seed_other_truth(tmp_path):
    kw = dict(size=(128, 72), segment_s=0.3)
    a = make_camera_video(tmp_path / "a.mp4", seed=5, **kw)
    b = make_camera_video(tmp_path / "b.mp4", seed=5, **kw)
    c = make_camera_video(tmp_path / "c.mp4", seed=6, **kw)
    assert a == b
    assert a != c


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="even"):
        make_camera_video("unused.mp4", size=(321, 180))
    with pytest.raises(ValueError, match="6 frames"):
        make_camera_video("unused.mp4", size=(128, 72), segment_s=0.1)


def test_cli_writes_a_camera_video(tmp_path):
    from typer.testing import CliRunner

    from jobs.cli.commands import app

    path = tmp_path / "cam.mp4"
    result = CliRunner().invoke(app, ["sample-video", str(path), "--scenario", "camera",
                                      "--size", "128x72"])
    assert result.exit_code == 0, result.output
    assert "tripod_flat_noise [0, 54)" in result.output
    assert CameraTruth.from_json(truth_path(path).read_text()).frame_count == 7 * 54
    clash = CliRunner().invoke(app, ["sample-video", str(path), "--scenario", "camera", "--holds", "2"])
    assert clash.exit_code == 2
