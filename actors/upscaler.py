"""Real-ESRGAN upscaling through spandrel: tiled inference with context padding.

Tiling follows Real-ESRGAN's ``tile_process``: each ``tile`` x ``tile`` input tile is run with
``tile_pad`` pixels of real image context around it (clipped at the image border), and only
the part of the output that belongs to the tile is kept, so tiled output matches untiled
inference (within 1/255 when ``tile_pad`` covers the model's receptive field). ``pre_pad``
reflect-pads the bottom/right edges before inference and is cropped afterwards. On CUDA the
model runs in fp16 when spandrel says the architecture supports it; a CUDA out-of-memory
error halves the tile and retries. Any output scale is reached by resizing after the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from actors.errors import InvalidParameterError
from actors.stage import Resources, Stage
from actors.weights import load_spandrel, setup_torch_worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpscalerConfig:
    weights: str | None = None
    tile: int = 256  # 0 = no tiling
    tile_pad: int = 10
    pre_pad: int = 0
    min_tile: int = 32  # OOM retries stop here
    outscale: float | None = None  # None = the model's native scale
    device: str = "auto"
    half: bool = True  # fp16 on CUDA when the model supports it
    cpus: float = 1.0
    gpus: float = 0.0
    setting: str = "FRAMESIFT_UPSCALER_WEIGHTS"


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def tiled_forward(model: Callable[[Any], Any], img: Any, scale: int, tile: int,
                  tile_pad: int) -> Any:
    """Run ``model`` on ``img`` (1, C, H, W) tile by tile with ``tile_pad`` px of context."""
    import torch

    _, c, h, w = img.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return model(img)
    out = torch.empty((1, c, h * scale, w * scale), dtype=img.dtype, device=img.device)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
            py1, px1 = min(y1 + tile_pad, h), min(x1 + tile_pad, w)
            res = model(img[:, :, py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                res[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
    return out


class Upscaler(Stage[dict[str, Any], dict[str, Any]]):
    """Loads the model once (``setup``); ``upscale`` maps one BGR uint8 image."""

    name = "upscale"

    def __init__(self, config: UpscalerConfig) -> None:
        self.config = config
        self.model: Any = None
        self.device = "cpu"
        self.dtype: Any = None
        self.tile = config.tile
        self.oom_retries = 0

    @property
    def resources(self) -> Resources:
        return Resources(self.config.cpus, self.config.gpus)

    def setup(self) -> None:
        import torch

        self.device = setup_torch_worker(self.config.cpus, self.config.device)
        model = load_spandrel(self.config.weights, self.config.setting)
        model.to(torch.device(self.device)).eval()
        self.dtype = torch.float32
        if self.config.half and self.device.startswith("cuda") and model.supports_half:
            model.half()
            self.dtype = torch.float16
        self.model = model

    @property
    def scale(self) -> int:
        return int(self.model.scale)

    def _forward(self, x: Any) -> Any:
        return self.model(x)

    def upscale(self, bgr: np.ndarray, outscale: float | None = None) -> np.ndarray:
        """Upscaled BGR uint8 image; ``outscale`` (default: config, else native) by resizing."""
        import torch

        if self.model is None:
            self.setup()
        if bgr.ndim != 3 or bgr.shape[2] != 3:
            raise InvalidParameterError(f"expected an HxWx3 image, got shape {bgr.shape}")
        h, w = bgr.shape[:2]
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
        x = x.to(self.device).to(self.dtype if self.dtype is not None else torch.float32) / 255.0
        pre = self.config.pre_pad
        if pre:
            x = torch.nn.functional.pad(x, (0, pre, 0, pre), mode="reflect")
        while True:
            try:
                with torch.inference_mode():
                    y = tiled_forward(self._forward, x, self.scale, self.tile, self.config.tile_pad)
                break
            except Exception as exc:  # noqa: BLE001 - only OOM is retried
                if not _is_oom(exc):
                    raise
                current = self.tile if self.tile > 0 else max(h, w)
                if current // 2 < self.config.min_tile:
                    raise
                self.tile = current // 2
                self.oom_retries += 1
                log.warning("out of memory at tile %d: retrying with tile %d", current, self.tile)
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()
        with torch.inference_mode():
            y = y[:, :, : h * self.scale, : w * self.scale]
            out = (y.squeeze(0).permute(1, 2, 0).float().clamp(0, 1) * 255.0).round()
            result = out.to(torch.uint8).cpu().numpy()[:, :, ::-1]
        scale = outscale if outscale is not None else self.config.outscale
        if scale is not None and abs(scale - self.scale) > 1e-9:
            if scale <= 0:
                raise InvalidParameterError(f"scale must be > 0, got {scale}")
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            interp = cv2.INTER_AREA if scale < self.scale else cv2.INTER_LANCZOS4
            result = cv2.resize(result, size, interpolation=interp)
        return np.ascontiguousarray(result)

    def process(self, batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Ray Data batch with ``frame`` (N, H, W, 3) -> the same batch with upscaled frames."""
        frames = batch["frame"]
        out = dict(batch)
        out["frame"] = np.stack([self.upscale(frames[i]) for i in range(len(frames))])
        yield out
