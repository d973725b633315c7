"""What CPU this is: model name, hypervisor flag and package count, from /proc and sysfs."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from greenai.devices.cpu_info import count_packages, cpu_model_name, running_in_vm


@pytest.mark.parametrize(
    ("flags", "vm"),
    [
        ("fpu vme de pse tsc msr hypervisor lahf_lm", True),
        ("fpu vme de pse tsc msr lahf_lm", False),
        ("fpu vme not_a_hypervisor hypervisors", False),  # whole flags only
    ],
)
def test_running_in_vm_reads_the_hypervisor_flag(tmp_path: Path, flags: str, vm: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
        f"flags\t\t: {flags}\nbugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\n"
    )
    assert running_in_vm(cpuinfo) is vm


def test_running_in_vm_without_flags_is_bare_metal(tmp_path: Path) -> None:
    arm = tmp_path / "cpuinfo"  # arm64 lists "Features", and no hypervisor flag
    arm.write_text("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm\n")
    assert running_in_vm(arm) is False
    assert running_in_vm(tmp_path / "missing") is False


def test_cpu_model_name_reads_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\n"
        "model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz\nflags\t\t: fpu vme\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz\n"
    )
    assert cpu_model_name(cpuinfo) == "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"


def test_cpu_model_name_falls_back_to_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform, "processor", lambda: "AMD EPYC 7763")
    assert cpu_model_name(tmp_path / "missing") == "AMD EPYC 7763"
    cpu_model_name.cache_clear()
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_model_name(tmp_path / "missing") is None


def test_count_packages(tmp_path: Path) -> None:
    for cpu, package in enumerate([0, 0, 1, 1]):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
    (tmp_path / "cpufreq").mkdir()
    assert count_packages(tmp_path) == 2
    assert count_packages(tmp_path / "missing") == 1
