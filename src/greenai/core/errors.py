"""greenai's exception classes: every sensor or vendor failure is translated into one of these;
and :func:`warn`, the one place greenai's warnings leave from."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

Deferred = list[tuple[str, type[Warning]]]
"""Warnings kept to be shown later: (message, category)."""

_deferring = threading.local()


class GreenAIError(Exception):
    """Base class of every error greenai raises on purpose."""


class DeviceError(GreenAIError):
    """A device or its driver failed to answer."""


class NotSupportedError(DeviceError):
    """The device does not support this query or setting (for example no energy counter)."""


class DeviceLostError(DeviceError):
    """The device fell off the bus or stopped answering for good."""


class NoPermissionError(DeviceError):
    """The caller may not change this setting (power limits need root or admin rights)."""


class DriverNotLoadedError(DeviceError):
    """The vendor library or driver is missing, so no device of its kind can be probed."""


class SensorWarning(RuntimeWarning):
    """A sensor failed or is missing during tracking; the result is marked partial.

    Shown once per device and run. Tracking never raises into the user's code
    because of a sensor.
    """


class OutputWarning(RuntimeWarning):
    """A report or record of a run could not be written; the run's result is still returned."""


class GatherWarning(RuntimeWarning):
    """Not every rank of a ``torch.distributed`` job reported its figures in time.

    The job result is marked partial and lists the ranks that are missing; shown
    once per run, on the ranks that gather.
    """


class ReportError(GreenAIError):
    """A report, record or history file is foreign or too new to be read or written safely."""


class AccountingWarning(UserWarning):
    """CO2 was charged with a fallback, e.g. the world-average intensity for an unknown place."""


class ControlWarning(UserWarning):
    """greenai could not steer a device setting as asked, e.g. no permission to set power limits.

    The run goes on unsteered (metering is unaffected); shown once per guard.
    """


class CompressionWarning(UserWarning):
    """A model transform of ``greenai.compress`` changed nothing, or changed a layer's outputs
    by more than its threshold; the model is returned all the same, and the report says why."""


def warn(message: str, category: type[Warning]) -> None:
    """Warn, attributing the warning to the first caller outside greenai.

    So the line shown is the user's ``with greenai.track(...)``, not greenai's internals.
    """
    kept: Deferred | None = getattr(_deferring, "into", None)
    if kept is not None:
        kept.append((message, category))
        return
    import os
    import sys
    import warnings

    package_dir = os.path.dirname(os.path.dirname(__file__)) + os.sep
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package_dir):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


@contextmanager
def deferred_warnings() -> Iterator[Deferred]:
    """Keep the warnings greenai raises in this thread instead of showing them.

    For work done in a background thread (a run finished after it ended): shown there, a
    warning would escape the user's filters and pytest's capture, and ``-W error`` would
    turn it into an exception in that thread. :func:`show_warnings` shows them later, in
    the user's thread.
    """
    outer = getattr(_deferring, "into", None)
    kept: Deferred = []
    _deferring.into = kept
    try:
        yield kept
    finally:
        _deferring.into = outer


def show_warnings(kept: Deferred) -> None:
    """Show the warnings :func:`deferred_warnings` kept, in order, as :func:`warn` would."""
    for message, category in kept:
        warn(message, category)
