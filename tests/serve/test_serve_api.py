"""The HTTP API over real HTTP on loopback: Ray Serve in the session's private Ray."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse
from PIL import Image

from serve_fixtures import LIMIT_KEYS, SECRET_KEY, api  # noqa: E402,F401 - api: the module's apps
from serve_fixtures import jpeg_bytes as _jpeg  # noqa: E402
from serve_fixtures import png_bytes as _png  # noqa: E402
from serve_fixtures import sse_events as _events  # noqa: E402
from serve_fixtures import upload_video as _upload  # noqa: E402
from serve_fixtures import wait_for_status as _wait  # noqa: E402
from media_fixtures import hls_playlist, mpegts_copy  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
URL_PASSWORD = "pw-77ab21"
URL_TOKEN = "tok-5d3e90"


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/redirect-private"):
            self.send_response(302)
            self.send_header("Location", "http://10.0.0.1/video.mp4")
            self.end_headers()
            return
        if self.path.startswith("/slow.mp4"):  # a download that takes long (bounded: 40 s)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
            for _ in range(80):
                try:
                    self.wfile.write(b"\0" * 1024)
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.5)
            return
        if self.path.startswith("/page.html"):
            body = b"<html>not a video</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.path = self.path.split("?", 1)[0]
        super().do_GET()

    def guess_type(self, path):  # noqa: ANN001
        if str(path).endswith(".m3u8"):  # as an object store serves a file it has no type for
            return "application/octet-stream"
        return "video/mp4" if str(path).endswith(".mp4") else super().guess_type(path)


@pytest.fixture(scope="module")
def media(videos, tmp_path_factory):
    """A loopback HTTP server with the test videos."""
    root = tmp_path_factory.mktemp("media")
    small, _ = videos.get(seconds=4, size=(480, 270), seed=31)
    long, _ = videos.get(seconds=20, size=(1280, 720), seed=32, gop=30)
    (root / "small.mp4").write_bytes(small.read_bytes())
    (root / "long.mp4").write_bytes(long.read_bytes())
    # a file the service must never analyse for a caller, and a playlist that names it
    private = mpegts_copy(small, tmp_path_factory.mktemp("private") / "private.ts")
    (root / "playlist.m3u8").write_text(hls_playlist(f"file://{private}"))
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "small": small, "long": long,
           "private": private}
    server.shutdown()
    server.server_close()


# ---- application basics ----------------------------------------------------------------------

def test_health_readiness_and_openapi_docs(api):
    c = api["client"]
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json()["status"] == "ready"
    assert c.get("/docs").status_code == 200
    spec = c.get("/openapi.json").json()
    for path in ("/v1/analyses", "/v1/analyses/{analysis_id}", "/v1/analyses/{analysis_id}/events",
                 "/v1/images/analyze", "/healthz", "/readyz"):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/analyses"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["application/json"]["schema"]["examples"]
    assert "video_url" in body["application/json"]["schema"]["properties"]


def test_every_error_is_json(api):
    c = api["client"]
    for r in (c.get("/nope"), c.get("/v1/analyses/doesnotexist"), c.put("/v1/analyses"),
              c.post("/v1/analyses", content=b"{", headers={"content-type": "application/json"})):
        assert r.status_code in (404, 405, 422)
        assert set(r.json()["error"]) == {"code", "message"}


# ---- analyses --------------------------------------------------------------------------------

def test_analysis_from_url_with_webhook_payload_matches_the_cli(api, media, tmp_path):
    from jobs.golden.job import GoldenParams, VideoJob, run_golden
    from jobs.stores.local import LocalStore

    c = api["client"]
    r = c.post("/v1/analyses", json={"videoUrl": f"{media['url']}/small.mp4", "scanId": "hook-1",
                                     "itemType": "card"})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["created"] and accepted["status_url"].endswith(f"/v1/analyses/{accepted['id']}")
    assert accepted["events_url"].endswith("/events")
    done = _wait(c, accepted["id"])
    assert done["status"] == "succeeded", done
    assert done["item_type"] == "card"
    assert done["progress"]["percentage"] == 100.0
    assert done["timings"]["run_s"] > 0 and done["parameters"]["top_k"] == 5
    frames = done["result"]["golden_frames"]
    assert all((api["out"] / g["key"]).is_file() for g in frames)
    assert "path" not in done["result"]["video"]
    [cli] = run_golden([VideoJob(str(media["small"]), "cli-ref")], GoldenParams(),
                       LocalStore(tmp_path))
    assert [(g["frame_index"], g["sharpness"], g["motion"]) for g in frames] == \
        [(g.frame_index, g.sharpness, g.motion) for g in cli.manifest.golden_frames]


def test_upload_streams_progress_picks_and_done_and_late_subscribers_get_state(api, media):
    c = api["client"]
    r = _upload(c, media["small"], "upload-1", top_k=3)
    assert r.status_code == 202, r.text
    aid = r.json()["id"]
    events = _events(c, f"/v1/analyses/{aid}/events")
    kinds = [e for e, _ in events]
    assert kinds[0] == "state" and kinds[-1] == "done"
    progress = [d for e, d in events if e == "progress"]
    if kinds[0] == "state" and events[0][1]["status"] in ("queued", "running"):
        assert progress and progress[-1]["current"] == progress[-1]["total"] > 0
        assert all({"current", "total", "percentage"} <= set(p) for p in progress)
    picks = [d for e, d in events if e == "golden_frame"] or events[0][1]["golden_frames"]
    assert len(picks) == 3
    late = _events(c, f"/v1/analyses/{aid}/events")
    assert [e for e, _ in late] == ["state", "done"]
    assert late[0][1]["status"] == "succeeded" and len(late[0][1]["golden_frames"]) == 3
    assert late[1][1]["result"]["golden_frames"][0]["frame_index"] == picks[0]["frame_index"]


def _read_ids(client: httpx.Client, url: str, headers: dict | None = None,
              stop_at: tuple[str, ...] = ("done", "error")) -> list[tuple[int, str]]:
    """(id, event) of an SSE stream until one of ``stop_at`` or the stream's end."""
    seen = []
    with connect_sse(client, "GET", url, headers=headers or {}) as source:
        for sse in source.iter_sse():
            if not sse.data:  # a keep-alive comment (httpx_sse yields it with no data)
                continue
            seen.append((int(sse.id), sse.event))
            if sse.event in stop_at:
                break
    return seen


def test_a_reconnecting_client_continues_after_the_last_event_id_it_saw(api, media):
    c = api["client"]
    aid = _upload(c, media["long"], "resume-1", top_k=3).json()["id"]
    url = f"/v1/analyses/{aid}/events"
    first = _read_ids(c, url, stop_at=("progress", "done", "error"))  # then the client drops
    assert first[0][1] == "state" and first[-1][1] == "progress", first
    time.sleep(1)  # events it missed while away
    rest = _read_ids(c, url, headers={"Last-Event-ID": str(first[-1][0])})
    assert rest and rest[0][1] != "state" and rest[-1][1] == "done", rest
    ids = [i for i, _ in first[1:] + rest]
    assert ids == list(range(first[0][0] + 1, rest[-1][0] + 1))  # no gap, nothing twice
    assert [e for _, e in first + rest].count("done") == 1
    # after the end: nothing more; an id that is not one of ours: the state first
    assert _read_ids(c, url, headers={"Last-Event-ID": str(rest[-1][0])}) == []
    for bogus in ("not-a-number", str(rest[-1][0] + 50)):
        assert [e for _, e in _read_ids(c, url, headers={"Last-Event-ID": bogus})] == \
            ["state", "done"]


def test_repost_of_a_running_analysis_returns_it_and_listing_filters_by_scan(api, media):
    c = api["client"]
    body = {"video_url": f"{media['url']}/long.mp4", "scan_id": "idem-1", "top_k": 4}
    first = c.post("/v1/analyses", json=body).json()
    again = c.post("/v1/analyses", json=body).json()
    assert again["id"] == first["id"] and again["created"] is False
    other = c.post("/v1/analyses", json={**body, "top_k": 2}).json()
    assert other["id"] != first["id"] and other["created"]
    queued = c.get(f"/v1/analyses/{other['id']}").json()
    if queued["status"] == "queued":
        assert queued["queue_position"] >= 1
    listed = c.get("/v1/analyses", params={"scan_id": "idem-1"}).json()["analyses"]
    assert {a["id"] for a in listed} == {first["id"], other["id"]}
    for aid in (first["id"], other["id"]):
        assert _wait(c, aid)["status"] == "succeeded"


def _task_processes() -> list[str]:
    import psutil
    from ray._private import worker

    raylet = psutil.Process(worker._global_node.all_processes["raylet"][0].process.pid)
    names = []
    for p in raylet.children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "run_stage_once" in cmd:
            names.append(cmd)
    return names


def test_cancel_stops_the_workers_and_stores_nothing(api, media):
    import sqlite3

    import ray

    from serve.analyses.runner import RUNNER_NAMESPACE

    c = api["client"]
    aid = _upload(c, media["long"], "cancel-1").json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _task_processes():
        time.sleep(0.05)
    assert c.get(f"/v1/analyses/{aid}").json()["status"] == "running"
    with sqlite3.connect(api["state"] / "main" / "analyses.sqlite3") as db:
        [(runner,)] = db.execute("SELECT runner FROM analyses WHERE id = ?", (aid,)).fetchall()
    r = c.delete(f"/v1/analyses/{aid}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["error"]["code"] == "cancelled"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _task_processes():
        time.sleep(0.2)
    assert not _task_processes(), "scoring tasks still running after cancel"
    with pytest.raises(ValueError):  # the runner that held the job is gone
        ray.get_actor(runner, namespace=RUNNER_NAMESPACE)
    time.sleep(1)
    assert c.get(f"/v1/analyses/{aid}").json()["status"] == "cancelled"
    assert not (api["out"] / "cancel-1" / "manifest.json").exists()
    assert _events(c, f"/v1/analyses/{aid}/events")[-1][0] == "error"


def _replica_pids(deployment: str) -> list[int]:
    import psutil
    from ray._private import worker

    raylet = psutil.Process(worker._global_node.all_processes["raylet"][0].process.pid)
    pids = []
    for p in raylet.children(recursive=True):
        try:
            if f"framesift:{deployment}" in " ".join(p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def test_accepted_analysis_survives_killed_replicas(api, media):
    c = api["client"]
    aid = _upload(c, media["long"], "survivor-1").json()["id"]
    _wait(c, aid, statuses=("running",))
    killed = _replica_pids("Ingress") + _replica_pids("AnalysisCoordinator")
    assert len(killed) >= 2, killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    done = _wait(c, aid, timeout=240)
    assert done["status"] == "succeeded", done
    assert (api["out"] / "survivor-1" / "manifest.json").is_file()
    assert not set(killed) & set(_replica_pids("Ingress") + _replica_pids("AnalysisCoordinator"))


# ---- bad input and security ------------------------------------------------------------------

@pytest.mark.parametrize("body, code", [
    ({"video_url": "ftp://example.com/v.mp4", "scan_id": "s1"}, "url_scheme"),
    ({"video_url": "http://10.1.2.3/v.mp4", "scan_id": "s1"}, "url_blocked"),
    ({"video_url": "http://169.254.169.254/latest/meta-data", "scan_id": "s1"}, "url_blocked"),
    ({"video_url": "http://[::1]/v.mp4", "scan_id": "s1"}, "url_blocked"),
    ({"video_url": "https://cdn.example.com/v.mp4", "scan_id": "../../etc"}, "invalid_request"),
    ({"video_url": "https://cdn.example.com/v.mp4", "scan_id": "x" * 200}, "invalid_request"),
    ({"scan_id": "s1"}, "invalid_request"),
])
def test_bad_analysis_requests_are_refused_with_422(api, body, code):
    r = api["client"].post("/v1/analyses", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"].startswith(code)


def test_unsupported_content_types_are_415(api):
    c = api["client"]
    assert c.post("/v1/analyses", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    r = c.post("/v1/images/analyze", json={"images": []})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


def test_oversized_upload_is_413(api):
    big = io.BytesIO(b"\0" * 31_000_000)
    r = api["client"].post("/v1/analyses", files={"video": ("big.mp4", big, "video/mp4")},
                           data={"scan_id": "big"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert not any((api["state"] / "main" / "uploads").iterdir())


def test_url_problems_found_while_fetching_fail_the_analysis_clearly(api, media):
    c = api["client"]
    for path, code in (("/redirect-private", "url_blocked"), ("/page.html", "not_video_content"),
                       ("/missing.mp4", "source_gone")):
        aid = c.post("/v1/analyses", json={"video_url": media["url"] + path,
                                           "scan_id": f"bad{path.strip('/').split('.')[0]}"}).json()["id"]
        done = _wait(c, aid)
        assert done["status"] == "failed" and done["error"]["code"] == code, done


def test_api_keys_guard_every_v1_route(api):
    c = api["client"]
    assert c.get("/secure/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET_KEY}):
        r = c.get("/secure/v1/analyses", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    ok = {"Authorization": f"Bearer {SECRET_KEY}"}
    assert c.get("/secure/v1/analyses", headers=ok).status_code == 200
    assert c.post("/secure/v1/images/analyze", files={"images": ("a.txt", b"x")}).status_code == 401


def test_without_keys_the_server_binds_loopback_only(tmp_path):
    from serve.security import InsecureBindError, check_bind

    check_bind("127.0.0.1", [])
    check_bind("0.0.0.0", ["k"])
    with pytest.raises(InsecureBindError, match="FRAMESIFT_API_KEYS"):
        check_bind("0.0.0.0", [])
    env = {k: v for k, v in os.environ.items() if k != "FRAMESIFT_API_KEYS"}
    res = subprocess.run([sys.executable, "-m", "jobs.cli", "serve", "--host", "0.0.0.0"],
                         cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "refusing to listen on 0.0.0.0" in res.stderr


def test_overload_answers_503_with_retry_after(api):
    imgs = [("images", (f"{i}.png", _png(1500, 1500, seed=i), "image/png")) for i in range(3)]
    url = f"http://127.0.0.1:{api['port']}/tiny/v1/images/analyze"
    statuses, retry = [], []

    def hit() -> None:
        with httpx.Client(timeout=120) as client:
            r = client.post(url, files=imgs, params={"concurrency": 1})
            statuses.append(r.status_code)
            retry.append(r.headers.get("retry-after"))
    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert 503 in statuses, statuses
    assert all(s in (200, 503) for s in statuses)
    assert all(retry[i] == "1" for i, s in enumerate(statuses) if s == 503)


def test_secrets_never_reach_the_logs(api, media):
    from ray._private import worker

    c = api["client"]
    c.get("/secure/v1/analyses", headers={"Authorization": f"Bearer {SECRET_KEY}"})
    c.get("/secure/v1/analyses", headers={"Authorization": f"Bearer {SECRET_KEY}x"})
    host = media["url"].replace("http://", "")
    url = f"http://user:{URL_PASSWORD}@{host}/missing.mp4?token={URL_TOKEN}"
    aid = c.post("/v1/analyses", json={"video_url": url, "scan_id": "secret-1"}).json()["id"]
    done = _wait(c, aid)
    assert done["status"] == "failed"
    assert URL_PASSWORD not in done["error"]["message"] and URL_TOKEN not in done["error"]["message"]
    time.sleep(1.0)  # let log files flush
    logs = Path(worker._global_node.get_session_dir_path()) / "logs"
    leaks = []
    for f in logs.rglob("*"):
        if f.is_file():
            text = f.read_bytes()
            for secret in (SECRET_KEY, URL_PASSWORD, URL_TOKEN):
                if secret.encode() in text:
                    leaks.append((f.name, secret))
    assert not leaks, leaks


# ---- batch image analysis --------------------------------------------------------------------

def _smooth_png(w: int, h: int) -> bytes:
    """A large image that compresses well: slow to analyse, small to send."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h))], -1)
    return cv2.imencode(".png", img.astype(np.uint8))[1].tobytes()


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (9000, 9000)).save(out, format="PNG")  # 81 Mpx in a few kB
    return out.getvalue()


def test_image_batch_streams_results_as_they_finish_with_per_item_errors(api):
    files = [("images", ("slow.png", _smooth_png(5000, 5000), "image/png"))]
    files += [("images", (f"small{i}.jpg", _jpeg(320, 240, i), "image/jpeg")) for i in range(6)]
    files += [("images", ("notes.jpg", b"this is text", "image/jpeg")),
              ("images", ("huge.jpg", os.urandom(3_100_000), "image/jpeg")),
              ("images", ("bomb.png", _bomb(), "image/png"))]
    c = api["client"]
    events = []
    with connect_sse(c, "POST", "/v1/images/analyze", files=files,
                     params={"concurrency": 4}) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            events.append((sse.event, sse.json()))
    results = [d for e, d in events if e == "result"]
    errors = {d["filename"]: d["code"] for e, d in events if e == "error"}
    assert errors == {"notes.jpg": "undecodable_image", "huge.jpg": "image_too_large",
                      "bomb.png": "image_too_large"}
    assert len(results) == 7
    order = [d["filename"] for d in results]
    assert order.index("slow.png") >= 3, order  # small images did not wait for the slow one
    r0 = next(d for d in results if d["filename"] == "small0.jpg")
    assert (r0["width"], r0["height"], r0["format"]) == (320, 240, "jpeg")
    assert r0["glint"]["blob_count"] >= 1 and 0 <= r0["clipped_bright_share"] <= 1
    assert {"sharpness", "exposure_mean", "clipped_dark_share", "bytes"} <= set(r0)
    progress = [d for e, d in events if e == "progress"]
    assert len(progress) == 10 and progress[-1] == {"current": 10, "total": 10, "percentage": 100.0,
                                                    "analyzed": 7, "failed": 3}
    assert [e for e, _ in events][-1] == "summary"
    summary = events[-1][1]
    assert summary["analyzed"] == 7 and summary["failed"] == 3 and summary["concurrency"] == 4
    assert summary["sum_item_s"] > 0 and summary["speedup"] > 0


def test_too_many_images_is_413(api):
    files = [("images", (f"{i}.jpg", _jpeg(32, 32, i), "image/jpeg")) for i in range(13)]
    r = api["client"].post("/v1/images/analyze", files=files)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_images"


# ---- hardening (issue 14) --------------------------------------------------------------------

def _raw(port: int, data: bytes, wait_s: float = 20.0) -> bytes:
    """Send ``data`` on a fresh connection, return all it answers until it closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_an_uploaded_playlist_never_makes_the_server_read_another_file(api, media):
    c = api["client"]
    playlist = hls_playlist(f"file://{media['private']}").encode()
    r = c.post("/v1/analyses", files={"video": ("scan.m3u8", playlist, "video/mp4")},
               data={"scan_id": "playlist-upload"})
    assert r.status_code == 202, r.text
    by_url = c.post("/v1/analyses", json={"video_url": f"{media['url']}/playlist.m3u8",
                                         "scan_id": "playlist-url"})
    assert by_url.status_code == 202, by_url.text
    # an upload is stored under a neutral name (no .m3u8 for FFmpeg to go by) and a download
    # keeps its URL's: either way the container allow-list refuses the playlist
    for aid, scan, codes in ((r.json()["id"], "playlist-upload", ("not_a_video",
                                                                  "container_not_allowed")),
                             (by_url.json()["id"], "playlist-url", ("container_not_allowed",))):
        done = _wait(c, aid)
        assert done["status"] == "failed" and done["error"]["code"] in codes, done
        assert str(media["private"]) not in done["error"]["message"]
        assert not (api["out"] / scan).exists()  # nothing of the private file was stored


def test_error_messages_name_the_upload_not_a_server_path(api):
    c = api["client"]
    r = c.post("/v1/analyses", files={"video": ("notes.mp4", b"just some text\n" * 200,
                                                "video/mp4")}, data={"scan_id": "paths-1"})
    done = _wait(c, r.json()["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "not_a_video", done
    message = done["error"]["message"]
    assert "upload 'notes.mp4'" in message, message
    assert str(api["state"]) not in message and "uploads" not in message, message


def test_the_state_database_never_holds_url_credentials_or_signed_queries(api, media):
    c = api["client"]
    host = media["url"].replace("http://", "")
    url = f"http://user:{URL_PASSWORD}@{host}/small.mp4?token={URL_TOKEN}"
    r = c.post("/v1/analyses", json={"video_url": url, "scan_id": "signed-url-1", "top_k": 2})
    done = _wait(c, r.json()["id"])
    assert done["status"] == "succeeded", done  # the download had the full URL
    stored = b"".join(p.read_bytes() for p in (api["state"] / "main").glob("analyses.sqlite3*"))
    assert b"signed-url-1" in stored
    assert URL_PASSWORD.encode() not in stored and URL_TOKEN.encode() not in stored


def test_json_bodies_are_capped_small_and_nested_json_is_a_json_error(api):
    c = api["client"]
    big = {"video_url": "https://cdn.example.com/v.mp4", "scan_id": "s1", "pad": "x" * 200_000}
    r = c.post("/v1/analyses", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    deep = b"[" * 5000 + b"]" * 5000
    r = c.post("/v1/analyses", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/json", r.text
    assert r.json()["error"]["code"] == "invalid_json"


def test_urls_returned_never_reflect_the_host_header(api):
    c = api["client"]
    body = {"video_url": "http://127.0.0.1:9/v.mp4", "scan_id": "host-1"}
    r = c.post("/v1/analyses", json=body, headers={"Host": "evil.example:4444"})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status_url"] == f"/v1/analyses/{accepted['id']}"
    assert accepted["events_url"] == f"/v1/analyses/{accepted['id']}/events"
    keyed = c.post("/secure/v1/analyses", json={**body, "scan_id": "host-2"},
                   headers={"Host": "evil.example", "Authorization": f"Bearer {SECRET_KEY}"})
    assert keyed.json()["status_url"].startswith("/secure/v1/analyses/"), keyed.text
    _wait(c, accepted["id"])


def test_openapi_declares_the_bearer_scheme_and_401_says_what_to_send(api):
    c = api["client"]
    spec = c.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/analyses"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    r = c.get("/secure/v1/analyses")
    assert "'Authorization: Bearer <key>'" in r.json()["error"]["message"]


def test_the_proxy_bounds_header_size_and_read_times(api):
    port = api["port"]
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"k" * 200_000 + \
        b"\r\n\r\n"
    answer = _raw(port, huge)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b'"headers_too_large"' in answer
    ok = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]
    # headers that never end, and a body that stalls: answered 408 and closed
    slow_head = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert slow_head.startswith(b"HTTP/1.1 408"), slow_head[:200]
    slow_body = _raw(port, b"POST /v1/analyses HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: 1000\r\n\r\n{\"video_url\"")
    assert b"408" in slow_body.split(b"\r\n", 1)[0], slow_body[:200]


# ---- queue, per-key and per-analysis limits (the /limits application) ------------------------

def _keyed(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_queue_and_per_key_limits_answer_before_anything_is_stored(api, media):
    c = api["client"]
    uploads = api["state"] / "limits" / "uploads"
    a, b = (_keyed(k) for k in LIMIT_KEYS)
    slow = f"{media['url']}/slow.mp4"
    posted = []  # (id, the key that posted it: only its tenant may cancel it)
    try:
        for i, (headers, expected) in enumerate([(a, 202), (a, 202), (a, 429), (b, 202),
                                                 (b, 503)]):
            r = c.post("/limits/v1/analyses", json={"video_url": f"{slow}?n={i}",
                                                    "scan_id": f"limits-{i}"}, headers=headers)
            assert r.status_code == expected, (i, r.text)
            if expected == 202:
                posted.append((r.json()["id"], headers))
            else:
                assert r.headers["retry-after"] == "30"
                assert r.json()["error"]["code"] == ("too_many_analyses" if expected == 429
                                                     else "queue_full")
        # a refused upload is never written
        r = c.post("/limits/v1/analyses", headers=b, data={"scan_id": "limits-up"},
                   files={"video": ("v.mp4", media["small"].read_bytes(), "video/mp4")})
        assert r.status_code == 503, r.text
        assert [p.name for p in uploads.iterdir()] == []
        view = c.get(f"/limits/v1/analyses/{posted[1][0]}", headers=a).json()
        # fair between tenants: b's analysis goes before a's second (a has one running)
        other = c.get(f"/limits/v1/analyses/{posted[2][0]}", headers=b).json()
        assert view["status"] == "queued" and view["queue_position"] == 2
        assert other["status"] == "queued" and other["queue_position"] == 1
    finally:
        for aid, headers in posted:
            c.delete(f"/limits/v1/analyses/{aid}", headers=headers)


def test_one_analysis_is_bounded_in_frames_and_wall_time(api, media):
    with httpx.Client(base_url=f"http://127.0.0.1:{api['port']}/limits", timeout=60,
                      headers=_keyed(LIMIT_KEYS[0])) as c:
        with media["long"].open("rb") as fh:  # 600 frames; this application takes at most 300
            r = c.post("/v1/analyses", data={"scan_id": "limits-long"},
                       files={"video": ("hour-long.mp4", fh, "video/mp4")})
        slow = c.post("/v1/analyses", json={"video_url": f"{media['url']}/slow.mp4?t=1",
                                            "scan_id": "limits-slow"})
        assert r.status_code == 202 and slow.status_code == 202, (r.text, slow.text)
        too_long = _wait(c, r.json()["id"])
        assert too_long["error"]["code"] == "analysis_too_large", too_long
        assert "hour-long.mp4" in too_long["error"]["message"]
        assert "FRAMESIFT_MAX_ANALYSIS_FRAMES" in too_long["error"]["message"]
        stopped = _wait(c, slow.json()["id"], timeout=120)  # downloads for 40 s; stopped at 8
        assert stopped["status"] == "failed" and stopped["error"]["code"] == "analysis_timeout"


def test_uploads_no_analysis_refers_to_are_swept(api):
    uploads = api["state"] / "limits" / "uploads"
    orphans = [uploads / "incoming-0123456789abcdef.upload", uploads / "left-by-a-crash.mp4"]
    for orphan in orphans:
        orphan.write_bytes(b"\0" * 4096)
        os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(p.exists() for p in orphans):
        time.sleep(0.25)
    assert not any(p.exists() for p in orphans)
