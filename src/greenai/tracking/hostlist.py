"""SLURM's compressed host lists (``gpu[01-03,07],login1``) as host names.

SLURM names a job's nodes in ``SLURM_JOB_NODELIST`` in this form; the job metadata
(:mod:`greenai.tracking.launcher_metadata`) lists the nodes one by one.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator

MAX_HOSTS = 100_000
"""The most host names :func:`expand_hostlist` makes: the largest clusters have tens of
thousands of nodes, so more means a typo such as ``node[0-99999999]``."""

_HOST_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_SEPARATORS = frozenset(", \t\n\r")


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compressed host list as host names, in order.

    ``"gpu[01-03,07],login1"`` is ``gpu01 gpu02 gpu03 gpu07 login1``: entries are separated
    by commas (or whitespace) outside brackets; a bracket holds numbers and ranges whose
    zero padding is kept (``node[008-011]``); several bracket groups in one name expand to
    their cartesian product, leftmost slowest (``rack[1-2]-gpu[01-02]``); text after a
    bracket is a suffix (``n[1-2]-ib``). Empty entries are skipped, as SLURM does.

    Raises:
        ValueError: Unbalanced or nested brackets, an empty bracket item, a non-numeric
            range, a range that ends before it starts, or more than ``MAX_HOSTS`` names;
            the message quotes the host list.
    """
    entries = [_parse_host_entry(entry, hostlist) for entry in _split_hostlist(hostlist)]
    total = sum(math.prod(_group_size(g) for g in groups) for _, groups in entries)
    if total > MAX_HOSTS:
        raise ValueError(
            f"SLURM host list {hostlist!r} expands to {total} hosts, more than {MAX_HOSTS}"
        )
    hosts: list[str] = []
    for literals, groups in entries:
        choices = [
            [str(n).zfill(width) for lo, hi, width in g for n in range(lo, hi + 1)] for g in groups
        ]
        for numbers in itertools.product(*choices):
            hosts.append("".join(_interleave(literals, numbers)))
    return hosts


# A bracket group: its items as (first, last, zero-padded width).
_Group = list[tuple[int, int, int]]


def _split_hostlist(hostlist: str) -> Iterator[str]:
    """Top-level entries: commas and whitespace inside brackets belong to the bracket."""
    depth = 0
    start = 0
    for i, char in enumerate(hostlist):
        if char == "[":
            if depth:
                raise ValueError(f"malformed SLURM host list {hostlist!r}: nested '['")
            depth = 1
        elif char == "]":
            if not depth:
                raise ValueError(f"malformed SLURM host list {hostlist!r}: ']' without '['")
            depth = 0
        elif char in _SEPARATORS and not depth:
            if i > start:
                yield hostlist[start:i]
            start = i + 1
    if depth:
        raise ValueError(f"malformed SLURM host list {hostlist!r}: '[' without ']'")
    if len(hostlist) > start:
        yield hostlist[start:]


def _parse_host_entry(entry: str, hostlist: str) -> tuple[list[str], list[_Group]]:
    """``"rack[1-2]-gpu[01-02]"`` as literals ``["rack", "-gpu", ""]`` and two groups."""
    literals: list[str] = []
    groups: list[_Group] = []
    rest = entry
    while "[" in rest:
        literal, rest = rest.split("[", 1)
        body, rest = rest.split("]", 1)
        literals.append(literal)
        groups.append([_parse_host_range(item, entry, hostlist) for item in body.split(",")])
    literals.append(rest)
    return literals, groups


def _parse_host_range(item: str, entry: str, hostlist: str) -> tuple[int, int, int]:
    item = item.strip()
    match = _HOST_RANGE.fullmatch(item)
    if match is None:
        raise ValueError(
            f"malformed SLURM host list {hostlist!r}: {item!r} in {entry!r} is not a number "
            "or a range of numbers"
        )
    first, last = match[1], match[2] or match[1]
    if int(last) < int(first):
        raise ValueError(
            f"malformed SLURM host list {hostlist!r}: range {item!r} in {entry!r} "
            "ends before it starts"
        )
    return int(first), int(last), len(first)


def _group_size(group: _Group) -> int:
    return sum(last - first + 1 for first, last, _ in group)


def _interleave(literals: list[str], numbers: tuple[str, ...]) -> Iterator[str]:
    for literal, number in zip(literals[:-1], numbers, strict=True):
        yield literal
        yield number
    yield literals[-1]
