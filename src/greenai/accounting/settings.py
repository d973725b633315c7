"""Accounting settings: where the machine is, its PUE, prices, and a chosen grid intensity.

Each setting is taken, in this order of precedence, from:

1. an argument of :func:`resolve_settings` (``None`` means "not given");
2. a TOML config file;
3. a ``GREENAI_*`` environment variable (``GREENAI_COUNTRY``, ``GREENAI_REGION``,
   ``GREENAI_CLOUD``, ``GREENAI_PUE``, ``GREENAI_PRICE_PER_KWH``,
   ``GREENAI_GPU_HOUR_PRICE``, ``GREENAI_INTENSITY_G_PER_KWH``,
   ``GREENAI_INTENSITY_CSV``); an empty variable counts as unset;
4. the default (PUE 1.0, everything else unset).

The config file is the first of: the ``config_path`` argument, ``$GREENAI_CONFIG``,
``./greenai.toml`` (if present), ``$XDG_CONFIG_HOME/greenai/config.toml`` (if
present; ``XDG_CONFIG_HOME`` defaults to ``~/.config``). A file named by the
argument or by ``GREENAI_CONFIG`` must exist. Its keys are the settings' names,
at the top level (no table), for example::

    country = "FRA"
    pue = 1.2
    price_per_kwh = 0.21
    gpu_hour_price = 2.5
    intensity_csv = "grid.csv"   # relative to the config file's folder

Any other key is an error, so a typo never goes unnoticed. Where each value
came from is kept in :attr:`AccountingSettings.origin`.

The location is never guessed (not from the network, not from the time zone):
with nothing set it stays unknown, and the accounting layer says so.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CLOUD_PROVIDERS", "ENV_VARS", "AccountingSettings", "resolve_settings"]

#: The environment variable read for each setting.
ENV_VARS: Mapping[str, str] = {
    "country": "GREENAI_COUNTRY",
    "region": "GREENAI_REGION",
    "cloud": "GREENAI_CLOUD",
    "pue": "GREENAI_PUE",
    "price_per_kwh": "GREENAI_PRICE_PER_KWH",
    "gpu_hour_price": "GREENAI_GPU_HOUR_PRICE",
    "intensity_g_per_kwh": "GREENAI_INTENSITY_G_PER_KWH",
    "intensity_csv": "GREENAI_INTENSITY_CSV",
}

#: Cloud providers a ``cloud`` setting may name (CodeCarbon 3.3 has figures for GCP only).
CLOUD_PROVIDERS = ("gcp", "aws", "azure")

_NORDIC_ZONE = re.compile(r"^(se[1-4]|no[1-5]|fi)$", re.IGNORECASE)
_ISO3 = re.compile(r"^[A-Za-z]{3}$")
_CLOUD_REGION = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Errors about a config file name its path, the position and setting-like key names, never
# its text: it may be any readable file (GREENAI_CONFIG, a greenai.toml in the working folder).
_TOML_POSITION = re.compile(r"\((at line \d+, column \d+|at end of document)\)\s*$")
_KEY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,39}$")

_STRINGS = ("country", "region", "cloud")
_NUMBERS = ("pue", "price_per_kwh", "gpu_hour_price", "intensity_g_per_kwh")
_FIELDS = (*_STRINGS, *_NUMBERS, "intensity_csv")


@dataclass(frozen=True)
class AccountingSettings:
    """What the accounting layer needs beyond the measured energy. Validated on creation.

    Attributes:
        country: ISO 3166-1 alpha-3 code of the country the machine draws power in
            (``"FRA"``), upper case. None: unknown.
        region: A region CodeCarbon has data for, normalised the way CodeCarbon
            expects: US state, Canadian or Chinese province names in lower case
            (``"california"``, ``"quebec"``, ``"sichuan"``), Nordic bidding zones in
            upper case (``"SE3"``, ``"NO4"``, ``"FI"``).
        cloud: ``"provider:region"`` in lower case (``"gcp:europe-west1"``); the
            provider is one of :data:`CLOUD_PROVIDERS`.
        pue: Power usage effectiveness of the facility: facility energy / IT energy.
            At least 1.0; 1.0 means only the metered devices are charged.
        price_per_kwh: Electricity price. Units: USD per kWh.
        gpu_hour_price: Rental price of one GPU for one hour. Units: USD per GPU-hour.
        intensity_g_per_kwh: A fixed grid intensity, overriding every lookup.
            Units: g CO2e per kWh.
        intensity_csv: A grid-intensity time series (``timestamp,g_per_kwh``); see
            :class:`greenai.accounting.intensity_series.IntensitySeries`. Exclusive with
            ``intensity_g_per_kwh``.
        origin: For every setting, where its value came from: ``"argument"``,
            ``"config file /path"``, ``"env GREENAI_COUNTRY"`` or ``"default"``.
            Settings missing from it when the object is made directly are filled
            in: ``"argument"`` when set, ``"default"`` otherwise.

    Raises:
        ValueError: A value is malformed or out of range; the message names the
            setting, the value and where it came from.
    """

    country: str | None = None
    region: str | None = None
    cloud: str | None = None
    pue: float = 1.0
    price_per_kwh: float | None = None
    gpu_hour_price: float | None = None
    intensity_g_per_kwh: float | None = None
    intensity_csv: Path | None = None
    origin: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        origin = dict(self.origin)
        for name in _FIELDS:
            if name not in origin:
                default = _DEFAULTS[name]
                origin[name] = "default" if getattr(self, name) == default else "argument"
        set_ = object.__setattr__
        set_(self, "origin", origin)
        set_(self, "country", _country(self.country, origin["country"]))
        set_(self, "region", _region(self.region, origin["region"]))
        set_(self, "cloud", _cloud(self.cloud, origin["cloud"]))
        set_(self, "pue", _number("pue", self.pue, origin["pue"], minimum=1.0))
        for name in ("price_per_kwh", "gpu_hour_price", "intensity_g_per_kwh"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, _number(name, value, origin[name], minimum=0.0))
        set_(self, "intensity_csv", _csv_path(self.intensity_csv, origin["intensity_csv"]))
        if self.intensity_g_per_kwh is not None and self.intensity_csv is not None:
            raise ValueError(
                "give either intensity_g_per_kwh or intensity_csv, not both: "
                f"intensity_g_per_kwh={self.intensity_g_per_kwh!r} "
                f"(from {origin['intensity_g_per_kwh']}), "
                f"intensity_csv={str(self.intensity_csv)!r} (from {origin['intensity_csv']})"
            )

    @property
    def cloud_provider(self) -> str | None:
        """The provider part of :attr:`cloud` (``"gcp"``), or None."""
        return self.cloud.split(":", 1)[0] if self.cloud else None

    @property
    def cloud_region(self) -> str | None:
        """The region part of :attr:`cloud` (``"europe-west1"``), or None."""
        return self.cloud.split(":", 1)[1] if self.cloud else None


_DEFAULTS: Mapping[str, Any] = {
    f.name: f.default for f in dataclasses.fields(AccountingSettings) if f.name != "origin"
}


def _bad(name: str, value: object, where: str, why: str) -> ValueError:
    """The error for a bad setting; a config file's value is not quoted (it may be any file)."""
    shown = "" if where.startswith("config file") else f"={value!r}"
    return ValueError(f"greenai setting {name}{shown} (from {where}): {why}")


def _string(name: str, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(name, value, where, "must be a string")
    text = " ".join(value.split())
    if not text:
        raise _bad(name, value, where, "must not be empty")
    return text


def _country(value: object, where: str) -> str | None:
    if value is None:
        return None
    text = _string("country", value, where)
    if not _ISO3.match(text):
        raise _bad(
            "country", value, where, "must be an ISO 3166-1 alpha-3 code such as 'FRA' or 'USA'"
        )
    return text.upper()


def _region(value: object, where: str) -> str | None:
    if value is None:
        return None
    text = _string("region", value, where)
    # CodeCarbon lower-cases region names, and upper-cases Nordic bidding zones.
    return text.upper() if _NORDIC_ZONE.match(text) else text.lower()


def _cloud(value: object, where: str) -> str | None:
    if value is None:
        return None
    text = _string("cloud", value, where).lower()
    provider, sep, region = (p.strip() for p in text.partition(":"))
    if not sep or provider not in CLOUD_PROVIDERS or not _CLOUD_REGION.match(region):
        raise _bad(
            "cloud",
            value,
            where,
            "must be 'provider:region' with provider one of "
            f"{', '.join(CLOUD_PROVIDERS)} (e.g. 'gcp:europe-west1')",
        )
    return f"{provider}:{region}"


def _number(name: str, value: object, where: str, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, value, where, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise _bad(name, value, where, "must be a finite number")
    if number < minimum:
        raise _bad(name, value, where, f"must be at least {minimum:g}")
    return number


def _csv_path(value: object, where: str) -> Path | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise _bad("intensity_csv", value, where, "must not be empty")
        value = Path(value)
    if not isinstance(value, os.PathLike):
        raise _bad("intensity_csv", value, where, "must be a path")
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise _bad("intensity_csv", str(path), where, "no such file")
    return path


# ---------------------------------------------------------------- resolution


def resolve_settings(
    *,
    country: str | None = None,
    region: str | None = None,
    cloud: str | None = None,
    pue: float | None = None,
    price_per_kwh: float | None = None,
    gpu_hour_price: float | None = None,
    intensity_g_per_kwh: float | None = None,
    intensity_csv: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> AccountingSettings:
    """Gather the accounting settings from arguments, a config file, the environment, defaults.

    Args:
        country: ISO 3166-1 alpha-3 code, any case.
        region: US state, Canadian or Chinese province, or Nordic bidding zone.
        cloud: ``"provider:region"``, e.g. ``"gcp:europe-west1"``.
        pue: Power usage effectiveness (>= 1).
        price_per_kwh: Units: USD per kWh.
        gpu_hour_price: Units: USD per GPU-hour.
        intensity_g_per_kwh: A fixed grid intensity. Units: g CO2e per kWh.
        intensity_csv: A grid-intensity time series file (relative paths: to the
            working directory; in a config file: to the file's folder).
        config_path: The TOML file to read instead of looking one up.
        env: The environment to read (default: ``os.environ``); it is also where
            ``GREENAI_CONFIG``, ``XDG_CONFIG_HOME`` and ``HOME`` are looked up.

    Returns:
        The settings, with :attr:`~AccountingSettings.origin` saying where each came from.

    Raises:
        ValueError: A value is malformed or out of range, the config file is unreadable,
            not TOML, or has an unknown key, or a named config file does not exist. The
            message names the setting, the value and where it came from.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    arguments: dict[str, object] = {
        "country": country,
        "region": region,
        "cloud": cloud,
        "pue": pue,
        "price_per_kwh": price_per_kwh,
        "gpu_hour_price": gpu_hour_price,
        "intensity_g_per_kwh": intensity_g_per_kwh,
        "intensity_csv": intensity_csv,
    }
    file_path = _find_config_file(config_path, environ)
    file_values = _read_config_file(file_path) if file_path is not None else {}

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in _FIELDS:
        if arguments[name] is not None:
            values[name], origin[name] = arguments[name], "argument"
        elif name in file_values:
            values[name], origin[name] = file_values[name], f"config file {file_path}"
        elif environ.get(ENV_VARS[name], "").strip():
            where = f"env {ENV_VARS[name]}"
            values[name], origin[name] = _from_env(name, environ[ENV_VARS[name]], where), where
        else:
            values[name], origin[name] = _DEFAULTS[name], "default"

    # The fixed intensity and the series are two answers to one question: the one
    # given with the higher precedence wins, and the other is dropped (and says why).
    fixed, series = "intensity_g_per_kwh", "intensity_csv"
    if values[fixed] is not None and values[series] is not None:
        rank = {"argument": 0, "config": 1, "env": 2}
        rank_fixed = rank[origin[fixed].split(" ", 1)[0]]
        rank_series = rank[origin[series].split(" ", 1)[0]]
        if rank_fixed != rank_series:
            loser, winner = (fixed, series) if rank_fixed > rank_series else (series, fixed)
            values[loser] = None
            origin[loser] = f"overridden by {winner} (from {origin[winner]})"
    return AccountingSettings(**values, origin=origin)


def _from_env(name: str, text: str, where: str) -> object:
    text = text.strip()
    if name in _NUMBERS:
        try:
            return float(text)
        except ValueError:
            raise _bad(name, text, where, "must be a number") from None
    return text


def _find_config_file(
    config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path | None:
    if config_path is not None:
        path = Path(config_path).expanduser()
        if not path.is_file():
            raise _bad("config_path", str(path), "argument", "no such file")
        return path
    named = environ.get("GREENAI_CONFIG", "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise _bad("config_path", named, "env GREENAI_CONFIG", "no such file")
        return path
    local = Path.cwd() / "greenai.toml"
    if local.is_file():
        return local
    xdg = environ.get("XDG_CONFIG_HOME", "").strip()
    if xdg:
        base = Path(xdg)
    else:
        home = environ.get("HOME", "").strip()
        base = (Path(home) if home else Path.home()) / ".config"
    user = base / "greenai" / "config.toml"
    return user if user.is_file() else None


def _read_config_file(path: Path) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

    where = f"config file {path}"
    try:
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"greenai {where}: cannot be read: {e}") from e
    except tomllib.TOMLDecodeError as e:
        # Only the position: the parser's message may quote the file, any readable file.
        at = _TOML_POSITION.search(str(e))
        position = f" ({at.group(1)})" if at else ""
        raise ValueError(f"greenai {where}: not valid TOML{position}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"greenai {where}: not valid TOML (not UTF-8 text)") from e
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        named = [repr(k) for k in unknown if _KEY_NAME.match(k)]
        others = len(unknown) - len(named)
        listed = named + ([f"{others} other(s) not shown"] if others else [])
        raise ValueError(
            f"greenai {where}: unknown key(s) {', '.join(listed)}; known keys: {', '.join(_FIELDS)}"
        )
    values: dict[str, object] = dict(data)
    csv = values.get("intensity_csv")
    if isinstance(csv, str) and csv.strip():
        csv_path = Path(csv).expanduser()
        values["intensity_csv"] = csv_path if csv_path.is_absolute() else path.parent / csv_path
    return values
