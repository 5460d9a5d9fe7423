"""Tenants over real HTTP on loopback: keys of two tenants, a bare key and the admin key on one
application. One tenant can neither see, cancel, join nor overwrite another's analyses."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from serve_fixtures import free_port, upload_video, wait_for_status

KEY_A, KEY_B, BARE, ADMIN = ("fs-acme-key-1d9e", "fs-beta-key-7c21", "fs-bare-key-40aa",
                             "fs-admin-key-e3b5")


def _as(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def tenants(ray_cluster, tmp_path_factory, videos):
    from ray import serve

    from serve.app import AnalysisCoordinator, Ingress

    state = tmp_path_factory.mktemp("tenants")
    keys = state / "api-keys"
    keys.write_text(f"acme:{KEY_A}\nbeta:{KEY_B}\n{BARE}\n")
    settings = {"state_dir": str(state / "state"), "out_dir": str(state / "out"),
                "api_keys_file": str(keys), "admin_key": ADMIN, "max_running_analyses": 1}
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Ingress.bind(AnalysisCoordinator.bind(settings), settings), name="tenants",
              route_prefix="/")
    video, _ = videos.get(seconds=2, size=(320, 240), seed=5)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield {"client": client, "video": video, "out": state / "out", "state": state / "state"}
    serve.shutdown()


def test_one_tenant_can_neither_see_cancel_join_nor_overwrite_another(tenants):
    c, video, out = tenants["client"], tenants["video"], tenants["out"]
    a = upload_video(c, video, "shared", headers=_as(KEY_A))
    assert a.status_code == 202 and a.json()["created"], a.text
    aid = a.json()["id"]
    # the same post by the same tenant joins its analysis; by another tenant it does not
    again = upload_video(c, video, "shared", headers=_as(KEY_A)).json()
    assert (again["id"], again["created"]) == (aid, False)
    b = upload_video(c, video, "shared", headers=_as(KEY_B)).json()
    assert b["created"] and b["id"] != aid
    bid = b["id"]

    # B cannot see, follow or cancel A's analysis (while it is active): as if it did not exist
    for method, path in (("GET", ""), ("GET", "/events"), ("DELETE", "")):
        r = c.request(method, f"/v1/analyses/{aid}{path}", headers=_as(KEY_B))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    listed = {v["id"] for v in c.get("/v1/analyses", headers=_as(KEY_B)).json()["analyses"]}
    assert listed == {bid}
    done_a = wait_for_status(c, aid, prefix="", timeout=180, headers=_as(KEY_A))
    assert done_a["status"] == "succeeded", done_a
    assert done_a["tenant"] == "acme"
    done_b = wait_for_status(c, bid, prefix="", timeout=180, headers=_as(KEY_B))
    assert done_b["status"] == "succeeded", done_b

    # B's analysis of the same scan id did not replace A's results: both are served
    frame = done_a["result"]["golden_frames"][0]
    assert frame["key"].startswith("_tenants/acme/shared/")
    for key, analysis in ((KEY_A, aid), (KEY_B, bid)):
        r = c.get(f"/v1/analyses/{analysis}/frames/{frame['frame_index']}", headers=_as(key))
        assert r.status_code == 200, r.text
        assert c.get(f"/v1/analyses/{analysis}/scores", headers=_as(key)).status_code == 200
    image = c.get(f"/v1/analyses/{aid}/frames/{frame['frame_index']}", headers=_as(KEY_A))
    assert image.content == (out / frame["key"]).read_bytes()
    assert (out / "_tenants" / "beta" / "shared" / "manifest.json").is_file()
    assert not (out / "shared").exists()  # no tenant's result in the single-tenant layout
    for path in ("", "/scores", f"/frames/{frame['frame_index']}", "/events"):
        r = c.get(f"/v1/analyses/{aid}{path}", headers=_as(KEY_B))
        assert r.status_code == 404, (path, r.text)
    assert c.get(f"/v1/analyses/{aid}", headers=_as(KEY_A)).json()["status"] == "succeeded"

    # the admin key sees every tenant's analyses; a bare key is its own tenant, named by a
    # hash (never the key), and sees none of theirs
    everything = {v["id"] for v in c.get("/v1/analyses", headers=_as(ADMIN)).json()["analyses"]}
    assert {aid, bid} <= everything
    assert c.get(f"/v1/analyses/{bid}/scores", headers=_as(ADMIN)).status_code == 200
    assert c.get(f"/v1/analyses/{aid}", headers=_as(BARE)).status_code == 404
    bare_tenant = hashlib.sha256(BARE.encode()).hexdigest()[:16]
    r = upload_video(c, video, "bare-2", headers=_as(BARE))
    assert r.status_code == 202, r.text
    assert c.get(f"/v1/analyses/{r.json()['id']}", headers=_as(BARE)).json()["tenant"] == \
        bare_tenant
    assert [v["id"] for v in c.get("/v1/analyses", headers=_as(BARE)).json()["analyses"]
            if v["id"] in (aid, bid)] == []
    c.delete(f"/v1/analyses/{r.json()['id']}", headers=_as(BARE))
    stored = b"".join(p.read_bytes() for p in tenants["state"].glob("analyses.sqlite3*"))
    assert not any(k.encode() in stored for k in (KEY_A, KEY_B, BARE, ADMIN))
