"""The coordinator's pure helpers (serve/analyses/coordinator.py): the fingerprint that makes
re-posts idempotent, what a re-pick's record takes from its parent's, and the API view of a
record. Nothing here touches Ray, the database or the runners."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Callable

from serve.analyses.state import now

PARAM_KEYS = ("top_k", "min_gap_s", "motion_max")


def fingerprint(scan_id: str, item_type: str | None, source_kind: str, source_id: str,
                params: dict[str, Any], tenant: str | None = None) -> str:
    """Same tenant, scan, video and parameters -> same fingerprint (idempotent re-posts; one
    tenant never joins another's analysis)."""
    scope = {"tenant": tenant} if tenant is not None else {}  # no tenant: as before tenants
    blob = json.dumps({"scan_id": scan_id, "item_type": item_type, "kind": source_kind,
                       "source": source_id, "params": {k: params.get(k) for k in PARAM_KEYS},
                       **scope}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def repick_request(parent: dict[str, Any]) -> dict[str, Any]:
    """What a re-pick's record takes from its parent's: the scan, and the video as it was
    stored (a re-pick reads it only for picks whose images are not stored)."""
    return {"scan_id": parent["scan_id"], "item_type": parent["item_type"],
            "source_kind": parent["source_kind"], "source": parent["source"],
            "source_id": f"repick:{parent['id']}",
            "source_name": parent.get("source_name")}


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts else None


def analysis_view(rec: dict[str, Any],
                  queue: Callable[[], list[dict[str, Any]]]) -> dict[str, Any]:
    """The API view of ``rec``; ``queue`` gives the queued analyses in the order they start
    (asked only for a queued record, for its position)."""
    cur, tot = rec["progress_current"], rec["progress_total"]
    position = None
    if rec["status"] == "queued":
        ids = [r["id"] for r in queue()]
        position = ids.index(rec["id"]) + 1 if rec["id"] in ids else None
    eta = None
    if rec["status"] == "running" and cur and tot and rec["started_at"]:
        elapsed = (rec["progress_at"] or now()) - rec["started_at"]
        eta = round(elapsed / cur * (tot - cur), 2)
    end = rec["finished_at"] or now()
    timings = {"created_at": _iso(rec["created_at"]), "started_at": _iso(rec["started_at"]),
               "finished_at": _iso(rec["finished_at"]),
               "queued_s": round((rec["started_at"] or end) - rec["created_at"], 3),
               "run_s": round(end - rec["started_at"], 3) if rec["started_at"] else None}
    return {
        "id": rec["id"], "scan_id": rec["scan_id"], "tenant": rec["owner"],
        "item_type": rec["item_type"],
        "status": rec["status"], "queue_position": position,
        "progress": {"current": cur, "total": tot,
                     "percentage": round(100.0 * cur / tot, 2) if tot else 0.0},
        "eta_s": eta, "parameters": rec["params"], "timings": timings,
        "result": rec["result"],
        "error": ({"code": rec["error_code"], "message": rec["error_message"]}
                  if rec["error_code"] else None),
    }
