"""CPU and DRAM energy estimates for machines where RAPL is absent or unreadable.

Every figure here comes from a model, not a sensor, and is labelled
``source="estimate"`` so that it is never passed off as a measurement. The
models follow CodeCarbon's, restricted to what THIS process (and its live
descendants, :class:`~greenai.devices.process_tree.ProcessTree`) uses:

- CPU: each package draws its TDP when all its logical CPUs are busy, shared
  evenly among them; the process is charged for the CPU time it used
  (:class:`CpuEstimate`). In a virtual machine the share is the host's, not the
  guest's: a vCPU is one thread of the host's package, whose TDP is divided
  among the host's threads when the model name says how many cores it has, and
  is otherwise worth :data:`~greenai.devices.cpu_tdp.VM_W_PER_VCPU`
  (:func:`~greenai.devices.cpu_tdp.lookup_vm_power`).
- DRAM: 3 W per 8 GiB of resident memory (:class:`DramEstimate`).

Which CPU this is comes from :mod:`greenai.devices.cpu_info`; its TDP from
CodeCarbon's CPU table, through :mod:`greenai.devices.cpu_tdp`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time

import psutil

from greenai.core.errors import DeviceError, NotSupportedError
from greenai.devices.base import Device, DeviceKind, NoPowerLimit, Source
from greenai.devices.cpu_info import count_packages, cpu_model_name, running_in_vm
from greenai.devices.cpu_tdp import cpu_power_csv_path, lookup_tdp, lookup_vm_power
from greenai.devices.process_tree import ProcessTree

logger = logging.getLogger(__name__)

W_PER_GIB = 3 / 8
"""DRAM power per GiB resident: CodeCarbon's long-standing 3 W per 8 GB. Units: W/GiB."""

POWER_WINDOW_S = 0.1
"""Shortest interval :meth:`CpuEstimate.power_w` averages over: ``os.times`` counts
in clock ticks (10 ms on Linux), so shorter windows would be mostly rounding. Units: s."""

_BYTES_PER_GIB = 1024**3


class CpuEstimate(NoPowerLimit):
    """Energy this process spends on the CPU, from its CPU time and the CPU's TDP.

    Model::

        energy_j = power_per_busy_cpu_w * process_cpu_s

    On bare metal, ``power_per_busy_cpu_w = tdp_w * packages / logical_cpus``:
    each of the machine's ``logical_cpus`` (``os.cpu_count()``) is worth an
    equal share of the packages' combined TDP while busy, and the process is
    charged for the CPU seconds it used (user + system time of all its threads,
    plus that of children it has waited for, as :func:`os.times` counts them).
    A process keeping 4 of 64 logical CPUs busy for 10 s on one 200 W package
    is charged 200 * 40 / 64 = 125 J.

    In a virtual machine (:func:`~greenai.devices.cpu_info.running_in_vm`) that
    share would be wrong: ``/proc/cpuinfo`` names the host's chip, whose TDP
    covers all the host's threads, while ``os.cpu_count()`` counts only the
    guest's vCPUs, so each vCPU would be charged many host threads' worth (35 W
    instead of 2.2 W for 8 vCPUs of an AMD EPYC 7763). There,
    ``power_per_busy_cpu_w`` is the host TDP divided among the host's threads
    when the model name gives the core count, else
    :data:`~greenai.devices.cpu_tdp.VM_W_PER_VCPU` (see
    :func:`~greenai.devices.cpu_tdp.lookup_vm_power`), and ``tdp_origin``
    starts with ``"vm: "`` and says which.

    No idle share is included, on purpose: idle power belongs to the machine,
    whether or not the run happens, so the estimate is what the run added, and
    two runs on one machine do not both claim its idle draw. A package at full
    load draws close to its TDP; at partial load the even share per busy CPU
    is an approximation.

    Because the model is integrated exactly from cumulative CPU time,
    :meth:`energy_j` is a true counter (``has_energy_counter=True``) even though
    nothing is measured.

    Attributes:
        tdp_w: TDP of one package, the one the estimate uses. Units: W. In a VM, the
            host package's TDP, or None when the estimate rests on
            :data:`~greenai.devices.cpu_tdp.VM_W_PER_VCPU` and uses no TDP.
        tdp_origin: Where the figures came from: ``"user-given (tdp_w=)"``, a
            CodeCarbon table match, a sentence starting with ``"default"``, or, in
            a VM without ``tdp_w=``, a sentence starting with ``"vm: "``.
        packages: CPU packages (sockets) the kernel sees (in a VM, the guest's).
        logical_cpus: Logical CPUs the kernel sees (in a VM, the guest's vCPUs).
        vm: Whether the kernel runs under a hypervisor.
        power_per_busy_cpu_w: Power charged for one logical CPU (vCPU) kept busy,
            i.e. energy per CPU-second. Units: W (= J per CPU-s).
    """

    name = "cpu0"
    kind: DeviceKind = "cpu"
    source: Source = "estimate"
    has_energy_counter = True

    def __init__(self, tdp_w: float | None = None) -> None:
        """Set up the model; the origin of :meth:`energy_j` is now.

        Args:
            tdp_w: TDP of one package in W; looked up from the CPU model when None.
                A given value always means the bare-metal model,
                ``tdp_w * packages / logical_cpus`` per busy CPU, VM or not. So in a
                VM pass the power of the guest's CPUs all busy, per guest package:
                with 8 vCPUs on one package of an EPYC 7763 host, 8 * 280 / 128 =
                17.5 W.

        Raises:
            ValueError: ``tdp_w`` is not a positive, finite number.
        """
        if tdp_w is not None and (
            isinstance(tdp_w, bool) or not (math.isfinite(tdp_w) and tdp_w > 0)
        ):
            raise ValueError(f"tdp_w must be a positive number of watts, got {tdp_w!r}")
        self.counter_resets = 0
        self.packages = count_packages()
        self.logical_cpus = os.cpu_count() or 1
        self.vm = running_in_vm()
        self.tdp_w: float | None
        if tdp_w is None and self.vm:
            self.tdp_w, self.power_per_busy_cpu_w, self.tdp_origin = lookup_vm_power(
                cpu_model_name(), cpu_power_csv_path()
            )
        else:
            if tdp_w is None:
                package_w, self.tdp_origin = lookup_tdp(cpu_model_name(), cpu_power_csv_path())
            else:
                package_w, self.tdp_origin = float(tdp_w), "user-given (tdp_w=)"
            self.tdp_w = package_w
            self.power_per_busy_cpu_w = package_w * self.packages / self.logical_cpus
        self._tree = ProcessTree()
        self._origin_cpu_s = self._tree.cpu_s()
        self._last_cpu_s = self._origin_cpu_s
        self._cpu_lock = threading.Lock()
        self._lock = threading.Lock()
        self._window_start = (time.monotonic(), self._origin_cpu_s)
        self._last_power_w: float | None = None

    def energy_j(self) -> float:
        """The model's energy for this process's CPU time since construction. Units: J."""
        return (self._cpu_s() - self._origin_cpu_s) * self.power_per_busy_cpu_w

    def _cpu_s(self) -> float:
        """The tree's CPU time, never decreasing: an exited child's time leaves the live
        list before it reaches os.times() (when it is waited for)."""
        cpu_s = self._tree.cpu_s()
        with self._cpu_lock:
            self._last_cpu_s = max(self._last_cpu_s, cpu_s)
            return self._last_cpu_s

    def power_w(self) -> float:
        """The model's power over the interval since the previous call. Units: W.

        Equals ``power_per_busy_cpu_w * busy_cpus``, ``busy_cpus`` being the CPU
        seconds this process used per second of the interval (capped at
        ``logical_cpus``); on bare metal, ``tdp_w * packages * load``. The
        first interval starts at construction. CPU time advances in clock ticks,
        so an interval shorter than :data:`POWER_WINDOW_S` is too coarse to
        close: the call returns the last closed interval's figure and leaves the
        interval open; before any interval has closed, it returns the average
        over the open one (0 when no time has passed). Uses the real monotonic
        clock, since CPU time is real. Thread-safe.
        """
        with self._lock:
            now = (time.monotonic(), self._cpu_s())
            elapsed_s = now[0] - self._window_start[0]
            if elapsed_s < POWER_WINDOW_S and self._last_power_w is not None:
                return self._last_power_w
            busy_cpus = (now[1] - self._window_start[1]) / elapsed_s if elapsed_s > 0 else 0.0
            power_w = min(busy_cpus, self.logical_cpus) * self.power_per_busy_cpu_w
            if elapsed_s >= POWER_WINDOW_S:
                self._window_start, self._last_power_w = now, power_w
            return power_w

    def __str__(self) -> str:
        return f"estimate: {self.power_per_busy_cpu_w:.3g} W per busy CPU ({self.tdp_origin})"

    def __repr__(self) -> str:
        return (
            f"CpuEstimate(tdp_w={self.tdp_w!r}, "
            f"power_per_busy_cpu_w={self.power_per_busy_cpu_w:.4g}, "
            f"tdp_origin={self.tdp_origin!r})"
        )


class DramEstimate(NoPowerLimit):
    """Power of the memory this process holds: :data:`W_PER_GIB` per GiB of resident set.

    Model: ``power_w = 3/8 W * RSS in GiB``, CodeCarbon's long-standing 3 W per
    8 GB, charged for what the process keeps resident (its RSS, read through
    psutil) rather than for the installed memory, for the same reason
    :class:`CpuEstimate` leaves out idle power. There is no counter
    (``has_energy_counter=False``): the tracker integrates :meth:`power_w` over
    time.
    """

    name = "dram0"
    kind: DeviceKind = "dram"
    source: Source = "estimate"
    has_energy_counter = False

    def __init__(self) -> None:
        self.counter_resets = 0
        self._tree = ProcessTree()

    def __str__(self) -> str:
        return f"estimate: {W_PER_GIB:.3f} W per GiB resident in this process and its children"

    def __repr__(self) -> str:
        return f"DramEstimate({W_PER_GIB:.3f} W per GiB resident in this process and its children)"

    def energy_j(self) -> float:
        """There is no DRAM energy counter to estimate from: integrate :meth:`power_w`.

        Raises:
            NotSupportedError: Always.
        """
        raise NotSupportedError(f"{self.name}: an estimate without a counter; integrate power_w")

    def power_w(self) -> float:
        """The model's power for this process's current resident set. Units: W.

        Raises:
            DeviceError: The resident set size could not be read (the cause is chained).
        """
        try:
            rss_bytes = self._tree.rss_bytes()
        except (psutil.Error, OSError) as e:
            raise DeviceError(f"{self.name}: cannot read this process's RSS: {e!r}") from e
        return W_PER_GIB * rss_bytes / _BYTES_PER_GIB


def probe() -> list[Device]:
    """The estimates: ``[CpuEstimate(), DramEstimate()]``, each present only if it works.

    Never raises: an estimate that fails to set up (or, for DRAM, to read the
    RSS once) is left out with one DEBUG log line saying why.
    """
    devices: list[Device] = []
    try:
        devices.append(CpuEstimate())
    except Exception as e:  # probing must never break the caller; anything is "absent"
        logger.debug("CPU estimate unavailable: %r", e)
    try:
        dram = DramEstimate()
        dram.power_w()
        devices.append(dram)
    except Exception as e:  # as above
        logger.debug("DRAM estimate unavailable: %r", e)
    return devices
