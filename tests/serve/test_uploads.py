"""Uploaded videos in object storage every node reads: S3 (moto's server on loopback, through
pyarrow.fs) and Supabase Storage (the loopback stand-in that answers as Storage does), with the
same life as in a folder: published, claimed by a record, swept when nobody refers to it, read
by a runner on any node; and the choice of place from the settings."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from jobs.settings import Settings
from jobs.sources import SourceOptions, display_name, open_source, scheme_of
from jobs.sources.supabase_inputs import sign_inputs
from serve.settings import ServiceSettings
from serve.analyses.uploads import (INCOMING_PREFIX, LocalUploads, ObjectUploads,
                                    UploadGoneError, open_uploads)
from source_servers import MotoS3
from supabase_standin import Bucket, FakeSupabase

SECRET = "sb-service-role-uploads-4c2e9a-do-not-leak"
VIDEO = os.urandom(3 * 2**20 + 12345)  # more than one S3 multipart part and one read chunk


@pytest.fixture(scope="module")
def s3():
    server = MotoS3().start()
    server.client().create_bucket(Bucket="scans")
    yield server
    server.stop()


@pytest.fixture
def place(request, s3, monkeypatch):
    """(uploads URL, settings) of each kind of object storage, with credentials in the env."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in MotoS3.KEYS.items():
        monkeypatch.setenv(key, value)
    if request.param == "s3":
        yield "s3://scans/uploads", Settings(s3_endpoint=s3.endpoint, s3_region="us-east-1")
        return
    fake = FakeSupabase(SECRET, buckets=("golden-frames",)).start()
    # as the migration creates it: private, any octet stream up to 512 MiB
    fake.buckets["framesift-uploads"] = Bucket("framesift-uploads", 536870912,
                                               ("application/octet-stream",))
    monkeypatch.setenv("SUPABASE_URL", fake.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SECRET)
    yield "supabase://framesift-uploads", Settings(store="supabase")
    fake.stop()


def _read_as_a_runner(ref: str, settings: Settings) -> bytes:
    """The upload's bytes as an analysis reads them on any node: in place, through the batch
    pipeline's readers (a supabase:// object signed first, as the driver does)."""
    url = ref
    if scheme_of(ref) == "supabase":
        url = sign_inputs([ref], 60)[ref]
        assert isinstance(url, str), url
    options = replace(SourceOptions.from_settings(settings), allowlist="127.0.0.1:*")
    source = open_source(url, display_name(ref), options)
    out = bytearray()
    with source.open() as fh:
        while block := fh.read(1 << 20):
            out += block
    return bytes(out)


def _publish(uploads, data: bytes = VIDEO) -> str:
    received = uploads.receive_path()
    received.write_bytes(data)
    ref = uploads.publish(received)
    assert not received.exists()  # the node-local copy is gone once published
    return ref


@pytest.mark.parametrize("place", ["s3", "supabase"], indirect=True)
def test_an_upload_is_published_claimed_read_on_another_node_and_swept(place, tmp_path):
    url, settings = place
    uploads = ObjectUploads(url, settings, spool_dir=str(tmp_path / "spool"))
    ref = _publish(uploads)
    assert ref.startswith(f"{url}/{INCOMING_PREFIX}") and ref.endswith(".upload")
    assert uploads.claim(ref, "a1") == ref  # recorded as it is: no copy of the video
    # a runner elsewhere knows only the reference and the settings
    assert _read_as_a_runner(ref, settings) == VIDEO

    orphan = _publish(uploads, b"left by a client that went away")
    uploads.abandon(orphan)  # the outcome was unknown: left for the sweep, not deleted now
    assert uploads.sweep([ref], grace_s=3600) == []  # too fresh to be anybody's orphan
    assert uploads.sweep([ref], grace_s=0) == [orphan.rpartition("/")[2]]
    with pytest.raises(UploadGoneError):
        uploads.claim(orphan, "a2")
    assert _read_as_a_runner(ref, settings) == VIDEO

    for foreign in (f"{url}/elsewhere/{INCOMING_PREFIX}x.upload", "s3://other/incoming-x.upload",
                    f"{url}/a1.upload"):
        with pytest.raises(UploadGoneError):
            uploads.claim(foreign, "a3")
    uploads.remove("s3://other/uploads/x.upload")  # another place's object is never touched
    uploads.remove(ref)
    with pytest.raises(UploadGoneError):
        uploads.claim(ref, "a1")
    assert uploads.sweep([], grace_s=0) == []


def test_supabase_uploads_are_octet_streams_and_a_stale_upload_is_swept(tmp_path, monkeypatch):
    fake = FakeSupabase(SECRET, buckets=("golden-frames",)).start()
    try:
        fake.buckets["framesift-uploads"] = Bucket("framesift-uploads", 536870912,
                                                   ("application/octet-stream",))
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SECRET)
        uploads = open_uploads(ServiceSettings(store="supabase", state_dir=str(tmp_path)))
        assert isinstance(uploads, ObjectUploads)
        assert uploads.location == "supabase://framesift-uploads"
        kept, stale = _publish(uploads, b"kept"), _publish(uploads, b"stale")
        key = stale.split("://", 1)[1].split("/", 1)[1]
        fake.objects[("framesift-uploads", key)].created = time.time() - 3600
        assert uploads.sweep([], grace_s=600) == [key]
        assert ("framesift-uploads", kept.rpartition("/")[2]) in fake.objects
        [post] = [r for r in fake.requests_to("POST", "/storage/v1/object/framesift-uploads/")
                  if kept.rpartition("/")[2] in r.path]
        assert post.headers["content-type"].startswith("multipart/form-data")
        assert b"application/octet-stream" in post.body and post.headers.get("x-upsert") != "true"
        assert SECRET not in repr(uploads.bucket.client)
    finally:
        fake.stop()


def test_the_place_of_uploads_follows_the_settings(tmp_path):
    local = open_uploads(ServiceSettings(state_dir=str(tmp_path)))
    assert isinstance(local, LocalUploads) and local.root == (tmp_path / "uploads").resolve()
    ref = local.publish(local.receive_path())
    assert ref.startswith(str(tmp_path / "uploads" / INCOMING_PREFIX))
    s3 = open_uploads(ServiceSettings(state_dir=str(tmp_path), uploads_url="s3://scans/up/",
                                      s3_endpoint="http://127.0.0.1:9", s3_region="us-east-1"))
    assert isinstance(s3, ObjectUploads) and s3.location == "s3://scans/up"
    folder = open_uploads(ServiceSettings(uploads_url=str(tmp_path / "shared")))
    assert isinstance(folder, LocalUploads) and (tmp_path / "shared").is_dir()
    for bad in ("gs://scans/up", "s3://scans/up?endpoint_override=evil.example.com"):
        with pytest.raises(ValueError):
            open_uploads(ServiceSettings(state_dir=str(tmp_path), uploads_url=bad))


def test_object_locations_are_parsed_by_the_workers_parser():
    """jobs.sources' parser, bucket-name rules included; the key is a prefix, optional."""
    from serve.analyses.uploads import parse_object_url

    assert parse_object_url("s3://scans") == ("s3", "scans", "")
    assert parse_object_url("s3://scans/up/") == ("s3", "scans", "up")
    assert parse_object_url("supabase://framesift-uploads/a/b") == \
        ("supabase", "framesift-uploads", "a/b")
    for bad in ("s3://Scans/up", "s3://a/up", "s3://-scans/up", "s3:///up", "s3://sc ans/up",
                "supabase://bad bucket/x", "supabase://b/x#frag", "s3://scans/../up",
                "gs://scans/up", "http://scans/up", "scans/up"):
        with pytest.raises(ValueError):
            parse_object_url(bad)
