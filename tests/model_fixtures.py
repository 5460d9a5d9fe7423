"""Random-weight models written to disk in the formats the production loaders read."""

from __future__ import annotations

import os
from pathlib import Path

CLASS_NAMES = {0: "person", 1: "car", 2: "dog"}


def make_yolo_pt(root: Path) -> Path:
    """YOLOv8n architecture with 3 named classes and random weights, saved as a .pt."""
    from actors.weights import prepare_ultralytics_env

    prepare_ultralytics_env(str(root / "ultralytics"))
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    spec = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml"
    cfg = yaml.safe_load(spec.read_text())
    cfg["nc"] = len(CLASS_NAMES)
    cfg["names"] = CLASS_NAMES
    cfg["scale"] = "n"
    path = root / "yolov8n-3.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    model = YOLO(str(path), task="detect")
    model.model.names = dict(CLASS_NAMES)
    out = root / "yolo-random.pt"
    model.save(str(out))
    return out


def make_compact_pth(root: Path, scale: int = 2, num_feat: int = 8, num_conv: int = 2,
                     seed: int = 0) -> Path:
    """A small Real-ESRGAN Compact (SRVGG) state dict, saved as Real-ESRGAN does (params)."""
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=scale)
    out = root / f"compact-x{scale}.pth"
    torch.save({"params": model.state_dict()}, out)
    return out


def make_esrgan_pth(root: Path) -> Path:
    """A tiny ESRGAN (RRDBNet, x4plus layout) state dict, as RealESRGAN_x4plus.pth stores it."""
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    out = root / "esrgan-x4.pth"
    torch.save({"params_ema": model.state_dict()}, out)
    return out


__all__ = ["CLASS_NAMES", "make_yolo_pt", "make_compact_pth", "make_esrgan_pth", "os"]
