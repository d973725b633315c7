"""What CPU this machine has, as the kernel tells it: model name, hypervisor, packages.

Read from ``/proc/cpuinfo`` and sysfs, each once per process (cached). The CPU
estimate (:mod:`greenai.devices.cpu_estimate`) sizes its model with these, and
run metadata records the model name.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterator
from pathlib import Path


def _cpuinfo_values(cpuinfo: Path, key: str) -> Iterator[str]:
    """The values of ``key`` in ``cpuinfo``, one per processor, stripped; none if unreadable."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key:
                    yield value.strip()
    except OSError:
        return


@functools.cache
def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name: ``model name`` in ``/proc/cpuinfo``, else ``platform.processor()``.

    Returns None when neither says anything (``platform.processor()`` is often
    empty, or only the architecture, on Linux). Cached.
    """
    found = next((value for value in _cpuinfo_values(cpuinfo, "model name") if value), None)
    if found is not None:
        return found
    name = platform.processor().strip()
    return name if name and name != platform.machine() else None


@functools.cache
def running_in_vm(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this kernel runs under a hypervisor: the ``hypervisor`` flag in ``/proc/cpuinfo``.

    x86 kernels list that flag (CPUID leaf 1, ECX bit 31, which hypervisors set
    and CPUs leave clear) in the ``flags`` line of each processor. Other
    architectures have no such flag, and an unreadable file says nothing:
    both read as bare metal (False). Cached.
    """
    flags = next(_cpuinfo_values(cpuinfo, "flags"), "")
    return "hypervisor" in flags.split()


@functools.cache
def count_packages(sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """How many CPU packages (sockets) the machine has, from sysfs; 1 if unknown. Cached."""
    ids: set[str] = set()
    for path in sys_cpu.glob("cpu[0-9]*/topology/physical_package_id"):
        try:
            ids.add(path.read_text().strip())
        except OSError:
            continue
    return max(len(ids), 1)
