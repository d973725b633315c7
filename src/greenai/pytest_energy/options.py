"""The ``--energy*`` command-line options, parsed and checked once, at configure time.

Every check raises :class:`ValueError` with a message naming the option and the
bad value; the plugin turns it into a ``pytest.UsageError``, so a typo stops the
session before any test runs. Standard library only: a session that passes one
of these options but meters nothing still imports no more of greenai.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

DEVICE_KINDS = ("gpu", "cpu", "dram")
"""Device kinds ``--energy-devices`` accepts, in the order they are metered."""

UNMEASURED_POLICIES = ("skip", "fail", "pass")
"""What ``--energy-unmeasured`` does with a budget whose figure could not be measured."""

COMPARE_FIELDS: dict[str, str] = {
    "energy_j": "J",
    "gpu_energy_j": "J",
    "cpu_energy_j": "J",
    "dram_energy_j": "J",
    "co2_kg": "kg",
    "duration_s": "s",
    "mean_power_w": "W",
}
"""Figures ``--energy-compare-fail`` can watch, with the unit an absolute threshold is in."""

_THRESHOLD = re.compile(
    r"^\s*(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>%|[A-Za-z]*)\s*$"
)


@dataclass(frozen=True)
class CompareRule:
    """One ``--energy-compare-fail=FIELD:THRESHOLD``: how much a figure may rise.

    Attributes:
        field: A key of :data:`COMPARE_FIELDS`, e.g. ``"energy_j"``.
        threshold: The allowed rise: a fraction of the baseline (0.1 for ``10%``)
            when ``relative``, else an amount in the field's unit.
        relative: True for a percentage.
        text: The rule as the user wrote it, for messages.
    """

    field: str
    threshold: float
    relative: bool
    text: str

    def allowed_rise(self, baseline: float) -> float:
        """The largest rise over ``baseline`` that is not a regression (field's unit)."""
        return abs(baseline) * self.threshold if self.relative else self.threshold


@dataclass(frozen=True)
class Options:
    """The plugin's settings for one session.

    Attributes:
        all_tests: ``--energy``: meter every test, not only those that ask.
        gpus: CUDA indices to meter; None for every visible GPU, ``()`` for none.
        cpu: Meter CPU packages.
        dram: Meter memory.
        repeat: Runs of each metered test's call; budgets apply to the median.
        separate: Every metered test starts on a counter update of its own (else only
            those with a budget): no test shares its GPU figures with the ones before it.
        unmeasured: ``skip``, ``fail`` or ``pass`` for a budget that could not be measured.
        save: Where to write the session's record, or None.
        compare: A record to compare with, or None.
        compare_fail: Regressions that fail the session.
    """

    all_tests: bool = False
    gpus: tuple[int, ...] | None = None
    cpu: bool = True
    dram: bool = True
    repeat: int = 1
    separate: bool = False
    unmeasured: str = "skip"
    save: str | None = None
    compare: str | None = None
    compare_fail: tuple[CompareRule, ...] = field(default_factory=tuple)

    @property
    def devices_text(self) -> str:
        """The metered kinds as ``--energy-devices`` would list them."""
        kinds = [
            kind
            for kind, on in (("gpu", self.gpus != ()), ("cpu", self.cpu), ("dram", self.dram))
            if on
        ]
        gpus = (
            "" if self.gpus is None or not self.gpus else f" (GPUs {','.join(map(str, self.gpus))})"
        )
        return ",".join(kinds) + gpus


def parse_options(
    *,
    all_tests: bool = False,
    devices: str | None = None,
    gpus: str | None = None,
    repeat: str | int | None = None,
    separate: bool = False,
    unmeasured: str | None = None,
    save: str | None = None,
    compare: str | None = None,
    compare_fail: list[str] | tuple[str, ...] = (),
) -> Options:
    """Check the raw option values and build :class:`Options`.

    Args:
        all_tests: ``--energy``.
        devices: ``--energy-devices``, e.g. ``"gpu,cpu"`` (None: all kinds).
        gpus: ``--energy-gpus``, e.g. ``"0,1"`` (None: every visible GPU).
        repeat: ``--energy-repeat`` (None: 1).
        separate: ``--energy-separate``.
        unmeasured: ``--energy-unmeasured`` (None: ``skip``).
        save: ``--energy-save``.
        compare: ``--energy-compare``.
        compare_fail: Every ``--energy-compare-fail``.

    Raises:
        ValueError: A value is malformed or the options contradict each other.
    """
    kinds = _parse_kinds(devices)
    gpu_indices = _parse_gpus(gpus)
    if gpu_indices is not None and "gpu" not in kinds:
        raise ValueError(
            f"--energy-gpus={gpus} chooses GPUs, but --energy-devices={devices} leaves GPUs out"
        )
    if "gpu" not in kinds:
        gpu_indices = ()
    policy = "skip" if unmeasured is None else unmeasured.strip().lower()
    if policy not in UNMEASURED_POLICIES:
        raise ValueError(
            f"--energy-unmeasured must be one of {', '.join(UNMEASURED_POLICIES)}, "
            f"got {unmeasured!r}"
        )
    rules = tuple(parse_compare_rule(text) for text in compare_fail)
    if rules and compare is None:
        raise ValueError(
            "--energy-compare-fail needs --energy-compare=PATH: the saved run to compare with"
        )
    for name, path in (("--energy-save", save), ("--energy-compare", compare)):
        if path is not None and not path.strip():
            raise ValueError(f"{name} needs a file path, got an empty one")
    return Options(
        all_tests=bool(all_tests),
        gpus=gpu_indices,
        cpu="cpu" in kinds,
        dram="dram" in kinds,
        repeat=_parse_repeat(repeat),
        separate=bool(separate),
        unmeasured=policy,
        save=save,
        compare=compare,
        compare_fail=rules,
    )


def _parse_kinds(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DEVICE_KINDS
    kinds = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [k for k in kinds if k not in DEVICE_KINDS]
    if not kinds or unknown:
        raise ValueError(
            f"--energy-devices takes a comma-separated list of {', '.join(DEVICE_KINDS)}, "
            f"got {text!r}"
        )
    return tuple(k for k in DEVICE_KINDS if k in kinds)


def _parse_gpus(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(
            f"--energy-gpus takes comma-separated CUDA device indices such as 0,1, got {text!r}"
        )
    indices = tuple(int(part) for part in parts)
    if len(set(indices)) != len(indices):
        raise ValueError(f"--energy-gpus lists a GPU twice: {text!r}")
    return indices


def _parse_repeat(value: str | int | None) -> int:
    if value is None:
        return 1
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--energy-repeat must be a whole number >= 1, got {value!r}")
    return int(text)


def parse_compare_rule(text: str) -> CompareRule:
    """Parse ``FIELD:THRESHOLD``, e.g. ``energy_j:10%``, ``duration_s:0.5s`` or ``energy_j:5``.

    The threshold is a percentage of the baseline figure, or an amount in the
    field's own unit (J, kg, s or W), with or without that unit written.

    Raises:
        ValueError: Unknown field, malformed or negative threshold, or a unit that is
            not the field's.
    """
    name, sep, threshold = text.partition(":")
    name = name.strip()
    fields = ", ".join(COMPARE_FIELDS)
    if not sep or not name:
        raise ValueError(
            f"--energy-compare-fail: expected FIELD:THRESHOLD such as energy_j:10%, got {text!r}"
        )
    if name not in COMPARE_FIELDS:
        raise ValueError(
            f"--energy-compare-fail: unknown field {name!r} in {text!r} (one of {fields})"
        )
    match = _THRESHOLD.match(threshold)
    if match is None:
        raise ValueError(
            f"--energy-compare-fail: threshold {threshold!r} in {text!r} is not a number "
            f"followed by % or {COMPARE_FIELDS[name]}"
        )
    number = float(match["number"])
    unit = match["unit"]
    if not math.isfinite(number):
        raise ValueError(f"--energy-compare-fail: threshold in {text!r} must be finite")
    if unit == "%":
        return CompareRule(name, number / 100.0, relative=True, text=text)
    if unit and unit != COMPARE_FIELDS[name]:
        raise ValueError(
            f"--energy-compare-fail: {name} is in {COMPARE_FIELDS[name]}, "
            f"but the threshold in {text!r} is in {unit!r}"
        )
    return CompareRule(name, number, relative=False, text=text)
