"""Settings of the HTTP service, on top of the job settings (same ``FRAMESIFT_*`` variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from jobs.settings import Settings
from serve.tenants import ApiKey, ApiKeyConfigError, parse_api_keys


class ServiceSettings(Settings):
    """Service knobs. Secrets are ``SecretStr``: they never show in reprs or logs."""

    state_dir: str = Field("state", description="analysis records (SQLite, unless "
                           "database_url), uploads (unless uploads_url)")
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL of the analysis records and event logs (a Supabase "
                          "project's Postgres or any PostgreSQL), reached from every node; none "
                          "= SQLite under state_dir. A secret: from the environment only")
    uploads_url: str | None = Field(
        None, description="where uploaded videos wait for their runner: s3://BUCKET[/PREFIX] or "
                          "supabase://BUCKET[/PREFIX] (object storage every node reads), or a "
                          "folder; none = supabase://framesift-uploads with store=supabase, "
                          "else <state_dir>/uploads")
    runner_resources: dict[str, float] = Field(
        {}, description="custom Ray resources each analysis runner actor reserves (JSON), e.g. "
                        "{\"analysis_runner\": 1} to keep runners on the node type offering it")
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
    max_json_bytes: int = Field(64 * 2**10, ge=1024, description="bytes of a JSON (or any "
                                "other non-upload) request body")
    max_queued_analyses: int = Field(20, ge=1, description="analyses waiting to run; past it "
                                     "new ones are answered 503 with Retry-After")
    max_active_analyses_per_key: int = Field(5, ge=1, description="queued and running analyses "
                                             "of one API key (all callers share one budget "
                                             "without keys); past it 429 with Retry-After")
    max_analysis_frames: int = Field(108_000, ge=1, description="frames of one analysed video "
                                     "(an hour at 30 fps)")
    max_analysis_pixel_frames: int = Field(100_000_000_000, ge=1, description="work of one "
                                           "analysed video: frames x (width x height + 1.44 "
                                           "Mpx of per-frame analysis); about 16 minutes of "
                                           "1080p at 30 fps, or 69,000 tiny frames")
    max_analysis_s: float = Field(1800.0, gt=0, description="wall time of one analysis "
                                  "(download included) before it is stopped and failed")
    upload_orphan_grace_s: float = Field(300.0, gt=0, description="age after which an upload "
                                         "no analysis refers to is deleted (swept at start-up "
                                         "and periodically)")
    max_header_bytes: int = Field(32 * 2**10, ge=1024, description="request line and headers "
                                  "(the HTTP proxy answers 431 beyond; read from the proxy "
                                  "node's environment)")
    header_timeout_s: float = Field(10.0, gt=0, description="time to receive a request's "
                                    "headers (proxy: 408 beyond; node environment)")
    body_idle_timeout_s: float = Field(30.0, gt=0, description="longest pause while a request "
                                       "body is received (proxy: 408 beyond; node environment)")
    public_url: str | None = Field(None, description="absolute base URL of the service for the "
                                   "status_url/events_url it returns (e.g. "
                                   "https://api.example.com); none = relative URLs. The Host "
                                   "header is never used")
    api_keys: SecretStr | None = Field(None, description="comma-separated API keys, each "
                                       "`tenant:key` or a bare key (its own tenant); none = "
                                       "no auth")
    api_keys_file: str | None = Field(None, description="file with API keys (one per line or "
                                                        "comma-separated), e.g. a mounted secret")
    admin_key: SecretStr | None = Field(None, description="an API key that sees and cancels "
                                        "every tenant's analyses")

    def api_key_entries(self) -> list[ApiKey]:
        """Keys from FRAMESIFT_API_KEYS and FRAMESIFT_API_KEYS_FILE with their tenants, and
        the admin key (tenant None)."""
        raw = self.api_keys.get_secret_value() if self.api_keys is not None else ""
        if self.api_keys_file:
            raw += "," + Path(self.api_keys_file).read_text()
        keys = parse_api_keys(raw)
        admin = self.admin_key.get_secret_value().strip() if self.admin_key else ""
        if admin:
            if any(k.secret == admin for k in keys):
                raise ApiKeyConfigError("FRAMESIFT_ADMIN_KEY is also a tenant's key in "
                                        "FRAMESIFT_API_KEYS: give the admin its own key")
            keys.append(ApiKey(None, admin))
        return keys

    def api_key_list(self) -> list[str]:
        """Every accepted key (tenants' and the admin's)."""
        return [k.secret for k in self.api_key_entries()]
