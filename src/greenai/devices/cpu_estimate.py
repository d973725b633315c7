"""CPU and DRAM energy estimates for machines where RAPL is absent or unreadable.

Every figure here comes from a model, not a sensor, and is labelled
``source="estimate"`` so that it is never passed off as a measurement. The
models follow CodeCarbon's, restricted to what THIS process uses:

- CPU: each package draws its TDP when all its logical CPUs are busy, shared
  evenly among them; the process is charged for the CPU time it used
  (:class:`CpuEstimate`). In a virtual machine the share is the host's, not the
  guest's: a vCPU is one thread of the host's package, whose TDP is divided
  among the host's threads when the model name says how many cores it has, and
  is otherwise worth :data:`VM_W_PER_VCPU` (:func:`lookup_vm_power`).
- DRAM: 3 W per 8 GiB of resident memory (:class:`DramEstimate`).

The TDP comes from CodeCarbon's CPU table (``codecarbon/data/hardware/cpu_power.csv``),
read as a plain CSV file: ``codecarbon`` itself is never imported here (its import
is slow and noisy), only located with :func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import logging
import math
import os
import platform
import re
import threading
import time
from pathlib import Path

import psutil

from greenai.core.errors import DeviceError, NotSupportedError
from greenai.devices.base import Device, DeviceKind, NoPowerLimit, Source

logger = logging.getLogger(__name__)

DEFAULT_TDP_W = 85.0
"""TDP assumed for a CPU that is not in CodeCarbon's table. Units: W per package.

CodeCarbon's constant for a CPU of unknown TDP (``POWER_CONSTANT`` in
``codecarbon.external.hardware``), per package like the table's entries.
(CodeCarbon 3 assumes 4 W per logical CPU instead when it can read a model name
that is not in its table.)"""

VM_W_PER_VCPU = 4.0
"""Power of one busy vCPU when the host's TDP or thread count is unknown. Units: W per vCPU.

CodeCarbon 3's figure for a CPU it cannot size (4 W per thread). Server chips
rented out as vCPUs land around it: AMD EPYC 7763 280 W / 128 threads = 2.2 W,
Intel Xeon Platinum 8375C 300 W / 64 threads = 4.7 W, Intel Xeon Gold 6130
125 W / 32 threads = 3.9 W. So the figure is good to a factor of about 2, not
better; the ``tdp_origin`` of an estimate that uses it says so."""

W_PER_GIB = 3 / 8
"""DRAM power per GiB resident: CodeCarbon's long-standing 3 W per 8 GB. Units: W/GiB."""

POWER_WINDOW_S = 0.1
"""Shortest interval :meth:`CpuEstimate.power_w` averages over: ``os.times`` counts
in clock ticks (10 ms on Linux), so shorter windows would be mostly rounding. Units: s."""

_BYTES_PER_GIB = 1024**3

# What a CPU model name carries besides the model itself, in /proc/cpuinfo and in
# CodeCarbon's table alike. Applied in order, to the lower-cased name.
_NOISE = [
    re.compile(r"\((?:r|tm)\)|[®™]"),  # trademark marks
    re.compile(r"\([^)]*\)"),  # "(OEM Only)", "(9M Cache, up to 4.00 GHz)"
    re.compile(r"@\s*[\d.]+\s*[gm]hz"),  # clock speed
    re.compile(r"\b\d+(?:st|nd|rd|th) gen\b"),  # "13th Gen Intel(R) Core(TM) i9-13900K"
    re.compile(r"\b(?:\d+|dual|quad|six|eight|twelve|sixteen)-cores?\b"),
    re.compile(r"\bwith radeon(?: \w+)? graphics\b"),
    re.compile(r"\b(?:cpu|processor|apu)\b"),
    re.compile(r","),
]


def normalize_cpu_name(name: str) -> str:
    """Reduce a CPU model name to its identifying words, lower-cased.

    ``"Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"`` -> ``"intel xeon gold 6130"``;
    ``"AMD EPYC 7763 64-Core Processor"`` -> ``"amd epyc 7763"``.
    """
    text = name.lower()
    for pattern in _NOISE:
        text = pattern.sub(" ", text)
    return " ".join(text.split())


def match_tdp(model_name: str, table: dict[str, float]) -> tuple[str, float, str] | None:
    """Find a CPU model in a TDP table, preferring no answer to a wrong one.

    Both the model name and the table's keys are compared after
    :func:`normalize_cpu_name`. An exact match wins. Otherwise an entry matches
    when one's words are a subset of the other's AND both carry exactly the same
    words containing a digit (the model number, a ``v4`` revision): a name may
    add or omit the vendor or a description, but ``i7-8700`` never matches
    ``i7-8700K`` and ``E5-2680 v4`` never matches ``E5-2680``. If the entries that
    match that way disagree on the TDP, there is no match.

    Args:
        model_name: The CPU model name as the system reports it.
        table: Normalized model name -> TDP in W, as :func:`load_tdp_table` returns.

    Returns:
        ``(entry, tdp_w, how)`` with ``how`` ``"exact"`` or ``"token"``, or None.
    """
    query = normalize_cpu_name(model_name)
    if query in table:
        return query, table[query], "exact"
    words = set(query.split())
    numbers = {w for w in words if any(c.isdigit() for c in w)}
    if not numbers:
        return None
    candidates: list[tuple[str, float]] = []
    for entry, tdp_w in table.items():
        entry_words = set(entry.split())
        if (entry_words <= words or words <= entry_words) and numbers == {
            w for w in entry_words if any(c.isdigit() for c in w)
        }:
            candidates.append((entry, tdp_w))
    if not candidates or len({tdp_w for _, tdp_w in candidates}) > 1:
        return None
    entry, tdp_w = min(candidates)
    return entry, tdp_w, "token"


# Core counts as CPU model names spell them: "64-Core", "64-Cores", "Quad-Core".
_CORES = re.compile(r"\b(\d+|dual|quad|six|eight|twelve|sixteen)-cores?\b", re.IGNORECASE)
_CORE_WORDS = {"dual": 2, "quad": 4, "six": 6, "eight": 8, "twelve": 12, "sixteen": 16}


def host_threads_from_name(model_name: str) -> int | None:
    """Hardware threads of one package, from a core count in its model name, else None.

    AMD names carry the core count (``"AMD EPYC 7763 64-Core Processor"``);
    Intel names do not. Two threads per core are assumed (SMT), as on nearly
    every server chip rented out as vCPUs: ``"... 64-Core ..."`` -> 128. On a host
    that runs with SMT off, each vCPU is a whole core and the per-thread share
    derived from this is half the right one. None when the name gives no core
    count, or more than one.
    """
    counts = {_CORE_WORDS.get(m.lower()) or int(m) for m in _CORES.findall(model_name)}
    if len(counts) != 1:
        return None
    (cores,) = counts
    return 2 * cores if cores > 0 else None


def cpu_power_csv_path() -> Path | None:
    """Locate CodeCarbon's ``cpu_power.csv`` without importing ``codecarbon``.

    ``find_spec`` on a top-level package reads its location from the import
    system without executing its ``__init__``.
    """
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "hardware" / "cpu_power.csv"
        if path.is_file():
            return path
    return None


@functools.cache
def load_tdp_table(path: Path) -> dict[str, float]:
    """Read a ``Name,TDP`` CSV (CodeCarbon's format) into normalized name -> TDP in W.

    Rows whose TDP is not a positive number are skipped. When two rows normalize
    to the same name with different TDPs, the name is dropped: it cannot tell
    the two apart. Cached per path.

    Raises:
        OSError: The file cannot be read.
    """
    table: dict[str, float] = {}
    ambiguous: set[str] = set()
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                tdp_w = float(row["TDP"])
            except (KeyError, TypeError, ValueError):
                continue
            name = normalize_cpu_name(row.get("Name") or "")
            if not name or not (math.isfinite(tdp_w) and tdp_w > 0):
                continue
            if table.get(name, tdp_w) != tdp_w:
                ambiguous.add(name)
            table[name] = tdp_w
    for name in ambiguous:
        del table[name]
    return table


@functools.cache
def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name: ``model name`` in ``/proc/cpuinfo``, else ``platform.processor()``.

    Returns None when neither says anything (``platform.processor()`` is often
    empty, or only the architecture, on Linux). Cached.
    """
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
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
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "flags":
                    return "hypervisor" in value.split()
    except OSError:
        pass
    return False


@functools.cache
def lookup_tdp(model_name: str | None, csv_path: Path | None) -> tuple[float, str]:
    """The TDP of ``model_name`` from the table at ``csv_path``, or :data:`DEFAULT_TDP_W`.

    Returns:
        ``(tdp_w, tdp_origin)``: the TDP per package in W, and a sentence saying
        where it came from (it starts with ``"default"`` when no entry matched).
    """
    if model_name is None:
        return DEFAULT_TDP_W, f"default {DEFAULT_TDP_W:g} W: the CPU model is unknown"
    if csv_path is None:
        return DEFAULT_TDP_W, f"default {DEFAULT_TDP_W:g} W: CodeCarbon's cpu_power.csv not found"
    try:
        table = load_tdp_table(csv_path)
    except OSError as e:
        return DEFAULT_TDP_W, f"default {DEFAULT_TDP_W:g} W: cannot read {csv_path} ({e!r})"
    found = match_tdp(model_name, table)
    if found is None:
        return DEFAULT_TDP_W, (
            f"default {DEFAULT_TDP_W:g} W: {model_name!r} is not in CodeCarbon's cpu_power.csv"
        )
    entry, tdp_w, how = found
    return tdp_w, f"CodeCarbon cpu_power.csv, {how} match of {model_name!r} with {entry!r}"


@functools.cache
def lookup_vm_power(
    model_name: str | None, csv_path: Path | None
) -> tuple[float | None, float, str]:
    """Power of one busy vCPU in a VM whose host CPU is ``model_name``. Units: W.

    A guest counts only its own vCPUs, while ``/proc/cpuinfo`` names the host's
    chip, whose TDP is that of a whole host package: dividing it among the
    guest's vCPUs (the bare-metal model) charges each one a large slice of the
    host (280 W / 8 vCPUs = 35 W each for an EPYC 7763 instead of 2.2 W). So
    the TDP is divided among the host package's threads instead
    (:func:`host_threads_from_name`), and when either the TDP (not in the table)
    or the thread count (not in the name) is unknown, a vCPU is worth
    :data:`VM_W_PER_VCPU`. :data:`DEFAULT_TDP_W` is never divided by a thread
    count: it is a guess for a package of unknown size, and 85 W over 128 threads
    would be far too low.

    Returns:
        ``(tdp_w, w_per_vcpu, tdp_origin)``: the host package's TDP in W, or None
        when the estimate does not use one; the power of one busy vCPU in W; and
        a sentence starting with ``"vm: "`` saying which way it was found.
    """
    fallback = f"vm: {VM_W_PER_VCPU:g} W per vCPU (host size unknown"
    tdp_w, tdp_origin = lookup_tdp(model_name, csv_path)
    if tdp_origin.startswith("default"):
        # "default 85 W: <why>" -> "<why>": no TDP is used, so none is quoted.
        return None, VM_W_PER_VCPU, f"{fallback}; no host TDP: {tdp_origin.partition(': ')[2]})"
    threads = host_threads_from_name(model_name) if model_name is not None else None
    if threads is None:
        return (
            None,
            VM_W_PER_VCPU,
            f"{fallback}; no core count in {model_name!r}, so its {tdp_w:g} W TDP is unused)",
        )
    origin = (
        f"vm: {tdp_w:g} W / {threads} host threads from model name "
        f"({threads // 2} cores, SMT assumed); TDP from {tdp_origin}"
    )
    return tdp_w, tdp_w / threads, origin


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


DESCENDANTS_REFRESH_S = 1.0
"""How often the list of this process's descendants is rescanned (a scan walks /proc)."""


class _ProcessTree:
    """This process and its live descendants (DataLoader workers, a metered command).

    The estimates charge the whole tree: a run's worker processes are part of its
    cost. Scanning for descendants walks every process on the machine, so the
    list is refreshed at most every :data:`DESCENDANTS_REFRESH_S`; reading the
    listed processes' times and memory is cheap.
    """

    def __init__(self) -> None:
        self._children: list[psutil.Process] = []
        self._scanned_at = -math.inf
        self._lock = threading.Lock()

    def _descendants(self) -> list[psutil.Process]:
        with self._lock:
            now = time.monotonic()
            if now - self._scanned_at >= DESCENDANTS_REFRESH_S:
                try:
                    self._children = psutil.Process().children(recursive=True)
                except psutil.Error:
                    self._children = []  # unreadable: charge this process alone
                self._scanned_at = now
            return list(self._children)

    def cpu_s(self) -> float:
        """CPU time of the tree: this process (all threads), the children it waited for,
        and each live descendant with the children it waited for. Units: s."""
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self._descendants():
            try:
                c = child.cpu_times()
            except psutil.Error:
                continue  # exited: its time reaches os.times() once it is waited for
            total += c.user + c.system + c.children_user + c.children_system
        return total

    def rss_bytes(self) -> int:
        """Resident memory of the tree (pages shared between processes count in each)."""
        total = int(psutil.Process().memory_info().rss)
        for child in self._descendants():
            try:
                total += int(child.memory_info().rss)
            except psutil.Error:
                continue
        return total


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

    In a virtual machine (:func:`running_in_vm`) that share would be wrong:
    ``/proc/cpuinfo`` names the host's chip, whose TDP covers all the host's
    threads, while ``os.cpu_count()`` counts only the guest's vCPUs, so each
    vCPU would be charged many host threads' worth (35 W instead of 2.2 W for 8
    vCPUs of an AMD EPYC 7763). There, ``power_per_busy_cpu_w`` is the host
    TDP divided among the host's threads when the model name gives the core
    count, else :data:`VM_W_PER_VCPU` (see :func:`lookup_vm_power`), and
    ``tdp_origin`` starts with ``"vm: "`` and says which.

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
            :data:`VM_W_PER_VCPU` and uses no TDP.
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
        self._tree = _ProcessTree()
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
        self._tree = _ProcessTree()

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
