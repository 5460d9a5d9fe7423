"""Re-picks over the HTTP API: the preview (nothing extracted) and ``POST .../repick`` (a new
analysis, queued like any other, reading the stored scores), against real Serve on loopback."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from httpx_sse import connect_sse

from jobs.golden.repick import preview
from jobs.stores.local import LocalStore
from serve_fixtures import api, upload_video, wait_for_status  # noqa: F401,F811
from source_servers import RangeServer


@pytest.fixture(scope="module")
def uploaded(api, videos):
    c = api["client"]
    path, _ = videos.get(seconds=3, size=(480, 270), seed=61)
    view = wait_for_status(c, upload_video(c, path, "repick-up").json()["id"])
    assert view["status"] == "succeeded", view.get("error")
    return view


FAR = {"top_k": 30, "min_gap_s": 0.1, "motion_max": 5.0}  # picks outside the candidate pool


def _pool(folder) -> set[int]:
    """The frames of a result's candidate pool."""
    return set(pq.read_table(folder / "candidates.parquet")["frame_index"].to_pylist())


def _events(c, analysis_id: str) -> list[tuple[str, dict]]:
    with connect_sse(c, "GET", f"/v1/analyses/{analysis_id}/events") as source:
        return [(e.event, e.json()) for e in source.iter_sse()]


def test_preview_selects_from_the_stored_scores_without_writing(api, uploaded):
    c, out = api["client"], api["out"]
    stored = {g["frame_index"] for g in uploaded["result"]["golden_frames"]}
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "repick-up").iterdir())
    same = c.get(f"/v1/analyses/{uploaded['id']}/preview")
    assert same.status_code == 200, same.text
    assert [p["frame_index"] for p in same.json()["picks"]] == \
        [g["frame_index"] for g in uploaded["result"]["golden_frames"]]
    assert all(p["stored"] for p in same.json()["picks"])
    r = c.get(f"/v1/analyses/{uploaded['id']}/preview",
              params={"top_k": 9, "min_gap_s": 0.2, "motion_max": 2.5})
    assert r.status_code == 200, r.text
    body = r.json()
    _, expected = preview(LocalStore(out), "repick-up",
                          {"top_k": 9, "min_gap_s": 0.2, "motion_max": 2.5})
    assert [p["frame_index"] for p in body["picks"]] == \
        [p.score.frame_index for p in expected.selection.picks]
    assert body["notes"] == list(expected.notes) and body["motion_max"] == 2.5
    assert body["parameters"] == {"top_k": 9, "min_gap_s": 0.2, "motion_max": 2.5}
    assert sum(b - a for a, b in body["still_spans"]) == body["still_frames"]
    assert {p["frame_index"] for p in body["picks"] if p["stored"]} == \
        stored & {p["frame_index"] for p in body["picks"]}
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "repick-up").iterdir()) == before
    bad = c.get(f"/v1/analyses/{uploaded['id']}/preview", params={"top_k": 0})
    assert bad.status_code == 422
    assert c.get("/v1/analyses/nope/preview").json()["error"]["code"] == "not_found"


def test_repick_is_a_new_analysis_with_events_and_only_the_new_picks(api, uploaded):
    c, out = api["client"], api["out"]
    expected = c.get(f"/v1/analyses/{uploaded['id']}/preview", params={"top_k": 3}).json()
    r = c.post(f"/v1/analyses/{uploaded['id']}/repick", json={"top_k": 3})
    assert r.status_code == 202, r.text
    new = r.json()
    assert new["id"] != uploaded["id"] and new["scan_id"] == "repick-up" and new["created"]
    view = wait_for_status(c, new["id"])
    assert view["status"] == "succeeded", view.get("error")
    assert view["parameters"]["top_k"] == 3 and view["parameters"]["repick_of"] == uploaded["id"]
    assert view["parameters"]["motion_max"] == uploaded["parameters"]["motion_max"]
    picks = view["result"]["golden_frames"]
    assert [g["frame_index"] for g in picks] == [p["frame_index"] for p in expected["picks"]]
    assert view["result"]["selection"]["notes"] == expected["notes"]
    assert sorted(p.name for p in (out / "repick-up").glob("*.jpg")) == \
        sorted(g["key"].split("/")[1] for g in picks)
    events = _events(c, new["id"])  # a late subscriber: the state holds the picks' events
    assert [e for e, _ in events] == ["state", "done"]
    assert [g["frame_index"] for g in events[0][1]["golden_frames"]] == \
        [g["frame_index"] for g in picks]
    for g in picks:  # its frames are served through the new analysis
        assert c.get(f"/v1/analyses/{new['id']}/frames/{g['frame_index']}").status_code == 200
    # the upload was deleted when its analysis ended: more picks come from the candidate pool
    # the analysis stored beside its picks ...
    pool = _pool(out / "repick-up")
    more = wait_for_status(c, c.post(f"/v1/analyses/{new['id']}/repick",
                                     json={"top_k": 8}).json()["id"])
    assert more["status"] == "succeeded", more.get("error")
    assert {g["frame_index"] for g in more["result"]["golden_frames"]} <= pool
    # ... and picks outside it cannot be decoded: the result stays as it was
    files = sorted(p.name for p in (out / "repick-up").iterdir())
    far = wait_for_status(c, c.post(f"/v1/analyses/{more['id']}/repick", json=FAR).json()["id"])
    assert far["status"] == "failed"
    assert far["error"]["code"] == "repick_source_unavailable", far["error"]
    assert "previous result is unchanged" in far["error"]["message"]
    assert sorted(p.name for p in (out / "repick-up").iterdir()) == files
    # the first analysis's result was replaced by its re-pick: re-picking it again is refused
    stale = c.post(f"/v1/analyses/{uploaded['id']}/repick", json={"top_k": 2})
    assert stale.status_code == 410 and stale.json()["error"]["code"] == "result_superseded"


def test_repick_of_a_url_analysis_decodes_the_new_picks_from_the_url(api, videos, tmp_path):
    c = api["client"]
    path, _ = videos.get(seconds=3, size=(480, 270), seed=62)
    shutil.copy(path, tmp_path / "scan.mp4")
    server = RangeServer(tmp_path).start()
    try:
        first = wait_for_status(c, c.post("/v1/analyses", json={
            "video_url": server.url("ok", "scan.mp4"), "scan_id": "repick-url"}).json()["id"])
        assert first["status"] == "succeeded", first
        change = FAR
        pool = _pool(api["out"] / "repick-url")
        expected = c.get(f"/v1/analyses/{first['id']}/preview", params=change).json()
        server.reset()
        r = c.post(f"/v1/analyses/{first['id']}/repick", json=change)
        view = wait_for_status(c, r.json()["id"])
        fetched = server.stats("ok", "scan.mp4").requests
    finally:
        server.stop()
    assert view["status"] == "succeeded", view.get("error")
    picks = view["result"]["golden_frames"]
    assert [g["frame_index"] for g in picks] == [p["frame_index"] for p in expected["picks"]]
    old = {g["frame_index"]: g for g in first["result"]["golden_frames"]}
    new = [g for g in picks if g["frame_index"] not in pool]
    assert new and fetched > 0  # the picks outside the pool were decoded from the URL
    for g in picks:
        if g["frame_index"] in old:  # stored picks kept as they were
            assert g["glint"] == old[g["frame_index"]]["glint"]
        assert c.get(f"/v1/analyses/{view['id']}/frames/{g['frame_index']}").status_code == 200


def test_results_without_usable_scores_say_so(api, videos):
    c, out = api["client"], api["out"]
    path, _ = videos.get(seconds=3, size=(480, 270), seed=63)
    view = wait_for_status(c, upload_video(c, path, "repick-old").json()["id"])
    assert view["status"] == "succeeded"
    scores = out / "repick-old" / "scores.parquet"
    pq.write_table(pq.read_table(scores).drop_columns(["thumb"]), scores)  # as versions before
    for r in (c.get(f"/v1/analyses/{view['id']}/preview", params={"top_k": 2}),
              c.post(f"/v1/analyses/{view['id']}/repick", json={"top_k": 2})):
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "scores_not_stored"
        assert "framesift golden" in r.json()["error"]["message"]
    assert c.post(f"/v1/analyses/{view['id']}/repick", json={"top_k": 2, "x": 1}).status_code == 422
    scores.unlink()  # no scores at all
    for route in ("scores", "preview"):
        r = c.get(f"/v1/analyses/{view['id']}/{route}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "scores_not_stored", r.text


def test_scores_come_from_storage_where_there_is_no_local_copy(monkeypatch, tmp_path):
    from jobs.settings import Settings
    from jobs.stores.supabase import SupabaseStore
    from manifest_fixtures import golden_frame, sample_manifest
    from serve.errors import ApiError
    from serve.result_routes import stored_scores_table
    from supabase_standin import FakeSupabase

    fake = FakeSupabase("sb-repick-test-key").start()
    try:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "sb-repick-test-key")
        settings = Settings(out_dir=str(tmp_path / "ran-here"), store="supabase",
                            supabase_retries=1)
        store = SupabaseStore.from_settings(settings)
        table = pa.table({"frame_index": [3, 4], "picked": [True, False]})
        with store.open("sb-scan") as session:
            session.put_image(3, b"\xff\xd8jpeg", "jpg", "image/jpeg")
            session.put_scores(table)
            manifest = sample_manifest("sb-scan", [golden_frame(3, 1, "sb-scan")],
                                       store="supabase")
            session.commit(manifest)
        result = manifest.model_dump(mode="json")
        elsewhere = Settings(out_dir=str(tmp_path / "other-node"), store="supabase")
        got = stored_scores_table(elsewhere, lambda: store.client, "sb-scan", result)
        assert got.to_pydict() == table.to_pydict()
        del fake.objects[("golden-frames", "sb-scan/scores.parquet")]
        with pytest.raises(ApiError) as missing:
            stored_scores_table(elsewhere, lambda: store.client, "sb-scan", result)
        assert (missing.value.status, missing.value.code) == (404, "scores_not_stored")
    finally:
        fake.stop()


def test_openapi_documents_the_repick_routes(api):
    spec = api["client"].get("/openapi.json").json()
    preview_op = spec["paths"]["/v1/analyses/{analysis_id}/preview"]["get"]
    ref = preview_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/RepickPreview")
    assert {p["name"] for p in preview_op["parameters"]} >= {"top_k", "min_gap_s", "motion_max"}
    post = spec["paths"]["/v1/analyses/{analysis_id}/repick"]["post"]
    assert post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/AnalysisAccepted")
    assert {"404", "409", "410"} <= set(post["responses"])
