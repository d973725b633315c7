"""``greenai.track`` / ``greenai.Tracker``: metering with CO2, cost and reports wired in.

The tracking layer (:mod:`greenai.tracking.meter`) knows joules; this module, above the
accounting and report layers, gives it the hooks that turn a result into CO2e
and money and write it where the user asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from greenai.accounting.carbon import accountant
from greenai.accounting.settings import resolve_settings
from greenai.devices import Device
from greenai.tracking.job import DEFAULT_GATHER_TIMEOUT_S, Gather
from greenai.tracking.meter import DEFAULT_SAMPLE_PERIOD_S, Meter
from greenai.tracking.observer import RunObserver
from greenai.tracking.result import Result
from greenai.tracking.tracked import Tracked

# Control and the report writers are imported where a run uses them: together about
# 20 ms of imports that the first start() would otherwise pay (goal: under 50 ms).
if TYPE_CHECKING:
    from greenai.control.target import EnergyTarget
    from greenai.report.prometheus import PrometheusExporter

_HISTORY_OFF = {"0", "off", "false", "no"}

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")


class Tracker(Meter):
    """Meters energy and accounts CO2e and cost; a context manager, a decorator, or start/stop.

    Args:
        name, gpus, cpu, dram, devices, sample_period_s, synchronize: As for
            :class:`greenai.tracking.meter.Meter` (what to meter and how).
        country: ISO 3166 alpha-3 code of where the machine runs (``"FRA"``).
        region: A region CodeCarbon has data for (a US state, Canadian or Chinese
            province, Nordic zone).
        cloud: ``"provider:region"``, e.g. ``"gcp:europe-west1"``.
        pue: Power usage effectiveness of the data centre (>= 1; default 1).
        price_per_kwh: Electricity price. Units: USD per kWh.
        gpu_hour_price: Price of one GPU for one hour. Units: USD.
        intensity_g_per_kwh: A fixed grid intensity instead of a location's.
            Units: g CO2e per kWh.
        intensity_csv: A CSV of ``timestamp,g_per_kwh``: each part of the run is
            charged the intensity of the hour it ran in.
        config_path: A TOML file with any of the settings above.
        output_dir: Append the run to ``output_dir/emissions.csv`` (CodeCarbon's
            columns) and write ``output_dir/<run_id>.json``.
        project_name: The ``project_name`` column of emissions.csv (default: the run's name).
        history: Where to record the run for ``greenai history``: None for the
            default (``$GREENAI_HISTORY``, ``off`` to disable, else the user data
            dir), False for nowhere, True for the default path, or a path.
        target: Steer the GPUs' power limits toward this energy goal (see
            :mod:`greenai.control`); the controller's decisions are in
            ``run.result.metadata["control"]``. Steps must be marked with ``run.step()``.
        prometheus: Live metrics for Prometheus while the run goes on: a port (served
            on ``port + local rank``, see :class:`~greenai.report.prometheus.PrometheusExporter`)
            or an exporter configured for a multiprocess directory or a Pushgateway.
        log_to: Experiment trackers to log the run's figures to while it runs and its totals
            at the end (:mod:`greenai.integrations.experiments`: TensorBoard, MLflow, W&B).
        gather, gather_timeout_s: In a ``torchrun``/``srun`` job, who holds the job's
            result and how long to wait for the other ranks (see
            :class:`greenai.tracking.meter.Meter` and :mod:`greenai.tracking.job`). Only the rank
            holding the job result writes reports, unless ``gather="none"``.

    Settings not given as arguments come from the config file, then ``GREENAI_*``
    environment variables (see :func:`greenai.accounting.settings.resolve_settings`); a place
    greenai cannot find is never guessed: the world average is charged, with a
    warning. Bad settings raise ``ValueError`` here, before anything runs.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        gpus: Sequence[int] | None = None,
        cpu: bool = True,
        dram: bool = True,
        devices: Sequence[Device] | None = None,
        sample_period_s: float = DEFAULT_SAMPLE_PERIOD_S,
        synchronize: bool = True,
        country: str | None = None,
        region: str | None = None,
        cloud: str | None = None,
        pue: float | None = None,
        price_per_kwh: float | None = None,
        gpu_hour_price: float | None = None,
        intensity_g_per_kwh: float | None = None,
        intensity_csv: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        project_name: str | None = None,
        history: bool | str | os.PathLike[str] | None = None,
        target: EnergyTarget | None = None,
        prometheus: int | PrometheusExporter | None = None,
        log_to: Sequence[RunObserver] = (),
        gather: Gather = "rank0",
        gather_timeout_s: float = DEFAULT_GATHER_TIMEOUT_S,
    ) -> None:
        loggers: object = log_to
        if isinstance(loggers, str | bytes) or not all(
            callable(getattr(o, "run_started", None)) for o in log_to
        ):
            raise TypeError(
                "log_to must be a list of experiment loggers (greenai.integrations.experiments: "
                f"TensorBoardLogger, MLflowLogger, WandbLogger), got {log_to!r}"
            )
        settings = resolve_settings(
            country=country,
            region=region,
            cloud=cloud,
            pue=pue,
            price_per_kwh=price_per_kwh,
            gpu_hour_price=gpu_hour_price,
            intensity_g_per_kwh=intensity_g_per_kwh,
            intensity_csv=intensity_csv,
            config_path=config_path,
        )
        super().__init__(
            name,
            gpus=gpus,
            cpu=cpu,
            dram=dram,
            devices=devices,
            sample_period_s=sample_period_s,
            synchronize=synchronize,
            account=accountant(settings),
            outputs=_outputs(output_dir, project_name, history),
            observers=[*_observers(target, name, prometheus), *log_to],
            gather=gather,
            gather_timeout_s=gather_timeout_s,
        )

    def start(self) -> Tracker:
        """Put back power limits that killed greenai runs left changed, then start metering."""
        _recover_power_limits()
        super().start()
        return self


def _recover_power_limits() -> None:
    """Any start that could set limits recovers the journal killed runs left (it exists only
    while a run steers a GPU or after one was killed: one ``stat`` otherwise)."""
    from greenai.core.state import POWER_LIMIT_JOURNAL, state_dir

    if not os.path.lexists(state_dir() / POWER_LIMIT_JOURNAL):
        return
    from greenai.control.limits import recover
    from greenai.core.errors import ControlWarning, warn

    restored = recover()
    if restored:
        warn(
            "greenai: restored power limits that a killed run left changed: " + "; ".join(restored),
            ControlWarning,
        )


def _observers(
    target: EnergyTarget | None, name: str | None, prometheus: int | PrometheusExporter | None
) -> list[RunObserver]:
    observers: list[RunObserver] = []
    if target is not None:
        from greenai.control.governor import Governor

        observers.append(Governor(target, job=name))
    if prometheus is not None:
        from greenai.report.prometheus import PrometheusExporter

        if isinstance(prometheus, PrometheusExporter):
            observers.append(prometheus)
        else:
            observers.append(PrometheusExporter(port=prometheus))
    return observers


def _outputs(
    output_dir: str | os.PathLike[str] | None,
    project_name: str | None,
    history: bool | str | os.PathLike[str] | None,
) -> list[Callable[[Result], object]]:
    outputs: list[Callable[[Result], object]] = []
    if output_dir is not None:
        directory = Path(output_dir)

        def write_reports(result: Result) -> None:
            from greenai.report.csv_report import append_emissions_row
            from greenai.report.records import record_path, write_record

            directory.mkdir(parents=True, exist_ok=True)
            append_emissions_row(directory / "emissions.csv", result, project_name=project_name)
            write_record(record_path(directory, result), result)

        outputs.append(write_reports)
    history_file = history_path(history)
    if history_file is not None:

        def record_history(result: Result) -> None:
            from greenai.report.history import History
            from greenai.report.records import record_path

            full = None if output_dir is None else record_path(output_dir, result)
            History(history_file).add(result, record=full)

        outputs.append(record_history)
    return outputs


def history_path(history: bool | str | os.PathLike[str] | None) -> Path | None:
    """Where a run's ``history=`` argument sends it: None for nowhere (False, or
    ``GREENAI_HISTORY=off`` when not given), else the SQLite file (the CLI asks the same)."""
    if history is False:
        return None
    if history is None and os.environ.get("GREENAI_HISTORY", "").strip().lower() in _HISTORY_OFF:
        return None
    if history is None or history is True:
        from greenai.report.history import default_history_path

        return default_history_path()
    return Path(history)


class _Track(Generic[P]):
    """Meter a block, a function or a run; account its CO2e and cost.

    ``with greenai.track("name", ...) as run:`` and ``greenai.track(...).start()`` make a
    :class:`Tracker` (the arguments are its own); after the run, ``run.result`` holds
    energy, CO2e and cost. As a decorator, ``@greenai.track`` (runs named after the
    function's ``__qualname__``) or ``@greenai.track("name", ...)``: each call is its own
    run, and the last one's result is ``fn.result`` (None before the first call).
    """

    def __init__(self, make: Callable[P, Tracker]) -> None:
        self._make = make

    # A bare function is never a name: Tracker's first argument is a string or None.
    @overload
    def __call__(self, fn: Callable[Q, R], /) -> Tracked[Q, R]: ...  # type: ignore[overload-overlap]

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Tracker: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return Tracker()(args[0])
        return self._make(*args, **kwargs)

    def __repr__(self) -> str:
        return "greenai.track"


track = _Track(Tracker)
