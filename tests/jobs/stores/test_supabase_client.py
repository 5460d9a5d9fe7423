"""The Supabase store against a loopback stand-in that answers as Storage and PostgREST do."""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from jobs.golden.params import GoldenParams
from jobs.settings import Settings
from jobs.stores.local import LocalStore
from jobs.stores.supabase import SupabaseStore
from jobs.stores.supabase_client import (RetryPolicy, SupabaseClient, SupabaseConfigError,
                                         SupabaseCredentials, SupabaseRequestError)
from jobs.stores.supabase_pending import PENDING_NAME
from manifest_fixtures import golden_frame, sample_manifest
from supabase_standin import FakeSupabase

SECRET = "sb-service-role-7f3a9c1e5d2b4a6f8e0c-do-not-leak"
JPEG = "image/jpeg"


@pytest.fixture
def fake():
    server = FakeSupabase(SECRET).start()
    yield server
    server.stop()


def make_store(tmp_path: Path, url: str, *, attempts: int = 4, signed: int | None = None,
               key: str = SECRET, bucket: str = "golden-frames") -> SupabaseStore:
    client = SupabaseClient(SupabaseCredentials(url, key), bucket=bucket,
                            retry=RetryPolicy(attempts, 0.001, 0.01), timeout_s=10)
    return SupabaseStore(LocalStore(tmp_path / "out"), client, signed_url_expiry_s=signed)


def write_result(store: SupabaseStore, scan_id: str = "scan-1",
                 images: dict[int, bytes] | None = None) -> dict[str, Any]:
    """What finish_video does: images, scores, then the manifest through commit. Returns the
    committed manifest as JSON data (with the section the store added)."""
    images = images if images is not None else {12: b"\xff\xd8jpeg-12", 40: b"\xff\xd8jpeg-40"}
    frames = []
    with store.open(scan_id) as session:
        for rank, (index, data) in enumerate(images.items(), start=1):
            key, uri = session.put_image(index, data, "jpg", JPEG)
            frames.append(replace(golden_frame(index, rank, scan_id), key=key, uri=uri))
        session.put_scores(pa.table({"frame_index": list(images)}))
        base = sample_manifest(scan_id, frames, item_type="shoe", store=store.name,
                               parameters=GoldenParams(top_k=len(images)).recorded())
        manifest = base.model_copy(update={"selection": base.selection.model_copy(
            update={"still_frames": 50})})
        session.commit(manifest)
    return manifest.model_dump(mode="json")


def on_disk(store: SupabaseStore, scan_id: str = "scan-1") -> dict[str, Any]:
    return json.loads((store.local.location(scan_id) / "manifest.json").read_text())


# happy path ------------------------------------------------------------------------------------

def test_happy_path_uploads_images_rows_and_a_succeeded_analysis(tmp_path, fake):
    store = make_store(tmp_path, fake.url)
    manifest = write_result(store)

    section = manifest["supabase"]
    assert section["status"] == "uploaded" and section["not_uploaded"] == []
    assert on_disk(store)["supabase"]["status"] == "uploaded"
    assert not (store.local.location("scan-1") / PENDING_NAME).exists()
    # the local copy is complete too
    assert (store.local.location("scan-1") / "12.jpg").read_bytes() == b"\xff\xd8jpeg-12"

    assert fake.objects[("golden-frames", "scan-1/12.jpg")].data == b"\xff\xd8jpeg-12"
    assert fake.objects[("golden-frames", "scan-1/40.jpg")].content_type == JPEG
    rows = sorted(fake.rows("golden_frames", scan_id="scan-1"), key=lambda r: r["frame_index"])
    assert [r["frame_index"] for r in rows] == [12, 40]
    assert rows[0]["storage_key"] == "scan-1/12.jpg" and rows[0]["storage_bucket"] == "golden-frames"
    assert rows[0]["glint_blob_count"] == 2 and rows[0]["width"] == 64
    assert rows[0]["timestamp_s"] == pytest.approx(12 / 30)
    assert {r["analysis_id"] for r in rows} == {section["analysis_id"]}
    (analysis,) = fake.rows("analyses")
    assert analysis["status"] == "succeeded" and analysis["id"] == section["analysis_id"]
    assert analysis["golden_count"] == 2 and analysis["frame_count"] == 90
    assert analysis["still_frames"] == 50 and analysis["parameters"]["top_k"] == 2

    # the requests carried what the real services need
    for rec in fake.requests:
        assert rec.headers["apikey"] == SECRET
        assert rec.headers["authorization"] == f"Bearer {SECRET}"
    uploads = fake.requests_to("POST", "/storage/v1/object/golden-frames/")
    assert len(uploads) == 3 and all(r.headers["x-upsert"] == "true" for r in uploads)
    assert all(r.headers["content-type"].startswith("multipart/form-data") for r in uploads)
    upserts = fake.requests_to("POST", "/rest/v1/golden_frames")
    assert upserts[0].query["on_conflict"] == ["tenant,scan_id,frame_index"]
    assert "resolution=merge-duplicates" in upserts[0].headers["prefer"]
    assert upserts[0].headers["content-type"] == "application/json"
    # the analysis row is marked succeeded last, after every image and frame row
    order = [(r.method, r.path) for r in fake.requests]
    last_analysis = max(i for i, (m, p) in enumerate(order) if p == "/rest/v1/analyses")
    assert last_analysis == len(order) - 1
    assert json.loads(fake.requests[-1].body)[0]["status"] == "succeeded"


def test_a_rerun_of_the_same_scan_is_idempotent_and_drops_frames_no_longer_golden(tmp_path, fake):
    store = make_store(tmp_path, fake.url)
    write_result(store, images={12: b"a", 40: b"b"})
    write_result(store, images={12: b"a", 40: b"b"})
    assert len(fake.rows("golden_frames")) == 2
    second = write_result(store, images={12: b"a-new", 77: b"c"})
    assert second["supabase"]["status"] == "uploaded"
    assert fake.objects[("golden-frames", "scan-1/12.jpg")].data == b"a-new"  # upserted
    assert ("golden-frames", "scan-1/40.jpg") not in fake.objects  # no row names it any more
    rows = fake.rows("golden_frames", scan_id="scan-1")
    assert sorted(r["frame_index"] for r in rows) == [12, 77]
    assert {r["analysis_id"] for r in rows} == {second["supabase"]["analysis_id"]}
    assert [a["status"] for a in fake.rows("analyses")] == ["succeeded"] * 3


def test_signed_urls_when_asked(tmp_path, fake):
    store = make_store(tmp_path, fake.url, signed=120)
    section = write_result(store)["supabase"]
    assert set(section["signed_urls"]) == {"scan-1/12.jpg", "scan-1/40.jpg"}
    assert section["signed_urls"]["scan-1/12.jpg"].startswith(
        f"{fake.url}/storage/v1/object/sign/golden-frames/scan-1/12.jpg?token=")
    (sign,) = fake.requests_to("POST", "/storage/v1/object/sign/golden-frames")
    assert json.loads(sign.body)["expiresIn"] == "120"
    assert "signed_urls" not in on_disk(store)["supabase"]  # they expire: not stored


# upserts, as the real Storage answers them ----------------------------------------------------

def test_an_upsert_over_an_existing_object_always_writes(tmp_path, fake):
    """With x-upsert: true the real Storage writes (200) and never answers "duplicate": there is
    no conflict to resolve and nothing is downloaded to compare."""
    client = make_store(tmp_path, fake.url).client
    client.upload_object("scan-9/1.jpg", b"theirs", JPEG)
    client.upload_object("scan-9/1.jpg", b"ours", JPEG)
    posts = fake.requests_to("POST", "/storage/v1/object/golden-frames/scan-9/1.jpg")
    assert [r.status for r in posts] == [200, 200]
    assert fake.objects[("golden-frames", "scan-9/1.jpg")].data == b"ours"
    assert not fake.requests_to("GET", "/storage/v1/object/")
    # a plain upload (no x-upsert) of an existing key is what Storage calls a duplicate
    plain = httpx.post(f"{fake.url}/storage/v1/object/golden-frames/scan-9/1.jpg", content=b"x",
                       headers={"apikey": SECRET, "authorization": f"Bearer {SECRET}",
                                "content-type": JPEG})
    assert plain.status_code == 400 and plain.json()["statusCode"] == "409"


# transient and permanent failures ---------------------------------------------------------------

@pytest.mark.filterwarnings("error::DeprecationWarning")  # the retry policy uses tenacity's current API
@pytest.mark.parametrize("status", [503, 500, 429])
def test_transient_errors_are_retried_then_succeed(tmp_path, fake, status):
    store = make_store(tmp_path, fake.url, attempts=4)
    fake.fail_next(2, status, method="POST", path_contains="/object/golden-frames/scan-1/12.jpg")
    fake.fail_next(1, status, method="POST", path_contains="/rest/v1/golden_frames")
    manifest = write_result(store)
    assert manifest["supabase"]["status"] == "uploaded"
    assert len(fake.requests_to("POST", "/object/golden-frames/scan-1/12.jpg")) == 3
    assert len(fake.requests_to("POST", "/rest/v1/golden_frames")) == 2
    assert fake.rows("analyses")[0]["status"] == "succeeded"


def test_a_dropped_connection_is_retried(tmp_path, fake):
    store = make_store(tmp_path, fake.url)
    fake.drop_next(1, method="POST", path_contains="/object/golden-frames/")
    assert write_result(store)["supabase"]["status"] == "uploaded"
    assert len(fake.objects) == 3  # the images and the scores


def test_other_4xx_are_not_retried_and_the_rest_still_goes_up(tmp_path, fake):
    fake.buckets["golden-frames"].file_size_limit = 10
    store = make_store(tmp_path, fake.url)
    manifest = write_result(store, images={12: b"small", 40: b"far too large for the bucket"})
    section = manifest["supabase"]
    assert section["status"] == "pending"
    assert section["not_uploaded"] == ["scan-1/40.jpg", "scan-1/scores.parquet",
                                       "golden_frames rows", "analyses row"]
    assert "413" in section["error"] and "file size limit" in section["error"]
    (big,) = fake.requests_to("POST", "/object/golden-frames/scan-1/40.jpg")  # no retry
    assert big.status == 400 and json.loads(big.response)["statusCode"] == "413"
    assert ("golden-frames", "scan-1/12.jpg") in fake.objects
    assert fake.rows("golden_frames") == []  # rows only once every image is in
    assert fake.rows("analyses")[0]["status"] == "running"  # never succeeded while incomplete


def test_permanent_outage_keeps_the_result_locally_then_sync_uploads_it(tmp_path, fake):
    store = make_store(tmp_path, fake.url, attempts=3)
    fake.outage = 503
    manifest = write_result(store)

    section = manifest["supabase"]
    assert section["status"] == "pending" and section["retry"] == "framesift sync --scan-id scan-1"
    assert section["not_uploaded"] == ["scan-1/12.jpg", "scan-1/40.jpg", "scan-1/scores.parquet",
                                       "golden_frames rows", "analyses row"]
    assert "503" in section["error"]
    assert store.manifest("scan-1").supabase.status == "pending"  # the local result is there
    pending = json.loads((store.local.location("scan-1") / PENDING_NAME).read_text())
    assert pending["uploaded"] == [] and pending["attempts"] == 1
    # an unreachable Supabase stops the upload at once: one request, retried, not one per image
    assert len(fake.requests) == 3
    assert store.pending_scan_ids() == ["scan-1"]

    fake.outage = None
    (report,) = store.sync()
    assert report.complete and report.scan_id == "scan-1"
    assert len(fake.objects) == 3 and len(fake.rows("golden_frames")) == 2
    assert fake.rows("analyses")[0]["status"] == "succeeded"
    assert not (store.local.location("scan-1") / PENDING_NAME).exists()
    assert on_disk(store)["supabase"]["status"] == "uploaded"
    assert on_disk(store)["supabase"]["analysis_id"] == section["analysis_id"]

    before = len(fake.requests)
    assert store.sync() == [] and store.sync("scan-1") == []  # twice is safe
    assert len(fake.requests) == before


def test_sync_resumes_where_the_last_attempt_stopped(tmp_path, fake):
    store = make_store(tmp_path, fake.url, attempts=2)
    fake.outage = None
    fake.fail_next(2, 503, method="POST", path_contains="/scan-1/40.jpg")  # exhausts 2 attempts
    section = write_result(store)["supabase"]
    assert section["not_uploaded"] == ["scan-1/40.jpg", "scan-1/scores.parquet",
                                       "golden_frames rows", "analyses row"]
    (report,) = store.sync("scan-1")
    assert report.complete and report.uploaded == ["scan-1/40.jpg", "scan-1/scores.parquet"]
    assert len(fake.requests_to("POST", "/scan-1/12.jpg")) == 1  # not uploaded again


def test_unreachable_supabase_is_a_pending_upload(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    store = make_store(tmp_path, f"http://127.0.0.1:{port}", attempts=2)
    section = write_result(store)["supabase"]
    assert section["status"] == "pending" and "unreachable" in section["error"]
    assert store.pending_scan_ids() == ["scan-1"]


def test_a_wrong_key_is_not_retried_and_says_which_variable_to_check(tmp_path, fake):
    client = make_store(tmp_path, fake.url, key="not-the-key").client
    with pytest.raises(SupabaseRequestError, match="SUPABASE_SERVICE_ROLE_KEY") as info:
        client.upload_object("scan-1/1.jpg", b"x", JPEG)
    assert info.value.status == 401 and not info.value.transient
    assert len(fake.requests) == 1


def test_an_expired_key_refused_by_storage_says_which_variable_to_check(tmp_path):
    """Storage answers a bad or expired JWT with HTTP 400 and statusCode "403" AccessDenied
    (not 401): the message still says which variable to check, and it is not retried."""
    expired = "sb-expired-service-role-key"
    server = FakeSupabase(SECRET, expired_keys=(expired,)).start()
    try:
        client = make_store(tmp_path, server.url, key=expired).client
        with pytest.raises(SupabaseRequestError, match="SUPABASE_SERVICE_ROLE_KEY") as info:
            client.upload_object("scan-1/1.jpg", b"x", JPEG)
        assert info.value.status == 400 and not info.value.transient
        (req,) = server.requests
        assert json.loads(req.response)["code"] == "AccessDenied"
        with pytest.raises(SupabaseRequestError, match="SUPABASE_SERVICE_ROLE_KEY"):
            client.upsert_rows("analyses", [{"id": "x"}], "id")
    finally:
        server.stop()


def test_deleting_an_analysis_cascades_to_its_golden_frames(tmp_path, fake):
    """As the migration's foreign key (on delete cascade) does on the real database."""
    store = make_store(tmp_path, fake.url)
    section = write_result(store)["supabase"]
    assert len(fake.rows("golden_frames", analysis_id=section["analysis_id"])) == 2
    store.client._client.table("analyses").delete().eq("id", section["analysis_id"]).execute()
    assert fake.rows("analyses") == [] and fake.rows("golden_frames") == []


def test_a_rerun_with_fewer_picks_deletes_the_images_no_row_points_at(tmp_path, fake):
    store = make_store(tmp_path, fake.url)
    write_result(store, images={i: b"\xff\xd8first-%d" % i for i in (3, 12, 40, 55, 90)})
    assert len(fake.objects) == 6
    second = write_result(store, images={12: b"\xff\xd8second-12", 90: b"\xff\xd8second-90"})
    assert second["supabase"]["status"] == "uploaded", second["supabase"]
    rows = fake.rows("golden_frames", scan_id="scan-1")
    assert sorted(r["storage_key"] for r in rows) == ["scan-1/12.jpg", "scan-1/90.jpg"]
    assert sorted(k for _, k in fake.objects) == ["scan-1/12.jpg", "scan-1/90.jpg", "scan-1/scores.parquet"]
    assert fake.objects[("golden-frames", "scan-1/12.jpg")].data == b"\xff\xd8second-12"


def test_sync_to_another_bucket_uploads_everything_again(tmp_path, fake):
    """A pending upload whose bucket refused some images, synced with another bucket: every
    image is in the new bucket, the rows name it, and the old bucket keeps nothing of it."""
    fake.buckets["frames-2"] = type(fake.buckets["golden-frames"])("frames-2")
    fake.buckets["golden-frames"].file_size_limit = 12
    store = make_store(tmp_path, fake.url)
    images = {12: b"\xff\xd8small", 40: b"\xff\xd8far too large for it"}
    section = write_result(store, images=images)["supabase"]
    assert section["not_uploaded"] == ["scan-1/40.jpg", "scan-1/scores.parquet",
                                       "golden_frames rows", "analyses row"]
    assert ("golden-frames", "scan-1/12.jpg") in fake.objects

    moved = make_store(tmp_path, fake.url, bucket="frames-2")
    (report,) = moved.sync()
    assert report.complete, report.error
    assert on_disk(moved)["supabase"]["bucket"] == "frames-2"
    rows = fake.rows("golden_frames", scan_id="scan-1")
    assert {r["storage_bucket"] for r in rows} == {"frames-2"} and len(rows) == 2
    for row in rows:  # every row's object can be downloaded from the bucket it names
        key = row["storage_key"]
        assert moved.client.download_object(key) == images[int(key.split("/")[1][:-4])]
    assert not [k for (b, k) in fake.objects if b == "golden-frames"]


def test_signed_urls_report_the_paths_storage_refused(tmp_path, fake):
    store = make_store(tmp_path, fake.url, signed=60)
    write_result(store)
    signed = store.client.signed_urls(["scan-1/12.jpg", "scan-1/99.jpg"], 60)
    assert set(signed.urls) == {"scan-1/12.jpg"}
    assert signed.refused == {"scan-1/99.jpg": "Either the object does not exist or you do not "
                                               "have access to it"}
    del fake.objects[("golden-frames", "scan-1/40.jpg")]  # gone from the bucket meanwhile
    from jobs.stores.supabase_pending import UploadReport

    report = UploadReport("scan-1", "a-1", "golden-frames")
    store.add_signed_urls(report)
    section = report.section()
    assert set(section.signed_urls) == {"scan-1/12.jpg"}
    assert set(section.signed_url_errors) == {"scan-1/40.jpg"}
    assert "signed_url_errors" not in on_disk(store)["supabase"]


def test_every_image_refused_is_said_once_with_the_count(tmp_path, fake, caplog):
    fake.buckets["golden-frames"].file_size_limit = 1
    store = make_store(tmp_path, fake.url)
    section = write_result(store, images={i: b"\xff\xd8image-%d" % i for i in range(6)})["supabase"]
    assert section["status"] == "pending"
    error = section["error"]
    assert error.count("EntityTooLarge") == 1, error
    assert "7 objects" in error and "and 4 more" in error
    assert on_disk(store)["supabase"]["error"] == error
    warnings = [r for r in caplog.records if "incomplete" in r.getMessage()]
    assert len(warnings) == 1


def test_a_missing_table_says_to_apply_the_migration(tmp_path, fake):
    client = make_store(tmp_path, fake.url).client
    with pytest.raises(SupabaseRequestError, match="supabase db push"):
        client.upsert_rows("golden_frame", [{"id": "x"}], "id")


def test_a_missing_bucket_says_how_to_create_it(tmp_path, fake):
    client = make_store(tmp_path, fake.url, bucket="nope").client
    with pytest.raises(SupabaseRequestError, match="FRAMESIFT_SUPABASE_BUCKET"):
        client.upload_object("scan-1/1.jpg", b"x", JPEG)


def test_a_failed_analysis_is_recorded_with_its_error(tmp_path, fake):
    store = make_store(tmp_path, fake.url)
    with pytest.raises(RuntimeError):
        with store.open("scan-1") as session:
            session.put_image(1, b"x", "jpg", JPEG)
            raise RuntimeError("extraction failed")
    (row,) = fake.rows("analyses")
    assert row["status"] == "failed" and "extraction failed" in row["error"]
    assert store.manifest("scan-1") is None and fake.objects == {}


# configuration and secrets ---------------------------------------------------------------------

def test_configuration_comes_from_the_environment(tmp_path):
    settings = Settings(store="supabase", out_dir=str(tmp_path))
    with pytest.raises(SupabaseConfigError, match="SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"):
        SupabaseStore.from_settings(settings, environ={})
    with pytest.raises(SupabaseConfigError, match="http") as info:
        SupabaseStore.from_settings(settings, environ={"SUPABASE_URL": "ftp://x",
                                                       "SUPABASE_SERVICE_ROLE_KEY": SECRET})
    assert SECRET not in str(info.value)
    store = SupabaseStore.from_settings(
        Settings(store="supabase", out_dir=str(tmp_path), supabase_bucket="frames-2",
                 supabase_retries=7),
        environ={"SUPABASE_URL": "https://example.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": SECRET})
    assert store.bucket == "frames-2" and store.client.retry.attempts == 7
    assert SECRET not in repr(store) and SECRET not in repr(store.client)
    assert SECRET not in repr(SupabaseCredentials("https://x", SECRET))


def test_the_secret_is_never_logged_stored_or_shown(tmp_path, fake, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    store = make_store(tmp_path, fake.url, attempts=2, signed=60)
    fake.fail_next(1, 503)
    write_result(store, scan_id="scan-ok")
    fake.outage = 500
    write_result(store, scan_id="scan-1")
    fake.outage = None
    fake.buckets["golden-frames"].file_size_limit = 1
    write_result(store, scan_id="scan-2")
    errors = []
    for client in (store.client, make_store(tmp_path, fake.url, key=SECRET + "x").client):
        try:
            client.upload_object("scan-3/1.jpg", b"xx", JPEG)
        except SupabaseRequestError as exc:
            errors.append(f"{exc} {exc!r}")
    with pytest.raises(SupabaseConfigError) as info:
        SupabaseStore.from_settings(Settings(store="supabase"),
                                    environ={"SUPABASE_URL": "nope", "SUPABASE_SERVICE_ROLE_KEY": SECRET})
    errors.append(str(info.value))

    # and through the CLI: sync prints what is pending
    monkeypatch.setenv("SUPABASE_URL", fake.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SECRET)
    from jobs.cli.commands import app

    cli = CliRunner().invoke(app, ["sync", "--out", str(tmp_path / "out")])
    assert cli.exit_code == 1, cli.output  # scan-2 still does not fit the bucket

    assert len(errors) == 3 and "warning" in caplog.text.lower()
    assert SECRET not in caplog.text
    assert all(SECRET not in e for e in errors)
    assert SECRET not in cli.output
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_cli_golden_refuses_supabase_without_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    from jobs.cli.commands import app

    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    result = CliRunner().invoke(app, ["golden", str(video), "--store", "supabase",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "SUPABASE_URL" in result.output


def test_cli_sync_uploads_pending_results(tmp_path, fake, monkeypatch):
    store = make_store(tmp_path, fake.url, attempts=1)
    fake.outage = 503
    write_result(store)
    fake.outage = None
    monkeypatch.setenv("SUPABASE_URL", fake.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SECRET)
    from jobs.cli.commands import app

    runner = CliRunner()
    first = runner.invoke(app, ["sync", "--scan-id", "scan-1", "--out", str(tmp_path / "out")])
    assert first.exit_code == 0, first.output
    assert "uploaded to bucket golden-frames" in first.output
    second = runner.invoke(app, ["sync", "--out", str(tmp_path / "out")])
    assert second.exit_code == 0 and "nothing pending" in second.output
    assert fake.rows("analyses")[0]["status"] == "succeeded"


def test_the_golden_job_uploads_its_picks(tmp_path, fake, videos):
    from jobs.golden.job import GoldenParams, VideoJob, run_golden

    path, _ = videos.get(seconds=3, size=(320, 180), seed=4)
    store = make_store(tmp_path, fake.url)
    (result,) = run_golden([VideoJob(str(path), "job-scan", "shoe")], GoldenParams(top_k=3),
                           store, distributed=False)
    assert result.ok, result.error
    m = result.manifest.model_dump(mode="json")
    assert m["supabase"]["status"] == "uploaded"
    picks = m["golden_frames"]
    assert {k for (_, k) in fake.objects} == {g["key"] for g in picks} | {
        "job-scan/scores.parquet", "job-scan/candidates.parquet"}
    local = store.local.location("job-scan")
    for g in picks:
        stored = fake.objects[("golden-frames", g["key"])]
        assert stored.data == (local / g["key"].split("/", 1)[1]).read_bytes()
        assert stored.content_type == JPEG
    rows = {r["frame_index"]: r for r in fake.rows("golden_frames", scan_id="job-scan")}
    assert sorted(rows) == sorted(g["frame_index"] for g in picks)
    for g in picks:
        row = rows[g["frame_index"]]
        assert (row["rank"], row["sharpness"], row["motion"], row["width"], row["height"]) == \
            (g["rank"], g["sharpness"], g["motion"], g["width"], g["height"])
        assert row["glint_share"] == g["glint"]["share"]
    (analysis,) = fake.rows("analyses")
    assert analysis["status"] == "succeeded" and analysis["item_type"] == "shoe"
    assert analysis["golden_count"] == len(picks)
    assert analysis["timings"] == m["timings_s"]


def test_the_store_setting_picks_the_store(tmp_path, monkeypatch):
    from jobs.stores import make_store as pick

    assert isinstance(pick(Settings(out_dir=str(tmp_path))), LocalStore)
    monkeypatch.setenv("SUPABASE_URL", "https://example.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SECRET)
    monkeypatch.setenv("FRAMESIFT_STORE", "supabase")
    store = pick(Settings(out_dir=str(tmp_path)))
    assert isinstance(store, SupabaseStore) and store.name == "supabase"
    assert store.local.root == tmp_path


def test_two_tenants_with_one_scan_id_keep_their_own_objects_and_rows(tmp_path, fake):
    """Tenant beta storing a scan id tenant acme uses never overwrites or deletes acme's
    objects or rows (keys under ``_tenants/<tenant>/``, rows keyed by tenant)."""
    def tenant_store(tenant: str) -> SupabaseStore:
        plain = make_store(tmp_path, fake.url)
        return SupabaseStore(LocalStore(tmp_path / "out", tenant), plain.client)

    acme, beta = tenant_store("acme"), tenant_store("beta")
    write_result(acme, images={12: b"\xff\xd8acme-12", 40: b"\xff\xd8acme-40"})
    second = write_result(beta, images={12: b"\xff\xd8beta-12"})
    assert second["supabase"]["status"] == "uploaded", second["supabase"]
    assert sorted(k for _, k in fake.objects) == [  # each tenant's images and scores
        "_tenants/acme/scan-1/12.jpg", "_tenants/acme/scan-1/40.jpg",
        "_tenants/acme/scan-1/scores.parquet", "_tenants/beta/scan-1/12.jpg",
        "_tenants/beta/scan-1/scores.parquet"]
    assert fake.objects[("golden-frames", "_tenants/acme/scan-1/12.jpg")].data == b"\xff\xd8acme-12"
    rows = {(r["tenant"], r["frame_index"]): r for r in fake.rows("golden_frames", scan_id="scan-1")}
    assert sorted(rows) == [("acme", 12), ("acme", 40), ("beta", 12)]
    assert rows[("acme", 12)]["storage_key"] == "_tenants/acme/scan-1/12.jpg"
    assert {r["tenant"] for r in fake.rows("analyses", scan_id="scan-1")} == {"acme", "beta"}
    assert on_disk(acme)["golden_frames"][0]["key"] == "_tenants/acme/scan-1/12.jpg"
