"""The local store (jobs/stores/local.py): nothing visible until commit, nothing left by a
failure; the scan-id and key rules (jobs/stores/base.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from actors.errors import InvalidParameterError
from jobs.stores.base import object_key, scan_id_from_path, validate_scan_id
from jobs.stores.local import LocalStore
from manifest_fixtures import sample_manifest


def test_commit_makes_the_result_visible_with_the_manifest_last(tmp_path):
    store = LocalStore(tmp_path)
    with store.open("scan-1") as s:
        key, uri = s.put_image(42, b"jpeg-bytes", "jpg", "image/jpeg")
        assert key == "scan-1/42.jpg"
        assert store.manifest("scan-1") is None  # not visible yet
        s.put_scores(pa.table({"frame_index": [1, 2]}))
        s.commit(sample_manifest("scan-1"))
    assert store.manifest("scan-1") == sample_manifest("scan-1")
    assert (tmp_path / "scan-1" / "42.jpg").read_bytes() == b"jpeg-bytes"
    assert uri.endswith("/scan-1/42.jpg")
    assert not (tmp_path / ".staging").exists()


def test_a_failure_inside_the_session_leaves_the_previous_result(tmp_path):
    store = LocalStore(tmp_path)
    with store.open("scan") as s:
        s.put_image(1, b"old", "jpg", "image/jpeg")
        s.commit(sample_manifest("scan", item_type="v1"))
    with pytest.raises(RuntimeError):
        with store.open("scan") as s:
            s.put_image(1, b"new-partial", "jpg", "image/jpeg")
            raise RuntimeError("extraction failed")
    assert store.manifest("scan").item_type == "v1"
    assert (tmp_path / "scan" / "1.jpg").read_bytes() == b"old"
    assert not (tmp_path / ".staging").exists()


def test_a_session_never_committed_leaves_nothing(tmp_path):
    store = LocalStore(tmp_path)
    with store.open("fresh") as s:
        s.put_image(3, b"x", "png", "image/png")
    assert not (tmp_path / "fresh").exists()
    assert store.manifest("fresh") is None


def test_rerun_replaces_the_whole_result(tmp_path):
    store = LocalStore(tmp_path)
    with store.open("scan") as s:
        s.put_image(1, b"a", "jpg", "image/jpeg")
        s.commit(sample_manifest("scan", item_type="v1"))
    with store.open("scan") as s:
        s.put_image(2, b"b", "jpg", "image/jpeg")
        s.commit(sample_manifest("scan", item_type="v2"))
    assert sorted(p.name for p in (tmp_path / "scan").iterdir()) == ["2.jpg", "manifest.json"]
    assert json.loads((tmp_path / "scan" / "manifest.json").read_text())["item_type"] == "v2"


def test_an_unreadable_manifest_counts_as_no_result(tmp_path):
    store = LocalStore(tmp_path)
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "manifest.json").write_text('{"v": 1}')
    assert store.manifest("scan") is None


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "..", ".hidden", "x" * 129, "a b", "a..b"])
def test_unsafe_scan_ids_are_refused(bad):
    with pytest.raises(InvalidParameterError, match="invalid scan id"):
        validate_scan_id(bad)


def test_scan_ids_and_keys_are_deterministic():
    assert scan_id_from_path("/videos/my scan (1).mp4") == "my-scan-1"
    assert scan_id_from_path("/videos/....mp4") == "scan"
    assert object_key("abc", 7, "png") == "abc/7.png"


def test_two_tenants_keep_their_own_result_of_the_same_scan_id(tmp_path):
    """Tenants' results live apart (``_tenants/<tenant>/<scan_id>``); one tenant analysing a
    scan id another uses never replaces the other's result, and results of no tenant keep the
    single-tenant layout."""
    acme, beta, plain = LocalStore(tmp_path, "acme"), LocalStore(tmp_path, "beta"), LocalStore(tmp_path)
    keys = {}
    for name, store in (("acme", acme), ("beta", beta), ("plain", plain)):
        with store.open("scan-1") as s:
            keys[name] = s.put_image(7, name.encode(), "jpg", "image/jpeg")[0]
            keys[name + "-scores"] = s.put_scores(pa.table({"frame_index": [7]}))
            s.commit(sample_manifest("scan-1", item_type=name))
    assert keys["acme"] == "_tenants/acme/scan-1/7.jpg" == object_key("scan-1", 7, "jpg", "acme")
    assert keys["acme-scores"] == "_tenants/acme/scan-1/scores.parquet"
    assert keys["plain"] == "scan-1/7.jpg"
    assert (tmp_path / "_tenants" / "acme" / "scan-1" / "7.jpg").read_bytes() == b"acme"
    assert (tmp_path / "_tenants" / "beta" / "scan-1" / "7.jpg").read_bytes() == b"beta"
    assert (tmp_path / "scan-1" / "7.jpg").read_bytes() == b"plain"
    assert [s.manifest("scan-1").item_type for s in (acme, beta, plain)] == ["acme", "beta", "plain"]
    with pytest.raises(InvalidParameterError, match="tenant"):
        LocalStore(tmp_path, "../escape")
