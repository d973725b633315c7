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
        self.counter_resets = 0
        self._lock = threading.Lock()
        self._last_raw_mj: int | None = None
        self._offset_mj = 0

    def __repr__(self) -> str:
        return f"NvmlGpu({self.name}, {self.model!r}, {self.uuid}, source={self.source})"

    def energy_j(self) -> float:
        """Cumulative energy from the GPU's counter, continuous across counter resets. Units: J."""
        import pynvml

        if not self.has_energy_counter:
            raise NotSupportedError(f"{self.name}: no energy counter (pre-Volta GPU)")
        raw_mj = int(
            _nvml_call(
                f"{self.name}: total energy",
                pynvml.nvmlDeviceGetTotalEnergyConsumption,
                self._handle,
            )
        )
        with self._lock:
            if self._last_raw_mj is not None and raw_mj < self._last_raw_mj:
                # The counter restarted (driver reload, GPU reset): continue from the last
                # value; whatever was spent between that read and the restart is lost.
                self._offset_mj += self._last_raw_mj
                self.counter_resets += 1
            self._last_raw_mj = raw_mj
            return (self._offset_mj + raw_mj) / 1000.0

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
_probe_cache: tuple[tuple[Any, str | None], list[NvmlGpu]] | None = None


def probe() -> list[NvmlGpu]:
    """The GPUs visible to this process, in CUDA order; [] when NVML is unavailable.

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


def _probe_uncached(pynvml: Any, visible: list[_VisibleEntry] | None) -> list[NvmlGpu]:
    try:
        _nvml_call("init", pynvml.nvmlInit)
        count = _nvml_call("device count", pynvml.nvmlDeviceGetCount)
        handles = [
            _nvml_call(f"handle {i}", pynvml.nvmlDeviceGetHandleByIndex, i) for i in range(count)
        ]
        uuids = [
            _as_str(_nvml_call(f"uuid {i}", pynvml.nvmlDeviceGetUUID, h))
            for i, h in enumerate(handles)
        ]
    except DeviceError as e:
        logger.debug("no NVIDIA GPUs: %s", e)
        return []
    nvml_order = _select_visible(uuids, visible)
    simulated = hasattr(pynvml, "_greenai_simulation")
    gpus = []
    for cuda_index, nvml_index in enumerate(nvml_order):
        handle = handles[nvml_index]
        try:
            model = _as_str(_nvml_call("name", pynvml.nvmlDeviceGetName, handle))
        except DeviceError as e:
            logger.debug("GPU %d (NVML %d) skipped: %s", cuda_index, nvml_index, e)
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
                uuid=uuids[nvml_index],
                has_energy_counter=has_counter,
                simulated=simulated,
            )
        )
    return gpus


def _select_visible(uuids: list[str], visible: list[_VisibleEntry] | None) -> list[int]:
    """NVML indices of the GPUs CUDA exposes, in CUDA's order."""
    if visible is None:
        return list(range(len(uuids)))
    order: list[int] = []
    for entry in visible:
        if entry.index is not None:
            match = entry.index if entry.index < len(uuids) else None
        else:
            assert entry.uuid_prefix is not None
            hits = [i for i, u in enumerate(uuids) if u.startswith(entry.uuid_prefix)]
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
