"""Workers' readers (jobs/sources/) against real servers on loopback: HTTP with and without
Range (and servers that lie, vanish, hang, change or redirect), an S3 API (moto server mode),
a GCS API (gcp-storage-emulator) and a Supabase Storage stand-in answering as the real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from actors.errors import SourceError, SourceGoneError, VideoError
from actors.records import FrameRange
from actors.video import probe
from actors.video_decode import iter_frames, read_frames
from jobs.sources import (InvalidSourceError, SourceOptions, check_input, display_name,
                          open_source, parse_object_url)
from jobs.sources.http import HttpSource
from jobs.sources.objects import filesystem
from source_servers import MotoS3, RangeServer, free_port
from supabase_standin import Bucket, FakeSupabase, StoredObject

LOOPBACK = SourceOptions(allowlist="127.0.0.1:*", request_timeout_s=5, deadline_s=60)


def _frames(source, frames: FrameRange, index) -> list[np.ndarray]:
    return [f.to_ndarray(format="bgr24") for _, f in iter_frames(source, frames, index)]


@pytest.fixture(scope="module")
def media(videos, tmp_path_factory):
    """A served folder: a 6 s video, a truncated copy, and a text file named .mp4."""
    root = tmp_path_factory.mktemp("served")
    path, _ = videos.get(seconds=6, size=(480, 270), seed=31, gop=30)
    shutil.copy(path, root / "v.mp4")
    data = path.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    (root / "notes.mp4").write_text("not a video at all")
    return root, probe(path)


@pytest.fixture(scope="module")
def http(media):
    server = RangeServer(media[0], after=1, hang_s=20).start()
    yield server
    server.stop()


# ------------------------------------------------------------------------------ HTTP ranges

def test_range_reads_fetch_about_what_a_chunk_decodes(http, media):
    root, local = media
    small_blocks = SourceOptions(allowlist="127.0.0.1:*", block_bytes=32768)  # a 0.4 MB file
    source = open_source(http.url("r", "v.mp4"), "v", small_blocks)
    assert isinstance(source, HttpSource)
    info = probe(source)
    assert info.index == local.index and info.path == "v"
    size = (root / "v.mp4").stat().st_size
    late = FrameRange(150, 180)
    http.reset()
    got = _frames(source, late, local.index)
    assert len(got) == 30
    for a, b in zip(got, _frames(str(root / "v.mp4"), late, local.index)):
        assert np.array_equal(a, b)
    stats = http.stats("r", "v.mp4")
    assert all(r.startswith("bytes=") for r in stats.ranges)
    assert stats.bytes < 0.6 * size, (stats.bytes, size)  # not the whole file
    assert stats.requests <= 8
    picks = read_frames(source, [10, 170, 90], local.index)
    assert sorted(picks) == [10, 90, 170]


def test_a_server_without_ranges_is_read_once_in_full(http, media):
    root, local = media
    http.reset()
    source = open_source(http.url("n", "v.mp4"), "v", LOOPBACK)
    assert probe(source).index == local.index
    stats = http.stats("n", "v.mp4")
    assert stats.requests == 1 and stats.bytes == (root / "v.mp4").stat().st_size


def test_redirects_are_followed_and_each_hop_checked(http, media):
    assert probe(open_source(http.url("redir", "v.mp4"), "v", LOOPBACK)).index == media[1].index
    with pytest.raises(SourceError) as info:
        probe(open_source(http.url("redir-meta", "v.mp4"), "v", LOOPBACK))
    assert info.value.code == "url_blocked" and "metadata" in str(info.value)


@pytest.mark.parametrize("mode, name, options, code", [
    ("r", "missing.mp4", LOOPBACK, "source_gone"),
    ("text", "v.mp4", LOOPBACK, "not_video_content"),
    ("r", "cut.mp4", LOOPBACK, "corrupt_video"),
    ("r", "notes.mp4", LOOPBACK, "not_a_video"),
    ("r", "v.mp4", SourceOptions(allowlist="127.0.0.1:*", max_bytes=100_000), "download_too_large"),
    ("r", "v.mp4", SourceOptions(), "url_blocked"),  # loopback without an allow-list entry
])
def test_bad_sources_fail_with_their_code(http, mode, name, options, code):
    with pytest.raises(VideoError) as info:
        probe(open_source(http.url(mode, name), name, options))
    assert info.value.code == code, str(info.value)
    assert str(info.value).startswith(name)


def test_private_and_metadata_addresses_are_refused_without_a_request():
    for url in ("http://10.255.255.1/v.mp4", "http://169.254.169.254/latest/v.mp4"):
        t = time.monotonic()
        with pytest.raises(SourceError) as info:
            probe(open_source(url, display_name(url), SourceOptions(allowlist="127.0.0.1:*")))
        assert info.value.code == "url_blocked" and time.monotonic() - t < 5


def test_a_source_opened_again_fetches_nothing_twice(http, media):
    """A whole video is opened to probe it, to decode it and to read its picks: the first
    request is sent once, no byte range is fetched twice, and a server without ranges is
    downloaded once for all three."""
    root, local = media
    size = (root / "v.mp4").stat().st_size
    for mode in ("r", "n"):
        http.reset()
        source = open_source(http.url(mode, "v.mp4"), "v", LOOPBACK)
        info = probe(source)
        assert len(_frames(source, FrameRange(0, info.frame_count), local.index)) == 180
        assert sorted(read_frames(source, [10, 170, 90], local.index)) == [10, 90, 170]
        stats = http.stats(mode, "v.mp4")
        if mode == "n":
            assert stats.requests == 1 and stats.bytes == size
        else:
            assert len(set(stats.ranges)) == len(stats.ranges), stats.ranges
            assert stats.bytes < 1.1 * size, (stats.bytes, size)  # three opens: ~2.2x before


def test_a_source_replaced_between_its_opens_is_gone_at_its_next_fetch(http, media):
    _, local = media
    http.after = _probe_requests(http, "v.mp4")
    source = open_source(http.url("change", "v.mp4"), "v", LOOPBACK)
    http.reset()
    probe(source)  # honest; then the object is replaced
    with pytest.raises(SourceGoneError) as info:
        _frames(source, FrameRange(150, 180), local.index)
    assert "changed during the run" in str(info.value)


def _probe_requests(http, name: str) -> int:
    http.reset()
    probe(open_source(http.url("r", name), name, LOOPBACK))
    return http.stats("r", name).requests


@pytest.mark.parametrize("mode, code, detail", [
    ("vanish", "source_gone", "HTTP 404"),
    ("change", "source_gone", "changed since it was probed"),
    ("shift", "range_protocol_violation", "Content-Range"),
    ("hang", "source_timeout", "no answer within"),
])
def test_a_source_that_fails_after_the_probe_fails_the_chunk_with_its_code(http, media, mode,
                                                                           code, detail):
    _, local = media
    http.after = _probe_requests(http, "v.mp4")
    options = SourceOptions(allowlist="127.0.0.1:*", request_timeout_s=1.5, deadline_s=60)
    prober = open_source(http.url(mode, "v.mp4"), "v", options)
    http.reset()
    probe(prober)  # the first ``after`` requests are honest
    # a worker scoring a chunk: a new source that knows what the probe saw
    source = open_source(http.url(mode, "v.mp4"), "v", options, prober.identity)
    t = time.monotonic()
    with pytest.raises(SourceError) as info:
        _frames(source, FrameRange(150, 180), local.index)
    assert info.value.code == code and detail in str(info.value), str(info.value)
    assert time.monotonic() - t < 10  # a hung source costs one request timeout, not more


def test_a_failed_read_raises_once_then_reads_as_the_end(http, media):
    http.after = 1
    http.reset()
    fh = open_source(http.url("vanish", "v.mp4"), "v", LOOPBACK).open()
    fh.seek(fh.size - 1000)  # past the first block
    with pytest.raises(SourceGoneError):
        fh.read(1000)
    assert fh.read(1000) == b"" and isinstance(fh.failure, SourceGoneError)
    assert http.stats("vanish", "v.mp4").requests == 2  # FFmpeg's retries cost nothing more
    fh.close()


def test_names_never_carry_credentials_or_query(http):
    url = http.url("r", "missing.mp4").replace("http://", "http://user:pw@") + "?token=secret"
    with pytest.raises(SourceError) as info:
        probe(open_source(url, display_name(url), LOOPBACK))
    text = str(info.value)
    assert "secret" not in text and "pw" not in text and "?***" in text
    assert "secret" not in repr(open_source(url, display_name(url), LOOPBACK))


# ------------------------------------------------------------------------------ input forms

@pytest.mark.parametrize("video, message", [
    ("ftp://host/v.mp4", "ftp:// is not accepted"),
    ("file:///etc/passwd", "file:// is not accepted"),
    ("s3://bucket/v.mp4?endpoint_override=169.254.169.254", "query string"),
    ("gs://bucket/v.mp4#frag", "query string or fragment"),
    ("s3://Bad_Bucket/v.mp4", "not a valid bucket name"),
    ("s3://bucket/", "object key is missing"),
    ("supabase://videos", "object key is missing"),
    ("https:///v.mp4", "no host"),
])
def test_malformed_inputs_are_refused_with_what_is_accepted(video, message):
    with pytest.raises(InvalidSourceError) as info:
        check_input(video)
    assert message in str(info.value) and info.value.code == "invalid_source"


def test_object_urls_are_parsed_here_and_keep_their_keys():
    assert parse_object_url("s3://my.bucket/a/b c.mp4") == ("s3", "my.bucket", "a/b c.mp4")
    assert parse_object_url("gs://b_1/x.mp4") == ("gs", "b_1", "x.mp4")
    assert check_input("/data/v.mp4") == "/data/v.mp4"


# ------------------------------------------------------------------------------ S3 (moto)

@pytest.fixture(scope="module")
def s3(media):
    server = MotoS3().start()
    saved = {k: os.environ.get(k) for k in MotoS3.KEYS}
    os.environ.update(MotoS3.KEYS)  # the workers' standard AWS credential chain
    client = server.client()
    client.create_bucket(Bucket="videos")
    client.upload_file(str(media[0] / "v.mp4"), "videos", "scans/v.mp4")
    yield server, SourceOptions(s3_endpoint=server.endpoint, s3_region="us-east-1",
                                request_timeout_s=10)
    server.stop()
    filesystem.cache_clear()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_s3_objects_read_with_ranges_identical_to_the_local_file(s3, media):
    server, options = s3
    root, local = media
    source = open_source("s3://videos/scans/v.mp4", "s3://videos/scans/v.mp4", options)
    assert probe(source).index == local.index
    fh = source.open()
    fh.seek(fh.size - 1000)
    assert len(fh.read(1000)) == 1000 and fh.stats()["bytes"] < fh.size
    fh.close()
    late = FrameRange(150, 180)
    for a, b in zip(_frames(source, late, local.index), _frames(str(root / "v.mp4"), late, local.index)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("url", ["s3://videos/scans/nope.mp4", "s3://no-such-bucket/v.mp4"])
def test_s3_missing_objects_are_gone(s3, url):
    with pytest.raises(SourceGoneError):
        probe(open_source(url, url, s3[1]))


def test_s3_endpoint_comes_from_settings_not_from_the_input(s3):
    # the same key without the configured endpoint goes to AWS (unreachable here): never to a
    # host named in the input, which parse_object_url refuses to accept in the first place
    with pytest.raises(InvalidSourceError):
        open_source("s3://videos/scans/v.mp4?endpoint_override=127.0.0.1:1", "x", s3[1])


# ------------------------------------------------------------------------------ GCS emulator

def test_gcs_objects_through_the_emulator(media, tmp_path):
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    if not exe.exists():
        pytest.skip("gcp-storage-emulator is not installed (pip install -e .[dev])")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(exe), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/storage/v1/b", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        httpx.post(f"{base}/storage/v1/b", params={"project": "test"}, json={"name": "scans"})
        httpx.post(f"{base}/upload/storage/v1/b/scans/o", params={"uploadType": "media", "name": "v.mp4"},
                   content=(media[0] / "v.mp4").read_bytes(), headers={"content-type": "video/mp4"})
        options = SourceOptions(gcs_endpoint=base, gcs_anonymous=True, request_timeout_s=10)
        assert probe(open_source("gs://scans/v.mp4", "gs://scans/v.mp4", options)).index == media[1].index
        with pytest.raises(SourceGoneError):
            probe(open_source("gs://scans/nope.mp4", "gs://scans/nope.mp4", options))
    finally:
        proc.terminate()
        proc.wait(10)
        filesystem.cache_clear()


# ------------------------------------------------------------------------------ Supabase Storage

SECRET = "service-role-key-for-tests"


def test_supabase_objects_are_signed_by_the_driver_and_read_by_url(media):
    from jobs.sources.supabase_inputs import sign_inputs

    fake = FakeSupabase(SECRET).start()
    try:
        fake.buckets["scans"] = Bucket("scans", allowed_mime_types=("video/mp4",))
        fake.objects[("scans", "a/v.mp4")] = StoredObject((media[0] / "v.mp4").read_bytes(),
                                                          "video/mp4")
        env = {"SUPABASE_URL": fake.url, "SUPABASE_SERVICE_ROLE_KEY": SECRET}
        signed = sign_inputs(["supabase://scans/a/v.mp4", "supabase://scans/missing.mp4"], 600,
                             environ=env)
        assert isinstance(signed["supabase://scans/missing.mp4"], SourceGoneError)
        url = signed["supabase://scans/a/v.mp4"]
        assert "token=" in url
        source = open_source(url, "supabase://scans/a/v.mp4", LOOPBACK)
        assert probe(source).index == media[1].index
        reads = fake.requests_to("GET", "/object/sign/scans/a/v.mp4")
        assert reads and all("apikey" not in r.headers and "authorization" not in r.headers
                             for r in reads)  # the workers never hold the key
        del fake.objects[("scans", "a/v.mp4")]  # deleted after signing: gone, by its body
        with pytest.raises(SourceGoneError) as info:  # (a worker's own open of the URL)
            probe(open_source(url, "supabase://scans/a/v.mp4", LOOPBACK))
        assert "statusCode 404" in str(info.value) and "token" not in str(info.value)
        bad = open_source(url.replace("token=tok-", "token=x"), "supabase://scans/a/v.mp4", LOOPBACK)
        with pytest.raises(SourceError) as info:
            probe(bad)
        assert info.value.code == "source_access_denied"
        unconfigured = sign_inputs(["supabase://scans/a/v.mp4"], 600, environ={})
        assert unconfigured["supabase://scans/a/v.mp4"].code == "supabase_config"
    finally:
        fake.stop()


def test_url_credentials_are_sent_as_basic_auth_to_their_origin_only(media):
    """``user:pass@`` in a video URL: HTTP Basic to that origin (issue 21: it was dropped, so a
    protected origin failed), never to another origin a redirect leads to."""
    root, local = media
    server = RangeServer(root).start()
    other = RangeServer(root).start()
    try:
        server.basic = other.basic = "Basic " + __import__("base64").b64encode(
            b"scan user:p@ss/word").decode()
        url = server.url("auth", "v.mp4").replace("http://", "http://scan%20user:p%40ss%2Fword@")
        assert probe(open_source(url, display_name(url), LOOPBACK)).frame_count \
            == local.frame_count
        assert set(server.stats("auth", "v.mp4").auth) == {server.basic}
        # without credentials the origin refuses
        with pytest.raises(SourceError) as refused:
            probe(open_source(server.url("auth", "v.mp4"), "v", LOOPBACK))
        assert refused.value.code == "source_access_denied"
        # a redirect to another origin: the credentials stay behind (and it is refused there)
        server.redirect_to = other.base
        moved = server.url("redir-to", "v.mp4").replace("http://", "http://scan%20user:p%40ss%2Fword@")
        probe(open_source(moved, display_name(moved), LOOPBACK))
        assert server.stats("redir-to", "v.mp4").auth == [server.basic]
        assert other.stats("r", "v.mp4").auth and set(other.stats("r", "v.mp4").auth) == {""}
        assert "p@ss" not in display_name(url) and "scan" not in display_name(url)
    finally:
        server.stop()
        other.stop()
