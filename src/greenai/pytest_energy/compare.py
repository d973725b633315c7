"""``--energy-compare`` and ``--energy-compare-fail``: this session's tests against a saved one.

Tests are matched by node id. A figure that is missing on either side, or
partial in this run (a sensor failed, so it undercounts), is not compared.
A regression is a rise strictly greater than the rule's threshold: a
percentage of the baseline figure (a baseline of 0 makes any rise a
regression) or an amount in the field's unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from greenai.core.units import format_change, format_number
from greenai.pytest_energy.budget import Figures
from greenai.pytest_energy.options import COMPARE_FIELDS, CompareRule


@dataclass(frozen=True)
class Regression:
    """One test whose figure rose beyond a rule's threshold.

    Attributes:
        nodeid: The test.
        rule: The ``--energy-compare-fail`` rule it broke.
        baseline: The saved figure (field's unit).
        current: This run's figure (field's unit).
    """

    nodeid: str
    rule: CompareRule
    baseline: float
    current: float

    def describe(self) -> str:
        """``tests/t.py::test_a: energy_j 700 J -> 800 J (+14.3%), more than 10%``."""
        unit = COMPARE_FIELDS[self.rule.field]
        threshold = self.rule.text.partition(":")[2].strip()
        return (
            f"{self.nodeid}: {self.rule.field} {format_number(self.baseline)} {unit} -> "
            f"{format_number(self.current)} {unit} "
            f"({format_change(self.current, self.baseline)}), more than {threshold}"
        )


@dataclass(frozen=True)
class Comparison:
    """This run against the baseline.

    Attributes:
        regressions: Every rule broken, test by test.
        not_in_baseline: Metered tests the baseline does not have.
        not_metered: Baseline tests this run did not meter.
    """

    regressions: tuple[Regression, ...]
    not_in_baseline: tuple[str, ...]
    not_metered: tuple[str, ...]


def comparable(figures: Figures | None, field: str) -> float | None:
    """``figures``' ``field`` if it can be compared: present, finite, and not partial."""
    if figures is None:
        return None
    value = figures.value(field)
    if value is None or not math.isfinite(value):
        return None
    if figures.partial and field != "duration_s":
        return None
    return value


def compare(
    current: Mapping[str, Figures | None],
    baseline: Mapping[str, Figures],
    rules: Iterable[CompareRule],
) -> Comparison:
    """Compare each test's figures with the baseline's under ``rules``."""
    rules = tuple(rules)
    regressions = []
    for nodeid, figures in current.items():
        saved = baseline.get(nodeid)
        if saved is None:
            continue
        for rule in rules:
            now, before = comparable(figures, rule.field), comparable(saved, rule.field)
            if now is None or before is None:
                continue
            if now - before > rule.allowed_rise(before):
                regressions.append(Regression(nodeid, rule, before, now))
    return Comparison(
        regressions=tuple(regressions),
        not_in_baseline=tuple(n for n in current if n not in baseline),
        not_metered=tuple(n for n in baseline if n not in current),
    )
