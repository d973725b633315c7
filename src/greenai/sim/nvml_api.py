"""The NVML API answered from a :class:`~greenai.sim.simulation.Simulation`.

:class:`SimulatedNvml` holds the replacement for each ``pynvml`` function that
:func:`~greenai.sim.nvml.simulated_nvml` patches in, by name
(:meth:`SimulatedNvml.functions`). Each answers with NVML's units (mW, mJ, MHz,
bytes), return types (ints, ``str``, pynvml's own ctypes structs) and errors
(pynvml's own ``NVMLError`` subclasses, raised for an NVML return code).

Simulated calls (each patched only where the installed pynvml defines it):
``nvmlInit``, ``nvmlInitWithFlags``, ``nvmlShutdown`` (reference counted; other
calls raise Uninitialized until ``nvmlInit``), ``nvmlErrorString``,
``nvmlSystemGetDriverVersion``, ``nvmlSystemGetNVMLVersion``,
``nvmlSystemGetCudaDriverVersion(_v2)``, ``nvmlDeviceGetCount(_v2)``,
``nvmlDeviceGetHandleByIndex(_v2)``, ``nvmlDeviceGetHandleByUUID``,
``nvmlDeviceGetHandleByPciBusId(_v2)``, ``nvmlDeviceGetIndex``, ``...GetName``,
``...GetUUID``, ``...GetSerial``, ``...GetPciInfo(_v3)``,
``...GetTotalEnergyConsumption``, ``...GetPowerUsage``,
``...GetPowerManagementLimit``, ``...GetPowerManagementDefaultLimit``,
``...GetPowerManagementLimitConstraints``, ``...GetEnforcedPowerLimit``,
``...SetPowerManagementLimit``, ``...GetPowerManagementMode``,
``...GetUtilizationRates``, ``...GetMemoryInfo``, ``...GetTemperature``,
``...GetTemperatureV1`` (so ``...GetTemperatureV``), ``...GetClockInfo``,
``...GetMaxClockInfo``, ``...GetCudaComputeCapability``, ``...GetArchitecture``,
``...GetComputeRunningProcesses(_v2, _v3)`` and
``...GetGraphicsRunningProcesses(_v2, _v3)`` (empty), ``...GetPersistenceMode``,
``...GetComputeMode``, and ``...GetFieldValues`` for the total-energy and power
fields (others answer NotSupported in their ``nvmlReturn``).

Readings follow real GPUs: the energy counter and power readings are as of the
GPU's latest update instant (see :mod:`greenai.sim.simulation`), so a read
between updates is stale. ``nvmlDeviceGetTotalEnergyConsumption`` is the counter
floored to whole mJ; ``nvmlDeviceGetPowerUsage`` the average over the power
window, rounded to mW. Utilization, temperature and SM clock also come from the
latest update; memory utilization is taken as half the SM utilization.

Every other pynvml function reaches its C function through
``pynvml._nvmlGetFunctionPointer``, whose replacement hands out one that never
works: it answers ``NVML_ERROR_NOT_SUPPORTED`` (``NVML_ERROR_UNINITIALIZED``
before ``nvmlInit``, ``NVML_ERROR_GPU_IS_LOST`` for a lost GPU's handle), which
pynvml's wrapper raises, instead of reaching a driver (or a real GPU on a
machine that has one).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pynvml

from greenai.core.forks import renew_in_child
from greenai.sim.simulation import Simulation

DRIVER_VERSION = "570.124.06"
"""What ``nvmlSystemGetDriverVersion`` reports."""
NVML_VERSION = "12.570.124.06"
"""What ``nvmlSystemGetNVMLVersion`` reports."""
CUDA_DRIVER_VERSION = 12080
"""What ``nvmlSystemGetCudaDriverVersion`` reports (CUDA 12.8, as ``1000 * major + 10 * minor``)."""

_PCI_DEVICE_ID = 0x233010DE  # H100 SXM5 80GB
_PCI_SUBSYSTEM_ID = 0x16C110DE
_PCI_FIRST_BUS = 0x18
_RESERVED_MEMORY_BYTES = 512 * 2**20  # what the driver holds on an otherwise empty GPU
_PCI_BUS_ID = re.compile(
    r"^(?:(?P<domain>[0-9a-f]{1,8}):)?(?P<bus>[0-9a-f]{1,2}):(?P<device>[0-9a-f]{1,2})\.0$"
)

# Field ids of nvmlDeviceGetFieldValues (fixed by the NVML ABI; pynvml's NVML_FI_DEV_*).
_FI_TOTAL_ENERGY_CONSUMPTION = 83
_FI_POWER_AVERAGE = 185
_FI_POWER_INSTANT = 186
_FI_POWER_MIN_LIMIT = 187
_FI_POWER_MAX_LIMIT = 188
_FI_POWER_DEFAULT_LIMIT = 189
_FI_POWER_CURRENT_LIMIT = 190


def _nvml_error(code: int) -> Exception:
    """pynvml's own exception for ``code`` (``NVMLError.__new__`` picks the subclass)."""
    error: Exception = pynvml.NVMLError(code)
    return error


def _milli(value: float) -> int:
    """Watts to milliwatts (joules to millijoules), rounded to the nearest integer."""
    return round(value * 1000)


class _Handle:
    """An opaque ``nvmlDevice_t`` of one simulated GPU."""

    __slots__ = ("backend", "index")

    def __init__(self, backend: SimulatedNvml, index: int) -> None:
        self.backend = backend
        self.index = index

    def __repr__(self) -> str:
        return f"<simulated nvmlDevice_t index={self.index}>"


class _UnsimulatedFunction:
    """What the patched ``_nvmlGetFunctionPointer`` hands out: a C function that never works.

    pynvml's wrappers set ``restype``/``argtypes`` on it and call it with ctypes
    arguments; it answers with an NVML return code, which the wrapper raises.
    """

    def __init__(self, backend: SimulatedNvml, name: str) -> None:
        self.backend = backend
        self.name = name

    def __call__(self, *args: object) -> int:
        return self.backend.unsimulated_return_code(args)

    def __repr__(self) -> str:
        return f"<unsimulated NVML function {self.name}>"


class SimulatedNvml:
    """The NVML API over one :class:`Simulation`; :meth:`functions` maps pynvml names to it."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self._lock = threading.Lock()
        self._init_count = 0
        renew_in_child(self)
        self._handles = tuple(_Handle(self, index) for index in range(len(sim.gpus)))

    def _after_fork_in_child(self) -> None:
        """A lock no parent's thread holds (the parent's sampler reads through this API)."""
        self._lock = threading.Lock()

    def functions(self) -> dict[str, Callable[..., Any]]:
        """The replacement for each pynvml function this module simulates, by name."""
        table: dict[str, Callable[..., Any]] = {
            "_nvmlGetFunctionPointer": self.function_pointer,
            "nvmlInit": self.init,
            "nvmlInitWithFlags": self.init_with_flags,
            "nvmlShutdown": self.shutdown,
            "nvmlErrorString": self.error_string,
            "nvmlSystemGetDriverVersion": self.driver_version,
            "nvmlSystemGetNVMLVersion": self.nvml_version,
            "nvmlSystemGetCudaDriverVersion": self.cuda_driver_version,
            "nvmlSystemGetCudaDriverVersion_v2": self.cuda_driver_version,
            "nvmlDeviceGetCount": self.device_count,
            "nvmlDeviceGetCount_v2": self.device_count,
            "nvmlDeviceGetHandleByIndex": self.handle_by_index,
            "nvmlDeviceGetHandleByIndex_v2": self.handle_by_index,
            "nvmlDeviceGetHandleByUUID": self.handle_by_uuid,
            "nvmlDeviceGetHandleByPciBusId": self.handle_by_pci_bus_id,
            "nvmlDeviceGetHandleByPciBusId_v2": self.handle_by_pci_bus_id,
            "nvmlDeviceGetIndex": self.index,
            "nvmlDeviceGetName": self.name,
            "nvmlDeviceGetUUID": self.uuid,
            "nvmlDeviceGetSerial": self.serial,
            "nvmlDeviceGetPciInfo": self.pci_info,
            "nvmlDeviceGetPciInfo_v3": self.pci_info,
            "nvmlDeviceGetTotalEnergyConsumption": self.total_energy_consumption,
            "nvmlDeviceGetPowerUsage": self.power_usage,
            "nvmlDeviceGetPowerManagementLimit": self.power_limit,
            "nvmlDeviceGetEnforcedPowerLimit": self.power_limit,
            "nvmlDeviceGetPowerManagementDefaultLimit": self.default_power_limit,
            "nvmlDeviceGetPowerManagementLimitConstraints": self.power_limit_constraints,
            "nvmlDeviceSetPowerManagementLimit": self.set_power_limit,
            "nvmlDeviceGetPowerManagementMode": self.enabled_feature,
            "nvmlDeviceGetPersistenceMode": self.enabled_feature,
            "nvmlDeviceGetComputeMode": self.compute_mode,
            "nvmlDeviceGetUtilizationRates": self.utilization_rates,
            "nvmlDeviceGetMemoryInfo": self.memory_info,
            "nvmlDeviceGetTemperature": self.temperature,
            "nvmlDeviceGetTemperatureV1": self.temperature,
            "nvmlDeviceGetClockInfo": self.clock_info,
            "nvmlDeviceGetMaxClockInfo": self.max_clock_info,
            "nvmlDeviceGetCudaComputeCapability": self.cuda_compute_capability,
            "nvmlDeviceGetArchitecture": self.architecture,
            "nvmlDeviceGetFieldValues": self.field_values,
        }
        for kind in ("Compute", "Graphics"):
            for suffix in ("", "_v2", "_v3"):
                table[f"nvmlDeviceGet{kind}RunningProcesses{suffix}"] = self.running_processes
        return table

    # -- library ---------------------------------------------------------------

    def function_pointer(self, name: str) -> _UnsimulatedFunction:
        return _UnsimulatedFunction(self, name)

    def unsimulated_return_code(self, args: Sequence[object]) -> int:
        """The NVML return code of a function this module does not simulate.

        NVML's checks come first, as for a simulated call: initialization, then
        each handle among ``args`` (the other arguments are ctypes values).
        """
        try:
            self._check_initialized()
            for arg in args:
                if isinstance(arg, _Handle):
                    self._device(arg)
        except pynvml.NVMLError as e:
            return int(e.value)
        return int(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def init(self) -> None:
        self.init_with_flags(0)

    def init_with_flags(self, flags: int) -> None:
        with self._lock:
            self._init_count += 1

    def shutdown(self) -> None:
        with self._lock:
            if self._init_count == 0:
                raise _nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)
            self._init_count -= 1

    def error_string(self, result: int) -> str:
        return str(pynvml.NVMLError._errcode_to_string.get(result, "Unknown Error"))

    def _check_initialized(self) -> None:
        if self._init_count == 0:
            raise _nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)

    def driver_version(self) -> str:
        self._check_initialized()
        return DRIVER_VERSION

    def nvml_version(self) -> str:
        self._check_initialized()
        return NVML_VERSION

    def cuda_driver_version(self) -> int:
        self._check_initialized()
        return CUDA_DRIVER_VERSION

    # -- handles ---------------------------------------------------------------

    def _checked_handle(self, index: int) -> _Handle:
        if "lost" in self.sim.faults(index):
            raise _nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self._handles[index]

    def _device(self, handle: object) -> int:
        """The index of a valid handle of this simulation, after NVML's checks."""
        self._check_initialized()
        if not isinstance(handle, _Handle) or handle.backend is not self:
            raise _nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._checked_handle(handle.index).index

    def device_count(self) -> int:
        self._check_initialized()
        return len(self._handles)

    def handle_by_index(self, index: int) -> _Handle:
        self._check_initialized()
        if isinstance(index, bool) or not isinstance(index, int):
            raise _nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= index < len(self._handles):
            raise _nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._checked_handle(index)

    def handle_by_uuid(self, uuid: str | bytes) -> _Handle:
        self._check_initialized()
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        if text not in self.sim.uuids:
            raise _nvml_error(pynvml.NVML_ERROR_NOT_FOUND)
        return self._checked_handle(self.sim.uuids.index(text))

    def handle_by_pci_bus_id(self, pci_bus_id: str | bytes) -> _Handle:
        self._check_initialized()
        text = pci_bus_id.decode() if isinstance(pci_bus_id, bytes) else pci_bus_id
        match = _PCI_BUS_ID.match(text.lower())
        if match is None:
            raise _nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        wanted = (int(match["domain"] or "0", 16), int(match["bus"], 16), int(match["device"], 16))
        for index in range(len(self._handles)):
            if (*_pci_location(index), 0) == wanted:
                return self._checked_handle(index)
        raise _nvml_error(pynvml.NVML_ERROR_NOT_FOUND)

    # -- identity --------------------------------------------------------------

    def index(self, handle: object) -> int:
        return self._device(handle)

    def name(self, handle: object) -> str:
        return self.sim.gpus[self._device(handle)].name

    def uuid(self, handle: object) -> str:
        return self.sim.uuids[self._device(handle)]

    def serial(self, handle: object) -> str:
        index = self._device(handle)
        return self.sim.gpus[index].serial_at(index)

    def pci_info(self, handle: object) -> Any:
        """A ``pynvml.nvmlPciInfo_t``, as ``nvmlDeviceGetPciInfo_v3`` returns."""
        domain, bus = _pci_location(self._device(handle))
        info = pynvml.nvmlPciInfo_t()
        info.domain = domain
        info.bus = bus
        info.device = 0
        info.pciDeviceId = _PCI_DEVICE_ID
        info.pciSubSystemId = _PCI_SUBSYSTEM_ID
        info.busId = f"{domain:08X}:{bus:02X}:00.0".encode()
        info.busIdLegacy = f"{domain:04X}:{bus:02X}:00.0".encode()
        return info

    def cuda_compute_capability(self, handle: object) -> tuple[int, int]:
        return self.sim.gpus[self._device(handle)].compute_capability

    def architecture(self, handle: object) -> int:
        return self.sim.gpus[self._device(handle)].architecture

    # -- energy and power ------------------------------------------------------

    def _check_power_sensors(self, index: int) -> None:
        if "not_supported" in self.sim.faults(index):
            raise _nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def total_energy_consumption(self, handle: object) -> int:
        """Energy counter at the latest update, floored to whole mJ."""
        index = self._device(handle)
        self._check_power_sensors(index)
        if not self.sim.gpus[index].has_energy_counter:
            raise _nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return _counter_mj(self.sim.reading(index).energy_counter_j)

    def power_usage(self, handle: object) -> int:
        """Average power over the power window ending at the latest update, in mW."""
        index = self._device(handle)
        self._check_power_sensors(index)
        return _milli(self.sim.reading(index).average_power_w)

    def power_limit(self, handle: object) -> int:
        return _milli(self.sim.power_limit_w(self._device(handle)))

    def default_power_limit(self, handle: object) -> int:
        return _milli(self.sim.gpus[self._device(handle)].effective_default_limit_w)

    def power_limit_constraints(self, handle: object) -> list[int]:
        gpu = self.sim.gpus[self._device(handle)]
        return [_milli(gpu.min_limit_w), _milli(gpu.max_limit_w)]

    def set_power_limit(self, handle: object, limit: int) -> None:
        """Set the power limit, in mW (an int, as pynvml's ``c_uint`` demands)."""
        index = self._device(handle)
        if "no_permission" in self.sim.faults(index):
            raise _nvml_error(pynvml.NVML_ERROR_NO_PERMISSION)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int number of milliwatts, got {limit!r}")
        gpu = self.sim.gpus[index]
        if not _milli(gpu.min_limit_w) <= limit <= _milli(gpu.max_limit_w):
            raise _nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        # Clamp so that rounding the constraints to mW cannot push a valid limit outside them.
        self.sim.set_power_limit_w(index, min(max(limit / 1000, gpu.min_limit_w), gpu.max_limit_w))

    def field_values(self, handle: object, field_ids: Sequence[int | tuple[int, int]]) -> Any:
        """A ctypes array of ``pynvml.c_nvmlFieldValue_t``, one per requested field.

        Simulates the total-energy, power and power-limit fields for the GPU scope;
        any other field or scope reports NotSupported in its ``nvmlReturn``.
        """
        index = self._device(handle)
        gpu = self.sim.gpus[index]
        reading = self.sim.reading(index)
        sensors_ok = "not_supported" not in self.sim.faults(index)
        limits_mw = {
            _FI_POWER_MIN_LIMIT: _milli(gpu.min_limit_w),
            _FI_POWER_MAX_LIMIT: _milli(gpu.max_limit_w),
            _FI_POWER_DEFAULT_LIMIT: _milli(gpu.effective_default_limit_w),
            _FI_POWER_CURRENT_LIMIT: _milli(self.sim.power_limit_w(index)),
        }
        powers_mw = {
            _FI_POWER_AVERAGE: _milli(reading.average_power_w),
            _FI_POWER_INSTANT: _milli(reading.power_w),
        }
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for value, field in zip(values, field_ids, strict=True):
            field_id, scope = field if isinstance(field, tuple) else (field, 0)
            value.fieldId = field_id
            value.scopeId = scope
            value.timestamp = round(reading.update_s * 1e6)
            value.latencyUsec = 0
            value.nvmlReturn = pynvml.NVML_SUCCESS
            gpu_scope = scope == pynvml.NVML_POWER_SCOPE_GPU
            if field_id == _FI_TOTAL_ENERGY_CONSUMPTION and sensors_ok and gpu.has_energy_counter:
                value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                value.value.ullVal = _counter_mj(reading.energy_counter_j)
            elif field_id in powers_mw and sensors_ok and gpu_scope:
                value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                value.value.uiVal = powers_mw[field_id]
            elif field_id in limits_mw and gpu_scope:
                value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                value.value.uiVal = limits_mw[field_id]
            else:
                value.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    # -- other state -----------------------------------------------------------

    def enabled_feature(self, handle: object) -> int:
        """Power management and persistence mode: always enabled on the simulated GPUs."""
        self._device(handle)
        return int(pynvml.NVML_FEATURE_ENABLED)

    def compute_mode(self, handle: object) -> int:
        self._device(handle)
        return int(pynvml.NVML_COMPUTEMODE_DEFAULT)

    def utilization_rates(self, handle: object) -> Any:
        """A ``pynvml.c_nvmlUtilization_t`` (percent) from the load at the latest update."""
        load = self.sim.reading(self._device(handle)).load
        return pynvml.c_nvmlUtilization_t(gpu=round(100 * load), memory=round(50 * load))

    def memory_info(self, handle: object, version: int | None = None) -> Any:
        """A ``pynvml.c_nvmlMemory_t`` (``c_nvmlMemory_v2_t`` given a ``version``), in bytes."""
        total = self.sim.gpus[self._device(handle)].memory_total_bytes
        reserved = min(total, _RESERVED_MEMORY_BYTES)
        if not version:
            return pynvml.c_nvmlMemory_t(total=total, free=total - reserved, used=reserved)
        memory = pynvml.c_nvmlMemory_v2_t()
        memory.version = version
        memory.total = total
        memory.reserved = reserved
        memory.free = total - reserved
        memory.used = 0
        return memory

    def temperature(self, handle: object, sensor: int) -> int:
        """GPU temperature in degrees C, linear in the power at the latest update."""
        index = self._device(handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.sim.gpus[index]
        power_w = self.sim.reading(index).power_w
        heat = (power_w - gpu.idle_w) / (gpu.max_w - gpu.idle_w) if gpu.max_w > gpu.idle_w else 0.0
        span_c = gpu.max_temperature_c - gpu.idle_temperature_c
        return round(gpu.idle_temperature_c + span_c * min(max(heat, 0.0), 1.0))

    def _clock_mhz(self, handle: object, clock_type: int, *, current: bool) -> int:
        index = self._device(handle)
        gpu = self.sim.gpus[index]
        if clock_type in (pynvml.NVML_CLOCK_GRAPHICS, pynvml.NVML_CLOCK_SM):
            if not current:
                return gpu.max_sm_clock_mhz
            return round(gpu.max_sm_clock_mhz * self.sim.reading(index).clock_fraction)
        if clock_type == pynvml.NVML_CLOCK_MEM:
            return gpu.max_memory_clock_mhz
        if clock_type == pynvml.NVML_CLOCK_VIDEO:
            raise _nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        raise _nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def clock_info(self, handle: object, type: int) -> int:
        """Current clock in MHz: the SM/graphics clock is throttled with the power limit."""
        return self._clock_mhz(handle, type, current=True)

    def max_clock_info(self, handle: object, type: int) -> int:
        """Maximum clock in MHz."""
        return self._clock_mhz(handle, type, current=False)

    def running_processes(self, handle: object) -> list[Any]:
        """No processes run on a simulated GPU."""
        self._device(handle)
        return []


def _pci_location(index: int) -> tuple[int, int]:
    """``(domain, bus)`` of the GPU at ``index``: consecutive buses from 0x18."""
    return divmod(_PCI_FIRST_BUS + index, 256)


def _counter_mj(energy_j: float) -> int:
    """An energy counter in whole mJ, floored as a counter is.

    The 1e-6 mJ allowance keeps float rounding from reporting an exact N mJ as N - 1.
    """
    return math.floor(energy_j * 1000 + 1e-6)
