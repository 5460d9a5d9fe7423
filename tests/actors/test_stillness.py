""""Still" means what a person means on real cameras (actors/scoring.py ``motion_of``), checked
against generated camera conditions with per-frame truth (actors/synthetic_camera.py): sensor
noise that survives the encoder on a flat dark wall, a small subject crossing a tripod shot,
exposure flicker, an item moved by hand, hand-held shake and a focus pull."""

from __future__ import annotations

import numpy as np
import pytest

from actors.records import FrameRange, VideoChunk
from actors.scoring import ChunkScorer, motion_of
from actors.synthetic_camera import make_camera_video
from actors.video import probe

MOTION_MAX = 1.0  # GoldenParams' default


@pytest.fixture(scope="module", params=[(426, 240), (640, 360)], ids=["240p", "360p"])
def camera(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("camera") / "camera.mp4"
    truth = make_camera_video(path, size=request.param, seed=3, segment_s=1.2)
    info = probe(path)
    scores = ChunkScorer().score(VideoChunk.of("v", info, FrameRange(0, info.frame_count)))
    return truth, scores


@pytest.mark.parametrize("segment", ["tripod_flat_noise", "tripod_small_subject", "flicker",
                                     "focus_pull", "tripod_textured"])
def test_what_a_person_calls_still_is_still(camera, segment):
    truth, scores = camera
    frames = [i for i in truth.segment(segment) if not truth.frames[i].cut]
    assert all(truth.frames[i].still for i in frames)
    motion = [scores[i].motion for i in frames]
    assert max(motion) <= MOTION_MAX, (segment, np.round(motion, 2).tolist())


@pytest.mark.parametrize("segment", ["hand_moved_item", "handheld_shake"])
def test_what_a_person_calls_moving_is_not_still(camera, segment):
    truth, scores = camera
    frames = [i for i in truth.segment(segment) if not truth.frames[i].cut]
    motion = [scores[i].motion for i in frames]
    assert min(motion) > MOTION_MAX, (segment, np.round(motion, 2).tolist())


def test_a_focus_pull_changes_sharpness_not_motion(camera):
    truth, scores = camera
    frames = [i for i in truth.segment("focus_pull") if not truth.frames[i].cut]
    sharp = [scores[i].sharpness for i in frames]
    assert max(sharp) > 2 * min(sharp)  # focus moved ...
    assert max(scores[i].motion for i in frames) <= MOTION_MAX  # ... the picture did not


def test_noise_alone_reads_as_no_motion_however_large_the_flow():
    """Two frames of independent noise on a flat grey wall: dense flow finds vectors of
    pixels, but no warp explains the change, so the motion is 0."""
    import cv2

    from actors.scoring import FlowEstimator, flow_magnitude

    rng = np.random.default_rng(0)
    wall = np.full((360, 640), 60.0)
    a = np.clip(wall + rng.normal(0, 4, wall.shape), 0, 255).astype(np.uint8)
    b = np.clip(wall + rng.normal(0, 4, wall.shape), 0, 255).astype(np.uint8)
    a, b = cv2.GaussianBlur(a, (5, 5), 1.0), cv2.GaussianBlur(b, (5, 5), 1.0)  # codec-smooth grain
    flow = FlowEstimator()(a, b)
    assert flow_magnitude(flow) > 0.3  # the mean flow would call this moving...
    assert motion_of(a, b, flow) == 0.0  # ... the measure does not


def test_a_uniform_shift_measures_its_length():
    import cv2

    from actors.scoring import FlowEstimator

    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 255, (360, 640), dtype=np.uint8), (7, 7), 2)
    shifted = np.roll(img, 3, axis=1)
    assert motion_of(img, shifted, FlowEstimator()(img, shifted)) == pytest.approx(3.0, abs=0.3)
