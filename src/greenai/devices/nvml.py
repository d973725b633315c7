"""NVIDIA GPUs through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

Volta and newer GPUs have a total-energy counter (millijoules since the driver
loaded), updated every few tens of milliseconds; older ones only report power,
which the tracker integrates. NVML errors are translated into greenai's own
exceptions in one place, :func:`_nvml_call`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from greenai.core.errors import (
    DeviceError,
    DeviceLostError,
    DriverNotLoadedError,
    NoPermissionError,
    NotSupportedError,
)
from greenai.core.forks import after_fork_in_child
from greenai.devices.base import DeviceKind, Source

logger = logging.getLogger(__name__)

T = TypeVar("T")

# NVML return codes (nvml.h) and the greenai exception each becomes.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_ERROR_CLASSES: dict[int, type[DeviceError]] = {
    1: DriverNotLoadedError,  # UNINITIALIZED
    _NOT_SUPPORTED: NotSupportedError,
    _NO_PERMISSION: NoPermissionError,
    9: DriverNotLoadedError,  # DRIVER_NOT_LOADED
    12: DriverNotLoadedError,  # LIBRARY_NOT_FOUND
    13: NotSupportedError,  # FUNCTION_NOT_FOUND: the driver is older than the call
    15: DeviceLostError,  # GPU_IS_LOST
    16: DeviceLostError,  # RESET_REQUIRED
    28: DeviceLostError,  # GPU_NOT_FOUND
}


def _nvml_call(what: str, fn: Callable[..., T], *args: Any) -> T:
    """Call an NVML function, turning ``pynvml.NVMLError`` into a greenai exception."""
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError as e:
        code = getattr(e, "value", None)
        cls = _ERROR_CLASSES.get(code, DeviceError) if isinstance(code, int) else DeviceError
        raise cls(f"{what}: {e}") from e


class NvmlGpu:
    """One NVIDIA GPU as the CUDA runtime of this process numbers it.

    ``name`` is ``gpu<i>`` where ``i`` is the CUDA device index under
    ``CUDA_VISIBLE_DEVICES`` (what ``torch.device("cuda", i)`` means), not the
    NVML index. Units: J, W.
    """

    kind: DeviceKind = "gpu"

    def __init__(
        self,
        handle: Any,
        *,
        cuda_index: int,
        nvml_index: int,
        model: str,
        uuid: str,
        has_energy_counter: bool,
        simulated: bool,
    ) -> None:
        self._handle = handle
        self.cuda_index = cuda_index
        self.nvml_index = nvml_index
        self.model = model
        self.uuid = uuid
        self.name = f"gpu{cuda_index}"
        self.has_energy_counter = has_energy_counter
        self.source: Source = (
            "sim" if simulated else ("nvml-counter" if has_energy_counter else "nvml-power")
        )
        self.counter_resets = 0  # restarts are found by the tracker's guard, not here

    def __str__(self) -> str:
        how = "energy counter" if self.has_energy_counter else "power readings"
        return f"{self.model} ({self.uuid}), NVML {how}" + (
            " (simulated)" if self.source == "sim" else ""
        )

    def __repr__(self) -> str:
        return f"NvmlGpu({self.name}, {self.model!r}, {self.uuid}, source={self.source})"

    def energy_j(self) -> float:
        """The GPU's energy counter: since the driver loaded, so it restarts from near zero
        at a driver reload (the tracker's :mod:`~greenai.devices.plausible` guard tells
        that from noise and impossible values). Units: J."""
        import pynvml

        if not self.has_energy_counter:
            raise NotSupportedError(f"{self.name}: no energy counter (pre-Volta GPU)")
        raw_mj = _nvml_call(
            f"{self.name}: total energy",
            pynvml.nvmlDeviceGetTotalEnergyConsumption,
            self._handle,
        )
        return float(raw_mj) / 1000.0

    def power_w(self) -> float:
        """Power draw as NVML reports it (an average over the driver's own window). Units: W."""
        import pynvml

        mw = _nvml_call(f"{self.name}: power usage", pynvml.nvmlDeviceGetPowerUsage, self._handle)
        return float(mw) / 1000.0

    def power_limit_w(self) -> float:
        import pynvml

        mw = _nvml_call(
            f"{self.name}: enforced power limit",
            pynvml.nvmlDeviceGetEnforcedPowerLimit,
            self._handle,
        )
        return float(mw) / 1000.0

    def default_power_limit_w(self) -> float:
        """The limit the GPU boots with (what ``nvidia-smi -q -d POWER`` calls the default).
        Units: W."""
        import pynvml

        mw = _nvml_call(
            f"{self.name}: default power limit",
            pynvml.nvmlDeviceGetPowerManagementDefaultLimit,
            self._handle,
        )
        return float(mw) / 1000.0

    def power_limit_range_w(self) -> tuple[float, float]:
        import pynvml

        lo_mw, hi_mw = _nvml_call(
            f"{self.name}: power limit constraints",
            pynvml.nvmlDeviceGetPowerManagementLimitConstraints,
            self._handle,
        )
        return float(lo_mw) / 1000.0, float(hi_mw) / 1000.0

    def set_power_limit_w(self, limit_w: float) -> None:
        import pynvml

        lo, hi = self.power_limit_range_w()
        if not lo <= limit_w <= hi:
            raise ValueError(f"limit_w={limit_w!r} is outside {self.name}'s range [{lo}, {hi}] W")
        _nvml_call(
            f"{self.name}: set power limit",
            pynvml.nvmlDeviceSetPowerManagementLimit,
            self._handle,
            round(limit_w * 1000),
        )


class LostGpu:
    """A GPU that NVML counts but could not read when probed (lost, needing a reset).

    It stays in the probe's list so that the tracker reports it (every read raises
    :class:`~greenai.core.errors.DeviceLostError`, so the device is marked failed, the
    result partial and one warning shown) instead of hiding it, or the GPUs beside it.
    """

    kind: DeviceKind = "gpu"
    has_energy_counter = True
    counter_resets = 0
    model = "unknown (lost)"
    uuid = ""

    def __init__(self, *, cuda_index: int, nvml_index: int, reason: str, simulated: bool) -> None:
        self.cuda_index = cuda_index
        self.nvml_index = nvml_index
        self.name = f"gpu{cuda_index}"
        self.reason = reason
        self.source: Source = "sim" if simulated else "nvml-counter"

    def __str__(self) -> str:
        return f"lost GPU (NVML index {self.nvml_index}): {self.reason}"

    def __repr__(self) -> str:
        return f"LostGpu({self.name}, NVML {self.nvml_index}: {self.reason})"

    def _lost(self) -> DeviceLostError:
        return DeviceLostError(
            f"{self.name} (NVML {self.nvml_index}) was lost when probed: {self.reason}"
        )

    def energy_j(self) -> float:
        raise self._lost()

    def power_w(self) -> float:
        raise self._lost()

    def power_limit_w(self) -> float:
        raise self._lost()

    def power_limit_range_w(self) -> tuple[float, float]:
        raise self._lost()

    def default_power_limit_w(self) -> float:
        raise self._lost()

    def set_power_limit_w(self, limit_w: float) -> None:
        raise self._lost()


@dataclass(frozen=True)
class _VisibleEntry:
    """One entry of CUDA_VISIBLE_DEVICES: an NVML index or a UUID prefix."""

    index: int | None = None
    uuid_prefix: str | None = None


def parse_cuda_visible_devices(value: str | None) -> list[_VisibleEntry] | None:
    """Parse ``CUDA_VISIBLE_DEVICES`` the way the CUDA runtime does.

    Returns None when unset (every GPU is visible). Entries are indices or
    ``GPU-`` UUID prefixes; as in CUDA, the list ends at the first entry that is
    not valid (a negative number, garbage), so ``"0,-1,1"`` means only GPU 0.
    ``MIG-`` entries end the list too: MIG instances have no energy counter of
    their own, so greenai cannot meter them.
    """
    if value is None:
        return None
    entries: list[_VisibleEntry] = []
    for raw in value.split(","):
        token = raw.strip()
        if token.isdigit():
            entries.append(_VisibleEntry(index=int(token)))
        elif token.startswith("GPU-") and len(token) > 4:
            entries.append(_VisibleEntry(uuid_prefix=token))
        else:
            if token:
                logger.debug(
                    "CUDA_VISIBLE_DEVICES entry %r is not a GPU index or UUID; "
                    "it and the entries after it are ignored, as CUDA does",
                    token,
                )
            break
    return entries


_probe_lock = threading.Lock()
_probe_cache: tuple[tuple[Any, str | None], list[NvmlGpu | LostGpu]] | None = None


def probe() -> list[NvmlGpu | LostGpu]:
    """The GPUs visible to this process, in CUDA order; [] when NVML is unavailable.

    Each GPU is probed on its own: one that cannot be read is a :class:`LostGpu`, and
    never hides the others.

    Cached per NVML library and ``CUDA_VISIBLE_DEVICES`` value (a simulation that
    patches ``pynvml`` gets a fresh probe). Never raises.
    """
    global _probe_cache
    try:
        import pynvml
    except ImportError as e:
        logger.debug("no NVIDIA GPUs: the pynvml module (nvidia-ml-py) is missing: %s", e)
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    key = (pynvml.nvmlInit, visible)
    with _probe_lock:
        if (
            _probe_cache is not None
            and _probe_cache[0][0] is key[0]
            and _probe_cache[0][1] == visible
        ):
            return list(_probe_cache[1])
        try:
            gpus = _probe_uncached(pynvml, parse_cuda_visible_devices(visible))
        except Exception as e:  # a broken or partial NVML binding: no GPUs, never a crash
            logger.debug("no NVIDIA GPUs: probing NVML failed: %r", e, exc_info=True)
            gpus = []
        _probe_cache = (key, gpus)
        return list(gpus)


def reset_cache() -> None:
    """Forget the cached probe (tests, or after the driver was reloaded)."""
    global _probe_cache
    with _probe_lock:
        _probe_cache = None


def _forget_after_fork() -> None:
    """A forked child probes afresh, under a fresh lock: the parent's sampler may have held
    the lock, or a cached GPU's own lock, at the fork."""
    global _probe_lock, _probe_cache
    _probe_lock = threading.Lock()
    _probe_cache = None


after_fork_in_child(_forget_after_fork)


def _probe_uncached(pynvml: Any, visible: list[_VisibleEntry] | None) -> list[NvmlGpu | LostGpu]:
    try:
        _nvml_call("init", pynvml.nvmlInit)
        count = _nvml_call("device count", pynvml.nvmlDeviceGetCount)
    except DeviceError as e:
        logger.debug("no NVIDIA GPUs: %s", e)
        return []
    handles: list[Any] = []
    uuids: list[str | None] = []
    errors: dict[int, DeviceError] = {}
    for i in range(count):
        handle = uuid = None
        try:
            handle = _nvml_call("handle", pynvml.nvmlDeviceGetHandleByIndex, i)
            uuid = _as_str(_nvml_call("uuid", pynvml.nvmlDeviceGetUUID, handle))
        except DeviceError as e:
            logger.debug("NVML GPU %d cannot be read: %s", i, e)
            errors[i] = e
        handles.append(handle)
        uuids.append(uuid)
    nvml_order = _select_visible(uuids, visible)
    simulated = hasattr(pynvml, "_greenai_simulation")
    gpus: list[NvmlGpu | LostGpu] = []
    for cuda_index, nvml_index in enumerate(nvml_order):
        handle = handles[nvml_index]
        error = errors.get(nvml_index)
        if error is None:
            try:
                model = _as_str(_nvml_call("name", pynvml.nvmlDeviceGetName, handle))
            except DeviceError as e:
                error = e
        if error is not None:
            gpus.append(
                LostGpu(
                    cuda_index=cuda_index,
                    nvml_index=nvml_index,
                    reason=str(error),
                    simulated=simulated,
                )
            )
            continue
        has_counter = _answers(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        if not has_counter and not _answers(pynvml.nvmlDeviceGetPowerUsage, handle):
            logger.debug(
                "GPU %d (%s) reports neither energy nor power; not metered", cuda_index, model
            )
            continue
        gpus.append(
            NvmlGpu(
                handle,
                cuda_index=cuda_index,
                nvml_index=nvml_index,
                model=model,
                uuid=uuids[nvml_index] or "",
                has_energy_counter=has_counter,
                simulated=simulated,
            )
        )
    return gpus


def _select_visible(uuids: list[str | None], visible: list[_VisibleEntry] | None) -> list[int]:
    """NVML indices of the GPUs CUDA exposes, in CUDA's order (a GPU whose UUID could not
    be read matches no UUID entry)."""
    if visible is None:
        return list(range(len(uuids)))
    order: list[int] = []
    for entry in visible:
        if entry.index is not None:
            match = entry.index if entry.index < len(uuids) else None
        else:
            assert entry.uuid_prefix is not None
            hits = [
                i for i, u in enumerate(uuids) if u is not None and u.startswith(entry.uuid_prefix)
            ]
            match = hits[0] if len(hits) == 1 else None
        if match is None or match in order:
            logger.debug(
                "CUDA_VISIBLE_DEVICES entry %s matches no single GPU (or repeats one); "
                "it and the entries after it are ignored, as CUDA does",
                entry,
            )
            break
        order.append(match)
    return order


def _answers(fn: Callable[[Any], object], handle: Any) -> bool:
    """Whether an NVML query works on this GPU (NotSupported and friends mean no)."""
    try:
        _nvml_call("probe", fn, handle)
    except Exception as e:  # NotSupported, or a binding that lacks the call
        logger.debug("%s: %s", getattr(fn, "__name__", fn), e)
        return False
    return True


def _as_str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
