"""On a real NVIDIA GPU: greenai's NVML figure against nvidia-smi's over the same window.

Skipped without a GPU. Run on the lent GPU machine with ``pytest -m gpu -s`` to see
the figures.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

import greenai
from greenai import devices

pytestmark = pytest.mark.gpu


def _real_gpus() -> list[devices.Device]:
    found = devices.probe_gpus()
    return [g for g in found if g.source != "sim"]


@pytest.fixture
def torch_cuda():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or not _real_gpus():
        pytest.skip("needs a real NVIDIA GPU with a driver and torch with CUDA")
    return torch


def _busy(torch, seconds: float) -> None:  # type: ignore[no-untyped-def]
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


def test_counter_matches_nvidia_smi(torch_cuda) -> None:  # type: ignore[no-untyped-def]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("nvidia-smi not found")
    (gpu,) = devices.probe_gpus([0])
    assert gpu.source == "nvml-counter"
    # nvidia-smi samples power.draw every 100 ms; integrate it over the same window
    proc = subprocess.Popen(
        [
            smi,
            "-i",
            str(getattr(gpu, "nvml_index", 0)),
            "--query-gpu=timestamp,power.draw",
            "--format=csv,noheader,nounits",
            "-lms",
            "100",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        t0 = time.time()
        with greenai.track("gpu", gpus=[0], cpu=False, dram=False) as run:
            _busy(torch_cuda, 6.0)
        t1 = time.time()
        time.sleep(1.0)
    finally:
        proc.terminate()
    rows = []
    assert proc.stdout is not None
    for line in proc.stdout.read().splitlines():
        stamp, watts = (x.strip() for x in line.split(","))
        when = time.mktime(time.strptime(stamp.split(".")[0], "%Y/%m/%d %H:%M:%S"))
        when += float("0." + stamp.split(".")[1]) if "." in stamp else 0.0
        rows.append((when, float(watts)))
    inside = [w for t, w in rows if t0 <= t <= t1]
    smi_j = sum(inside) / len(inside) * (t1 - t0)
    ours_j = run.result.gpu_energy_j
    print(
        f"\ngreenai {ours_j:.1f} J ({gpu.source}) vs nvidia-smi power.draw integral "
        f"{smi_j:.1f} J over {t1 - t0:.2f} s: ratio {ours_j / smi_j:.4f}"
    )
    assert not run.result.partial
    assert ours_j == pytest.approx(smi_j, rel=0.1)


def test_native_module_sees_the_gpu(torch_cuda) -> None:  # type: ignore[no-untyped-def]
    from greenai import _C

    assert _C.build_info()["cuda"]
    assert _C.cuda_device_count() == torch_cuda.cuda.device_count()
