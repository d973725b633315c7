"""Accounting settings: precedence, origins, validation, config-file lookup."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from greenai.accounting.settings import ENV_VARS, AccountingSettings, resolve_settings

FIELDS = tuple(ENV_VARS)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the real home, working directory or GREENAI_* variables."""
    for name in [*ENV_VARS.values(), "GREENAI_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no config file can be found through it."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


def _csv(path: Path) -> Path:
    path.write_text("timestamp,g_per_kwh\n2024-01-01T00:00:00Z,100\n")
    return path


def _toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_set(env: dict[str, str]) -> None:
    s = resolve_settings(env=env)
    assert (s.country, s.region, s.cloud) == (None, None, None)
    assert s.pue == 1.0
    assert (s.price_per_kwh, s.gpu_hour_price) == (None, None)
    assert (s.intensity_g_per_kwh, s.intensity_csv) == (None, None)
    assert dict(s.origin) == dict.fromkeys(FIELDS, "default")


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENAI_COUNTRY", "deu")
    s = resolve_settings()
    assert s.country == "DEU"
    assert s.origin["country"] == "env GREENAI_COUNTRY"


# One value per level for every setting: argument, file (TOML text), env.
LEVELS: dict[str, tuple[object, str, str]] = {
    "country": ("FRA", '"DEU"', "ITA"),
    "region": ("quebec", '"ontario"', "alberta"),
    "cloud": ("gcp:europe-west1", '"gcp:europe-west9"', "gcp:us-central1"),
    "pue": (1.5, "1.25", "1.1"),
    "price_per_kwh": (0.3, "0.2", "0.1"),
    "gpu_hour_price": (3.0, "2", "1.5"),
    "intensity_g_per_kwh": (300.0, "200", "100"),
}
EXPECTED: dict[str, tuple[object, object, object]] = {
    "country": ("FRA", "DEU", "ITA"),
    "region": ("quebec", "ontario", "alberta"),
    "cloud": ("gcp:europe-west1", "gcp:europe-west9", "gcp:us-central1"),
    "pue": (1.5, 1.25, 1.1),
    "price_per_kwh": (0.3, 0.2, 0.1),
    "gpu_hour_price": (3.0, 2.0, 1.5),
    "intensity_g_per_kwh": (300.0, 200.0, 100.0),
}


@pytest.mark.parametrize("name", list(LEVELS))
def test_argument_beats_file_beats_env_beats_default(
    name: str, env: dict[str, str], tmp_path: Path
) -> None:
    argument, in_file, in_env = LEVELS[name]
    expected_arg, expected_file, expected_env = EXPECTED[name]
    config = _toml(tmp_path / "c.toml", f"{name} = {in_file}\n")
    env = {**env, ENV_VARS[name]: in_env}

    s = resolve_settings(**{name: argument}, config_path=config, env=env)  # type: ignore[arg-type]
    assert (getattr(s, name), s.origin[name]) == (expected_arg, "argument")

    s = resolve_settings(config_path=config, env=env)
    assert (getattr(s, name), s.origin[name]) == (expected_file, f"config file {config}")

    s = resolve_settings(env=env)
    assert (getattr(s, name), s.origin[name]) == (expected_env, f"env {ENV_VARS[name]}")

    s = resolve_settings(env={k: v for k, v in env.items() if k != ENV_VARS[name]})
    assert s.origin[name] == "default"


def test_intensity_csv_precedence_and_relative_paths(env: dict[str, str], tmp_path: Path) -> None:
    arg_csv = _csv(tmp_path / "arg.csv")
    (tmp_path / "conf").mkdir()
    file_csv = _csv(tmp_path / "conf" / "file.csv")
    env_csv = _csv(tmp_path / "env.csv")
    config = _toml(tmp_path / "conf" / "c.toml", 'intensity_csv = "file.csv"\n')
    env = {**env, "GREENAI_INTENSITY_CSV": str(env_csv)}

    s = resolve_settings(intensity_csv=arg_csv, config_path=config, env=env)
    assert (s.intensity_csv, s.origin["intensity_csv"]) == (arg_csv, "argument")
    s = resolve_settings(config_path=config, env=env)
    # A relative path in the config file is relative to the file's folder, not to the cwd.
    assert s.intensity_csv == file_csv
    assert s.origin["intensity_csv"] == f"config file {config}"
    s = resolve_settings(env=env)
    assert (s.intensity_csv, s.origin["intensity_csv"]) == (env_csv, "env GREENAI_INTENSITY_CSV")


def test_relative_csv_argument_is_made_absolute(env: dict[str, str]) -> None:
    _csv(Path("here.csv"))
    s = resolve_settings(intensity_csv="here.csv", env=env)
    assert s.intensity_csv == Path.cwd() / "here.csv"
    assert s.intensity_csv is not None
    assert s.intensity_csv.is_absolute()


def test_normalisation() -> None:
    s = AccountingSettings(country=" fra ", region="  New   York ", cloud="GCP:Europe-West1")
    assert (s.country, s.region, s.cloud) == ("FRA", "new york", "gcp:europe-west1")
    assert (s.cloud_provider, s.cloud_region) == ("gcp", "europe-west1")
    assert AccountingSettings(region="se3").region == "SE3"
    assert AccountingSettings(region="fi").region == "FI"
    assert AccountingSettings(region="Sichuan Province").region == "sichuan province"
    assert AccountingSettings(pue=2).pue == 2.0
    assert isinstance(AccountingSettings(pue=2).pue, float)


def test_direct_construction_fills_origin() -> None:
    s = AccountingSettings(country="FRA", pue=1.0, price_per_kwh=0.2)
    assert s.origin["country"] == "argument"
    assert s.origin["price_per_kwh"] == "argument"
    assert s.origin["pue"] == "default"
    assert s.origin["region"] == "default"
    assert set(s.origin) == set(FIELDS)


def test_empty_env_variable_counts_as_unset(env: dict[str, str]) -> None:
    s = resolve_settings(env={**env, "GREENAI_COUNTRY": "", "GREENAI_PUE": "  "})
    assert (s.country, s.pue) == (None, 1.0)
    assert s.origin["country"] == s.origin["pue"] == "default"


# ---------------------------------------------------------------- validation

BAD_VALUES: list[tuple[str, object, str]] = [
    ("pue", 0.9, "at least 1"),
    ("pue", math.nan, "finite"),
    ("pue", math.inf, "finite"),
    ("pue", True, "number"),
    ("pue", "1.2", "number"),
    ("price_per_kwh", -0.01, "at least 0"),
    ("price_per_kwh", math.nan, "finite"),
    ("gpu_hour_price", -1.0, "at least 0"),
    ("intensity_g_per_kwh", -5.0, "at least 0"),
    ("intensity_g_per_kwh", math.inf, "finite"),
    ("country", "France", "alpha-3"),
    ("country", "FR", "alpha-3"),
    ("country", "", "empty"),
    ("country", 250, "string"),
    ("region", "   ", "empty"),
    ("cloud", "europe-west1", "provider:region"),
    ("cloud", "ibm:us-south", "provider:region"),
    ("cloud", "gcp:", "provider:region"),
]


@pytest.mark.parametrize(("name", "value", "why"), BAD_VALUES)
def test_bad_argument_is_named(name: str, value: object, why: str, env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=why) as info:
        resolve_settings(**{name: value}, env=env)  # type: ignore[arg-type]
    message = str(info.value)
    assert name in message
    assert "(from argument)" in message
    assert repr(value)[:4] in message or str(value) in message


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("pue", "0.5", "at least 1"),
        ("pue", "nan", "finite"),
        ("pue", "abc", "number"),
        ("price_per_kwh", "-1", "at least 0"),
        ("price_per_kwh", "1,5", "number"),
        ("gpu_hour_price", "cheap", "number"),
        ("intensity_g_per_kwh", "-3", "at least 0"),
        ("country", "United States", "alpha-3"),
        ("cloud", "gcp/europe-west1", "provider:region"),
        ("intensity_csv", "/no/such/file.csv", "no such file"),
    ],
)
def test_bad_env_value_is_named(name: str, text: str, why: str, env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=why) as info:
        resolve_settings(env={**env, ENV_VARS[name]: text})
    message = str(info.value)
    assert name in message
    assert f"env {ENV_VARS[name]}" in message
    assert text in message


@pytest.mark.parametrize(
    ("line", "name", "why"),
    [
        ("pue = 0.5", "pue", "at least 1"),
        ("pue = nan", "pue", "finite"),
        ('pue = "high"', "pue", "number"),
        ("price_per_kwh = -0.2", "price_per_kwh", "at least 0"),
        ("country = 33", "country", "string"),
        ('intensity_csv = "missing.csv"', "intensity_csv", "no such file"),
        ("intensity_csv = 3", "intensity_csv", "path"),
    ],
)
def test_bad_file_value_is_named(
    line: str, name: str, why: str, env: dict[str, str], tmp_path: Path
) -> None:
    config = _toml(tmp_path / "c.toml", line + "\n")
    with pytest.raises(ValueError, match=why) as info:
        resolve_settings(config_path=config, env=env)
    assert name in str(info.value)
    assert f"config file {config}" in str(info.value)


def test_unknown_key_in_file(env: dict[str, str], tmp_path: Path) -> None:
    config = _toml(tmp_path / "c.toml", 'contry = "FRA"\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'contry'") as info:
        resolve_settings(config_path=config, env=env)
    assert str(config) in str(info.value)


def test_a_table_is_an_unknown_key(env: dict[str, str], tmp_path: Path) -> None:
    """Keys live at the top level: a ``[greenai]`` table is rejected, not silently ignored."""
    config = _toml(tmp_path / "c.toml", '[greenai]\ncountry = "FRA"\n')
    with pytest.raises(ValueError, match="'greenai'"):
        resolve_settings(config_path=config, env=env)


def test_invalid_toml(env: dict[str, str], tmp_path: Path) -> None:
    config = _toml(tmp_path / "c.toml", "country = FRA\n")
    with pytest.raises(ValueError, match="not valid TOML") as info:
        resolve_settings(config_path=config, env=env)
    assert str(config) in str(info.value)


def test_missing_config_path(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"config_path=.*nope\.toml.*argument.*no such file"):
        resolve_settings(config_path=tmp_path / "nope.toml", env=env)
    with pytest.raises(ValueError, match=r"config_path=.*nope\.toml.*env GREENAI_CONFIG"):
        resolve_settings(env={**env, "GREENAI_CONFIG": str(tmp_path / "nope.toml")})


def test_missing_csv_argument(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"intensity_csv=.*gone\.csv.*argument.*no such file"):
        resolve_settings(intensity_csv=tmp_path / "gone.csv", env=env)


def test_fixed_intensity_and_series_are_exclusive(env: dict[str, str], tmp_path: Path) -> None:
    csv = _csv(tmp_path / "grid.csv")
    with pytest.raises(ValueError, match="either intensity_g_per_kwh or intensity_csv"):
        resolve_settings(intensity_g_per_kwh=100.0, intensity_csv=csv, env=env)
    with pytest.raises(ValueError, match="either intensity_g_per_kwh or intensity_csv"):
        AccountingSettings(intensity_g_per_kwh=100.0, intensity_csv=csv)
    # At different levels, the higher-precedence one wins and the other says why it is gone.
    s = resolve_settings(intensity_csv=csv, env={**env, "GREENAI_INTENSITY_G_PER_KWH": "50"})
    assert (s.intensity_csv, s.intensity_g_per_kwh) == (csv, None)
    assert s.origin["intensity_g_per_kwh"] == "overridden by intensity_csv (from argument)"
    config = _toml(tmp_path / "c.toml", "intensity_g_per_kwh = 70\n")
    s = resolve_settings(config_path=config, env={**env, "GREENAI_INTENSITY_CSV": str(csv)})
    assert (s.intensity_csv, s.intensity_g_per_kwh) == (None, 70.0)
    assert (
        s.origin["intensity_csv"]
        == f"overridden by intensity_g_per_kwh (from config file {config})"
    )


# ---------------------------------------------------------------- config-file lookup


def _four_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "explicit": _toml(tmp_path / "explicit.toml", 'country = "AAA"\n'),
        "named": _toml(tmp_path / "named.toml", 'country = "BBB"\n'),
        "local": _toml(Path.cwd() / "greenai.toml", 'country = "CCC"\n'),
        "xdg": _toml(tmp_path / "xdg" / "greenai" / "config.toml", 'country = "DDD"\n'),
    }


def test_config_file_lookup_order(env: dict[str, str], tmp_path: Path) -> None:
    files = _four_files(tmp_path)
    named_env = {**env, "GREENAI_CONFIG": str(files["named"])}

    s = resolve_settings(config_path=files["explicit"], env=named_env)
    assert (s.country, s.origin["country"]) == ("AAA", f"config file {files['explicit']}")
    s = resolve_settings(env=named_env)
    assert (s.country, s.origin["country"]) == ("BBB", f"config file {files['named']}")
    s = resolve_settings(env=env)
    assert (s.country, s.origin["country"]) == ("CCC", f"config file {files['local']}")
    files["local"].unlink()
    s = resolve_settings(env=env)
    assert (s.country, s.origin["country"]) == ("DDD", f"config file {files['xdg']}")
    files["xdg"].unlink()
    assert resolve_settings(env=env).country is None


def test_xdg_defaults_to_home_dot_config(tmp_path: Path) -> None:
    home = tmp_path / "someone"
    config = _toml(home / ".config" / "greenai" / "config.toml", 'country = "NOR"\n')
    s = resolve_settings(env={"HOME": str(home)})
    assert (s.country, s.origin["country"]) == ("NOR", f"config file {config}")
    # An XDG_CONFIG_HOME that is set wins over ~/.config.
    s = resolve_settings(env={"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "elsewhere")})
    assert s.country is None


def test_file_and_env_mix_per_setting(env: dict[str, str], tmp_path: Path) -> None:
    config = _toml(tmp_path / "c.toml", 'country = "FRA"\npue = 1.3\n')
    s = resolve_settings(
        price_per_kwh=0.25,
        config_path=config,
        env={**env, "GREENAI_PUE": "1.9", "GREENAI_GPU_HOUR_PRICE": "2.5"},
    )
    assert s.country == "FRA"
    assert s.pue == 1.3
    assert s.price_per_kwh == 0.25
    assert s.gpu_hour_price == 2.5
    assert s.origin == {
        "country": f"config file {config}",
        "region": "default",
        "cloud": "default",
        "pue": f"config file {config}",
        "price_per_kwh": "argument",
        "gpu_hour_price": "env GREENAI_GPU_HOUR_PRICE",
        "intensity_g_per_kwh": "default",
        "intensity_csv": "default",
    }


def test_location_is_never_guessed(env: dict[str, str]) -> None:
    """No network, no time zone: with nothing set the location is unknown."""
    s = resolve_settings(env={**env, "TZ": "Europe/Paris", "LANG": "fr_FR.UTF-8"})
    assert (s.country, s.region, s.cloud) == (None, None, None)


SECRET = "AKIA_SECRET_TOKEN_9f3c"


@pytest.mark.parametrize(
    "content",
    [
        f"GITHUB_TOKEN={SECRET}\0HOME=/root\0".encode(),  # /proc/self/environ
        f"[{SECRET}]\n[{SECRET}]\n".encode(),  # the parser's message quotes the key
        f"x = {{{SECRET} = 1, {SECRET} = 2}}\n".encode(),
        f'country = "{SECRET}"\n'.encode(),  # a known key: its value is not quoted either
        f"pue = 0.5 # {SECRET}\n".encode(),
        f'"{SECRET} with spaces" = 1\n'.encode(),  # an unknown key that is no setting name
        f'country = "{SECRET}'.encode() + b"\xff\n",
    ],
)
def test_config_errors_never_echo_the_files_content(
    content: bytes, env: dict[str, str], tmp_path: Path
) -> None:
    """GREENAI_CONFIG may name any readable file, and CI logs keep the message."""
    config = tmp_path / "foreign.toml"
    config.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(config))) as info:
        resolve_settings(env={**env, "GREENAI_CONFIG": str(config)})
    assert SECRET not in str(info.value)


def test_invalid_toml_names_the_position(env: dict[str, str], tmp_path: Path) -> None:
    config = _toml(tmp_path / "c.toml", 'country = "FRA"\n[t]\n[t]\n')
    with pytest.raises(ValueError, match=r"not valid TOML \(at line 3, column 3\)$"):
        resolve_settings(config_path=config, env=env)
