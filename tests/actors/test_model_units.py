"""Model units called directly (no Ray): random-weight models through the production loaders."""

from __future__ import annotations

import os

import numpy as np
import pytest

from model_fixtures import CLASS_NAMES, make_compact_pth, make_esrgan_pth, make_yolo_pt  # noqa: E402

from actors.cropper import CropConfig, crops_by_category, padded_box, parse_categories  # noqa: E402
from actors.detector import Detector, DetectorConfig, resolve_classes  # noqa: E402
from actors.errors import InvalidParameterError  # noqa: E402
from actors.weights import ModelWeightsError  # noqa: E402
from actors.records import Detections  # noqa: E402
from actors.upscaler import Upscaler, UpscalerConfig  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    return {"yolo": make_yolo_pt(root), "compact": make_compact_pth(root, scale=2, num_feat=8,
                                                                    num_conv=4),
            "esrgan": make_esrgan_pth(root)}


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 4 + 1, w // 4 + 1, 3), np.uint8)
    import cv2

    return np.ascontiguousarray(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC))


# ---- weights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", ["yolo", "upscaler"])
def test_missing_weights_fail_at_setup_naming_the_path_and_the_setting(tmp_path, unit):
    missing = tmp_path / "models" / ("yolov8n.pt" if unit == "yolo" else "RealESRGAN_x4plus.pth")
    obj = (Detector(DetectorConfig(weights=str(missing))) if unit == "yolo"
           else Upscaler(UpscalerConfig(weights=str(missing))))
    with pytest.raises(ModelWeightsError) as info:
        obj.setup()
    msg = str(info.value)
    assert str(missing) in msg and "never downloads" in msg
    assert ("FRAMESIFT_YOLO_WEIGHTS" if unit == "yolo" else "FRAMESIFT_UPSCALER_WEIGHTS") in msg
    assert not missing.exists()


def test_unset_weights_say_which_setting_to_set():
    with pytest.raises(ModelWeightsError, match="set FRAMESIFT_YOLO_WEIGHTS"):
        Detector(DetectorConfig(weights=None)).setup()


def test_loading_yolo_sets_offline_mode_before_import(weights):
    det = Detector(DetectorConfig(weights=str(weights["yolo"]), imgsz=160))
    det.setup()
    assert os.environ["YOLO_OFFLINE"] == "1"
    assert det.names == CLASS_NAMES


# ---- detector --------------------------------------------------------------------------------

def test_loading_yolo_leaves_pil_errors_for_undecodable_images_intact(weights):
    from actors.image_analysis import ImageError, decode_image
    from actors.weights import load_yolo

    load_yolo(str(weights["yolo"]))  # ultralytics patches PIL.Image.open on import
    with pytest.raises(ImageError) as info:
        decode_image(b"plain text, not an image")
    assert info.value.code == "undecodable_image"


def test_batched_detection_equals_one_frame_at_a_time(weights):
    frames = [_img(120, 160, s) for s in range(5)]
    batched = Detector(DetectorConfig(weights=str(weights["yolo"]), conf=0.001, imgsz=160,
                                      batch_size=4, device="cpu"))
    single = Detector(DetectorConfig(weights=str(weights["yolo"]), conf=0.001, imgsz=160,
                                     batch_size=1, device="cpu"))
    a, b = batched.detect(frames), single.detect(frames)
    assert batched.calls == 2 and single.calls == 5
    assert sum(len(x) for x in a) > 0
    for da, db in zip(a, b):
        assert da.class_id.tolist() == db.class_id.tolist()
        np.testing.assert_allclose(da.xyxy, db.xyxy, atol=0.05)
    x1, y1, x2, y2 = a[0].xyxy.T
    assert ((0 <= x1) & (x1 <= x2) & (x2 <= 160) & (0 <= y1) & (y1 <= y2) & (y2 <= 120)).all()
    assert [CLASS_NAMES[k] for k in a[0].class_id] == a[0].class_name.tolist()


def test_confidence_and_class_filters(weights):
    img = _img(120, 160, 3)
    every = Detector(DetectorConfig(weights=str(weights["yolo"]), conf=1e-6, imgsz=160)).detect([img])[0]
    det = Detector(DetectorConfig(weights=str(weights["yolo"]), conf=1e-6, imgsz=160,
                                  classes=("car", "2")))
    out = det.detect([img])[0]
    assert len(out) and set(out.class_id) <= {1, 2} and (every.class_id == 0).any()
    cut = every.confidence.max()
    high = every.filter(conf=cut)
    assert 1 <= len(high) < len(every) and (high.confidence >= cut).all()
    zeros = every.filter(classes=[0])
    assert zeros.to_list() == [d for d in every.to_list() if d["class_id"] == 0]
    assert resolve_classes(["Person", 2], CLASS_NAMES) == [0, 2]
    with pytest.raises(InvalidParameterError, match="person, car, dog"):
        resolve_classes(["cat"], CLASS_NAMES)


def _dets(*rows: tuple) -> Detections:
    """Detections from ``(x1, y1, x2, y2, confidence, class_id, class_name)`` rows."""
    return Detections(np.array([r[:4] for r in rows], float).reshape(-1, 4), [r[4] for r in rows],
                      [r[5] for r in rows], np.array([r[6] for r in rows], dtype=object))


def test_detections_record_validates_itself():
    with pytest.raises(ValueError, match="x2 >= x1"):
        _dets((10, 0, 5, 5, 0.5, 0, "a"))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _dets((0, 0, 5, 5, 1.5, 0, "a"))
    with pytest.raises(ValueError, match="differ in length"):
        Detections(np.zeros((2, 4)), [0.5], [0, 1], np.array(["a", "b"], dtype=object))
    two = _dets((0, 0, 5, 5, 0.5, 1, "car"), (1, 1, 2, 3, 0.9, 0, "person"))
    assert two.to_list()[0] == {"box": [0, 0, 5, 5], "confidence": 0.5, "class_id": 1,
                                "class_name": "car"}
    assert len(Detections.empty()) == 0 and len(Detections.concat([two, two])) == 4
    assert two[two.confidence > 0.6].class_name.tolist() == ["person"]
    assert two.columns()["y2"].tolist() == [5, 3]


# ---- upscaler --------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["compact", "esrgan"])
def test_tiled_equals_untiled_within_one_level(weights, arch):
    img = _img(70, 90, 1)
    whole = Upscaler(UpscalerConfig(weights=str(weights[arch]), tile=0, device="cpu"))
    tiled = Upscaler(UpscalerConfig(weights=str(weights[arch]), tile=32, tile_pad=10, device="cpu"))
    a, b = whole.upscale(img), tiled.upscale(img)
    assert a.shape == (70 * whole.scale, 90 * whole.scale, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # without context padding the tile seams show: the check above can fail
    seams = Upscaler(UpscalerConfig(weights=str(weights[arch]), tile=32, tile_pad=0, device="cpu"))
    assert np.abs(a.astype(int) - seams.upscale(img).astype(int)).max() > 1


def test_architecture_is_auto_detected(weights):
    c = Upscaler(UpscalerConfig(weights=str(weights["compact"]), device="cpu"))
    e = Upscaler(UpscalerConfig(weights=str(weights["esrgan"]), device="cpu"))
    c.setup(), e.setup()
    assert (c.model.architecture.id, c.scale) == ("Compact", 2)
    assert (e.model.architecture.id, e.scale) == ("ESRGAN", 4)


def test_out_of_memory_halves_the_tile_and_retries(weights):
    import torch

    img = _img(64, 64, 2)
    ref = Upscaler(UpscalerConfig(weights=str(weights["compact"]), tile=0, device="cpu")).upscale(img)
    up = Upscaler(UpscalerConfig(weights=str(weights["compact"]), tile=64, tile_pad=10,
                                 min_tile=8, device="cpu"))
    up.setup()
    real = up._forward
    seen: list[int] = []

    def small_gpu(x):
        seen.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 40:  # simulated: tiles larger than this do not fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x)

    up._forward = small_gpu
    out = up.upscale(img)
    assert up.tile == 16 and up.oom_retries == 2
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    up._forward = lambda x: (_ for _ in ()).throw(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors are not retried
        up.upscale(img)


def test_arbitrary_output_scale_and_pre_pad(weights):
    img = _img(50, 60, 4)
    up = Upscaler(UpscalerConfig(weights=str(weights["compact"]), tile=0, pre_pad=6, device="cpu"))
    assert up.upscale(img, 3.0).shape == (150, 180, 3)
    assert up.upscale(img, 1.5).shape == (75, 90, 3)
    assert up.upscale(img).shape == (100, 120, 3)


@pytest.mark.gpu
def test_cuda_runs_fp16_and_matches_fp32(weights):
    import torch

    img = _img(96, 128, 5)
    half = Upscaler(UpscalerConfig(weights=str(weights["compact"]), device="cuda", half=True))
    full = Upscaler(UpscalerConfig(weights=str(weights["compact"]), device="cpu", half=False))
    a, b = half.upscale(img), full.upscale(img)
    assert half.dtype == torch.float16
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    det = Detector(DetectorConfig(weights=str(weights["yolo"]), imgsz=160, device="auto"))
    det.setup()
    assert det.device == "cuda" and det.half


# ---- cropper ---------------------------------------------------------------------------------

def test_crops_per_category_with_padding_and_minimum_confidence():
    img = _img(100, 200, 6)
    dets = _dets((10, 10, 50, 60, 0.9, 0, "person"), (100, 20, 150, 80, 0.4, 1, "car"),
                 (0, 0, 20, 20, 0.1, 0, "person"), (180, 80, 200, 100, 0.8, 1, "car"))
    crops = crops_by_category(img, dets, ["person", "car", "dog"],
                              CropConfig(padding=0.5, min_confidence=0.3))
    assert [c.detection["confidence"] for c in crops["person"]] == [0.9]
    assert [c.detection["confidence"] for c in crops["car"]] == [0.8, 0.4]
    assert crops["dog"] == []
    p = crops["person"][0]
    assert p.box == (0, 0, 70, 85) and p.image.shape == (85, 70, 3)
    assert np.array_equal(p.image, img[0:85, 0:70])
    assert padded_box(dets.xyxy[3], 200, 100, 0.5) == (170, 70, 200, 100)  # clipped at the border
    assert parse_categories("person, car,person") == ["person", "car"]
    with pytest.raises(InvalidParameterError):
        parse_categories(" , ")
