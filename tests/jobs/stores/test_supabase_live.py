"""Opt-in: the Supabase store against a real project (the framesift migration applied).

Runs only when ``SUPABASE_URL`` and ``SUPABASE_SERVICE_ROLE_KEY`` are set. It writes a scan
named ``framesift-live-test-<random>`` and deletes its objects and rows at the end.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace

import cv2
import numpy as np
import pyarrow as pa
import pytest

from jobs.settings import Settings
from jobs.stores.supabase import SupabaseStore
from jobs.stores.supabase_client import ANALYSES_TABLE, GOLDEN_TABLE
from manifest_fixtures import golden_frame, sample_manifest

pytestmark = pytest.mark.skipif(
    not (os.environ.get("SUPABASE_URL") and os.environ.get("SUPABASE_SERVICE_ROLE_KEY")),
    reason="live Supabase test: set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (a project with "
           "supabase/migrations applied) to run it")


def test_a_result_round_trips_through_a_real_project(tmp_path):
    settings = Settings(store="supabase", out_dir=str(tmp_path), supabase_signed_urls=True,
                        supabase_signed_url_expiry_s=120)
    store = SupabaseStore.from_settings(settings)
    scan_id = f"framesift-live-test-{uuid.uuid4().hex[:10]}"
    ok, buf = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    png = buf.tobytes()
    client = store.client._client
    try:
        for _attempt in range(2):  # the second run must be an idempotent repeat
            with store.open(scan_id) as session:
                key, uri = session.put_image(3, png, "png", "image/png")
                session.put_scores(pa.table({"frame_index": [3]}))
                frame = replace(golden_frame(3, 1, scan_id, "png"), width=1, height=1,
                                key=key, uri=uri)
                manifest = sample_manifest(scan_id, [frame])
                session.commit(manifest)
            section = manifest.supabase
            assert section is not None and section.status == "uploaded", section
            assert store.client.download_object(key) == png
            assert set(section.signed_urls or {}) == {key}
        rows = client.table(GOLDEN_TABLE).select("*").eq("scan_id", scan_id).execute().data
        assert len(rows) == 1 and rows[0]["storage_key"] == f"{scan_id}/3.png"
        runs = client.table(ANALYSES_TABLE).select("status").eq("scan_id", scan_id).execute().data
        assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    finally:
        client.table(ANALYSES_TABLE).delete().eq("scan_id", scan_id).execute()  # cascades
        client.storage.from_(store.bucket).remove([f"{scan_id}/3.png", f"{scan_id}/scores.parquet"])
        store.close()
