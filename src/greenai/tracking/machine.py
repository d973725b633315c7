"""What a run ran on: machine and software, recorded in every run's metadata for reports."""

from __future__ import annotations

import functools
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
        "os": os_name(),
        "python_version": platform.python_version(),
        "greenai_version": __version__,
        "cpu_model": cpu_model_name() or platform.processor() or "unknown",
        "cpu_count": os.cpu_count() or 0,
        "ram_total_gb": _ram_total_gb(),
        "gpu_count": len(gpus),
        "gpu_models": [str(getattr(g, "model", g.name)) for g in gpus],
        "devices": {d.name: str(d) for d in devices},  # a custom device's str is its repr
    }
    launcher = launcher_metadata()
    if launcher:
        info["launcher"] = launcher
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_version"] = str(getattr(torch, "__version__", "unknown"))
    return info


@functools.cache
def os_name() -> str:
    """The OS as ``platform.platform()`` names it, without its two slow parts on Linux.

    ``platform.platform()`` runs ``uname -p`` in a subprocess (for the processor, on
    Linux the machine again or unknown) and scans the Python binary for the glibc
    it was linked against: 7-11 ms of the first ``track()``. On glibc Linux this is
    ``Linux-<release>-<machine>-with-glibc<version>`` with the glibc that runs, from
    ``os.confstr``; elsewhere ``platform.platform()``. Cached.
    """
    libc = None
    if sys.platform == "linux":
        try:
            libc = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; None or ValueError on musl
        except (ValueError, OSError):
            libc = None
    if not libc:
        return platform.platform()
    uname = os.uname()
    name, _, version = libc.partition(" ")
    return f"{uname.sysname}-{uname.release}-{uname.machine}-with-{name}{version}"


def _ram_total_gb() -> float:
    import psutil

    return float(psutil.virtual_memory().total) / 1e9
