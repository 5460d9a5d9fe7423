"""Re-pick routes: the picks new selection parameters would make (preview), and a re-pick as a
new analysis (queued like any other; its runner reads the stored scores, see
jobs/golden/repick.py).

(No ``from __future__ import annotations``: FastAPI must see real types through Serve.)
Included into ``serve.app.app``; reaches the coordinator and the settings through
``request.app.state`` and looks analyses up as the result routes do.
"""

import asyncio
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from jobs.golden.params import GoldenParams
from jobs.golden.repick import repick_params, select_stored
from jobs.golden.stored import RepickError, stored_scores
from serve.errors import ApiError
from serve.result_routes import (ERRORS, _signer, _view, finished_result, stored_scores_table)
from serve.schemas import AnalysisAccepted
from serve.security import key_owner, require_api_key

router = APIRouter(prefix="/v1/analyses", tags=["re-picks"],
                   dependencies=[Depends(require_api_key)])

API_PARAMS = ("top_k", "min_gap_s", "motion_max")  # what the API lets a re-pick change


class RepickRequest(BaseModel):
    """New selection parameters (omitted: the analysis's own)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"top_k": 8, "min_gap_s": 1.0}]})

    top_k: int | None = Field(None, ge=1, le=100)
    min_gap_s: float | None = Field(None, ge=0, le=3600)
    motion_max: float | None = Field(None, ge=0, le=1000)


class PreviewPick(BaseModel):
    rank: int
    frame_index: int
    time_s: float
    sharpness: float
    motion: float
    still: bool
    hold: int = Field(description="the steady hold it lies in (-1: none)")
    near_duplicate: bool
    stored: bool = Field(description="already an image of this analysis (a re-pick keeps it "
                                     "without decoding)")


class RepickPreview(BaseModel):
    """The selection a re-pick with these parameters would make; nothing is extracted."""

    analysis_id: str
    scan_id: str
    parameters: dict[str, Any] = Field(description="top_k, min_gap_s and motion_max used")
    motion_max: float
    motion_max_used: float | None = Field(None, description="higher than motion_max when the "
                                          "selection had to relax it (null: any motion)")
    still_frames: int
    still_spans: list[list[int]] = Field(description="[start, stop) frame ranges of the still "
                                         "frames")
    relaxed: bool
    notes: list[str]
    picks: list[PreviewPick]


def _base_params(settings: Any, view: dict[str, Any]) -> GoldenParams:
    """The parameters the analysis ran with (as its runner derived them)."""
    recorded = view.get("parameters") or {}
    return replace(settings.golden_params(),
                   **{k: recorded[k] for k in API_PARAMS if recorded.get(k) is not None})


def _spans(indices: frozenset[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def preview_of(view: dict[str, Any], table: Any, settings: Any,
               changes: dict[str, Any]) -> RepickPreview:
    """The preview of ``changes`` on a finished analysis's stored scores (pure)."""
    result = view["result"]
    try:
        stored = stored_scores(table, view["scan_id"])
        params = repick_params(_base_params(settings, view), **changes)
    except RepickError as exc:
        raise ApiError(409 if exc.code == "scores_not_stored" else 422, exc.code, str(exc)) from exc
    picked = select_stored(stored, params)
    sel = picked.selection
    have = {g["frame_index"] for g in result.get("golden_frames") or []}
    used = sel.motion_max_used
    return RepickPreview(
        analysis_id=view["id"], scan_id=view["scan_id"],
        parameters={k: getattr(params, k) for k in API_PARAMS}, motion_max=params.motion_max,
        motion_max_used=used if used != float("inf") else None,
        still_frames=sel.still_frames, still_spans=_spans(sel.still_indices),
        relaxed=sel.relaxed, notes=list(picked.notes),
        picks=[PreviewPick(rank=r, frame_index=p.score.frame_index, time_s=p.score.time_s,
                           sharpness=p.score.sharpness, motion=p.score.motion, still=p.still,
                           hold=p.hold, near_duplicate=p.near_duplicate,
                           stored=p.score.frame_index in have)
               for r, p in enumerate(sel.picks, start=1)])


async def _scores_of(request: Request, view: dict[str, Any]) -> Any:
    result = finished_result(view)
    return await asyncio.to_thread(stored_scores_table, request.app.state.settings,
                                   lambda: _signer(request), view["scan_id"], result,
                                   view.get("tenant"))


@router.get("/{analysis_id}/preview", response_model=RepickPreview, responses=ERRORS,
            summary="The picks new selection parameters would make (nothing extracted)",
            description="Selects from the analysis's stored scores with the given parameters "
                        "(omitted: the analysis's own). 409 `scores_not_stored` for a result "
                        "stored without the scores a selection needs.")
async def preview_repick(request: Request, analysis_id: str,
                         top_k: int | None = Query(None, ge=1, le=100),
                         min_gap_s: float | None = Query(None, ge=0, le=3600),
                         motion_max: float | None = Query(None, ge=0, le=1000)) -> RepickPreview:
    view = await _view(request, analysis_id)
    table = await _scores_of(request, view)
    changes = {"top_k": top_k, "min_gap_s": min_gap_s, "motion_max": motion_max}
    return await asyncio.to_thread(preview_of, view, table, request.app.state.settings, changes)


@router.post("/{analysis_id}/repick", status_code=202, response_model=AnalysisAccepted,
             responses=ERRORS, summary="Re-pick a finished analysis with new parameters",
             description="Creates a new analysis, queued like any other, that selects from the "
                         "stored scores and decodes only picks not already stored. Its events "
                         "and result are read as any analysis's.")
async def repick_analysis(request: Request, analysis_id: str,
                          body: RepickRequest | None = None) -> JSONResponse:
    view = await _view(request, analysis_id)
    changes = (body or RepickRequest()).model_dump()
    table = await _scores_of(request, view)  # 409 now for a result that cannot be re-picked
    await asyncio.to_thread(preview_of, view, table, request.app.state.settings, changes)
    coordinator = request.app.state.coordinator
    owner = key_owner(request)
    refusal = await coordinator.admission.remote(owner)
    if refusal is None:
        params = {k: changes[k] if changes[k] is not None else view["parameters"].get(k)
                  for k in API_PARAMS}
        answer = await coordinator.submit.remote({"repick_of": view["id"], "owner": owner,
                                                  **params})
        refusal = answer.get("refused")
    if refusal:
        headers = {"Retry-After": str(refusal["retry_after"])} if refusal.get("retry_after") \
            else None
        raise ApiError(refusal["status"], refusal["code"], refusal["message"], headers=headers)
    new = answer["view"]
    base = (request.app.state.settings.public_url or request.scope.get("root_path", "")).rstrip("/")
    accepted = AnalysisAccepted(id=new["id"], scan_id=new["scan_id"], status=new["status"],
                                created=answer["created"],
                                status_url=f"{base}/v1/analyses/{new['id']}",
                                events_url=f"{base}/v1/analyses/{new['id']}/events")
    return JSONResponse(accepted.model_dump(), status_code=202)


__all__ = ["RepickPreview", "RepickRequest", "preview_of", "router"]
