"""greenai's exception classes: every sensor or vendor failure is translated into one of these."""

from __future__ import annotations


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


def warn(message: str, category: type[Warning]) -> None:
    """Warn, attributing the warning to the first caller outside greenai.

    So the line shown is the user's ``with greenai.track(...)``, not greenai's internals.
    """
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
