"""Model routes over real HTTP on loopback: Serve in the session's private Ray."""

from __future__ import annotations

import base64
import io
import socket
import zipfile
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse

from model_fixtures import CLASS_NAMES, make_compact_pth, make_yolo_pt  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(h: int, w: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 4, w // 4, 3), np.uint8), (w, h))
    return cv2.imencode(".png", img)[1].tobytes()


@pytest.fixture(scope="module")
def api(ray_cluster, tmp_path_factory):
    from ray import serve

    from serve.app import AnalysisCoordinator, Ingress, build_app

    root = tmp_path_factory.mktemp("model-api")
    weights = {"yolo": make_yolo_pt(root), "compact": make_compact_pth(root, scale=2)}
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = {"state_dir": str(root / "state"), "out_dir": str(root / "out"),
                "yolo_weights": str(weights["yolo"]), "upscaler_weights": str(weights["compact"]),
                "yolo_conf": 0.0005, "yolo_imgsz": 128, "detect_batch_size": 8,
                "detect_batch_wait_s": 0.25, "upscale_tile": 48, "max_upscale_pixels": 200_000,
                "model_device": "cpu", "detector_num_cpus": 0.5, "upscaler_num_cpus": 0.5,
                "max_image_pixels": 1_000_000}
    serve.run(build_app({"settings": settings}), name="fs-models", route_prefix="/m")
    bare = {"state_dir": str(root / "bare")}
    serve.run(Ingress.bind(AnalysisCoordinator.bind(bare), bare), name="fs-bare",
              route_prefix="/bare")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        yield {"client": client, "weights": weights, "settings": settings}
    serve.delete("fs-models")
    serve.delete("fs-bare")
    serve.shutdown()


def test_detect_returns_our_detection_json(api):
    from actors.detector import Detector, DetectorConfig

    c = api["client"]
    data = _png(96, 128, 1)
    r = c.post("/m/v1/detect", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (128, 96) and body["detections"]
    for d in body["detections"]:
        assert set(d) == {"box", "confidence", "class_id", "class_name"}
        assert d["class_name"] == CLASS_NAMES[d["class_id"]] and d["confidence"] >= 0.0005
    ref = Detector(DetectorConfig(weights=str(api["weights"]["yolo"]), conf=0.0005, imgsz=128,
                                  device="cpu"))
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    expect = ref.detect([img])[0].to_list()
    assert sorted(d["confidence"] for d in body["detections"]) == \
        pytest.approx(sorted(d["confidence"] for d in expect), abs=1e-4)
    r = c.post("/m/v1/detect?classes=car,dog", files={"image": ("x.png", data, "image/png")})
    assert r.status_code == 200 and {d["class_name"] for d in r.json()["detections"]} <= {"car", "dog"}


def test_detect_errors_are_json(api):
    c = api["client"]
    r = c.post("/m/v1/detect?classes=unicorn", content=_png(64, 64), headers={"content-type": "image/png"})
    assert r.status_code == 422 and "unicorn" in r.json()["error"]["message"]
    r = c.post("/m/v1/detect", content=b"not an image", headers={"content-type": "image/png"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "undecodable_image"
    r = c.post("/m/v1/detect", json={"x": 1})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    big = cv2.imencode(".png", np.zeros((1000, 1001, 3), np.uint8))[1].tobytes()  # ~1 MP, few KB
    for route in ("detect", "crop?categories=person", "upscale"):
        r = c.post(f"/m/v1/{route}", content=big, headers={"content-type": "image/png"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
        assert "1000000" in r.json()["error"]["message"]


def test_crop_per_category_as_json_and_zip(api):
    c = api["client"]
    data = _png(96, 128, 2)
    r = c.post("/m/v1/crop?categories=person,car&padding=0.2&min_confidence=0.0005",
               content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    cats = r.json()["categories"]
    assert set(cats) == {"person", "car"} and sum(len(v) for v in cats.values()) > 0
    for name, items in cats.items():
        for item in items:
            assert item["class_name"] == name
            x1, y1, x2, y2 = item["crop_box"]
            crop = cv2.imdecode(np.frombuffer(base64.b64decode(item["image_base64"]), np.uint8),
                                cv2.IMREAD_COLOR)
            assert crop.shape[:2] == (y2 - y1, x2 - x1)
    r = c.post("/m/v1/crop?categories=person&format=zip&image_format=png&min_confidence=0.0005",
               content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert "crops.json" in zf.namelist() and any(n.startswith("person/") for n in zf.namelist())
    r = c.post("/m/v1/crop?categories=unicorn", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_category"


def test_upscale_png_jpeg_scale_and_pixel_cap(api):
    from actors.upscaler import Upscaler, UpscalerConfig

    c = api["client"]
    data = _png(60, 80, 3)
    r = c.post("/m/v1/upscale", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    ref = Upscaler(UpscalerConfig(weights=str(api["weights"]["compact"]), tile=0, device="cpu"))
    assert np.abs(out.astype(int) - ref.upscale(img).astype(int)).max() <= 1  # tiled 48 == whole
    r = c.post("/m/v1/upscale?scale=3&format=jpeg", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (180, 240, 3)
    r = c.post("/m/v1/upscale?scale=8", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "output_too_large"
    assert "FRAMESIFT_MAX_UPSCALE_PIXELS" in r.json()["error"]["message"]


def test_without_weights_model_routes_answer_503_naming_the_setting_and_extra(api):
    c = api["client"]
    for route, setting, extra in (("detect", "FRAMESIFT_YOLO_WEIGHTS", "yolo"),
                                  ("crop?categories=a", "FRAMESIFT_YOLO_WEIGHTS", "yolo"),
                                  ("upscale", "FRAMESIFT_UPSCALER_WEIGHTS", "upscale")):
        r = c.post(f"/bare/v1/{route}", content=_png(32, 32), headers={"content-type": "image/png"})
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "model_not_configured" and setting in err["message"]
        assert f"pip install 'framesift[{extra}]'" in err["message"]


def test_weights_without_their_extra_deploy_no_model_and_say_which_extra(monkeypatch, caplog):
    """A core install (no torch) with weights set: no replica that would fail on import, and a
    warning naming the extra; the routes then answer 503 as without weights."""
    import importlib.util

    from serve import model_deployments
    from serve.settings import ServiceSettings

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "ultralytics", "spandrel")
                        else real(name, *a))
    settings = ServiceSettings(yolo_weights="models/yolov8n.pt",
                               upscaler_weights="models/RealESRGAN_x4plus.pth")
    with caplog.at_level("WARNING", logger="framesift.models"):
        assert model_deployments.bind_models(settings) == {}
    assert "pip install 'framesift[yolo]'" in caplog.text
    assert "pip install 'framesift[upscale]'" in caplog.text
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "spandrel" else object())
    from actors.weights import ModelExtraMissingError, load_spandrel, missing_extra

    assert missing_extra("detector") is None and missing_extra("upscaler") == "upscale"
    with pytest.raises(ModelExtraMissingError, match=r"pip install 'framesift\[upscale\]'"):
        load_spandrel("models/RealESRGAN_x4plus.pth")


def test_concurrent_requests_form_batches_and_batching_retunes_live(api):
    from ray import serve

    c = api["client"]
    handle = serve.get_deployment_handle("Detector", app_name="fs-models")
    before = handle.info.remote().result()["batch_sizes"]
    images = [_png(64, 80, 10 + i) for i in range(16)]

    def post(data: bytes) -> int:
        return c.post("/m/v1/detect", content=data, headers={"content-type": "image/png"}).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(post, images)) == {200}
    after = handle.info.remote().result()["batch_sizes"]
    new = {int(k): after.get(k, 0) - before.get(k, 0) for k in after}
    assert max(k for k, v in new.items() if v > 0) > 1, new
    handle.reconfigure.remote({"max_batch_size": 1, "batch_wait_timeout_s": 0.0}).result()
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, images[:8])) == {200}
    final = handle.info.remote().result()["batch_sizes"]
    grown = {int(k) for k in final if final[k] != after.get(k, 0)}
    assert grown == {1}


def test_image_batch_with_detect_adds_each_images_detections(api):
    c = api["client"]
    images = {f"{i}.png": _png(96, 128, 20 + i) for i in range(3)}
    files = [("images", (n, d, "image/png")) for n, d in images.items()]
    files.append(("images", ("notes.png", b"plain text", "image/png")))
    events = []
    with connect_sse(c, "POST", "/m/v1/images/analyze", files=files,
                     params={"detect": "true", "concurrency": 2}) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            events.append((sse.event, sse.json()))
    results = {d["filename"]: d for e, d in events if e == "result"}
    assert set(results) == set(images)
    assert [d["code"] for e, d in events if e == "error"] == ["undecodable_image"]
    for name, data in images.items():
        alone = c.post("/m/v1/detect", content=data, headers={"content-type": "image/png"}).json()
        assert alone["detections"], "the test model finds boxes at conf 0.0005"
        got = results[name]["detections"]
        assert [d["class_id"] for d in got] == [d["class_id"] for d in alone["detections"]]
        assert [d["confidence"] for d in got] == pytest.approx(
            [d["confidence"] for d in alone["detections"]], abs=1e-4)
        assert results[name]["sharpness"] > 0  # the analysis is still there
    assert events[-1][0] == "summary" and events[-1][1]["analyzed"] == 3
    r = c.post("/bare/v1/images/analyze?detect=true", files=files[:1])
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_configured"
    with connect_sse(c, "POST", "/bare/v1/images/analyze", files=files[:1]) as source:
        plain = [sse.json() for sse in source.iter_sse() if sse.event == "result"]
    assert len(plain) == 1 and "detections" not in plain[0]
