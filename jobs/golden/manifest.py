"""The golden-frame result as a typed record, and the ``manifest.json`` it is written as.

``GoldenManifest`` is what every layer reads (the CLI table, the service's analysis runner, the
Supabase store, the batch summary) instead of string keys into a dict. Its JSON keeps the
schema of the manifests written before it existed (``tests`` load one such manifest), so
results on disk stay readable both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer,
                      TypeAdapter)

from actors.records import GoldenFrame, VideoSummary
from jobs.golden.params import GoldenParams
from jobs.golden.planner import ChunkPlan
from jobs.golden.reducer import Hold

MANIFEST_NAME = "manifest.json"
SCORES_NAME = "scores.parquet"
CANDIDATES_NAME = "candidates.parquet"  # the candidate pool (jobs/golden/candidates.py)
CANDIDATES_FOLDER = "candidates"  # its images, in the local store (one file per frame)
PARQUET_TYPE = "application/vnd.apache.parquet"  # their content type (a bucket must allow it)


def _plan_from_json(value: Any) -> Any:
    return ChunkPlan.from_dict(value) if isinstance(value, dict) else value


# The plan is written as ChunkPlan.to_dict() (chunks as [start, stop] pairs) and read back.
PlanField = Annotated[ChunkPlan, BeforeValidator(_plan_from_json),
                      PlainSerializer(lambda plan: plan.to_dict(), return_type=dict)]


def _hold_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        return Hold(**{k: v for k, v in value.items() if k != "picked"})
    return value


# A hold is written as Hold.to_dict() (with its derived "picked") and read back.
HoldField = Annotated[Hold, BeforeValidator(_hold_from_json),
                      PlainSerializer(lambda hold: hold.to_dict(), return_type=dict)]


# pydantic's JSON encoder: 10x faster than json.dumps with an indent; Infinity stays Infinity
_JSON = TypeAdapter(dict[str, Any], config=ConfigDict(ser_json_inf_nan="constants"))


class _Record(BaseModel):
    # Infinity stays Infinity (the relaxed motion bar can be unbounded), as json.dumps wrote it.
    model_config = ConfigDict(ser_json_inf_nan="constants")


class SelectionSummary(_Record):
    still_frames: int
    relaxed: bool
    motion_max_used: float
    picked: int
    notes: list[str] = Field(default_factory=list)
    holds: list[HoldField] | None = None  # None: a manifest written before holds existed


class UploadSection(_Record):
    """What a store that uploads (Supabase) did with this result: the manifest's ``supabase``."""

    bucket: str
    analysis_id: str
    status: str  # "uploaded" or "pending"
    not_uploaded: list[str] = Field(default_factory=list)
    error: str | None = None
    retry: str | None = None
    signed_urls: dict[str, str] | None = None
    signed_urls_expire_at: str | None = None
    signed_url_errors: dict[str, str] | None = None  # keys Storage would not sign, and why

    @property
    def complete(self) -> bool:
        return self.status == "uploaded"


class GoldenManifest(_Record):
    """A complete golden-frame result of one video."""

    framesift_version: str
    scan_id: str
    item_type: str | None = None
    status: str = "succeeded"
    created_at: str
    video: VideoSummary
    # As recorded by the version that computed the result: a manifest written before a
    # parameter existed lacks it, and a resume recomputes it (see ``decided_by``).
    parameters: dict[str, Any]
    plan: PlanField
    selection: SelectionSummary
    timings_s: dict[str, float]
    golden_frames: list[GoldenFrame]
    scores_key: str
    store: str
    supabase: UploadSection | None = None
    # Frames the container lists but the decoder never delivered (``actors.video``): no score,
    # never picked. Empty on manifests written before gaps were recorded.
    gaps: list[int] = Field(default_factory=list)
    # The candidate pool's key (frames extracted beside the picks, see
    # jobs/golden/candidates.py); None: a result stored without one.
    candidates_key: str | None = None

    @property
    def params(self) -> GoldenParams:
        """The parameters, typed (fields the manifest predates take today's defaults)."""
        return GoldenParams.from_recorded(self.parameters)

    def decided_by(self, params: GoldenParams) -> bool:
        """True when exactly ``params`` computed this result (every parameter recorded)."""
        return self.parameters == params.recorded()

    def to_json(self) -> str:
        """The ``manifest.json`` text: no ``supabase`` key unless a store added one, no ``gaps``
        key when every listed frame decoded, and in the ``supabase`` section
        ``retry`` and the signed URLs only when they are set (as manifests always had it)."""
        data = self.model_dump(mode="json")
        if not self.gaps:
            del data["gaps"]
        if self.candidates_key is None:
            del data["candidates_key"]
        if self.selection.holds is None:
            del data["selection"]["holds"]
        if self.supabase is None:
            del data["supabase"]
        else:
            for key in ("retry", "signed_urls", "signed_urls_expire_at", "signed_url_errors"):
                if data["supabase"][key] is None:
                    del data["supabase"][key]
        return _JSON.dump_json(data, indent=2).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> "GoldenManifest":
        return cls.model_validate_json(text)


def public_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """A golden frame (``GoldenFrame.to_dict``) as the HTTP API shows it: its store key and
    metrics, without a URI that is not a web address (a ``file://`` URI is a path on the
    server; the API serves the frame at ``/v1/analyses/{id}/frames/{frame_index}``). Local
    manifests keep the URI for the CLI."""
    uri = frame.get("uri")
    if isinstance(uri, str) and not uri.lower().startswith(("http://", "https://")):
        return {k: v for k, v in frame.items() if k != "uri"}
    return frame


@dataclass
class GoldenResult:
    """The outcome of one video: a committed manifest, or the error that stopped it."""

    scan_id: str
    path: str
    status: str  # "succeeded" or "failed"
    manifest: GoldenManifest | None = None
    location: str | None = None
    error: str | None = None
    error_code: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def frame_count(self) -> int:
        return self.manifest.video.frame_count if self.manifest else 0

    @classmethod
    def failed(cls, scan_id: str, path: str, exc: BaseException | str,
               code: str | None = None) -> "GoldenResult":
        return cls(scan_id, path, "failed", error=str(exc),
                   error_code=code or getattr(exc, "code", "job_failed"))
