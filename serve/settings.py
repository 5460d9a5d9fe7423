"""Settings of the HTTP service, on top of the job settings (same ``FRAMESIFT_*`` variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from jobs.settings import Settings


class ServiceSettings(Settings):
    """Service knobs. Secrets are ``SecretStr``: they never show in reprs or logs."""

    state_dir: str = Field("state", description="analysis records (SQLite), uploads, downloads")
    max_running_analyses: int = Field(1, ge=1, description="analyses scored at once; others queue")
    analysis_concurrency: int = Field(5, ge=1, le=64,
                                      description="images analysed at once per batch request")
    max_analysis_concurrency: int = Field(16, ge=1, le=256,
                                          description="cap on a request's own concurrency")
    image_task_cpus: float = Field(1.0, gt=0, le=16, description="Ray CPUs per image analysis "
                                   "(analysis is CPU-bound: a fraction oversubscribes the cores)")
    max_images_per_request: int = Field(100, ge=1, description="images in one batch request")
    max_image_bytes: int = Field(25 * 2**20, ge=1024, description="bytes per uploaded image")
    max_image_pixels: int = Field(50_000_000, ge=1, description="pixels per image (bomb guard)")
    max_upload_bytes: int = Field(512 * 2**20, ge=1024, description="bytes of an uploaded video")
    api_keys: SecretStr | None = Field(None, description="comma-separated API keys; none = no auth")
    api_keys_file: str | None = Field(None, description="file with API keys (one per line or "
                                                        "comma-separated), e.g. a mounted secret")

    def api_key_list(self) -> list[str]:
        """Keys from FRAMESIFT_API_KEYS and FRAMESIFT_API_KEYS_FILE together."""
        raw = self.api_keys.get_secret_value() if self.api_keys is not None else ""
        if self.api_keys_file:
            raw += "," + Path(self.api_keys_file).read_text()
        return [k.strip() for k in raw.replace("\n", ",").split(",") if k.strip()]
