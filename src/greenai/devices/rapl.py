"""CPU package and DRAM energy from Linux RAPL counters, read through the powercap sysfs tree.

The kernel's ``intel_rapl`` driver (also used for AMD CPUs on recent kernels,
under the same ``intel-rapl`` names) publishes one zone per CPU package,
``intel-rapl:N`` whose ``name`` is ``package-N`` (``package-N-die-M`` on
multi-die parts), with subzones ``intel-rapl:N:M`` for ``core``, ``uncore`` and
``dram``. greenai reads the package zones (kind ``"cpu"``) and the ``dram``
subzones (kind ``"dram"``) and nothing else:

- ``core`` and ``uncore`` are parts of the package figure; adding them would
  count that energy twice.
- ``intel-rapl-mmio:N`` exposes the same package counter through MMIO; counting
  it as well would double the package energy.
- ``psys`` (the whole platform) overlaps the packages and DRAM.

Since the PLATYPUS side-channel fix, ``energy_uj`` is readable by root only on
most distributions, so on an ordinary account :func:`probe` usually finds
nothing and greenai falls back to :mod:`greenai.devices.cpu_estimate`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from greenai.core.errors import DeviceError, NotSupportedError
from greenai.devices.base import Device, DeviceKind, NoPowerLimit, Source

logger = logging.getLogger(__name__)

POWERCAP_ROOT = "/sys/class/powercap"
"""Where the kernel lists every powercap zone, flat, as symlinks into ``/sys/devices``."""

_PACKAGE_ZONE = re.compile(r"intel-rapl:(\d+)")
_SUBZONE = re.compile(r"intel-rapl:(\d+):(\d+)")
_PACKAGE_NAME = re.compile(r"package-(\d+)(?:-die-(\d+))?")

_UJ_PER_J = 1_000_000


def _read_uint(path: Path) -> int:
    """Read a sysfs file holding one non-negative integer.

    Raises:
        DeviceError: The file cannot be read (``PermissionError`` being the usual
            cause) or does not hold a non-negative integer; the cause is chained.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DeviceError(f"cannot read {path}: {e!r}") from e
    try:
        value = int(raw)  # int() takes ASCII digits in bytes, surrounding whitespace included
    except ValueError as e:
        raise DeviceError(f"{path} does not hold an integer: {raw[:40]!r}") from e
    if value < 0:
        raise DeviceError(f"{path} holds a negative value: {value}")
    return value


class RaplDevice(NoPowerLimit):
    """One RAPL energy counter: a CPU package or the DRAM attached to one.

    Wraparound: the powercap ABI gives the counter's range as
    ``max_energy_range_uj``, its values lying in ``[0, max_energy_range_uj]``, so
    the energy between two reads ``old`` and ``new`` is
    ``(new - old) mod (max_energy_range_uj + 1)``: exact for any counter with
    that range, and a decrease is always a wrap, never a reset (the hardware
    counter restarts only with the machine). For ``intel_rapl`` specifically,
    ``max_energy_range_uj`` is the 32-bit raw mask converted to µJ, so the
    hardware wraps at the range plus one energy unit (15.3 or 61 µJ), not plus
    1 µJ; the unit is not published in sysfs, so up to one unit per wrap (a few
    parts in 10^10 of the ~65-262 kJ between wraps) is lost. The counter must be
    read at least once per wrap period (range divided by peak power, minutes at
    full load) or whole wraps go unseen; the tracker's sampler reads far more
    often than that.

    Attributes:
        name: ``"cpu0"``, ``"cpu1"``... or ``"dram0"``..., numbered in package order.
        kind: ``"cpu"`` for a package zone, ``"dram"`` for a DRAM subzone.
        zone_dir: The zone's sysfs directory, e.g. ``/sys/class/powercap/intel-rapl:0``.
        zone_name: The kernel's name for the zone, e.g. ``"package-0"`` or ``"dram"``.
        max_energy_range_uj: The counter's range. Units: µJ.
    """

    source: Source = "rapl"
    has_energy_counter: bool = True

    def __init__(
        self, name: str, kind: DeviceKind, zone_dir: str | os.PathLike[str], zone_name: str
    ) -> None:
        """Open a zone and take its current reading as the origin of :meth:`energy_j`.

        Raises:
            DeviceError: The zone's files cannot be read or hold garbage.
        """
        self.name = name
        self.kind: DeviceKind = kind
        self.counter_resets = 0
        self.zone_dir = Path(zone_dir)
        self.zone_name = zone_name
        self._energy_path = self.zone_dir / "energy_uj"
        self.max_energy_range_uj = _read_uint(self.zone_dir / "max_energy_range_uj")
        if self.max_energy_range_uj == 0:
            raise DeviceError(f"{self.zone_dir}: max_energy_range_uj is 0")
        self._lock = threading.Lock()
        self._last_uj = self._read_counter_uj()
        self._total_uj = 0

    def _read_counter_uj(self) -> int:
        value = _read_uint(self._energy_path)
        if value > self.max_energy_range_uj:
            raise DeviceError(
                f"{self._energy_path} holds {value}, above max_energy_range_uj "
                f"{self.max_energy_range_uj}"
            )
        return value

    def energy_j(self) -> float:
        """Energy since this device was opened, continuous across wraparounds. Units: J.

        Thread-safe: the read and the update of the running total happen under
        one lock, so two threads can never apply readings out of order (which
        would look like a wrap and add a whole counter range).

        Raises:
            DeviceError: The counter could not be read (the cause is chained).
        """
        with self._lock:
            now_uj = self._read_counter_uj()
            self._total_uj += (now_uj - self._last_uj) % (self.max_energy_range_uj + 1)
            self._last_uj = now_uj
            return self._total_uj / _UJ_PER_J

    def power_w(self) -> float:
        """RAPL has no power reading: derive power from :meth:`energy_j` deltas.

        Raises:
            NotSupportedError: Always.
        """
        raise NotSupportedError(f"{self.name}: RAPL reports energy only; derive power from it")

    def __str__(self) -> str:
        return f"RAPL {self.kind} energy counter ({self.zone_dir})"

    def __repr__(self) -> str:
        return f"RaplDevice({self.name!r}, {self.kind!r}, {str(self.zone_dir)!r})"


def probe(root: str | os.PathLike[str] = POWERCAP_ROOT) -> list[Device]:
    """Find the readable RAPL package and DRAM zones under a powercap class directory.

    Never raises: a missing tree, or a zone whose files cannot be read or hold
    garbage, is left out with one DEBUG log line saying why.

    Args:
        root: A directory listing powercap zones flat, as ``/sys/class/powercap`` does.

    Returns:
        The package devices ``cpu0, cpu1, ...`` in package (then die) order, then
        the DRAM devices ``dram0, dram1, ...`` in the order of their packages.
    """
    root_path = Path(root)
    try:
        entries = list(root_path.iterdir())
    except OSError as e:
        logger.debug("RAPL: no powercap tree at %s (%r)", root_path, e)
        return []

    packages: list[tuple[tuple[int, int, int], Path, str]] = []
    drams: list[tuple[tuple[int, int], Path]] = []
    for entry in entries:
        package_zone = _PACKAGE_ZONE.fullmatch(entry.name)
        subzone = _SUBZONE.fullmatch(entry.name)
        if package_zone is None and subzone is None:
            continue  # intel-rapl-mmio:* duplicates the package counter; others are not RAPL
        try:
            zone_name = (entry / "name").read_bytes().decode(errors="replace").strip()
        except OSError as e:
            logger.debug("RAPL: skipping %s: cannot read its name (%r)", entry, e)
            continue
        if package_zone is not None:
            package_name = _PACKAGE_NAME.fullmatch(zone_name)
            if package_name is not None:  # psys, the other top-level zone, overlaps everything
                package, die = package_name.group(1), package_name.group(2) or "0"
                key = (int(package), int(die), int(package_zone.group(1)))
                packages.append((key, entry, zone_name))
        elif subzone is not None and zone_name == "dram":  # core/uncore are inside the package
            drams.append(((int(subzone.group(1)), int(subzone.group(2))), entry))

    return [
        *_open_zones("cpu", [(zone_dir, zone_name) for _, zone_dir, zone_name in sorted(packages)]),
        *_open_zones("dram", [(zone_dir, "dram") for _, zone_dir in sorted(drams)]),
    ]


def _open_zones(kind: DeviceKind, zones: list[tuple[Path, str]]) -> list[RaplDevice]:
    """Open ``zones`` in order, naming them ``{kind}0, {kind}1, ...``; log and skip failures."""
    opened: list[RaplDevice] = []
    for zone_dir, zone_name in zones:
        try:
            opened.append(RaplDevice(f"{kind}{len(opened)}", kind, zone_dir, zone_name))
        except DeviceError as e:
            logger.debug("RAPL: skipping %s (%s): %s", zone_dir, zone_name, e)
    return opened
