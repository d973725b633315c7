"""The instruments of ``gpu_validation.py``'s section 2, independent of greenai: NVML through
``pynvml`` directly (the naive reference), a thread polling NVML's power readings, ``nvidia-smi``
polling in the background, and a tight loop timing the energy counter's updates.
"""

from __future__ import annotations

import itertools
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

POLL_S = 0.01
"""The NVML poller's period. Units: s."""
SMI_PERIOD_MS = 100
SMI_FIELDS = (
    "timestamp",
    "power.draw",
    "power.draw.average",
    "power.draw.instant",
    "enforced.power.limit",
    "clocks.sm",
    "utilization.gpu",
    "temperature.gpu",
)
"""nvidia-smi fields asked for, where ``--help-query-gpu`` lists them (plus any energy field)."""


class RawNvml:
    """One GPU through ``pynvml`` directly, with no greenai in between."""

    def __init__(self, nvml_index: int) -> None:
        import pynvml

        self.nv: Any = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index)
        self.field_ids = {
            "instant_w": pynvml.NVML_FI_DEV_POWER_INSTANT,
            "average_w": pynvml.NVML_FI_DEV_POWER_AVERAGE,
            "energy_mj": pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
        }

    def energy_mj(self) -> int:
        return int(self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_w(self) -> float:
        return float(self.nv.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0

    def fields(self) -> dict[str, tuple[float | None, int]]:
        """Field values: (value, driver timestamp in us); value None where not supported."""
        values = self.nv.nvmlDeviceGetFieldValues(self.handle, list(self.field_ids.values()))
        out: dict[str, tuple[float | None, int]] = {}
        for name, v in zip(self.field_ids, values, strict=True):
            if v.nvmlReturn != self.nv.NVML_SUCCESS:
                out[name] = (None, int(v.timestamp))
                continue
            raw = _field_value(v)
            out[name] = (raw / 1000.0 if name.endswith("_w") else raw, int(v.timestamp))
        return out

    def describe(self) -> dict[str, Any]:
        nv = self.nv
        return {
            "name": _text(nv.nvmlDeviceGetName(self.handle)),
            "driver": _text(nv.nvmlSystemGetDriverVersion()),
            "uuid": _text(nv.nvmlDeviceGetUUID(self.handle)),
        }

    def limits(self) -> dict[str, Any]:
        """Every power-limit reading NVML gives, in W (an error text where one fails)."""
        nv = self.nv
        calls: dict[str, Callable[[Any], Any]] = {
            "enforced_w": nv.nvmlDeviceGetEnforcedPowerLimit,
            "management_w": nv.nvmlDeviceGetPowerManagementLimit,
            "default_w": nv.nvmlDeviceGetPowerManagementDefaultLimit,
            "range_w": nv.nvmlDeviceGetPowerManagementLimitConstraints,
        }
        out: dict[str, Any] = {}
        for name, fn in calls.items():
            try:
                value = fn(self.handle)
            except Exception as e:
                out[name] = f"error: {e}"
                continue
            out[name] = [v / 1000 for v in value] if isinstance(value, list) else value / 1000
        return out


def _field_value(v: Any) -> float:
    member = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")[int(v.valueType)]
    return float(getattr(v.value, member))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlPoller:
    """Polls power usage and the power/energy field values every ``POLL_S`` in a thread."""

    def __init__(self, nvml: RawNvml) -> None:
        self.nvml = nvml
        self.samples: list[dict[str, float | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nvml-poller", daemon=True)

    def start(self) -> NvmlPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _loop(self) -> None:
        fields_ok = True
        while not self._stop.wait(POLL_S):
            sample: dict[str, float | None] = {"t": time.time()}
            try:
                sample["power_w"] = self.nvml.power_w()
                if fields_ok:
                    for name, (value, _) in self.nvml.fields().items():
                        sample[name] = value
            except Exception as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                if "power_w" in sample:
                    fields_ok = False  # power works, field values do not: go on without them
                else:
                    return
            self.samples.append(sample)


# --- nvidia-smi ---------------------------------------------------------------------------------


class SmiPoller:
    """``nvidia-smi --query-gpu=... -lms 100`` in the background, its rows parsed."""

    def __init__(self, smi: str, nvml_index: int, fields: Sequence[str] | None = None) -> None:
        """Ask for ``fields``, or by default for those of ``SMI_FIELDS`` (and any energy
        field) that ``--help-query-gpu`` lists."""
        if fields is None:
            help_text = subprocess.run(
                [smi, "--help-query-gpu"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
            listed = set(_quoted_names(help_text))
            energy = sorted(n for n in listed if "energy" in n)
            fields = [f for f in SMI_FIELDS if f in listed or f == "timestamp"] + energy
        self.fields = list(fields)
        self.missing = [f for f in SMI_FIELDS if f not in self.fields]
        self.rows: list[dict[str, Any]] = []
        self.stderr = ""
        self._proc = subprocess.Popen(
            [
                smi,
                "-i",
                str(nvml_index),
                f"--query-gpu={','.join(self.fields)}",
                "--format=csv,noheader,nounits",
                "-lms",
                str(SMI_PERIOD_MS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, name="smi-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            row = parse_smi_row(self.fields, line)
            if row is not None:
                row["received"] = time.time()
                self.rows.append(row)

    def exited(self) -> bool:
        return self._proc.poll() is not None

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._thread.join(timeout=2)
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self.stderr = self._proc.stderr.read()
        self._proc.stdout.close()
        self._proc.stderr.close()


def _quoted_names(help_text: str) -> list[str]:
    """Field names in ``--help-query-gpu``: the quoted names on lines that start with one
    (``"clocks.current.sm" or "clocks.sm"``)."""
    names: list[str] = []
    for line in help_text.splitlines():
        if line.startswith('"'):
            names += re.findall(r'"([^"]+)"', line)
    return names


def parse_smi_row(fields: Sequence[str], line: str) -> dict[str, Any] | None:
    """One CSV row: ``t`` (the timestamp as Unix seconds) and each field as a float or None."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != len(fields):
        return None
    row: dict[str, Any] = {}
    for name, text in zip(fields, parts, strict=True):
        if name == "timestamp":
            try:
                row["t"] = datetime.strptime(text, "%Y/%m/%d %H:%M:%S.%f").timestamp()
            except ValueError:
                return None
        else:
            try:
                row[name] = float(text)
            except ValueError:
                row[name] = None  # [N/A], [Not Supported]
    return row


def update_period(nvml: RawNvml, seconds: float) -> dict[str, Any]:
    """Poll the energy counter and power reading in a tight loop; time their changes."""
    changes: dict[str, list[float]] = {"energy": [], "power": []}
    last: dict[str, float | None] = {"energy": None, "power": None}
    polls = 0
    t_end = time.monotonic() + seconds
    while (now := time.monotonic()) < t_end:
        for key, value in (("energy", float(nvml.energy_mj())), ("power", nvml.power_w())):
            if value != last[key]:
                if last[key] is not None:
                    changes[key].append(now)
                last[key] = value
        polls += 1
    out: dict[str, Any] = {"seconds": seconds, "polls_per_s": polls / seconds}
    for key, times in changes.items():
        out[key] = interval_stats(times)
    stamps: list[float] = []
    t_end = time.monotonic() + min(seconds, 0.5)
    try:
        while time.monotonic() < t_end:
            _, stamp_us = nvml.fields()["energy_mj"]
            if not stamps or stamp_us / 1e6 != stamps[-1]:
                stamps.append(stamp_us / 1e6)
        out["energy_field_timestamps"] = interval_stats(stamps)
    except Exception as e:
        out["energy_field_timestamps"] = f"{type(e).__name__}: {e}"
    return out


def interval_stats(times: Sequence[float]) -> dict[str, Any]:
    """Intervals between successive instants, in ms: count, median, min, max, p10, p90."""
    gaps = sorted((b - a) * 1e3 for a, b in itertools.pairwise(times))
    if not gaps:
        return {"changes": len(times), "intervals": 0}
    return {
        "changes": len(times),
        "intervals": len(gaps),
        "median_ms": statistics.median(gaps),
        "min_ms": gaps[0],
        "max_ms": gaps[-1],
        "p10_ms": gaps[len(gaps) // 10],
        "p90_ms": gaps[(len(gaps) * 9) // 10],
    }
