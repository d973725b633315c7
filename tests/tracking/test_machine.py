"""What a run records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys

import pytest

from greenai.tracking import machine


@pytest.fixture(autouse=True)
def fresh_os_name() -> None:
    machine.os_name.cache_clear()


def test_os_name_is_platforms_without_the_processor_and_with_the_running_glibc() -> None:
    if sys.platform != "linux" or not os.confstr("CS_GNU_LIBC_VERSION"):
        assert machine.os_name() == platform.platform()
        return
    uname = os.uname()
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    expected = f"Linux-{uname.release}-{uname.machine}-with-glibc{glibc.split()[-1]}"
    assert machine.os_name() == expected
    # platform.platform() says the same, give or take the processor (uname -p) and the
    # glibc version the Python binary was linked against.
    release_and_machine = f"Linux-{uname.release}-{uname.machine}-"
    assert platform.platform().startswith(release_and_machine)
    assert "-with-glibc" in platform.platform()


def test_os_name_falls_back_to_platform_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_glibc(name: str) -> str | None:
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(os, "confstr", no_glibc)
    assert machine.os_name() == platform.platform()


def test_describe_records_the_os_name() -> None:
    assert machine.describe([])["os"] == machine.os_name()
