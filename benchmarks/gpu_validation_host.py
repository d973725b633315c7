"""What the machine running ``gpu_validation.py`` has, a subprocess with a hard timeout, and
the exception by which a section says it cannot run here.

:func:`environment` needs no greenai (before ``--build`` it is not installed yet) and
says why no CUDA GPU is usable where none is; :func:`run_logged` runs the build, pytest and the
sections' children with their output in a log and their process group ended at the deadline.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "numpy",
    "nvidia-ml-py",
    "pytest",
    "pytest-xdist",
    "pytest-timeout",
    "hypothesis",
    "scikit-build-core",
    "pybind11",
    "psutil",
    "prometheus-client",
    "codecarbon",
)


class SectionSkipped(Exception):
    """Raised by a section that finds it cannot run here; the message is the reason."""


# --- environment ------------------------------------------------------------------------------


def environment() -> tuple[dict[str, Any], str | None]:
    """What this machine has, and None when a CUDA GPU is usable, else why not."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "packages": {name: _version(name) for name in PACKAGES},
        "codecarbon_installed": importlib.util.find_spec("codecarbon") is not None,
        "nvidia_smi": shutil.which("nvidia-smi"),
        "nvcc": _nvcc_version(),
    }
    with contextlib.suppress(OSError):
        env["load_average"] = os.getloadavg()
    try:
        import greenai

        env["greenai"] = {"version": greenai.__version__, "file": greenai.__file__}
        from greenai import _C

        env["greenai"]["build_info"] = _C.build_info()
    except Exception as e:  # not installed yet (before --build), or _C missing
        env.setdefault("greenai", {})["error"] = f"{type(e).__name__}: {e}"
    gpu: dict[str, Any] = {}
    reasons: list[str] = []
    try:
        import torch

        gpu["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            gpu.update(
                name=props.name,
                capability=f"{props.major}.{props.minor}",
                sms=props.multi_processor_count,
                memory_gib=round(props.total_memory / 2**30, 1),
                l2_mib=round(getattr(props, "L2_cache_size", 0) / 2**20, 1),
                devices=torch.cuda.device_count(),
            )
        else:
            reasons.append(f"torch {torch.__version__}: torch.cuda.is_available() is False")
    except ImportError as e:
        reasons.append(f"torch is not installed ({e})")
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            gpu["nvml_driver"] = _text(pynvml.nvmlSystemGetDriverVersion())
            gpu["nvml_names"] = [
                _text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(count)
            ]
        finally:
            pynvml.nvmlShutdown()
        gpu.setdefault("name", gpu["nvml_names"][0] if count else None)
        if not count:
            reasons.append("NVML finds no GPU")
    except Exception as e:
        reasons.append(f"NVML: {type(e).__name__}: {e}")
    env["gpu"] = gpu
    return env, (None if "sms" in gpu else "; ".join(reasons))


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvcc_version() -> str | None:
    nvcc = shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None
    )
    if nvcc is None:
        return None
    try:
        text = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"{nvcc}: {e}"
    release = [line for line in text.splitlines() if "release" in line]
    return f"{nvcc}: {release[-1].strip() if release else text.strip()[-200:]}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- a subprocess with a hard timeout and a log --------------------------------------------------


_running: set[subprocess.Popen[Any]] = set()
"""The children of :func:`run_logged` still running, for :func:`end_running`."""


def run_logged(
    cmd: Sequence[str], log: Path, *, timeout_s: float, cwd: Path, append: bool = False
) -> dict[str, Any]:
    """Run ``cmd`` with stdout and stderr to ``log``; past ``timeout_s`` end its process group
    (which takes up to 20 s more, see ``END_SIGNALS``).

    The child gets a session of its own (so its whole group can be ended, compilers and pytest
    workers included); :func:`end_running` ends it if the script must stop first.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("a" if append else "w", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            list(cmd), stdout=f, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )
        _running.add(proc)
        timed_out = False
        try:
            proc.wait(timeout=max(timeout_s, 1.0))
        except subprocess.TimeoutExpired:
            timed_out = True
            _end_group(proc)
        finally:
            _running.discard(proc)
    text = log.read_text(encoding="utf-8", errors="replace")
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "seconds": round(time.monotonic() - t0, 2),
        "limit_s": round(timeout_s, 1),
        "log": log.name,
        "log_tail": text.splitlines()[-25:],
    }


def end_running() -> None:
    """End the process group of every :func:`run_logged` child still running (the watchdog)."""
    for proc in list(_running):
        _end_group(proc)


END_SIGNALS = ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))
"""How a child's group is ended, each signal with how long it is given: SIGINT first, on
which pytest (xdist too) stops, prints its summary and writes its JUnit XML."""


def _end_group(proc: subprocess.Popen[Any]) -> None:
    """End the process group this script started (see ``END_SIGNALS``)."""
    for sig, wait_s in END_SIGNALS:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
