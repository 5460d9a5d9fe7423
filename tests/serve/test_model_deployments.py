"""Model deployment helpers that need no running model."""

from __future__ import annotations

from serve.model_deployments import cpu_headroom_warning
from serve.settings import ServiceSettings


def test_cpu_headroom_warning_when_model_replicas_take_every_cpu():
    both = ServiceSettings(yolo_weights="y.pt", upscaler_weights="u.pth")
    msg = cpu_headroom_warning(both, 2)
    assert msg and "FRAMESIFT_DETECTOR_NUM_CPUS" in msg and "2 of this Ray's 2 CPUs" in msg
    assert cpu_headroom_warning(both, 3) is None
    half = ServiceSettings(yolo_weights="y.pt", upscaler_weights="u.pth", detector_num_cpus=0.5,
                           upscaler_num_cpus=0.5)
    assert cpu_headroom_warning(half, 2) is None
    assert cpu_headroom_warning(ServiceSettings(), 1) is None  # no models, nothing reserved
