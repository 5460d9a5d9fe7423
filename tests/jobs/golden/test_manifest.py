"""The typed golden manifest keeps the JSON schema of manifests written before it."""

from __future__ import annotations

import json
import math

import pytest

from actors.records import FrameRange
from jobs.golden.manifest import GoldenManifest, UploadSection
from jobs.golden.params import GoldenParams
from manifest_fixtures import OLD_MANIFEST


def test_a_manifest_written_by_0_1_0_loads_and_writes_back_the_same_json():
    old = json.loads(OLD_MANIFEST.read_text())
    manifest = GoldenManifest.from_json(OLD_MANIFEST.read_bytes())
    assert manifest.params == GoldenParams(top_k=3) and manifest.selection.holds is None
    assert not manifest.decided_by(GoldenParams(top_k=3))  # 0.1.0 had no holds: recompute it
    assert manifest.plan.chunks == (FrameRange(0, 90),) and manifest.plan.cpus == 2
    assert [g.frame_index for g in manifest.golden_frames] == [76, 46, 0]
    assert manifest.golden_frames[0].glint.blob_count == old["golden_frames"][0]["glint"]["blob_count"]
    assert manifest.video.public() == {k: v for k, v in old["video"].items() if k != "path"}
    again = json.loads(manifest.to_json())
    for g in again["golden_frames"]:  # the only field added since 0.1.0: which hold (-1: none)
        assert g.pop("hold") == -1
    assert again == old  # nothing else added, renamed or dropped


def test_an_unbounded_relaxed_motion_bar_round_trips_as_infinity():
    manifest = GoldenManifest.from_json(OLD_MANIFEST.read_bytes())
    manifest.selection.motion_max_used = math.inf
    text = manifest.to_json()
    assert '"motion_max_used": Infinity' in text  # as json.dumps wrote it before
    assert GoldenManifest.from_json(text).selection.motion_max_used == math.inf


def test_the_upload_section_appears_only_when_a_store_adds_it():
    manifest = GoldenManifest.from_json(OLD_MANIFEST.read_bytes())
    assert "supabase" not in json.loads(manifest.to_json())
    manifest.supabase = UploadSection(bucket="golden-frames", analysis_id="a-1", status="pending",
                                      not_uploaded=["scan-v010/0.jpg"], error="HTTP 503",
                                      retry="framesift sync --scan-id scan-v010")
    again = GoldenManifest.from_json(manifest.to_json())
    assert again.supabase == manifest.supabase and not again.supabase.complete


def test_a_manifest_missing_a_field_is_refused():
    data = json.loads(OLD_MANIFEST.read_text())
    del data["golden_frames"]
    with pytest.raises(ValueError, match="golden_frames"):
        GoldenManifest.model_validate(data)
