"""Request and response schemas of the HTTP API (what /docs shows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from jobs.stores.local import validate_scan_id

SCAN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class AnalysisRequest(BaseModel):
    """Start a golden-frame analysis of a video at a URL. camelCase webhook keys are accepted."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", json_schema_extra={
        "examples": [{"video_url": "https://cdn.example.com/scans/abc.mp4", "scan_id": "scan-123",
                      "item_type": "card", "top_k": 5},
                     {"videoUrl": "https://cdn.example.com/scans/abc.mp4", "scanId": "scan-123",
                      "itemType": "card"}]})

    video_url: str | None = Field(None, validation_alias=AliasChoices("video_url", "videoUrl"),
                                  max_length=4096, description="http(s) URL of the video")
    scan_id: str = Field(validation_alias=AliasChoices("scan_id", "scanId"),
                         pattern=SCAN_ID_PATTERN, description="your id for this scan")
    item_type: str | None = Field(None, validation_alias=AliasChoices("item_type", "itemType"),
                                  max_length=64)
    top_k: int | None = Field(None, ge=1, le=100)
    min_gap_s: float | None = Field(None, ge=0, le=3600)
    motion_max: float | None = Field(None, ge=0, le=1000)

    @field_validator("scan_id")
    @classmethod
    def _safe_scan_id(cls, value: str) -> str:
        return validate_scan_id(value)


class Progress(BaseModel):
    current: int = 0
    total: int = 0
    percentage: float = 0.0


class ErrorInfo(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorInfo


class AnalysisAccepted(BaseModel):
    id: str
    scan_id: str
    status: Status
    created: bool = Field(description="false when an identical running analysis was returned")
    status_url: str
    events_url: str


class AnalysisView(BaseModel):
    """The state of an analysis."""

    id: str
    scan_id: str
    tenant: str | None = Field(None, description="the tenant of the API key that posted it "
                               "(none without keys, and for the admin key)")
    item_type: str | None = None
    status: Status
    queue_position: int | None = Field(None, description="1 = next to run (queued only)")
    progress: Progress
    eta_s: float | None = None
    parameters: dict[str, Any]
    timings: dict[str, Any]
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class AnalysisList(BaseModel):
    analyses: list[AnalysisView]
