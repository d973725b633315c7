"""RAPL devices against a fake powercap tree laid out as the kernel lays it out.

The kernel keeps zones nested under ``/sys/devices/virtual/powercap/intel-rapl``
and lists them flat, as symlinks, in ``/sys/class/powercap``; the fake tree does
the same, so ``probe`` is tested on the layout it will meet.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from greenai.core.errors import DeviceError, NotSupportedError
from greenai.devices.base import Device
from greenai.devices.rapl import RaplDevice, probe

MAX_UJ = 262_143_328_850  # a real package's max_energy_range_uj


class FakePowercap:
    """A powercap tree under ``tmp``: zones in ``devices/``, symlinks in ``class/``."""

    def __init__(self, tmp: Path) -> None:
        self.devices = tmp / "devices" / "virtual" / "powercap"
        self.root = tmp / "class" / "powercap"
        self.root.mkdir(parents=True)
        for control_type in ("intel-rapl", "intel-rapl-mmio"):
            (self.devices / control_type).mkdir(parents=True)
            (self.devices / control_type / "enabled").write_text("1\n")
            (self.root / control_type).symlink_to(self.devices / control_type)

    def add_zone(self, zone: str, name: str, energy_uj: int = 0, max_uj: int = MAX_UJ) -> Path:
        """Add ``zone`` (e.g. ``intel-rapl:0:1``) below its parent and link it into ``root``."""
        control_type, _, index = zone.partition(":")
        parts = index.split(":")
        zone_dir = self.devices / control_type
        for depth in range(1, len(parts) + 1):
            zone_dir /= f"{control_type}:{':'.join(parts[:depth])}"
        zone_dir.mkdir()
        (zone_dir / "name").write_text(name + "\n")
        (zone_dir / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (zone_dir / "enabled").write_text("1\n")
        (self.root / zone).symlink_to(zone_dir)
        self.set_energy(zone, energy_uj)
        return zone_dir

    def set_energy(self, zone: str, energy_uj: int) -> None:
        """Replace the counter atomically, so a concurrent reader never sees a half-written file."""
        tmp = self.root / zone / "energy_uj.tmp"
        tmp.write_text(f"{energy_uj}\n")
        os.replace(tmp, self.root / zone / "energy_uj")


@pytest.fixture
def powercap(tmp_path: Path) -> FakePowercap:
    """Two Intel packages, each with core, uncore and dram subzones, plus psys and an MMIO copy."""
    fake = FakePowercap(tmp_path)
    for n in (0, 1):
        fake.add_zone(f"intel-rapl:{n}", f"package-{n}", energy_uj=1_000 * (n + 1))
        fake.add_zone(f"intel-rapl:{n}:0", "core", energy_uj=500)
        fake.add_zone(f"intel-rapl:{n}:1", "uncore", energy_uj=100)
        fake.add_zone(f"intel-rapl:{n}:2", "dram", energy_uj=300 * (n + 1))
    fake.add_zone("intel-rapl:2", "psys", energy_uj=9_000)
    fake.add_zone("intel-rapl-mmio:0", "package-0", energy_uj=1_000)
    return fake


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="greenai.devices.rapl")
    return caplog


def by_name(devices: list[Device]) -> dict[str, RaplDevice]:
    found = {}
    for d in devices:
        assert isinstance(d, RaplDevice)
        found[d.name] = d
    return found


def test_probe_finds_packages_and_dram_only(powercap: FakePowercap) -> None:
    devices = probe(powercap.root)
    assert [d.name for d in devices] == ["cpu0", "cpu1", "dram0", "dram1"]
    zones = {d.name: (d.kind, d.zone_dir.name, d.zone_name) for d in by_name(devices).values()}
    assert zones == {
        "cpu0": ("cpu", "intel-rapl:0", "package-0"),
        "cpu1": ("cpu", "intel-rapl:1", "package-1"),
        "dram0": ("dram", "intel-rapl:0:2", "dram"),
        "dram1": ("dram", "intel-rapl:1:2", "dram"),
    }
    for d in devices:
        assert isinstance(d, Device)
        assert (d.source, d.has_energy_counter, d.counter_resets) == ("rapl", True, 0)


def test_package_order_is_numeric_not_lexical(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    for n in (10, 2, 0, 1):
        fake.add_zone(f"intel-rapl:{n}", f"package-{n}")
    devices = by_name(probe(fake.root))
    assert [devices[f"cpu{i}"].zone_name for i in range(4)] == [
        "package-0",
        "package-1",
        "package-2",
        "package-10",
    ]


def test_amd_and_multi_die_packages(tmp_path: Path) -> None:
    """AMD exposes packages (and core subzones, no dram) under intel-rapl; dies count separately."""
    fake = FakePowercap(tmp_path)
    fake.add_zone("intel-rapl:0", "package-0-die-1")
    fake.add_zone("intel-rapl:1", "package-0-die-0")
    fake.add_zone("intel-rapl:1:0", "core")
    devices = by_name(probe(fake.root))
    assert sorted(devices) == ["cpu0", "cpu1"]
    assert devices["cpu0"].zone_name == "package-0-die-0"
    assert devices["cpu1"].zone_name == "package-0-die-1"


def test_energy_is_relative_to_probe_and_exact(powercap: FakePowercap) -> None:
    devices = by_name(probe(powercap.root))
    cpu0, dram1 = devices["cpu0"], devices["dram1"]
    assert cpu0.energy_j() == 0.0
    powercap.set_energy("intel-rapl:0", 1_000 + 2_500_000)
    powercap.set_energy("intel-rapl:1:2", 600 + 750_000)
    assert cpu0.energy_j() == 2.5
    assert dram1.energy_j() == 0.75
    assert devices["cpu1"].energy_j() == 0.0  # other zones are not touched


def test_wraparound_is_continuous(powercap: FakePowercap) -> None:
    powercap.set_energy("intel-rapl:0", MAX_UJ - 100)
    cpu0 = by_name(probe(powercap.root))["cpu0"]
    powercap.set_energy("intel-rapl:0", MAX_UJ)
    assert cpu0.energy_j() == 100 / 1e6
    # MAX_UJ -> 0 is one step of 1 uJ: the counter's values are 0..MAX_UJ.
    powercap.set_energy("intel-rapl:0", 50)
    assert cpu0.energy_j() == (100 + 1 + 50) / 1e6
    powercap.set_energy("intel-rapl:0", 3_000_050)
    assert cpu0.energy_j() == (100 + 1 + 3_000_050) / 1e6
    assert cpu0.counter_resets == 0  # a wrap is not a reset


def test_repeated_wraps_accumulate(powercap: FakePowercap) -> None:
    cpu0 = by_name(probe(powercap.root))["cpu0"]  # origin: 1_000
    step_uj = MAX_UJ // 3 + 7
    value, expected_uj = 1_000, 0
    for _ in range(10):  # more than three full ranges
        value = (value + step_uj) % (MAX_UJ + 1)
        expected_uj += step_uj
        powercap.set_energy("intel-rapl:0", value)
        assert cpu0.energy_j() == expected_uj / 1e6


def test_concurrent_readers_never_see_a_false_wrap(powercap: FakePowercap) -> None:
    """Read and update happen under one lock: an out-of-order update would add a whole range."""
    cpu0 = by_name(probe(powercap.root))["cpu0"]
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                cpu0.energy_j()
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for value in range(1_000, 1_000 + 2_000 * 37, 37):
            powercap.set_energy("intel-rapl:0", value)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert errors == []
    assert cpu0.energy_j() == (2_000 - 1) * 37 / 1e6


def test_missing_tree_is_empty_with_one_debug_line(
    tmp_path: Path, debug_log: pytest.LogCaptureFixture
) -> None:
    assert probe(tmp_path / "no-such-dir") == []
    assert [(r.levelno, "no powercap tree" in r.getMessage()) for r in debug_log.records] == [
        (logging.DEBUG, True)
    ]


def test_default_root_never_raises() -> None:
    assert all(isinstance(d, RaplDevice) for d in probe())


def assert_one_debug_line_about(caplog: pytest.LogCaptureFixture, zone: str, why: str) -> None:
    lines = [r for r in caplog.records if zone in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert lines[0].levelno == logging.DEBUG
    assert why in lines[0].getMessage()
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_unreadable_counter_leaves_zone_absent(
    powercap: FakePowercap, debug_log: pytest.LogCaptureFixture
) -> None:
    """A directory named energy_uj cannot be read, even by root."""
    counter = powercap.root / "intel-rapl:1" / "energy_uj"
    counter.unlink()
    counter.mkdir()
    assert [d.name for d in probe(powercap.root)] == ["cpu0", "dram0", "dram1"]
    assert_one_debug_line_about(debug_log, "intel-rapl:1 ", "IsADirectoryError")


def test_permission_denied_leaves_zone_absent(
    powercap: FakePowercap, debug_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """energy_uj is root-only since the PLATYPUS fix; chmod does not stop root, so patch reads."""
    read_bytes = Path.read_bytes
    denied = powercap.root / "intel-rapl:0:2" / "energy_uj"

    def guarded(path: Path) -> bytes:
        if path == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    devices = by_name(probe(powercap.root))
    assert list(devices) == ["cpu0", "cpu1", "dram0"]
    assert devices["dram0"].zone_dir.name == "intel-rapl:1:2"
    assert_one_debug_line_about(debug_log, "intel-rapl:0:2", "PermissionError")


@pytest.mark.parametrize(
    ("file", "contents", "why"),
    [
        ("energy_uj", "garbage\n", "does not hold an integer"),
        ("energy_uj", "\udcff\udcfe\n", "does not hold an integer"),
        ("energy_uj", "", "does not hold an integer"),
        ("energy_uj", "-5\n", "negative"),
        ("energy_uj", f"{MAX_UJ + 1}\n", "above max_energy_range_uj"),
        ("max_energy_range_uj", "0\n", "max_energy_range_uj is 0"),
        ("max_energy_range_uj", "12.5\n", "does not hold an integer"),
    ],
)
def test_malformed_zone_is_absent(
    powercap: FakePowercap,
    debug_log: pytest.LogCaptureFixture,
    file: str,
    contents: str,
    why: str,
) -> None:
    (powercap.root / "intel-rapl:0" / file).write_bytes(contents.encode(errors="surrogateescape"))
    devices = by_name(probe(powercap.root))
    assert list(devices) == ["cpu0", "dram0", "dram1"]
    assert devices["cpu0"].zone_name == "package-1"
    assert_one_debug_line_about(debug_log, "intel-rapl:0 ", why)


def test_unreadable_name_leaves_zone_absent(
    powercap: FakePowercap, debug_log: pytest.LogCaptureFixture
) -> None:
    (powercap.root / "intel-rapl:1:2" / "name").unlink()
    assert [d.name for d in probe(powercap.root)] == ["cpu0", "cpu1", "dram0"]
    assert_one_debug_line_about(debug_log, "intel-rapl:1:2", "cannot read its name")


def test_undecodable_name_is_not_a_package(
    powercap: FakePowercap, debug_log: pytest.LogCaptureFixture
) -> None:
    (powercap.root / "intel-rapl:0" / "name").write_bytes(b"\xffpackage-0\n")
    assert [d.name for d in probe(powercap.root)] == ["cpu0", "dram0", "dram1"]
    assert debug_log.records == []


def test_read_failure_mid_run_raises_device_error(powercap: FakePowercap) -> None:
    cpu1 = by_name(probe(powercap.root))["cpu1"]
    (powercap.root / "intel-rapl:1" / "energy_uj").unlink()
    with pytest.raises(DeviceError, match="energy_uj") as excinfo:
        cpu1.energy_j()
    assert isinstance(excinfo.value.__cause__, FileNotFoundError)
    powercap.set_energy("intel-rapl:1", 2_000 + 1_000_000)  # the counter comes back
    assert cpu1.energy_j() == 1.0


def test_power_and_power_limits_are_not_supported(powercap: FakePowercap) -> None:
    cpu0 = by_name(probe(powercap.root))["cpu0"]
    with pytest.raises(NotSupportedError):
        cpu0.power_w()
    with pytest.raises(NotSupportedError):
        cpu0.power_limit_w()
    with pytest.raises(NotSupportedError):
        cpu0.power_limit_range_w()
    with pytest.raises(NotSupportedError):
        cpu0.set_power_limit_w(100.0)
