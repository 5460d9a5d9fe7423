"""The service under hostile use (issue 21), over real HTTP on loopback: uploads that will be
refused are answered before their bodies are read, too many images is one error, an MP4
whose index claims more than the file holds fails fast, and results and events carry no
server path."""

from __future__ import annotations

import json
import select
import socket
import struct
import time

import httpx
import pytest

from media_fixtures import random_video
from serve_fixtures import free_port, sse_events, wait_for_status
from serve_fixtures import jpeg_bytes

KEYS = ("fs-hostile-key-a-51d2", "fs-hostile-key-b-0c9e")
DECLARED = 30_000_000  # each upload's declared body; the clients send only the first part
SENT = 64 * 1024


@pytest.fixture(scope="module")
def svc(ray_cluster, tmp_path_factory):
    from ray import serve

    from serve.app import AnalysisCoordinator, Ingress

    state = tmp_path_factory.mktemp("hostile")
    keys = state / "keys"
    keys.write_text("\n".join(KEYS) + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = {"state_dir": str(state / "state"), "out_dir": str(state / "out"),
                "api_keys_file": str(keys), "max_queued_analyses": 2,
                "max_active_analyses_per_key": 2, "max_images_per_request": 3,
                "max_upload_bytes": 40_000_000}
    serve.run(Ingress.bind(AnalysisCoordinator.bind(settings), settings), name="hostile",
              route_prefix="/")
    yield {"port": port, "state": state}
    serve.shutdown()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _client(svc, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{svc['port']}", timeout=60,
                        headers=_auth(key))


def _start_upload(port: int, key: str, scan: str) -> socket.socket:
    """A multipart upload declaring ``DECLARED`` body bytes, of which only the headers and the
    first ``SENT`` are sent."""
    boundary = "hostileboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"scan_id\"\r\n\r\n{scan}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; "
            f"filename=\"big.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
    request = (f"POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: Bearer {key}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {DECLARED}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(request + head + b"\0" * (SENT - len(head)))
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), json.loads(body or b"{}")


def test_uploads_over_the_limits_are_refused_before_their_bodies_are_read(svc):
    """Six concurrent uploads where two places are free: four are refused while each client
    has sent 64 KB of its 30 MB body (before, every body was read first: admission counted
    only analyses already submitted, so all six passed it)."""
    port, uploads = svc["port"], svc["state"] / "state" / "uploads"
    socks = [_start_upload(port, KEYS[i % 2], f"hostile-{i}") for i in range(6)]
    answers: dict[int, tuple[int, dict]] = {}
    deadline = time.monotonic() + 40
    try:
        while len(answers) < 6 and time.monotonic() < deadline:
            waiting = [s for i, s in enumerate(socks) if i not in answers]
            readable, _, _ = select.select(waiting, [], [], 1.0)
            for sock in readable:
                answers[socks.index(sock)] = _answer(sock)
        codes = sorted((status, body["error"]["code"]) for status, body in answers.values())
        refused = [c for c in codes if c in ((503, "queue_full"), (429, "too_many_analyses"))]
        # four answered while each client had sent 64 KB of its 30 MB body; the two admitted
        # were waiting for theirs (the proxy's body idle timeout ends them, or nothing yet)
        assert len(refused) == 4, codes
        assert [c for c in codes if c not in refused] in ([], [(408, "request_timeout")],
                                                          [(408, "request_timeout")] * 2), codes
        assert not [p for p in uploads.iterdir()]  # nothing of theirs reached the disk
    finally:
        for sock in socks:
            sock.close()
    # the two held places are given back when their clients go away: a new upload is taken
    deadline = time.monotonic() + 60
    with _client(svc, KEYS[0]) as c:
        while True:
            r = c.post("/v1/analyses", data={"scan_id": "after-hold"},
                       files={"video": ("x.mp4", b"not a video" * 100, "video/mp4")})
            if r.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 202, r.text
        done = wait_for_status(c, r.json()["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "not_a_video", done


def test_too_many_images_is_always_413_too_many_images(svc):
    for n in (4, 5, 9):  # max 3: one past it, and well past it (was 400 "Maximum number ...")
        files = [("images", (f"{i}.jpg", jpeg_bytes(32, 32, i), "image/jpeg")) for i in range(n)]
        with _client(svc, KEYS[1]) as c:
            r = c.post("/v1/images/analyze", files=files)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_images", r.text


def test_an_mp4_claiming_more_samples_than_it_holds_fails_at_once(svc, tmp_path):
    video = random_video(tmp_path / "v.mp4", "mp4", "mpeg4", 30, (64, 48))
    data = bytearray(video.read_bytes())
    at = data.find(b"stsz") - 4
    struct.pack_into(">II", data, at + 12, 1, 85_000_000)  # constant size 1, 85M samples
    with _client(svc, KEYS[1]) as c:
        r = c.post("/v1/analyses", data={"scan_id": "bomb"},
                   files={"video": ("bomb.mp4", bytes(data), "video/mp4")})
        assert r.status_code == 202, r.text
        done = wait_for_status(c, r.json()["id"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "implausible_sample_count", done
    assert "bomb.mp4" in done["error"]["message"] and str(tmp_path) not in json.dumps(done)


def test_results_and_events_hold_no_server_path(svc, videos):
    path, _ = videos.get(seconds=1.0, size=(160, 90), seed=5)
    with _client(svc, KEYS[1]) as c:
        r = c.post("/v1/analyses", data={"scan_id": "paths", "top_k": "2"},
                   files={"video": ("clip.mp4", path.read_bytes(), "video/mp4")})
        assert r.status_code == 202, r.text
        aid = r.json()["id"]
        done = wait_for_status(c, aid)
        assert done["status"] == "succeeded", done
        events = sse_events(c, f"/v1/analyses/{aid}/events")
        text = json.dumps(done) + json.dumps(events)
        assert "file://" not in text and str(svc["state"]) not in text
        frames = done["result"]["golden_frames"]
        assert frames and all("uri" not in f and f["key"] for f in frames)
        # the frame is still served (the stored manifest keeps its URI for the CLI)
        got = c.get(f"/v1/analyses/{aid}/frames/{frames[0]['frame_index']}")
        assert got.status_code in (200, 307), got.text[:200]
