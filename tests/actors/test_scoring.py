"""Sharpness, motion and the chunk scorer (actors/scoring.py), and glint (actors/glint.py)."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from actors.glint import glint_metrics, highlight_mask
from actors.records import FrameRange, VideoChunk
from actors.scoring import (ChunkScorer, FlowEstimator, ScorerConfig, analysis_size, brightness,
                            flow_magnitude, gain_matched, laplacian_variance, motion_of,
                            thumbnail)
from actors.video import probe


def _texture(seed: int = 0, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (size // 4, size // 4), dtype=np.uint8), (size, size),
                     interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def test_laplacian_variance_ranks_sharp_above_blurred():
    img = _texture()
    blurred = cv2.GaussianBlur(img, (0, 0), 3)
    assert laplacian_variance(img) > 5 * laplacian_variance(blurred)
    assert laplacian_variance(np.full((64, 64), 128, np.uint8)) == 0.0


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_measures_a_known_shift(method):
    img = _texture(1)
    shifted = np.roll(img, 3, axis=1)
    flow = FlowEstimator(method)(img, shifted)
    assert flow_magnitude(flow[16:-16, 16:-16]) == pytest.approx(3.0, abs=0.5)
    assert flow_magnitude(FlowEstimator(method)(img, img)) < 0.05


def test_bad_flow_settings_are_refused():
    with pytest.raises(ValueError, match="dis' or 'farneback"):
        FlowEstimator("lucas")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dis_preset"):
        FlowEstimator("dis", "slowest")  # type: ignore[arg-type]


def test_analysis_size_is_fixed_on_the_long_side():
    assert analysis_size(1920, 1080) == (640, 360)
    assert analysis_size(1280, 720) == (640, 360)
    assert analysis_size(1080, 1920) == (360, 640)
    assert analysis_size(3840, 2160, 320) == (320, 180)


def test_motion_is_reported_in_source_pixels(videos):
    """The same scene at two resolutions: motion scales with the source, sharpness comparable."""
    (small, _), (large, _) = videos.get(seconds=3, size=(640, 360), seed=3), \
        videos.get(seconds=3, size=(1280, 720), seed=3)
    res = {}
    for path in (small, large):
        info = probe(path)
        scorer = ChunkScorer()
        res[path] = scorer.score(VideoChunk.of("v", info, FrameRange(0, info.frame_count)))
    moving_small = [s.motion for s in res[small] if s.motion > 2]
    moving_large = [s.motion for s in res[large] if s.motion > 2]
    assert np.median(moving_large) == pytest.approx(2 * np.median(moving_small), rel=0.25)


def test_chunk_scores_equal_whole_video_scores_and_frame0_is_defined(videos):
    path, _ = videos.get(seconds=4, bframes=3, gop=30)
    info = probe(path)
    scorer = ChunkScorer(ScorerConfig())

    def task(a: int, b: int) -> VideoChunk:
        return VideoChunk.of("v", info, FrameRange(a, b))

    whole = scorer.score(task(0, info.frame_count))
    assert [s.frame_index for s in whole] == list(range(info.frame_count))
    assert whole[0].motion == whole[1].motion  # frame 0 takes the motion of frame 1
    pieces = scorer.score(task(0, 1)) + scorer.score(task(1, 45)) + scorer.score(task(45, 46)) \
        + scorer.score(task(46, info.frame_count))
    assert pieces == whole
    assert all(np.isfinite([s.motion for s in whole]))


def test_glint_finds_the_highlight_blob():
    img = np.full((200, 400, 3), (40, 90, 160), np.uint8)
    cv2.circle(img, (300, 50), 20, (255, 255, 255), -1)
    cv2.circle(img, (60, 150), 3, (250, 250, 250), -1)
    cv2.circle(img, (200, 100), 10, (0, 0, 255), -1)  # bright but saturated red: not glint
    g = glint_metrics(img)
    assert g.blob_count == 2
    assert g.largest_blob_center == pytest.approx((0.75, 0.25), abs=0.01)
    assert g.largest_blob_area_px == pytest.approx(np.pi * 20 ** 2, rel=0.1)
    assert g.share == pytest.approx(np.count_nonzero(highlight_mask(img)) / (200 * 400))
    assert glint_metrics(np.zeros((50, 50, 3), np.uint8)).largest_blob_center is None


def _misaligned_copies(a: np.ndarray, n: int = 16) -> list[np.ndarray]:
    out = []
    for off in range(n):
        buf = np.empty(a.nbytes + 64, np.uint8)
        view = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        out.append(view)
    return out


def test_metrics_do_not_depend_on_buffer_alignment():
    """Bit-identical results across processes need metrics independent of memory layout."""
    img = _texture(5, 320)
    flow = FlowEstimator("dis")(img, np.roll(img, 2, axis=0))
    assert len({laplacian_variance(x) for x in _misaligned_copies(img)}) == 1
    assert len({thumbnail(x) for x in _misaligned_copies(img)}) == 1
    assert len({flow_magnitude(x) for x in _misaligned_copies(flow)}) == 1
    # the motion measure (block means, warp, residuals) and the flicker match, too
    cur = np.roll(img, 2, axis=0)
    moved = FlowEstimator("dis")(img, cur)
    motions = {motion_of(p, c, f) for p, c, f in zip(_misaligned_copies(img),
                                                     _misaligned_copies(cur),
                                                     _misaligned_copies(moved))}
    assert len(motions) == 1 and motions.pop() > 1.0
    darker = (cur * 0.9).astype(np.uint8)
    assert len({gain_matched(x, brightness(img)).tobytes()
                for x in _misaligned_copies(darker)}) == 1


def test_flow_magnitude_is_the_exact_float64_mean_length():
    rng = np.random.default_rng(7)
    for shape in ((360, 640, 2), (7, 5, 2)):
        flow = rng.normal(0, 4, shape).astype(np.float32)
        f = flow.astype(np.float64)
        reference = float(np.mean(np.sqrt(f[..., 0] * f[..., 0] + f[..., 1] * f[..., 1])))
        assert flow_magnitude(flow) == reference  # bit for bit, not approximately
    assert flow_magnitude(np.full((4, 4, 2), [3.0, 4.0], np.float32)) == 5.0


def test_thumbnail_of_the_largest_analysis_frame_does_not_overflow():
    white = np.full((2304, 4096), 255, np.uint8)  # analysis_long_side's upper bound
    assert thumbnail(white) == bytes([255]) * 256
