"""Expanding SLURM's compressed host lists."""

from __future__ import annotations

import re
import time

import pytest

from greenai.tracking.hostlist import MAX_HOSTS, expand_hostlist


@pytest.mark.parametrize(
    ("hostlist", "hosts"),
    [
        ("", []),
        ("   ", []),
        ("login1", ["login1"]),
        ("gpu[01-03,07],login1", ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]),
        ("node[008-011]", ["node008", "node009", "node010", "node011"]),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("n[08-11]", ["n08", "n09", "n10", "n11"]),
        ("n[098-101]", ["n098", "n099", "n100", "n101"]),
        ("n[7]", ["n7"]),
        ("n[007]", ["n007"]),
        ("gpu-[001-002]", ["gpu-001", "gpu-002"]),
        ("gnode[10,20,25,37]", ["gnode10", "gnode20", "gnode25", "gnode37"]),
        (
            "rack[1-2]-gpu[01-02]",
            ["rack1-gpu01", "rack1-gpu02", "rack2-gpu01", "rack2-gpu02"],
        ),
        ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
        ("n[1-2]-ib,m[3]", ["n1-ib", "n2-ib", "m3"]),
        ("[1-3]", ["1", "2", "3"]),
        (" a1 , b[1-2] ", ["a1", "b1", "b2"]),
        ("a1 b2\tc3\n", ["a1", "b2", "c3"]),
        ("a[1, 3-4 ]", ["a1", "a3", "a4"]),
        ("a,,b,", ["a", "b"]),
        ("b[2-3],a[1]", ["b2", "b3", "a1"]),
        ("a[3,1]", ["a3", "a1"]),
        ("a[1-2],a[1-2]", ["a1", "a2", "a1", "a2"]),
        ("x.example.org,y-z_1", ["x.example.org", "y-z_1"]),
    ],
)
def test_expand_hostlist(hostlist: str, hosts: list[str]) -> None:
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize(
    ("hostlist", "message"),
    [
        ("gpu[01-03", "malformed SLURM host list 'gpu[01-03': '[' without ']'"),
        ("gpu01-03]", "malformed SLURM host list 'gpu01-03]': ']' without '['"),
        ("a[1],b]", "malformed SLURM host list 'a[1],b]': ']' without '['"),
        ("gpu[1[2]]", "malformed SLURM host list 'gpu[1[2]]': nested '['"),
        (
            "gpu[05-03]",
            "malformed SLURM host list 'gpu[05-03]': range '05-03' in 'gpu[05-03]' "
            "ends before it starts",
        ),
        (
            "gpu[a-c]",
            "malformed SLURM host list 'gpu[a-c]': 'a-c' in 'gpu[a-c]' is not a number or "
            "a range of numbers",
        ),
        (
            "gpu[]",
            "malformed SLURM host list 'gpu[]': '' in 'gpu[]' is not a number or "
            "a range of numbers",
        ),
        (
            "gpu[1,]",
            "malformed SLURM host list 'gpu[1,]': '' in 'gpu[1,]' is not a number or "
            "a range of numbers",
        ),
        (
            "gpu[1-2-3]",
            "malformed SLURM host list 'gpu[1-2-3]': '1-2-3' in 'gpu[1-2-3]' is not a number "
            "or a range of numbers",
        ),
        (
            "gpu[-3]",
            "malformed SLURM host list 'gpu[-3]': '-3' in 'gpu[-3]' is not a number "
            "or a range of numbers",
        ),
        (
            "ok1,gpu[1-]",
            "malformed SLURM host list 'ok1,gpu[1-]': '1-' in 'gpu[1-]' is not a number "
            "or a range of numbers",
        ),
    ],
)
def test_expand_hostlist_rejects_malformed(hostlist: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        expand_hostlist(hostlist)


@pytest.mark.parametrize(
    ("hostlist", "total"),
    [
        ("node[0-999999999999]", 1_000_000_000_000),
        ("a[1-1000]-b[1-1000]", 1_000_000),
        (f"a[1-{MAX_HOSTS}],b", MAX_HOSTS + 1),
    ],
)
def test_expand_hostlist_refuses_absurd_expansions_before_making_them(
    hostlist: str, total: int
) -> None:
    message = f"SLURM host list {hostlist!r} expands to {total} hosts, more than {MAX_HOSTS}"
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        expand_hostlist(hostlist)
    assert time.perf_counter() - start < 1.0


def test_expand_hostlist_allows_max_hosts() -> None:
    hosts = expand_hostlist(f"n[1-{MAX_HOSTS}]")
    assert len(hosts) == MAX_HOSTS
    assert (hosts[0], hosts[-1]) == ("n1", f"n{MAX_HOSTS}")
