"""CPU and DRAM estimates: the models, VMs, live child processes, and probing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest

from greenai.core.errors import DeviceError, NotSupportedError
from greenai.devices import cpu_estimate
from greenai.devices.base import Device
from greenai.devices.cpu_estimate import POWER_WINDOW_S, W_PER_GIB, CpuEstimate, DramEstimate, probe
from greenai.devices.cpu_info import cpu_model_name
from greenai.devices.cpu_tdp import VM_W_PER_VCPU, cpu_power_csv_path, lookup_vm_power
from greenai.devices.process_tree import DESCENDANTS_REFRESH_S, ProcessTree

TICK_S = 1 / os.sysconf("SC_CLK_TCK")  # os.times() resolution


@pytest.fixture
def machine(fake_csv: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None, bool], None]:
    """Pose as a machine: ``machine(model_name, vm)``, one package, 8 logical CPUs, FAKE_CSV."""
    monkeypatch.setattr(cpu_estimate, "cpu_power_csv_path", lambda: fake_csv)
    monkeypatch.setattr(cpu_estimate, "count_packages", lambda: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)

    def pose(model_name: str | None, vm: bool) -> None:
        monkeypatch.setattr(cpu_estimate, "cpu_model_name", lambda: model_name)
        monkeypatch.setattr(cpu_estimate, "running_in_vm", lambda: vm)

    return pose


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def burn_cpu(seconds: float) -> None:
    """Spin in this thread until this process has used ``seconds`` more CPU time."""
    end = cpu_s() + seconds
    while cpu_s() < end:
        sum(range(1_000))


def test_cpu_estimate_looks_up_this_cpu(machine: Callable[[str | None, bool], None]) -> None:
    """Bare metal: the package's TDP is shared among the logical CPUs the kernel sees."""
    machine("AMD EPYC 7763 64-Core Processor", False)
    est = CpuEstimate()
    assert (est.vm, est.tdp_w, est.packages, est.logical_cpus) == (False, 280.0, 1, 8)
    assert est.tdp_origin.startswith("CodeCarbon cpu_power.csv, exact match")
    assert "'amd epyc 7763'" in est.tdp_origin
    assert est.power_per_busy_cpu_w == 280.0 / 8
    machine("Some Future CPU 9999", False)
    est = CpuEstimate()
    assert (est.tdp_w, est.power_per_busy_cpu_w) == (85.0, 85.0 / 8)
    assert est.tdp_origin.startswith("default")
    machine("AMD EPYC", False)  # no model number, no core count: still the default, per package
    assert CpuEstimate().power_per_busy_cpu_w == 85.0 / 8


def test_vm_divides_the_host_tdp_among_host_threads(
    machine: Callable[[str | None, bool], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 vCPUs of an EPYC 7763 host: 280 W / 128 threads each, not 280 W / 8."""
    machine("AMD EPYC 7763 64-Core Processor", True)
    cpu_s_now = [1_000.0]
    monkeypatch.setattr(ProcessTree, "cpu_s", lambda self: cpu_s_now[0])
    est = CpuEstimate()
    assert (est.vm, est.tdp_w, est.logical_cpus) == (True, 280.0, 8)
    assert est.power_per_busy_cpu_w == 280.0 / 128 == 2.1875
    assert est.tdp_origin.startswith("vm: 280 W / 128 host threads from model name")
    assert "SMT assumed" in est.tdp_origin
    assert "'amd epyc 7763'" in est.tdp_origin
    cpu_s_now[0] += 40.0  # 4 vCPUs busy for 10 s
    assert est.energy_j() == 40.0 * 2.1875
    assert "power_per_busy_cpu_w=2.188" in repr(est)


@pytest.mark.parametrize(
    ("model", "why"),
    [
        # In the table, but Intel names carry no core count.
        ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", "no core count in"),
        # A core count, but no TDP: the 85 W default is never divided by 192 threads.
        ("AMD EPYC 9999 96-Core Processor", "no host TDP"),
        ("AMD EPYC", "no host TDP"),  # what this kind of cloud VM shows
        (None, "no host TDP: the CPU model is unknown"),
    ],
)
def test_vm_of_unknown_host_size_gets_the_per_vcpu_figure(
    machine: Callable[[str | None, bool], None], model: str | None, why: str
) -> None:
    machine(model, True)
    est = CpuEstimate()
    assert VM_W_PER_VCPU == 4.0
    assert (est.vm, est.tdp_w, est.power_per_busy_cpu_w) == (True, None, 4.0)
    assert est.tdp_origin.startswith("vm: 4 W per vCPU (host size unknown; ")
    assert why in est.tdp_origin
    assert "tdp_w=None" in repr(est)


def test_user_tdp_in_a_vm_keeps_the_bare_metal_model(
    machine: Callable[[str | None, bool], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A given TDP is per guest package, shared among the guest's vCPUs: 17.5 W / 8 each."""
    machine("AMD EPYC 7763 64-Core Processor", True)

    def fail() -> None:
        raise AssertionError("a given TDP needs no lookup")

    monkeypatch.setattr(cpu_estimate, "cpu_model_name", fail)
    est = CpuEstimate(tdp_w=17.5)
    assert (est.vm, est.tdp_w, est.tdp_origin) == (True, 17.5, "user-given (tdp_w=)")
    assert est.power_per_busy_cpu_w == 17.5 / 8 == 2.1875


def test_this_machine_takes_the_vm_path_only_under_a_hypervisor() -> None:
    """Whatever this machine is, the estimate's path follows its /proc/cpuinfo flags."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    flags = next(
        (
            v.split()
            for k, _, v in (ln.partition(":") for ln in text.splitlines())
            if k.strip() == "flags"
        ),
        [],
    )
    hypervisor = "hypervisor" in flags
    est = CpuEstimate()
    assert est.vm is hypervisor
    assert est.tdp_origin.startswith("vm: ") is hypervisor
    if hypervisor:
        tdp_w, w_per_vcpu, origin = lookup_vm_power(cpu_model_name(), cpu_power_csv_path())
        assert (est.tdp_w, est.power_per_busy_cpu_w, est.tdp_origin) == (tdp_w, w_per_vcpu, origin)
        assert est.power_per_busy_cpu_w == VM_W_PER_VCPU or est.tdp_w is not None
    else:
        assert est.tdp_w is not None
        assert est.power_per_busy_cpu_w == est.tdp_w * est.packages / est.logical_cpus


def test_user_tdp_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bare metal or not, a given TDP is used as given."""

    def fail() -> None:
        raise AssertionError("a given TDP needs no lookup")

    monkeypatch.setattr(cpu_estimate, "cpu_model_name", fail)
    est = CpuEstimate(tdp_w=200)
    assert (est.tdp_w, est.tdp_origin) == (200.0, "user-given (tdp_w=)")


@pytest.mark.parametrize("tdp_w", [0.0, -10.0, float("nan"), float("inf"), True])
def test_invalid_tdp_is_rejected(tdp_w: float) -> None:
    with pytest.raises(ValueError, match="tdp_w"):
        CpuEstimate(tdp_w=tdp_w)


def test_cpu_energy_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 of 64 logical CPUs busy for 10 s on two 200 W packages: 200 * 2 * 40 / 64 J."""
    cpu_s_now = [1_000.0]
    monkeypatch.setattr(ProcessTree, "cpu_s", lambda self: cpu_s_now[0])
    monkeypatch.setattr(cpu_estimate, "count_packages", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    est = CpuEstimate(tdp_w=200.0)
    assert (est.packages, est.logical_cpus, est.energy_j()) == (2, 64, 0.0)
    cpu_s_now[0] += 40.0
    assert est.energy_j() == 250.0


def test_cpu_energy_follows_cpu_time_not_wall_time() -> None:
    est = CpuEstimate(tdp_w=120.0)
    j_per_cpu_s = 120.0 * est.packages / est.logical_cpus
    assert est.logical_cpus == os.cpu_count()
    assert (est.kind, est.name, est.source, est.has_energy_counter) == (
        "cpu",
        "cpu0",
        "estimate",
        True,
    )
    assert isinstance(est, Device)

    e0, t0 = est.energy_j(), cpu_s()
    burn_cpu(0.2)
    e1, t1 = est.energy_j(), cpu_s()
    assert t1 >= t0 + 0.2  # as burn_cpu compares: t1 - t0 may round to 0.19999999999999996
    assert e1 - e0 == pytest.approx((t1 - t0) * j_per_cpu_s, abs=2 * TICK_S * j_per_cpu_s)

    time.sleep(0.2)  # wall time passes, CPU time barely does
    assert est.energy_j() - e1 == pytest.approx(0, abs=3 * TICK_S * j_per_cpu_s)


@pytest.fixture
def fake_times(monkeypatch: pytest.MonkeyPatch) -> Callable[[float, float], None]:
    """Replace wall and process CPU time with counters; returns ``advance(wall_s, cpu_s)``.

    One package, 8 logical CPUs: with ``tdp_w=80`` each busy logical CPU is worth 10 W.
    """
    now = {"wall": 100.0, "cpu": 10.0}
    monkeypatch.setattr(cpu_estimate, "time", SimpleNamespace(monotonic=lambda: now["wall"]))
    monkeypatch.setattr(ProcessTree, "cpu_s", lambda self: now["cpu"])
    monkeypatch.setattr(cpu_estimate, "count_packages", lambda: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)

    def advance(wall_s: float, cpu_s: float) -> None:
        now["wall"] += wall_s
        now["cpu"] += cpu_s

    return advance


def test_cpu_power_over_intervals(fake_times: Callable[[float, float], None]) -> None:
    est = CpuEstimate(tdp_w=80.0)
    fake_times(1.0, 2.0)  # 2 CPUs busy since construction
    assert est.power_w() == 20.0
    fake_times(0.0625, 0.0625)  # too short an interval: the last figure stands
    assert est.power_w() == 20.0
    fake_times(0.0625, 0.4375)  # the open interval is now 0.125 s long, with 0.5 CPU-s
    assert est.power_w() == 40.0
    fake_times(1.0, 20.0)  # more than all 8 CPUs (tick rounding): capped at the TDP
    assert est.power_w() == 80.0
    fake_times(1.0, 0.0)
    assert est.power_w() == 0.0


def test_first_cpu_power_call_uses_the_short_interval(
    fake_times: Callable[[float, float], None],
) -> None:
    est = CpuEstimate(tdp_w=80.0)
    assert est.power_w() == 0.0  # no time has passed at all
    fake_times(0.03125, 0.09375)  # 3 CPUs busy, shorter than the window, but nothing better
    assert est.power_w() == 30.0


def test_cpu_power_in_real_time() -> None:
    est = CpuEstimate(tdp_w=100.0)
    one_cpu_w = 100.0 * est.packages / est.logical_cpus
    est.power_w()  # starts a fresh interval
    burn_cpu(0.3)  # one busy thread: about one logical CPU, less if others compete for it
    assert 0.2 * one_cpu_w < est.power_w() <= 1.1 * one_cpu_w
    time.sleep(2 * POWER_WINDOW_S)
    assert est.power_w() < 0.2 * one_cpu_w  # an idle interval


def test_dram_power_follows_rss() -> None:
    dram = DramEstimate()
    assert (dram.kind, dram.name, dram.source, dram.has_energy_counter) == (
        "dram",
        "dram0",
        "estimate",
        False,
    )
    assert isinstance(dram, Device)
    before_w = dram.power_w()
    block = np.ones(200 * 1024**2 // 8)  # 200 MiB, every page written
    during_w = dram.power_w()
    del block
    expected_w = 200 / 1024 * W_PER_GIB
    assert W_PER_GIB == 0.375
    assert during_w - before_w == pytest.approx(expected_w, rel=0.1)
    assert dram.power_w() == pytest.approx(before_w, abs=0.1 * expected_w)


def test_dram_has_no_energy_counter() -> None:
    with pytest.raises(NotSupportedError):
        DramEstimate().energy_j()


def test_dram_read_failure_raises_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone() -> None:
        raise psutil.NoSuchProcess(os.getpid())

    dram = DramEstimate()
    monkeypatch.setattr(psutil, "Process", gone)
    with pytest.raises(DeviceError) as excinfo:
        dram.power_w()
    assert isinstance(excinfo.value.__cause__, psutil.NoSuchProcess)


def test_power_limits_are_not_supported() -> None:
    for device in (CpuEstimate(tdp_w=50.0), DramEstimate()):
        with pytest.raises(NotSupportedError):
            device.power_limit_w()
        with pytest.raises(NotSupportedError):
            device.set_power_limit_w(10.0)


def test_probe_returns_both_estimates() -> None:
    devices = probe()
    assert [(type(d), d.name) for d in devices] == [(CpuEstimate, "cpu0"), (DramEstimate, "dram0")]


def test_probe_leaves_out_what_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="greenai.devices.cpu_estimate")

    def denied() -> None:
        raise psutil.AccessDenied(os.getpid())

    monkeypatch.setattr(psutil, "Process", denied)
    assert [d.name for d in probe()] == ["cpu0"]
    assert [(r.levelno, "DRAM estimate unavailable" in r.message) for r in caplog.records] == [
        (logging.DEBUG, True)
    ]


def test_estimates_charge_live_child_processes() -> None:
    """A worker process's CPU time and memory count while it runs, not only once it exits."""
    cpu, dram = CpuEstimate(tdp_w=100.0), DramEstimate()
    alone_w = dram.power_w()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; b = bytearray(300 * 2**20); t = time.process_time()\n"
            "while time.process_time() - t < 0.6: pass\n"
            "time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while cpu.energy_j() < 0.5 * cpu.power_per_busy_cpu_w and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None  # still running: counted live
        assert cpu.energy_j() >= 0.5 * cpu.power_per_busy_cpu_w
        time.sleep(DESCENDANTS_REFRESH_S)
        assert dram.power_w() - alone_w >= 0.9 * 300 / 1024 * W_PER_GIB
    finally:
        child.kill()
        child.wait()
