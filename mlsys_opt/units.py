"""The one pint registry of mlsys_opt, and `parse`: a human quantity -> an SI float.

pint lives only at the edges (catalog files, spec files, CLI); everything
inside JAX is a plain float in the unit named by the variable (STYLE.md 3.4).
This module turns strings such as ``"3.35 TB/s"``, ``"989 TFLOP/s"``,
``"80 GB"``, ``"2 us"`` or ``"20 g/kWh"`` into those floats, and refuses
anything of the wrong dimension with one message::

    expected bandwidth (bytes/second), got '3.35 TB'

Conventions (decided once, here):

* ``B`` is a byte, ``b`` a bit.  Decimal prefixes are decimal: ``GB = 1e9 B``,
  ``TB/s = 1e12 B/s``; binary prefixes are binary: ``GiB = 2**30 B``.
  ``Gb/s``, ``Gbps`` and ``Gbit/s`` are *bits* per second (100 Gb/s = 12.5 GB/s).
  Information is its own dimension here (stock pint makes bits dimensionless,
  which would let "80 GB" pass as a count).
* ``FLOP`` (alias ``flop``) is a count of floating-point operations, its own
  dimension; ``OP`` (integer operation, for TOPS) counts the same way.
  ``FLOPS``/``OPS`` are per second: "989 TFLOPS" == "989 TFLOP/s".  Beware
  ``TFLOPs`` (lower-case s) is a plural *count*, as in mlsysim: "TFLOPs/s".
  A multiply-accumulate is 2 FLOP.
* ``param`` and ``token`` are counts of their own dimension; a bare number is
  accepted for them ("70.6e9" == "70.6e9 param" == "70.6 Gparam").
  ``thousand``, ``million``, ``billion``, ``trillion`` are plain numbers.
* ``USD`` (alias ``usd``, ``dollar``, ``$``) is currency, its own dimension.
* ``gCO2e``, ``kgCO2e``, ``tCO2e`` are CO2-equivalent mass, its own dimension
  ("carbon"); ``CO2e`` multiplies a mass ("5 kg CO2e").  Where carbon is
  expected a plain mass is read as CO2e ("20 g/kWh" is 20 gCO2e/kWh).

Form: a quantity string is a number (``1.5e12``, ``30,000``, ``-2.5e-3``) and/or a
unit expression (``TB/s``, ``g/kWh``, ``USD/hour``, ``/s``, ``m**2``): unit names
joined by spaces, ``*`` or ``/``, each with an optional one-digit power.  Nothing
is evaluated: ``"2 * 3 s"``, ``"(2+3) s"`` and ``"9**9**9 token"`` are refused.

Returned units (see `DIMENSIONS`): SI everywhere except the catalog region
fields the contract allows by name: carbon intensity in g CO2e/kWh, water per
energy in L/kWh, electricity price in USD/kWh, and cloud price in USD/hour.
"""
from __future__ import annotations

import functools
import importlib.resources
import math
import numbers
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import MlsysOptError, suggest

if TYPE_CHECKING:
    import pint

__all__ = ["ureg", "Q_", "Dimension", "DIMENSIONS", "parse", "quantity", "convert"]  # noqa: F822 (ureg, Q_: lazy)


def _make_registry() -> pint.UnitRegistry:
    """pint's default definitions with bits as a dimension, plus our units."""
    import pint
    root = importlib.resources.files("pint")
    text = (root / "default_en.txt").read_text(encoding="utf-8")
    constants = (root / "constants_en.txt").read_text(encoding="utf-8")
    patches = (
        ("@import constants_en.txt", constants),
        # Information gets a dimension of its own, and `b` means bit (Gb/s).
        ("bit = []", "bit = [information] = b"),
        ("barn = 1e-28 * meter ** 2 = b", "barn = 1e-28 * meter ** 2"),
        ("gilbert = 1 / (4 * π) * biot_turn = Gb", "gilbert = 1 / (4 * π) * biot_turn"),
    )
    for old, new in patches:
        if old not in text:  # pragma: no cover - a pint release changed its file
            raise RuntimeError(f"mlsys_opt.units: pint definitions changed; cannot patch {old!r}")
        text = text.replace(old, new)
    reg = pint.UnitRegistry(None, autoconvert_offset_to_baseunit=True)
    reg.load_definitions(text.splitlines())
    for line in (
        "flop = [flop] = FLOP",
        "FLOPS = flop / second",
        "op = flop = OP",
        "OPS = op / second",
        "param = [param] = parameter",
        "token = [token] = tok",
        "usd = [currency] = USD = dollar",
        "gCO2e = [carbon] = gCO2 = gCO2eq",
        "kgCO2e = 1000 * gCO2e = kgCO2 = kgCO2eq",
        "tCO2e = 1e6 * gCO2e = tCO2 = tCO2eq",
        "CO2e = gCO2e / gram = CO2 = CO2eq",
        "request = 1 = req = query",
        "QPS = 1 / second = qps",
        "thousand = 1e3",
        "million = 1e6",
        "billion = 1e9",
        "trillion = 1e12",
    ):
        reg.define(line)
    return reg


@functools.lru_cache(maxsize=1)
def _pint() -> tuple:
    """(the pint module, THE registry, its Quantity), built on first use: importing pint and reading its
    definitions costs ~0.3 s, which commands that parse no quantity (`mlsys-opt --help`, `catalog list`
    from the cached catalog) do not pay."""
    import pint
    reg = _make_registry()
    return pint, reg, reg.Quantity


def __getattr__(name: str) -> Any:
    """``units.ureg`` (the one registry) and ``units.Q_`` (its Quantity), created on first access."""
    if name == "ureg":
        return _pint()[1]
    if name == "Q_":
        return _pint()[2]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Dimension(NamedTuple):
    """A named physical dimension `parse` can expect.

    unit: pint unit of the float `parse` returns; label: the words in messages;
    example: a valid string shown when a unit is missing; bare_ok: a bare number
    is accepted (counts); coerce: units that turn an accepted neighbour into
    this dimension (mass -> CO2e mass, plain number -> param)."""

    unit: str
    label: str
    example: str
    bare_ok: bool = False
    coerce: tuple[str, ...] = ()


DIMENSIONS: dict[str, Dimension] = {
    "bandwidth": Dimension("byte / second", "bytes/second", "3.35 TB/s"),
    "flop_rate": Dimension("flop / second", "FLOP/second", "989 TFLOP/s"),
    "bytes": Dimension("byte", "bytes", "80 GB"),
    "flop": Dimension("flop", "FLOP", "4.1 GFLOP"),
    "time": Dimension("second", "seconds", "2 us"),
    "frequency": Dimension("1 / second", "1/second", "10 /s"),
    "token_rate": Dimension("token / second", "tokens/second", "1000 token/s", coerce=("token",)),
    "power": Dimension("watt", "watts", "700 W"),
    "energy": Dimension("joule", "joules", "1 kWh"),
    "usd": Dimension("usd", "USD", "30000 USD"),
    "usd_per_hour": Dimension("usd / hour", "USD/hour", "2.50 USD/hour"),
    "usd_per_kwh": Dimension("usd / kilowatt_hour", "USD/kWh", "0.08 USD/kWh"),
    "carbon": Dimension("kgCO2e", "kg CO2e", "500 kgCO2e", coerce=("CO2e",)),
    "carbon_intensity": Dimension("gCO2e / kilowatt_hour", "g CO2e/kWh", "20 g/kWh", coerce=("CO2e",)),
    "water": Dimension("liter", "litres", "1000 L"),
    "water_per_energy": Dimension("liter / kilowatt_hour", "L/kWh", "1.8 L/kWh"),
    "count": Dimension("dimensionless", "a plain number", "8", bare_ok=True),
    "dimensionless": Dimension("dimensionless", "a plain number", "0.5", bare_ok=True),
    "params": Dimension("param", "parameters", "70.6e9 param", bare_ok=True, coerce=("param",)),
    "tokens": Dimension("token", "tokens", "15e12 token", bare_ok=True, coerce=("token",)),
}

_DOLLAR = re.compile(r"^\$\s*([-+]?[0-9][0-9_.,eE+-]*)\s*(.*)$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")


def _normalise(text: str) -> str:
    """Spellings pint does not read: '$2.5/h' and '2.5 $/h' (USD), '30,000 USD' (thousands commas)."""
    s = text.strip()
    s = _THOUSANDS.sub("", s)
    m = _DOLLAR.match(s)
    if m:
        rest = m.group(2).strip()
        s = f"{m.group(1)} usd {rest}" if rest and not rest.startswith("/") else f"{m.group(1)} usd{rest}"
    s = s.replace("$", " usd ")
    return s


# What a quantity string may be (after _normalise): an optional number, then an optional unit
# expression of unit names joined by spaces, '*' or '/', each with an optional one-digit power.
# No parentheses, no '+', no powers of numbers: '9**9**9 token' is refused before pint evaluates it.
_NUMBER = r"[-+]?(?:(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,4})?|(?i:inf(?:inity)?|nan))"
_UNIT = r"[^\W\d][\w°%]*(?:\s*(?:\*\*|\^)\s*-?\d)?"
_FORM = re.compile(rf"^\s*(?:{_NUMBER})?\s*(?:/\s*)?(?:{_UNIT}(?:\s*[*/]?\s*{_UNIT})*)?\s*$")


def _documented_form(text: str) -> bool:
    """`text` (normalised) is a number and/or a unit expression as documented; no arithmetic."""
    return bool(text.strip()) and _FORM.match(text) is not None


def _shown(value: Any) -> str:
    pint = _pint()[0]
    text = f"{value:~}" if isinstance(value, pint.Quantity) else str(value)
    return text if len(text) <= 80 else f"{text[:40]}...{text[-20:]} ({len(text)} characters)"


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> pint.Quantity:
    pint, ureg, Q_ = _pint()
    q = ureg.parse_expression(_normalise(text))
    if not isinstance(q, pint.Quantity):  # a bare number string
        q = Q_(float(q), "dimensionless")
    return q


def _finite(x: numbers.Real) -> bool:
    """float(x) is finite; False also for an int too large for a float (10**400)."""
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _dimension(expected: str) -> Dimension:
    try:
        return DIMENSIONS[expected]
    except KeyError:
        hint = suggest(expected, DIMENSIONS)
        raise MlsysOptError(
            f"unknown dimension {expected!r}{';' + hint if hint else ''} "
            f"(allowed: {', '.join(DIMENSIONS)})") from None


def parse(value: Any, expected: str, *, positive: bool = False, nonnegative: bool = False,
          field: str | None = None) -> float:
    """Read `value` as a quantity of dimension `expected`; return a float in ``DIMENSIONS[expected].unit``.

    value: a string ("3.35 TB/s", "989 TFLOP/s", "80 GB", "2 us", "20 g/kWh",
    "$2.50/hour"), a pint Quantity, or a bare number (only for count-like
    dimensions: count, dimensionless, params, tokens).
    expected: a key of `DIMENSIONS` ("bandwidth" -> bytes/s, "flop_rate" ->
    FLOP/s, "bytes", "flop", "time" -> s, "power" -> W, "energy" -> J, "usd",
    "usd_per_hour", "usd_per_kwh", "carbon" -> kg CO2e, "carbon_intensity" ->
    g CO2e/kWh, "water" -> L, "water_per_energy" -> L/kWh, "count",
    "dimensionless", "params", "tokens", "frequency", "token_rate").
    positive / nonnegative: also require > 0 / >= 0.  NaN and inf are always refused.
    field: a location prefix for the message ("accelerators.toml: [h100_sxm] mem_bw").

    Raises MlsysOptError, e.g. "expected bandwidth (bytes/second), got '3.35 TB'".
    """
    dim = _dimension(expected)
    pint, ureg, Q_ = _pint()
    where = f"{field}: " if field else ""
    head = f"{where}expected {expected} ({dim.label})"
    shown = _shown(value)

    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real, pint.Quantity)):
        raise MlsysOptError(f"{head}, got {value!r}")
    if isinstance(value, pint.Quantity):
        q = value if value._REGISTRY is ureg else Q_(value.magnitude, str(value.units))
    elif isinstance(value, str):
        if not value.strip():
            raise MlsysOptError(f"{head}, got an empty string; e.g. '{dim.example}'")
        if not _documented_form(_normalise(value)):
            raise MlsysOptError(f"{head}, got '{shown}' (not a quantity: a number and a unit, e.g. "
                                f"'{dim.example}'; arithmetic such as '*', '**' or '+' between numbers "
                                "is not evaluated)")
        try:
            q = _parse_text(value)
        except pint.UndefinedUnitError as exc:
            names = getattr(exc, "unit_names", None) or (value,)
            unknown = names[0] if isinstance(names, (tuple, list)) else names
            raise MlsysOptError(
                f"{head}, got '{shown}' ('{unknown}' is not a known unit; e.g. '{dim.example}')") from None
        except Exception:  # pint/tokenize raise several types for malformed text
            raise MlsysOptError(
                f"{head}, got '{shown}' (not a quantity; e.g. '{dim.example}')") from None
    else:
        if not _finite(value):
            raise MlsysOptError(f"{head}, got '{shown}' which is not a finite number")
        q = Q_(float(value), "dimensionless")
    # Before any unit conversion: an int magnitude beyond a float ("10**400 GB") would overflow in it.
    if isinstance(q.magnitude, numbers.Real) and not _finite(q.magnitude):
        raise MlsysOptError(f"{head}, got '{shown}' which is not a finite number")

    bare = isinstance(value, numbers.Real) or q.unitless
    if bare and not dim.bare_ok:
        raise MlsysOptError(f"{head}, got '{shown}' which needs a unit, e.g. '{dim.example}'")

    target = ureg.Unit(dim.unit)
    if q.dimensionality != target.dimensionality:
        for extra in dim.coerce:
            cand = q * ureg.Unit(extra)
            if cand.dimensionality == target.dimensionality:
                q = cand
                break
        else:
            hint = ""
            if expected == "flop_rate" and q.dimensionality == ureg.Unit("flop").dimensionality:
                hint = " (that is a FLOP count: 'TFLOPs' is plural FLOP; write 'TFLOP/s' or 'TFLOPS')"
            raise MlsysOptError(f"{head}, got '{shown}'{hint}")
    try:
        # 15 significant digits: '4.1 GFLOP' is 4.1e9, not 4099999999.9999995.
        out = float(f"{float(q.to(target).magnitude):.15g}")
    except Exception:  # pragma: no cover - offset units etc.
        raise MlsysOptError(f"{head}, got '{shown}'") from None
    if not math.isfinite(out):
        raise MlsysOptError(f"{head}, got '{shown}' which is not a finite number")
    if positive and not out > 0:
        raise MlsysOptError(f"{head} > 0, got '{shown}'")
    if nonnegative and not out >= 0:
        raise MlsysOptError(f"{head} >= 0, got '{shown}'")
    return out


def quantity(value_si: float, expected: str) -> pint.Quantity:
    """The pint Quantity of a float in the return unit of `expected` (for reports)."""
    return _pint()[2](value_si, _dimension(expected).unit)


def convert(value_si: float, expected: str, unit: str) -> float:
    """Convert a float in the return unit of `expected` into `unit` (display only).

    convert(3.35e12, "bandwidth", "TB/s") -> 3.35
    """
    pint = _pint()[0]
    try:
        return float(quantity(value_si, expected).to(_parse_text(f"1 {unit}").units).magnitude)
    except pint.DimensionalityError:
        raise MlsysOptError(f"cannot show {expected} ({_dimension(expected).label}) in '{unit}'") from None
