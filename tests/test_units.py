"""mlsys_opt.units: one registry, strings -> SI floats, one clear message on a wrong dimension."""
from __future__ import annotations

import math

import pint
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_opt.errors import MlsysOptError
from mlsys_opt.units import DIMENSIONS, Q_, convert, parse, quantity, ureg


@pytest.mark.parametrize("text, dim, expected", [
    ("3.35 TB/s", "bandwidth", 3.35e12),
    ("3.35 TB / s", "bandwidth", 3.35e12),
    ("2039 GB/s", "bandwidth", 2.039e12),
    ("100 Gb/s", "bandwidth", 12.5e9),          # b = bit
    ("400 Gbps", "bandwidth", 50e9),
    ("1.2 Tb/s", "bandwidth", 150e9),
    ("64 MB/s", "bandwidth", 64e6),
    ("20 PB/s", "bandwidth", 20e15),
    ("989 TFLOP/s", "flop_rate", 989e12),
    ("989 TFLOPS", "flop_rate", 989e12),
    ("1979 TOPS", "flop_rate", 1979e12),         # integer ops count like FLOP
    ("64 MFLOP/s", "flop_rate", 64e6),
    ("125 PFLOP/s", "flop_rate", 125e15),
    ("80 GB", "bytes", 80e9),                    # GB is decimal
    ("80 GiB", "bytes", 80 * 2**30),             # GiB is binary
    ("256 KiB", "bytes", 256 * 1024),
    ("50 MB", "bytes", 50e6),
    ("4.1 GFLOP", "flop", 4.1e9),
    ("8.2 GFLOPs", "flop", 8.2e9),               # plural FLOP is a count
    ("700 W", "power", 700.0),
    ("15 mW", "power", 0.015),
    ("23 kW", "power", 23e3),
    ("2 us", "time", 2e-6),
    ("2 µs", "time", 2e-6),
    ("0.5 ms", "time", 5e-4),
    ("50000 hour", "time", 50000 * 3600.0),
    ("30 day", "time", 30 * 86400.0),
    ("1 kWh", "energy", 3.6e6),
    ("30000 USD", "usd", 30000.0),
    ("30,000 USD", "usd", 30000.0),
    ("$30,000", "usd", 30000.0),
    ("2.5 USD/hour", "usd_per_hour", 2.5),
    ("$2.50/h", "usd_per_hour", 2.5),
    ("2.50 $/h", "usd_per_hour", 2.5),
    ("2 USD per hour", "usd_per_hour", 2.0),
    ("0.08 USD/kWh", "usd_per_kwh", 0.08),
    ("8 USD/MWh", "usd_per_kwh", 0.008),
    ("20 g/kWh", "carbon_intensity", 20.0),      # a plain mass reads as CO2e
    ("20 gCO2e/kWh", "carbon_intensity", 20.0),
    ("0.429 kg/kWh", "carbon_intensity", 429.0),
    ("500 kgCO2e", "carbon", 500.0),             # carbon mass is returned in kg
    ("1 tCO2e", "carbon", 1000.0),
    ("5 kg CO2e", "carbon", 5.0),
    ("1.8 L/kWh", "water_per_energy", 1.8),
    ("1000 L", "water", 1000.0),
    ("8", "count", 8.0),
    ("3 percent", "dimensionless", 0.03),
    ("70.6e9", "params", 70.6e9),
    ("70.6e9 param", "params", 70.6e9),
    ("70.6 Gparam", "params", 70.6e9),
    ("70.6 billion", "params", 70.6e9),
    ("15e12 tokens", "tokens", 15e12),
    ("1000 token/s", "token_rate", 1000.0),
    ("10 /s", "frequency", 10.0),
])
def test_parse_strings(text, dim, expected):
    assert parse(text, dim) == pytest.approx(expected, rel=1e-12)


def test_parse_is_exact_for_seed_numbers():
    # Catalog seed checks compare with ==, so these must not pick up float dust.
    assert parse("3.35 TB/s", "bandwidth") == 3.35e12
    assert parse("989 TFLOP/s", "flop_rate") == 989e12
    assert parse("4.1 GFLOP", "flop") == 4.1e9
    assert parse("1.555 TB/s", "bandwidth") == 1.555e12


def test_bare_numbers_only_for_counts():
    assert parse(8, "count") == 8.0
    assert parse(0.5, "dimensionless") == 0.5
    assert parse(70.6e9, "params") == 70.6e9
    assert parse(1e12, "tokens") == 1e12
    with pytest.raises(MlsysOptError) as e:
        parse(3.35, "bandwidth")
    assert str(e.value) == "expected bandwidth (bytes/second), got '3.35' which needs a unit, e.g. '3.35 TB/s'"
    with pytest.raises(MlsysOptError, match=r"needs a unit, e\.g\. '700 W'"):
        parse("700", "power")


@pytest.mark.parametrize("text, dim, message", [
    ("3.35 TB", "bandwidth", "expected bandwidth (bytes/second), got '3.35 TB'"),
    ("80 GB/s", "bytes", "expected bytes (bytes), got '80 GB/s'"),
    ("700 J", "power", "expected power (watts), got '700 J'"),
    ("2 m", "time", "expected time (seconds), got '2 m'"),
    ("80 GB", "count", "expected count (a plain number), got '80 GB'"),
    ("80 GB", "params", "expected params (parameters), got '80 GB'"),
    ("20 g/kWh", "carbon", "expected carbon (kg CO2e), got '20 g/kWh'"),
    ("2.5 USD", "usd_per_hour", "expected usd_per_hour (USD/hour), got '2.5 USD'"),
])
def test_wrong_dimension_message(text, dim, message):
    with pytest.raises(MlsysOptError) as e:
        parse(text, dim)
    assert str(e.value) == message


def test_flop_count_vs_rate_hint():
    with pytest.raises(MlsysOptError) as e:
        parse("989 TFLOPs", "flop_rate")
    assert str(e.value).startswith("expected flop_rate (FLOP/second), got '989 TFLOPs'")
    assert "TFLOP/s" in str(e.value)


def test_field_prefix_and_error_type():
    with pytest.raises(MlsysOptError) as e:
        parse("3.35 TB", "bandwidth", field="accelerators.toml: [h100_sxm] mem_bw")
    assert str(e.value) == "accelerators.toml: [h100_sxm] mem_bw: expected bandwidth (bytes/second), got '3.35 TB'"
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("value", ["nan TB/s", "inf TB/s", "-inf TB/s"])
def test_non_finite_rejected(value):
    with pytest.raises(MlsysOptError, match="not a finite number"):
        parse(value, "bandwidth")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_bare_rejected(value):
    with pytest.raises(MlsysOptError, match="not a finite number"):
        parse(value, "count")


def test_sign_rules():
    assert parse("-5 W", "power") == -5.0  # no rule asked
    assert parse("0 W", "power", nonnegative=True) == 0.0
    with pytest.raises(MlsysOptError) as e:
        parse("-5 W", "power", nonnegative=True)
    assert str(e.value) == "expected power (watts) >= 0, got '-5 W'"
    with pytest.raises(MlsysOptError) as e:
        parse("0 W", "power", positive=True)
    assert str(e.value) == "expected power (watts) > 0, got '0 W'"


@pytest.mark.parametrize("value, fragment", [
    ("3.35 TQ/s", "'TQ' is not a known unit"),
    ("abc ((", "not a quantity"),
    ("", "empty string"),
    (True, "got True"),
    ([1, 2], "got [1, 2]"),
    (None, "got None"),
])
def test_unreadable_values(value, fragment):
    with pytest.raises(MlsysOptError) as e:
        parse(value, "bandwidth")
    assert fragment in str(e.value)
    assert str(e.value).startswith("expected bandwidth (bytes/second)")


def test_unknown_dimension_suggests():
    with pytest.raises(MlsysOptError, match="did you mean 'bandwidth'"):
        parse("3 TB/s", "bandwith")


def test_quantity_inputs():
    assert parse(Q_(3.35, "TB/s"), "bandwidth") == 3.35e12
    assert parse(3.35 * ureg.TB / ureg.s, "bandwidth") == 3.35e12
    foreign = pint.UnitRegistry()
    assert parse(foreign.Quantity(700, "W"), "power") == 700.0
    with pytest.raises(MlsysOptError, match=r"expected bandwidth \(bytes/second\), got '3.35 TB'"):
        parse(Q_(3.35, "TB"), "bandwidth")


def test_every_dimension_example_parses_and_round_trips():
    for name, dim in DIMENSIONS.items():
        x = parse(dim.example, name)
        assert math.isfinite(x), name
        q = quantity(x, name)
        assert parse(q, name) == pytest.approx(x, rel=1e-12), name


def test_convert_for_display():
    assert convert(3.35e12, "bandwidth", "TB/s") == pytest.approx(3.35)
    assert convert(180e6, "time", "hour") == pytest.approx(50000.0)
    with pytest.raises(MlsysOptError, match="cannot show"):
        convert(1.0, "bandwidth", "W")


@settings(max_examples=60, deadline=None)
@given(x=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
       prefix=st.sampled_from([("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15)]))
def test_prefixes_scale_bandwidth(x, prefix):
    p, scale = prefix
    assert parse(f"{x!r} {p}B/s", "bandwidth") == pytest.approx(x * scale, rel=1e-12)
    assert parse(f"{x!r} {p}b/s", "bandwidth") == pytest.approx(x * scale / 8, rel=1e-12)
