"""greenai's pytest plugin: energy budgets that fail a test suite.

Registered through the ``pytest11`` entry point, so installing greenai is enough.
It is imported by every pytest session on the machine, so this module uses only
pytest and the standard library, and a session that meters nothing (no
``--energy``, no ``@pytest.mark.energy_budget``, no ``energy`` fixture) starts no
tracker, no thread, and imports nothing more of greenai.

.. code-block:: python

    @pytest.mark.energy_budget(joules=500, seconds=2)
    def test_train_step(energy):
        with energy.measure("forward") as m:
            model(batch)
        assert m.result.energy_j < 100
        with energy.budget(gpu_joules=50):
            optimizer.step()

A metered test's call phase (not its setup or teardown) runs under a
:class:`greenai.Tracker`; a budget exceeded fails the test with what was spent,
the budget and where the figure came from. Options (``pytest --help``, group
"energy"): ``--energy`` (meter every test), ``--energy-devices``, ``--energy-gpus``,
``--energy-repeat``, ``--energy-separate``, ``--energy-unmeasured``, ``--energy-save``,
``--energy-compare`` and ``--energy-compare-fail``. The parts live in
:mod:`greenai.pytest_energy`; for type hints, the fixture is a
:class:`greenai.pytest_energy.metering.EnergyFixture`.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from greenai.pytest_energy.metering import EnergyFixture, TestMeter
    from greenai.pytest_energy.options import Options
    from greenai.pytest_energy.session import EnergySession

MARKER = "energy_budget"
"""The marker's name: ``@pytest.mark.energy_budget(joules=..., ...)``."""

REPORT_ATTRIBUTE = "greenai_energy"
"""The attribute of a call-phase report that carries the test's energy data (JSON-ready)."""

_BUDGET = pytest.StashKey[dict[str, float]]()
_FIXTURE_USED = pytest.StashKey[bool]()
_METER: pytest.StashKey[TestMeter] = pytest.StashKey()
_DATA = pytest.StashKey[dict[str, Any]]()
_PLUGIN: pytest.StashKey[EnergyPlugin] = pytest.StashKey()

_WORKER_OUTPUT_KEY = "greenai_energy"
"""The key of a pytest-xdist worker's ``workeroutput`` that carries its metered node ids
and notes to the controller."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("energy", "energy metering and budgets (greenai)")
    group.addoption(
        "--energy",
        action="store_true",
        default=False,
        help="meter every test's call phase (default: only tests marked "
        f"@pytest.mark.{MARKER} or using the energy fixture)",
    )
    group.addoption(
        "--energy-devices",
        metavar="KINDS",
        default=None,
        help="comma-separated device kinds to meter: gpu, cpu, dram (default: gpu,cpu,dram)",
    )
    group.addoption(
        "--energy-gpus",
        metavar="INDICES",
        default=None,
        help="CUDA indices of the GPUs to meter, e.g. 0,1 (default: every visible GPU)",
    )
    group.addoption(
        "--energy-repeat",
        metavar="N",
        default=None,
        help="run each metered test's call N times and check budgets against the medians, "
        "so noisy figures don't flake (default: 1)",
    )
    group.addoption(
        "--energy-separate",
        action="store_true",
        default=None,
        help="start each metered test on a GPU energy counter update of its own, so tests "
        "shorter than one update (~100 ms) get figures of their own: each waits up to "
        "about one update (default: only tests with a budget wait)",
    )
    group.addoption(
        "--energy-unmeasured",
        metavar="POLICY",
        default=None,
        help="a budget whose figure could not be measured (no GPU, a failed sensor): "
        "skip the test with the reason, fail it, or pass it with a note "
        "(skip|fail|pass; default: skip)",
    )
    group.addoption(
        "--energy-save",
        metavar="PATH",
        default=None,
        help="save the metered tests as a greenai run record (JSON) for greenai report "
        "and --energy-compare (default: not saved)",
    )
    group.addoption(
        "--energy-compare",
        metavar="PATH",
        default=None,
        help="compare each test's figures with a run saved by --energy-save (default: none)",
    )
    group.addoption(
        "--energy-compare-fail",
        metavar="FIELD:THRESHOLD",
        action="append",
        default=[],
        help="fail the session when a test's FIELD (energy_j, gpu_energy_j, cpu_energy_j, "
        "dram_energy_j, co2_kg, duration_s, mean_power_w) rose over the --energy-compare "
        "run by more than THRESHOLD: a percentage (energy_j:10%%) or an amount in the "
        "field's unit (energy_j:5J, duration_s:0.5s); repeatable (default: none)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(joules=None, gpu_joules=None, co2_g=None, usd=None, watts=None, "
        "seconds=None): "
        "meter the test's call with greenai and fail it when it spends more than any "
        "limit given (J, J, g CO2e, mean W, s)",
    )
    plugin = EnergyPlugin(config)
    config.stash[_PLUGIN] = plugin
    config.pluginmanager.register(plugin, "greenai-energy")
    if plugin.options_given():
        try:
            plugin.options()
            if not plugin.is_worker:
                plugin.session().load_baseline()
        except (ValueError, OSError) as e:
            raise pytest.UsageError(f"greenai energy: {e}") from None


class EnergyPlugin:
    """The session's plugin object: options, the gathered tests, and the session-wide hooks.

    Everything is created on first need, so a session that meters nothing pays
    for nothing but this object.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.all_tests = bool(config.getoption("energy"))
        self._options: Options | None = None
        self._session: EnergySession | None = None
        self._pending: list[tuple[TestMeter, str, str | None]] = []  # figures not worked out

    def options_given(self) -> bool:
        """Whether any ``--energy*`` option was given (then they are checked at once)."""
        names = (
            "energy_devices",
            "energy_gpus",
            "energy_repeat",
            "energy_separate",
            "energy_unmeasured",
            "energy_save",
            "energy_compare",
        )
        return (
            self.all_tests
            or any(self.config.getoption(n) is not None for n in names)
            or bool(self.config.getoption("energy_compare_fail"))
        )

    def options(self) -> Options:
        """The parsed options (raises ValueError when one is malformed)."""
        if self._options is None:
            from greenai.pytest_energy.options import parse_options

            get = self.config.getoption
            self._options = parse_options(
                all_tests=self.all_tests,
                devices=get("energy_devices"),
                gpus=get("energy_gpus"),
                repeat=get("energy_repeat"),
                separate=bool(get("energy_separate")),
                unmeasured=get("energy_unmeasured"),
                save=get("energy_save"),
                compare=get("energy_compare"),
                compare_fail=list(get("energy_compare_fail") or ()),
            )
        return self._options

    def session(self) -> EnergySession:
        """The session's gathered tests (created on first use)."""
        if self._session is None:
            from greenai.pytest_energy.session import EnergySession

            params = self.config.invocation_params
            self._session = EnergySession(
                self.options(),
                name=f"pytest {self.config.rootpath.name}",
                invocation_dir=params.dir,
                worker_id=os.environ.get("PYTEST_XDIST_WORKER"),
                args=tuple(str(a) for a in params.args),
            )
        return self._session

    def wants_metering(self, item: pytest.Item) -> bool:
        """Whether ``item``'s call is metered: ``--energy``, the marker, or the fixture."""
        return (
            self.all_tests
            or item.get_closest_marker(MARKER) is not None
            or item.stash.get(_FIXTURE_USED, False)
        )

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if data is not None:
            self.session().add(data, nodeid=report.nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """pytest-xdist, on the controller: a worker finished or died."""
        output = getattr(node, "workeroutput", None) or {}
        from_worker = output.get(_WORKER_OUTPUT_KEY) if isinstance(output, dict) else None
        if from_worker is None and (error is None or self._session is None):
            return
        worker_id = str(getattr(getattr(node, "gateway", None), "id", "?"))
        self.session().worker_finished(worker_id, from_worker, error)

    def data(self, meter: TestMeter, *, outcome: str, worker: str | None) -> dict[str, Any]:
        """The test's data for its report; a test whose figures are not worked out yet
        sends them again at the end of the session (:meth:`resolve_pending`)."""
        if meter.pending:
            self._pending.append((meter, outcome, worker))
        return meter.to_dict(outcome=outcome, worker=worker)

    def resolve_pending(self) -> None:
        """Work out the figures of the tests that ended without them (no budget to check)."""
        pending, self._pending = self._pending, []
        for meter, outcome, worker in pending:
            meter.resolve()
            self.session().add_late(meter.to_dict(outcome=outcome, worker=worker))

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.resolve_pending()
        if self._session is None:
            return
        if self.is_worker:
            workeroutput = getattr(self.config, "workeroutput", None)
            if isinstance(workeroutput, dict):
                workeroutput[_WORKER_OUTPUT_KEY] = self._session.worker_output()
            return
        if self._session.finish() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self._session is None or self.is_worker:
            return
        writer = getattr(terminalreporter, "_tw", None)
        width = int(getattr(writer, "fullwidth", 120))
        terminalreporter.write_sep("=", "greenai energy")
        for text, colour in self._session.summary(width):
            terminalreporter.write_line(text, **({colour: True} if colour else {}))
        reason = self._session.failure_reason
        if reason:
            terminalreporter.write_line(
                f"greenai energy: session FAILED: {reason}", red=True, bold=True
            )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Check the marker's arguments before any fixture runs; a bad one errors the test."""
    markers = list(item.iter_markers(MARKER))
    if not markers:
        return
    from greenai.pytest_energy.budget import parse_budget

    budget: dict[str, float] = {}
    error = ""
    for mark in reversed(markers):  # farthest (module, class) first: closer marks override
        try:
            budget.update(parse_budget(mark.args, mark.kwargs, f"@pytest.mark.{MARKER}"))
        except ValueError as e:
            error = str(e)
            break
    if error:
        pytest.fail(f"{item.nodeid}: usage error: {error}", pytrace=False)
    item.stash[_BUDGET] = budget


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Meter the call (innermost, next to the test), repeat it, and check the budget."""
    plugin = item.config.stash.get(_PLUGIN, None)
    if plugin is None or not plugin.wants_metering(item):
        return (yield)
    from greenai.pytest_energy.metering import TestMeter

    options = plugin.options()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    budget: dict[str, float] = item.stash.get(_BUDGET, {})
    meter = TestMeter(item.nodeid, options, budget)
    item.stash[_METER] = meter
    meter.start()
    try:
        try:
            for index in range(options.repeat - 1):
                with meter.run(index):
                    item.runtest()
            with meter.run(options.repeat - 1):
                yield
        finally:
            del item.stash[_METER]
            meter.stop()
    except BaseException as exc:  # the test's own outcome: recorded, then passed on untouched
        outcome = "skipped" if isinstance(exc, pytest.skip.Exception) else "failed"
        if meter.status in ("-", "ok", "unmeasured"):
            meter.status = outcome
        item.stash[_DATA] = plugin.data(meter, outcome=outcome, worker=worker)
        raise
    action, message = meter.verdict(options.unmeasured)
    outcomes = {"pass": "passed", "fail": "failed", "skip": "skipped"}
    item.stash[_DATA] = plugin.data(meter, outcome=outcomes[action], worker=worker)
    if action == "fail":
        pytest.fail(message, pytrace=False)
    if action == "skip":
        pytest.skip(message)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the test's energy data to its call report (pytest-xdist sends it along)."""
    report = yield
    if call.when == "call":
        data = item.stash.get(_DATA, None)
        if data is not None:
            setattr(report, REPORT_ATTRIBUTE, data)
    return report


@pytest.fixture
def energy(request: pytest.FixtureRequest) -> EnergyFixture:
    """Meter blocks of a test and give them budgets; using it meters the test.

    ``with energy.measure("step") as m: ...`` then ``m.result`` (a
    :class:`greenai.Result`: ``energy_j``, ``gpu_energy_j``, ``duration_s``,
    ``co2_kg``...); ``with energy.budget(joules=..., gpu_joules=..., co2_g=..., usd=...,
    watts=..., seconds=...): ...`` fails the test when the block spends more.
    """
    from greenai.pytest_energy.metering import EnergyFixture

    node = request.node
    node.stash[_FIXTURE_USED] = True
    plugin = request.config.stash[_PLUGIN]
    return EnergyFixture(node.nodeid, plugin.options(), lambda: node.stash.get(_METER, None))
