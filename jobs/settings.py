"""One settings object for every knob, read from ``FRAMESIFT_*`` environment variables and flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Defaults are the documented defaults; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="FRAMESIFT_", extra="ignore")

    # selection
    top_k: int = Field(5, ge=1, le=100, description="golden frames to pick per video")
    min_gap_s: float = Field(0.5, ge=0, description="minimum seconds between picks")
    motion_max: float = Field(1.0, ge=0, description="stillness bar: mean flow in source px")
    # scoring
    flow: Literal["dis", "farneback"] = Field("dis", description="optical-flow method")
    dis_preset: Literal["ultrafast", "fast", "medium"] = Field("ultrafast", description="DIS preset")
    analysis_long_side: int = Field(640, ge=64, le=4096,
                                    description="longer side (px) frames are scored at")
    # distribution
    workers: int | Literal["auto"] = Field("auto", description="chunks per video, or auto")
    max_workers: int = Field(16, ge=1, description="upper bound on chunks per video")
    min_frames_per_chunk: int = Field(30, ge=1, description="smallest chunk worth a worker")
    executor: Literal["tasks", "actors"] = Field(
        "tasks", description="Ray Data compute: tasks (one-shot jobs) or a warm actor pool")
    ray_address: str | None = Field(None, description="Ray cluster address; none = private local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the private local Ray (default: all)")
    # output
    out_dir: str = Field("output", description="root folder of the local store")
    store: Literal["local"] = Field("local", description="where results go")
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="golden frame image format")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality of golden frames")

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        if isinstance(value, str) and value != "auto":
            if not value.isdigit() or int(value) < 1:
                raise ValueError("workers must be 'auto' or a positive integer")
            return int(value)
        if isinstance(value, int) and value < 1:
            raise ValueError("workers must be 'auto' or a positive integer")
        return value
