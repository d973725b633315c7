"""What a run ran on: machine and software, recorded in every run's metadata for reports."""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Sequence
from typing import Any

from greenai.devices import Device
from greenai.tracking.launcher_metadata import launcher_metadata


def describe(devices: Sequence[Device]) -> dict[str, Any]:
    """Host, OS, Python, CPU, memory, metered GPUs, library versions and the launcher's job
    (torchrun, SLURM). Never raises."""
    from greenai import __version__
    from greenai.devices.cpu_info import cpu_model_name

    gpus = [d for d in devices if d.kind == "gpu"]
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "greenai_version": __version__,
        "cpu_model": cpu_model_name() or platform.processor() or "unknown",
        "cpu_count": os.cpu_count() or 0,
        "ram_total_gb": _ram_total_gb(),
        "gpu_count": len(gpus),
        "gpu_models": [str(getattr(g, "model", g.name)) for g in gpus],
        "devices": {d.name: repr(d) for d in devices},
    }
    launcher = launcher_metadata()
    if launcher:
        info["launcher"] = launcher
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_version"] = str(getattr(torch, "__version__", "unknown"))
    return info


def _ram_total_gb() -> float:
    import psutil

    return float(psutil.virtual_memory().total) / 1e9
