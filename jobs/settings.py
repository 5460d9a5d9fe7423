"""One settings object for every knob, read from ``FRAMESIFT_*`` environment variables and flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from actors.scoring import ScorerConfig
from jobs.golden.params import GoldenParams

# The defaults of everything that decides a golden-frame result live in GoldenParams; the
# settings (and through them the CLI's help and the README's table) take them from there.
_GOLDEN = GoldenParams()


class Settings(BaseSettings):
    """Defaults are the documented defaults; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="FRAMESIFT_", extra="ignore")

    # selection
    top_k: int = Field(_GOLDEN.top_k, ge=1, le=100, description="golden frames to pick per video")
    min_gap_s: float = Field(_GOLDEN.min_gap_s, ge=0, description="minimum seconds between picks")
    motion_max: float = Field(
        _GOLDEN.motion_max, ge=0,
        description="stillness bar in source px: the speed that at most a tenth of the picture "
                    "exceeds")
    still_window_s: float = Field(
        _GOLDEN.still_window_s, ge=0,
        description="a frame is steady when every frame within this many seconds of it is "
                    "under the motion bar; a hold needs a steady core")
    min_hold_s: float = Field(
        _GOLDEN.min_hold_s, ge=0,
        description="shortest steady hold (s, first to last still frame); shorter still runs "
                    "are ignored")
    edge_margin_s: float = Field(
        _GOLDEN.edge_margin_s, ge=0,
        description="picks keep this far (s) from both ends of their hold's steady core (first "
                    "picks) or of the hold (extra picks)")
    hold_sharpness_ratio: float = Field(
        _GOLDEN.hold_sharpness_ratio, ge=0, le=1,
        description="a hold competes for first picks when its best sharpness is at least this "
                    "share of the sharpest hold's")
    dup_max_diff: float = Field(
        _GOLDEN.dup_max_diff, ge=0, le=255,
        description="near-duplicate picks: mean abs difference of 16x16 grey thumbnails below "
                    "this (grey levels); 0 = no guard")
    # scoring
    flow: Literal["dis", "farneback"] = Field(_GOLDEN.scorer.flow,
                                              description="optical-flow method")
    dis_preset: Literal["ultrafast", "fast", "medium"] = Field(_GOLDEN.scorer.dis_preset,
                                                               description="DIS preset")
    analysis_long_side: int = Field(_GOLDEN.scorer.analysis_long_side, ge=64, le=4096,
                                    description="longer side (px) frames are scored at")
    # distribution
    workers: int | Literal["auto"] = Field("auto", description="chunks per video, or auto")
    max_workers: int = Field(_GOLDEN.max_workers, ge=1,
                             description="upper bound on chunks per video")
    min_frames_per_chunk: int = Field(_GOLDEN.min_frames_per_chunk, ge=1,
                                      description="smallest chunk worth a worker")
    executor: Literal["auto", "in-process", "join", "private"] = Field(
        "auto", description="where a golden-frame run executes: auto (by estimate), in-process "
                            "(threads), join (a Ray already up, or --address), private (a new "
                            "local Ray)")
    ray_compute: Literal["tasks", "actors"] = Field(
        "tasks", description="Ray Data compute on Ray: tasks (one-shot jobs) or a warm actor pool")
    ray_address: str | None = Field(None, description="Ray cluster address; none = private local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the private local Ray (default: all)")
    cluster_cpus: int | None = Field(
        None, ge=1, description="CPUs to plan chunks for (default: the cluster's CPUs now); on an "
                                "autoscaling cluster, the CPUs it may scale to")
    # inputs read by the workers (URLs, s3://, gs://, supabase://) and batch jobs (--manifest)
    download_max_bytes: int = Field(4_294_967_296, ge=1,
                                    description="largest remote video, and most bytes one "
                                                "reader fetches")
    download_timeout_s: float = Field(600.0, gt=0, description="time limit for one reader of a "
                                                               "remote video (s)")
    source_request_timeout_s: float = Field(30.0, gt=0, description="a request to a video's "
                                            "source that answers nothing for this long fails "
                                            "the video (s)")
    source_block_bytes: int = Field(262_144, ge=4096, description="first read-ahead of a "
                                    "remote reader; doubles while reads are sequential")
    source_max_block_bytes: int = Field(8_388_608, ge=4096,
                                        description="largest read-ahead of a remote reader")
    url_allowlist: str | None = Field(
        None, description="comma-separated hosts and CIDRs exempt from the private-address "
                          "refusal of URL downloads, each for ports 80 and 443 unless it names "
                          "a port (`host:8080`, `10.0.0.0/8:*` for any port)")
    # object storage (s3://, gs://): endpoints and regions from here, credentials from the
    # workers' own environment
    s3_endpoint: str | None = Field(None, description="S3 API endpoint for s3:// inputs "
                                    "(default: AWS); credentials from the AWS_* environment")
    s3_region: str | None = Field(None, description="region of the s3:// buckets")
    gcs_endpoint: str | None = Field(None, description="GCS endpoint for gs:// inputs "
                                     "(default: Google)")
    gcs_anonymous: bool = Field(False, description="read gs:// inputs without credentials")
    supabase_input_url_expiry_s: int = Field(
        86_400, ge=60, le=31_536_000, description="lifetime of the signed URLs workers read "
                                                  "supabase:// inputs with (s)")
    max_finishing: int | None = Field(
        None, ge=1, description="most videos whose finish step (select, extract, store) is queued "
                                "or running at once (default: 2 x the CPUs planned for)")
    # output
    out_dir: str = Field("output", description="root folder of the local store")
    store: Literal["local", "supabase"] = Field(
        "local", description="where results go: local folder, or local folder + Supabase")
    image_format: Literal["jpeg", "png"] = Field(_GOLDEN.image_format,
                                                 description="golden frame image format")
    jpeg_quality: int = Field(_GOLDEN.jpeg_quality, ge=1, le=100,
                              description="JPEG quality of golden frames")
    candidates: int = Field(_GOLDEN.candidates, ge=0, le=256,
                            description="frames extracted and stored beside the picks, so a "
                                        "re-pick takes them instead of decoding (0 = none)")
    # Supabase (store=supabase); SUPABASE_URL / SUPABASE_SERVICE_ROLE_KEY come from the env only
    supabase_bucket: str = Field("golden-frames", min_length=3, max_length=63,
                                 pattern=r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$",
                                 description="Storage bucket of the golden frame images")
    supabase_signed_urls: bool = Field(False, description="add signed image URLs to results")
    supabase_signed_url_expiry_s: int = Field(3600, ge=1, le=31_536_000,
                                              description="lifetime of signed URLs (s)")
    supabase_retries: int = Field(5, ge=1, le=20,
                                  description="attempts per request on network errors, 5xx, 429")
    supabase_backoff_s: float = Field(0.5, ge=0, description="first retry delay (s), doubling")
    supabase_backoff_max_s: float = Field(10.0, ge=0, description="longest retry delay (s)")
    supabase_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout per request (s)")
    # models (weights are local files, never downloaded) and video jobs on model workers
    yolo_weights: str | None = Field(None, description="YOLO .pt (or .yaml) for detection; "
                                                       "none = no detector deployment")
    yolo_conf: float = Field(0.25, ge=0, le=1, description="detection confidence floor")
    yolo_iou: float = Field(0.45, gt=0, le=1, description="NMS IoU threshold")
    yolo_imgsz: int = Field(640, ge=32, le=4096, description="YOLO inference size (px)")
    detect_batch_size: int = Field(16, ge=1, le=256,
                                   description="frames per detector call (video jobs and Serve)")
    detect_batch_wait_s: float = Field(0.01, ge=0, le=5,
                                       description="Serve: longest wait for a batch to fill (s)")
    upscaler_weights: str | None = Field(None, description="Real-ESRGAN .pth (spandrel); "
                                                           "none = no upscaler deployment")
    upscale_tile: int = Field(256, ge=0, description="upscaler tile size in px (0 = no tiling)")
    upscale_tile_pad: int = Field(10, ge=0, description="context px around each tile")
    upscale_pre_pad: int = Field(0, ge=0, description="reflect padding before upscaling (px)")
    max_upscale_pixels: int = Field(16_777_216, ge=1,
                                    description="largest upscaled output (pixels) per request")
    model_device: str = Field("auto", description="auto (CUDA when present), cpu or cuda[:N]")
    model_half: bool = Field(True, description="fp16 on CUDA when the model supports it")
    detector_num_gpus: float = Field(0.0, ge=0, description="GPUs per detector replica")
    upscaler_num_gpus: float = Field(0.0, ge=0, description="GPUs per upscaler replica")
    detector_num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per detector replica "
                                     "(torch threads on CPU = max(1, int(this)))")
    upscaler_num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per upscaler replica")
    detector_max_replicas: int = Field(2, ge=1, description="most detector replicas Serve's "
                                       "autoscaler may start (serve/config.yaml sets its own)")
    upscaler_max_replicas: int = Field(2, ge=1, description="most upscaler replicas Serve's "
                                       "autoscaler may start")
    video_num_gpus: float | None = Field(
        None, ge=0, description="GPUs per video-job model actor (default: 1 when the cluster "
                                "has GPUs, else 0)")
    worker_startup_s: float = Field(30.0, ge=0, description="planner: start-up per model "
                                    "worker (container, model load, download)")
    target_speedup: float = Field(4.0, ge=1, description="planner: speedup over one worker "
                                  "that --workers auto aims for")

    def golden_params(self) -> GoldenParams:
        """The golden-frame parameters these settings name."""
        return GoldenParams(top_k=self.top_k, min_gap_s=self.min_gap_s, motion_max=self.motion_max,
                            still_window_s=self.still_window_s, min_hold_s=self.min_hold_s,
                            edge_margin_s=self.edge_margin_s,
                            hold_sharpness_ratio=self.hold_sharpness_ratio,
                            dup_max_diff=self.dup_max_diff, image_format=self.image_format,
                            jpeg_quality=self.jpeg_quality, candidates=self.candidates,
                            workers=None if self.workers == "auto" else int(self.workers),
                            max_workers=self.max_workers,
                            min_frames_per_chunk=self.min_frames_per_chunk,
                            actors=self.ray_compute == "actors",
                            scorer=ScorerConfig(analysis_long_side=self.analysis_long_side,
                                                flow=self.flow, dis_preset=self.dis_preset))

    @model_validator(mode="before")
    @classmethod
    def _executor_was_ray_compute(cls, data: object) -> object:
        """``executor=tasks|actors`` (before 0.3) is the Ray Data compute, now ``ray_compute``."""
        if isinstance(data, dict) and data.get("executor") in ("tasks", "actors"):
            data = {"ray_compute": data["executor"], **data, "executor": "auto"}
        return data

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
