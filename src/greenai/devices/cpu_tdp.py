"""The TDP behind the CPU estimate: CodeCarbon's CPU table, and what a busy CPU draws.

:class:`~greenai.devices.cpu_estimate.CpuEstimate` charges each busy logical CPU
a share of its package's TDP. The TDP comes from CodeCarbon's CPU table
(``cpu_power.csv``, shipped with greenai in ``data/codecarbon`` with CodeCarbon's MIT
license), read as a plain CSV file. A model name matches an
entry only when the two cannot be different chips (:func:`match_tdp`); any
other CPU gets :data:`DEFAULT_TDP_W`. In a virtual machine, a vCPU is one thread
of the host's package (:func:`lookup_vm_power`).
"""

from __future__ import annotations

import csv
import functools
import math
import re
from pathlib import Path

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


CPU_POWER_CSV = Path(__file__).parent / "data" / "codecarbon" / "cpu_power.csv"
"""CodeCarbon's CPU TDP table, shipped with greenai (MIT license: ``LICENSE`` beside it)."""


def cpu_power_csv_path() -> Path | None:
    """The shipped ``cpu_power.csv``; None if it is missing (a damaged install)."""
    return CPU_POWER_CSV if CPU_POWER_CSV.is_file() else None


@functools.cache
def _table_lines(path: Path) -> tuple[list[str], list[str]]:
    """The CSV's lines, and the same lines lower-cased, read once per path (cached).

    Raises:
        OSError: The file cannot be read.
    """
    with path.open(newline="", encoding="utf-8") as f:
        text = f.read()
    # One lower() of the whole text: no character lower-cases to a line break.
    return text.splitlines(), text.lower().splitlines()


def _lines_with(path: Path, words: frozenset[str]) -> list[str]:
    """The lines after the header whose lower-cased text holds every one of ``words``."""
    lines, lowered = _table_lines(path)
    if not words:
        return lines[1:]
    first, *others = sorted(words, key=len, reverse=True)
    hits = [i for i, low in enumerate(lowered) if i and first in low]
    return [lines[i] for i in hits if all(w in lowered[i] for w in others)]


# Where normalizing can remove a digit: in brackets, a clock, "13th", "64-core", a Radeon
# name. Removing more here (to the end, from a bracket or "@") only keeps more rows.
_DIGITS_NOISE_MAY_REMOVE = re.compile(r"[(@].*|\d+(?:st|nd|rd|th)|\d+-cores?|radeon.*graphics")
_DIGIT = re.compile(r"\d")


def _could_match(like: str) -> tuple[frozenset[str], bool]:
    """What every row that :func:`match_tdp` could match to ``like`` has.

    A row matches only with the same words holding a digit, or, when ``like``
    has none, as the same normalized name, so with no digit left after
    normalizing. Normalizing only removes text, so each of those words is a
    substring of the row's lower-cased line.

    Returns:
        ``(words, digitless)``: the words the line must hold, and whether the
        row's name must keep no digit outside what normalizing may remove.
    """
    words = normalize_cpu_name(like).split()
    numbers = frozenset(w for w in words if any(c.isdigit() for c in w))
    # A quote in a name is doubled in its line, so a word holding one is not searched.
    needed = frozenset(w for w in numbers or words if '"' not in w)
    return needed, not numbers


def load_tdp_table(path: Path, like: str | None = None) -> dict[str, float]:
    """Read a ``Name,TDP`` CSV (CodeCarbon's format) into normalized name -> TDP in W.

    With ``like``, only the rows that :func:`match_tdp` could match to that
    model name are read (see :func:`_could_match`): normalizing all of
    CodeCarbon's ~4,900 rows costs about 20 ms, a filtered read well under 1 ms.
    Rows are lines (CodeCarbon's names hold no line break). Rows whose TDP is
    not a positive number are skipped. When two rows normalize to the same name
    with different TDPs, the name is dropped: it cannot tell the two apart.

    Raises:
        OSError: The file cannot be read.
    """
    lines, _ = _table_lines(path)
    header = next(csv.reader(lines[:1]), [])
    try:
        name_at, tdp_at = header.index("Name"), header.index("TDP")
    except ValueError:
        return {}
    needed, digitless = _could_match(like) if like is not None else (frozenset(), False)
    table: dict[str, float] = {}
    ambiguous: set[str] = set()
    for line in _lines_with(path, needed):
        row = next(csv.reader([line]), [])
        try:
            tdp_w = float(row[tdp_at])
            raw = row[name_at]
        except (IndexError, ValueError):
            continue
        if digitless and _DIGIT.search(_DIGITS_NOISE_MAY_REMOVE.sub("", raw.lower())):
            continue
        name = normalize_cpu_name(raw)
        if not name or not (math.isfinite(tdp_w) and tdp_w > 0):
            continue
        if table.get(name, tdp_w) != tdp_w:
            ambiguous.add(name)
        table[name] = tdp_w
    for name in ambiguous:
        del table[name]
    return table


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
        table = load_tdp_table(csv_path, like=model_name)
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
