"""Result routes: a finished analysis's per-frame scores (JSON) and its golden frame images.

(No ``from __future__ import annotations``: FastAPI must see real types through Serve.)
Included into ``serve.app.app``. The routes reach the coordinator and the settings through
``request.app.state`` (set by the ingress). Only objects named by the analysis's own result are
served: the frame index must be one of its golden frames, the object key must be the
deterministic ``[_tenants/<tenant>/]<scan_id>/<frame_index>.<ext>``, and the file must lie
inside the scan's folder of the analysis's tenant in the local store. A later analysis of the
same scan by the same tenant replaces that folder; its frames then answer 410
``result_superseded`` rather than another run's pictures. Another tenant's analysis is 404.
"""

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from jobs.golden.manifest import SCORES_NAME, public_frame
from jobs.stores.base import object_key, tenant_prefix
from jobs.stores.local import LocalStore
from serve.errors import ApiError
from serve.schemas import ErrorResponse
from serve.security import request_caller, require_api_key

router = APIRouter(prefix="/v1/analyses", tags=["results"],
                   dependencies=[Depends(require_api_key)])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 409, 410, 422, 503)}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
SIGNED_REDIRECT_MAX_S = 300  # a redirect's signed URL lives at most this long
_FRAME_INDEX = re.compile(r"^[0-9]{1,10}$")


class ScoreSeries(BaseModel):
    """Per-frame columns, all the same length (every ``stride``-th frame plus every pick)."""

    frame_index: list[int]
    time_s: list[float | None]
    sharpness: list[float | None] = Field(description="variance of the Laplacian")
    motion: list[float | None] = Field(description="motion, source pixels per frame: the speed "
                                       "that at most a tenth of the picture exceeds")
    still: list[bool] = Field(description="motion <= the analysis's motion_max")
    picked: list[bool]


class ScorePick(BaseModel):
    rank: int
    frame_index: int
    time_s: float
    sharpness: float
    motion: float


class AnalysisScores(BaseModel):
    """The sharpness and motion of every frame of the analysed video (``scores.parquet``)."""

    model_config = {"json_schema_extra": {"examples": [{
        "analysis_id": "4f0c...", "scan_id": "scan-42", "frame_count": 3,
        "returned": 3, "stride": 1, "motion_max": 1.0, "motion_max_used": 1.0,
        "frames": {"frame_index": [0, 1, 2], "time_s": [0.0, 0.033, 0.067],
                   "sharpness": [410.2, 415.9, 120.4], "motion": [0.0, 0.31, 4.8],
                   "still": [True, True, False], "picked": [False, True, False]},
        "picks": [{"rank": 1, "frame_index": 1, "time_s": 0.033, "sharpness": 415.9,
                   "motion": 0.31}]}]}}

    analysis_id: str
    scan_id: str
    frame_count: int = Field(description="frames scored")
    returned: int = Field(description="frames in `frames` (fewer than frame_count when thinned)")
    stride: int = Field(description="every stride-th frame is returned (picks always are)")
    motion_max: float = Field(description="the stillness threshold asked for (px per frame)")
    motion_max_used: float | None = Field(None, description="the threshold the selection used "
                                          "(higher when it had to relax it)")
    frames: ScoreSeries
    picks: list[ScorePick]


# ---- lookups (pure: the routes below only add the coordinator and the response) ----------------

def finished_result(view: dict[str, Any]) -> dict[str, Any]:
    """The result of a succeeded analysis; 409 while it is queued or running, 404 without one."""
    status = view["status"]
    if status in ("queued", "running"):
        raise ApiError(409, "analysis_not_finished", f"analysis {view['id']} is {status}: its "
                       "golden frames and scores are readable once it has succeeded")
    result = view.get("result")
    if status != "succeeded" or not result:
        raise ApiError(404, "no_result", f"analysis {view['id']} is {status}: nothing was stored")
    return result


def golden_frame(result: dict[str, Any], scan_id: str, frame_index: str,
                 tenant: str | None = None) -> dict[str, Any]:
    """The golden frame ``frame_index`` of ``result``, checked against its deterministic key."""
    if not _FRAME_INDEX.match(frame_index):
        raise ApiError(404, "frame_not_found", "a frame is named by its frame index (digits)")
    index = int(frame_index)
    for frame in result.get("golden_frames") or []:
        if frame.get("frame_index") == index:
            ext = str(frame.get("key", "")).rsplit(".", 1)[-1]
            if ext not in MEDIA_TYPES or frame["key"] != object_key(scan_id, index, ext, tenant):
                break  # a result whose key is not ours: serve nothing
            return frame
    raise ApiError(404, "frame_not_found", f"frame {index} is not a golden frame of this analysis")


def local_result_folder(out_dir: str | Path, scan_id: str, result: dict[str, Any],
                        tenant: str | None = None) -> Path | None:
    """``<out_dir>/[_tenants/<tenant>/]<scan_id>`` when it holds this result; None when this
    node has no copy.

    Raises 410 ``result_superseded`` when the folder holds a later analysis of the same scan.
    """
    store = LocalStore(Path(out_dir).resolve(), tenant)
    stored = store.manifest(scan_id)
    if stored is None:
        return None
    same = stored.model_dump(mode="json", include={"golden_frames", "timings_s"})
    same["golden_frames"] = [public_frame(f) for f in same.get("golden_frames") or []]
    known = {**result, "golden_frames": [public_frame(f) for f in
                                         result.get("golden_frames") or []]}
    if same != {k: known.get(k) for k in same}:
        raise ApiError(410, "result_superseded", f"scan {scan_id!r} was analysed again after "
                       "this analysis; its stored frames and scores are the later run's")
    return store.location(scan_id).resolve()


def _inside(folder: Path, name: str) -> Path | None:
    """``folder/name`` when it is a regular file that resolves inside ``folder``."""
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        return None
    return path


def local_frame_file(out_dir: str | Path, scan_id: str, result: dict[str, Any],
                     frame: dict[str, Any], tenant: str | None = None) -> Path | None:
    folder = local_result_folder(out_dir, scan_id, result, tenant)
    return _inside(folder, frame["key"].rsplit("/", 1)[1]) if folder else None


def signed_frame_url(client: Any, key: str, expiry_s: int) -> str:
    """A short-lived signed Storage URL of ``key`` (results stored with ``store=supabase``)."""
    from jobs.stores.supabase_client import SupabaseError

    try:
        url = client.signed_urls([key], min(int(expiry_s), SIGNED_REDIRECT_MAX_S)).urls.get(key)
    except SupabaseError as exc:
        raise ApiError(503, "store_unavailable", f"could not sign a Supabase Storage URL for "
                       f"{key}: {exc}") from exc
    if not url:
        raise ApiError(404, "frame_not_stored", f"{key} is not in the Supabase bucket (yet): "
                       f"`framesift sync --scan-id {key.split('/', 1)[0]}` uploads it")
    return url


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def read_scores(folder: Path, max_points: int) -> dict[str, Any]:
    """The columns of ``scores.parquet``, thinned to about ``max_points`` rows (picks kept)."""
    path = _inside(folder, SCORES_NAME)
    if path is None:
        raise ApiError(404, "scores_not_stored_here", "this server's local store has no "
                       "scores.parquet for the analysis")
    return scores_series(pq.read_table(path), max_points)


def stored_scores_table(settings: Any, signer: Any, scan_id: str, result: dict[str, Any],
                        tenant: str | None = None) -> pa.Table:
    """The analysis's ``scores.parquet``: the local copy, else (``store=supabase``) the object
    uploaded beside its images. 404 ``scores_not_stored`` for a result stored without it."""
    folder = local_result_folder(settings.out_dir, scan_id, result, tenant)
    path = _inside(folder, SCORES_NAME) if folder else None
    if path is not None:
        return pq.read_table(path)
    if folder is not None and result.get("store") != "supabase":
        raise ApiError(404, "scores_not_stored", f"the stored result of scan {scan_id!r} has no "
                       f"{SCORES_NAME} (removed since): run the analysis again to plot or "
                       "re-pick it")
    if result.get("store") != "supabase":
        raise ApiError(404, "scores_not_stored_here", "this server's local store has no "
                       f"copy of scan {scan_id!r} (on a cluster without a shared disk, use "
                       "store=supabase: its scores are uploaded with the images)")
    from jobs.stores.supabase_client import SupabaseRequestError

    key = f"{tenant_prefix(tenant)}{scan_id}/{SCORES_NAME}"
    try:
        data = signer().download_object(key)
    except SupabaseRequestError as exc:
        if exc.transient:
            raise ApiError(503, "store_unavailable", f"Supabase Storage did not answer for "
                           f"{key}: {exc}") from exc
        raise ApiError(404, "scores_not_stored", f"{key} is not in the Supabase bucket: the "
                       "analysis was stored before scores were uploaded with the images (run "
                       "it again to plot or re-pick it)") from exc
    return pq.read_table(pa.BufferReader(data))


def scores_series(full: pa.Table, max_points: int) -> dict[str, Any]:
    """``read_scores`` on a table already read."""
    table = full.select(list(ScoreSeries.model_fields)).to_pydict()
    n = len(table["frame_index"])
    stride = max(1, math.ceil(n / max_points))
    rows = [i for i in range(n) if i % stride == 0 or table["picked"][i]]
    series = {name: [table[name][i] for i in rows] for name in ("frame_index", "still", "picked")}
    for name in ("time_s", "sharpness", "motion"):
        series[name] = [_finite(table[name][i]) for i in rows]
    return {"frame_count": n, "returned": len(rows), "stride": stride, "frames": series}


# ---- routes ----------------------------------------------------------------------------------

async def _view(request: Request, analysis_id: str) -> dict[str, Any]:
    scope = request_caller(request).scope  # another tenant's analysis is not found
    view = await request.app.state.coordinator.get.remote(analysis_id, scope)
    if view is None:
        raise ApiError(404, "not_found", f"no analysis {analysis_id!r}")
    return view


def _signer(request: Request) -> Any:
    """The Supabase client that signs URLs: one per ingress process, built on first use."""
    signer = getattr(request.app.state, "supabase_signer", None)
    if signer is None:
        from jobs.stores.supabase_client import SupabaseError
        from jobs.stores.supabase import SupabaseStore

        try:
            signer = SupabaseStore.from_settings(request.app.state.settings).client
        except SupabaseError as exc:
            raise ApiError(503, "store_unavailable", str(exc)) from exc
        request.app.state.supabase_signer = signer
    return signer


@router.get("/{analysis_id}/scores", response_model=AnalysisScores, responses=ERRORS,
            summary="Sharpness and motion of every frame of a finished analysis",
            description="From the analysis's `scores.parquet` (the local store, or the Supabase "
                        "bucket where there is no local copy): per-frame "
                        "columns for a plot, the stillness threshold, and the picks. Long "
                        "videos are thinned to about `max_points` frames (picks always kept).")
async def analysis_scores(request: Request,
                          analysis_id: str,
                          max_points: int = Query(5000, ge=100, le=200_000)) -> AnalysisScores:
    view = await _view(request, analysis_id)
    result = finished_result(view)
    scan_id, tenant = view["scan_id"], view.get("tenant")
    if result.get("scores_key") != f"{tenant_prefix(tenant)}{scan_id}/{SCORES_NAME}":
        raise ApiError(404, "scores_not_found", "this analysis's result names no scores")

    def load() -> dict[str, Any]:
        table = stored_scores_table(request.app.state.settings, lambda: _signer(request),
                                    scan_id, result, tenant)
        return scores_series(table, max_points)

    data = await asyncio.to_thread(load)
    selection = result.get("selection") or {}
    picks = [ScorePick(**{k: g[k] for k in ScorePick.model_fields})
             for g in result.get("golden_frames") or []]
    return AnalysisScores(analysis_id=view["id"], scan_id=scan_id,
                          motion_max=float(view["parameters"]["motion_max"]),
                          motion_max_used=selection.get("motion_max_used"), picks=picks, **data)


@router.get("/{analysis_id}/frames/{frame_index}", response_class=Response,
            responses={**ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}},
                                       "description": "the golden frame at full resolution"},
                       307: {"description": "to a short-lived signed Supabase Storage URL "
                                            "(store=supabase, no local copy on this node)"}},
            summary="A golden frame image of a finished analysis",
            description="Only the analysis's own golden frames (by frame index) are served.")
async def golden_frame_image(request: Request, analysis_id: str,
                             frame_index: str = PathParam(..., description="a golden frame's "
                                                          "frame index")) -> Response:
    view = await _view(request, analysis_id)
    result = finished_result(view)
    tenant = view.get("tenant")
    frame = golden_frame(result, view["scan_id"], frame_index, tenant)
    settings = request.app.state.settings
    path = await asyncio.to_thread(local_frame_file, settings.out_dir, view["scan_id"], result,
                                   frame, tenant)
    if path is not None:
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix[1:]],
                            headers={"Cache-Control": "private, max-age=3600",
                                     "X-Content-Type-Options": "nosniff"})
    if result.get("store") == "supabase":
        signer = await asyncio.to_thread(_signer, request)
        url = await asyncio.to_thread(signed_frame_url, signer, frame["key"],
                                      settings.supabase_signed_url_expiry_s)
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    raise ApiError(404, "frame_not_stored_here", f"this server's local store has no copy of "
                   f"scan {view['scan_id']!r} (on a cluster without a shared disk, use "
                   "store=supabase)")
