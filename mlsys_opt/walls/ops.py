"""Operations walls (17-20): cost, energy and carbon, checkpointing, privacy.

Wall 17 (Capital): TCO (amortized), upfront capex (purchase), cloud cost, break-even, $/useful FLOP.
Wall 18 (Sustainability): energy with PUE, carbon, water.
Wall 19 (Checkpoint): Young-Daly interval, checkpoint overhead, goodput.
Wall 20 (Safety): DP-SGD slowdown heuristic.

Conventions: pure ``jax.numpy``; SI floats (s, W, J, USD); prices per kWh and
grid/water intensities per kWh keep the catalog's region units
(``_usd_per_kwh``, ``_gco2e_per_kwh``, ``_l_per_kwh``); scalars or arrays
broadcasting to ``[...]``; keyword-only knobs; jit/vmap/grad-able; finite
everywhere (intervals and MTBFs floored at 1 ns).

Sources: seed 000 sections 5-7 and 9; seed 002 walls 17-20; seed 003 (full-stack
audit); Barroso, Clidaras & Hölzle (2018); Patterson et al. (2021); The Green
Grid WUE (2011); Young (1974); Daly (2006); Abadi et al. (2016).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from mlsys_opt._types import JOULES_PER_KWH, SECONDS_PER_YEAR, Array
from mlsys_opt.walls._masked import UNBOUNDED, floor_pos, nonneg, safe_div, safe_sqrt

__all__ = [
    "TCO", "Footprint",
    "tco", "upfront_capex_usd", "cloud_cost", "breakeven_utilization", "effective_usd_per_device_s",
    "cost_per_useful_flop", "energy_j", "sustainability",
    "young_daly_interval_s", "checkpoint_overhead", "goodput",
    "checkpoint_overhead_halfwrite", "goodput_halfwrite", "goodput_daly",
    "dp_sgd_slowdown",
]

_TIME_FLOOR = 1e-9       # s
_MIN_GOODPUT = 1e-6      # goodput is clipped to [_MIN_GOODPUT, 1]
_MAX_EXPONENT = 80.0     # keeps exp() finite in float32


# --------------------------------------------------------------------------- wall 17: capital

class TCO(NamedTuple):
    """Total cost of ownership of a fleet over a duration, USD. Shapes ``[...]``."""

    capex_usd: Array             # the period's straight-line share of the purchase price (not the purchase)
    opex_energy_usd: Array       # facility electricity
    opex_maintenance_usd: Array  # maintenance contracts / repairs
    tco_usd: Array               # sum


def tco(device_price_usd: Array, n_devices: Array, duration_s: Array, device_power_w: Array,
        electricity_usd_per_kwh: Array, pue: Array, *,
        depreciation_s: Array = 3.0 * SECONDS_PER_YEAR,
        maintenance_frac_per_year: Array = 0.05) -> TCO:
    """TCO = CapEx·T/T_dep + E·price + m·CapEx·T/yr: the cost of a period T, AMORTIZED (a run pays
    T/T_dep of ``device_price_usd``; the purchase, with servers, network, facility: :func:`upfront_capex_usd`).

    capex_usd            = price · N · T / T_dep          (straight-line amortization)
    opex_energy_usd      = N · P · T · PUE / 3.6e6 · $/kWh
    opex_maintenance_usd = m · price · N · T / (1 year)   (m per year of the purchase price)

    Args:
      device_price_usd: purchase price per device (or per node with n_devices in
        nodes), USD, ``[...]``.
      n_devices: N, devices, ``[...]``.
      duration_s: T, period costed, s, ``[...]``.
      device_power_w: P, average IT power per device (TDP x load, plus its share
        of host/network if wanted), W, ``[...]``.
      electricity_usd_per_kwh: electricity price, USD/kWh, ``[...]``.
      pue: power usage effectiveness (>= 1), ``[...]``.
      depreciation_s: T_dep, amortization period, s (default 3 years).
      maintenance_frac_per_year: m, maintenance per year as a fraction of the
        purchase price (default 0.05, Barroso et al. 2018 via mlsysim).

    Returns:
      TCO(capex_usd, opex_energy_usd, opex_maintenance_usd, tco_usd), ``[...]``.

    Source: seed 000 section 6; seed 002 wall 17; Barroso, Clidaras & Hölzle (2018).

    Worked example (seed 000 section 6): one $350K H100 node for 1 year, 3-year
    amortization: capex $116,667; maintenance 5 % -> $17,500. At 5.6 kW,
    PUE 1.2, $0.10/kWh: energy 5.6 · 8760 · 1.2 · 0.10 = $5,887.
    """
    (device_price_usd, n_devices, duration_s, device_power_w, electricity_usd_per_kwh, pue,
     depreciation_s, maintenance_frac_per_year) = nonneg(
        device_price_usd, n_devices, duration_s, device_power_w, electricity_usd_per_kwh, pue,
        depreciation_s, maintenance_frac_per_year, broadcast=False)
    device_price_usd, n_devices, duration_s = (jnp.asarray(x) for x in (device_price_usd, n_devices, duration_s))
    capex = device_price_usd * n_devices * duration_s / depreciation_s
    energy_kwh = n_devices * device_power_w * duration_s * pue / JOULES_PER_KWH
    opex_energy = energy_kwh * electricity_usd_per_kwh
    opex_maint = maintenance_frac_per_year * device_price_usd * n_devices * duration_s / SECONDS_PER_YEAR
    return TCO(capex_usd=capex, opex_energy_usd=opex_energy, opex_maintenance_usd=opex_maint,
               tco_usd=capex + opex_energy + opex_maint)


# upfront_capex_usd defaults (sources in its docstring)
SYSTEM_FRAC, NETWORK_FRAC = 0.45, 0.33       # servers / network, per USD of accelerator
FACILITY_USD_PER_W, HOST_POWER_FRAC = 10.0, 0.8   # facility per provisioned IT W; host W / accelerator TDP


def upfront_capex_usd(device_price_usd: Array, n_devices: Array, device_power_w: Array, *,
                      system_frac: Array = SYSTEM_FRAC, network_frac: Array = NETWORK_FRAC,
                      facility_usd_per_w: Array = FACILITY_USD_PER_W,
                      host_power_frac: Array = HOST_POWER_FRAC) -> Array:
    """Purchase of an on-prem fleet, C_up = N·price·(1 + s + n) + f·N·P_TDP·(1 + h).

    IT equipment: the accelerators, their servers (s: CPUs, memory, storage, integration)
    and their share of the scale-out network (n), as fractions of the accelerator price.
    Facility (power distribution, UPS, cooling plant, shell): f per W of provisioned IT
    (critical) load N·P_TDP·(1 + h), h adding the host to the accelerators' TDP.  PUE is
    NOT applied: $/MW of critical load already prices the cooling that load needs.
    f = 0 models a colocation site (its rent is an operating cost, not modelled).
    Not the run's cost: :func:`tco` charges a run only T/T_dep of ``device_price_usd``.

    Sources of the defaults (documentation, not fitted): s = 0.45 from seed 000 section 6 ($350K per
    8-GPU H100 node / (8 · $30K) - 1 = 0.46; a 2024 Thinkmate 8x H100 quote with IB NICs,
    $310-317K, gives 0.29-0.32: s is the seed's upper end).  n = 0.33 from Bernstein
    (Rasgon 2025, GB200 NVL72 bill of materials: networking ~13 % of AI-datacentre capex
    vs GPUs ~39 %; its NICs overlap the seed's node price, ~5 % of the IT bill).
    f = $10/W from BlueCap Economic Advisors (2025, $7-12M per MW); liquid-cooled AI
    builds cost more (Bernstein: ~$2.5M per ~130 kW GB200 rack, ~$19/W).  h = 0.8 from
    the NVIDIA DGX H100 maximum system power, 10.2 kW / (8 · 700 W) - 1 = 0.82.

    Args:
      device_price_usd: accelerator price (catalog ``price``), USD; n_devices: N; device_power_w:
        P_TDP, W; all ``[...]``.  system_frac, network_frac: s, n (per USD of accelerator);
        facility_usd_per_w: f (USD/W); host_power_frac: h (fraction of TDP).

    Returns:
      C_up, USD, ``[...]`` (linear in every argument).

    Worked example: 1,024 H100s ($30K, 700 W): IT 1,024 · 30,000 · 1.78 = $54.68M,
    facility 10 · 1,024 · 700 · 1.8 = $12.90M, total $67.58M; a 30-day run's tco capex
    share is 30,000 · 1,024 · 30 / 1,095 = $0.84M.
    """
    (device_price_usd, n_devices, device_power_w, system_frac, network_frac, facility_usd_per_w,
     host_power_frac) = nonneg(device_price_usd, n_devices, device_power_w, system_frac, network_frac,
                               facility_usd_per_w, host_power_frac, broadcast=False)
    it = jnp.asarray(device_price_usd) * n_devices * (1.0 + system_frac + network_frac)
    return it + facility_usd_per_w * n_devices * device_power_w * (1.0 + host_power_frac)


def cloud_cost(cloud_usd_per_device_s: Array, n_devices: Array, duration_s: Array, *,
               utilization_frac: Array = 1.0) -> Array:
    """Cloud on-demand cost, paying only for the hours used: c · N · T · u.

    Args:
      cloud_usd_per_device_s: c, on-demand price, USD per device-second
        ($/GPU-hour / 3600), ``[...]``.
      n_devices: N, ``[...]``.
      duration_s: T, calendar period, s, ``[...]``.
      utilization_frac: u, fraction of T the devices are rented (default 1).

    Returns:
      cost, USD, ``[...]``.

    Source: seed 000 section 6 (on-prem vs. cloud).

    Worked example (seed 000): 8 GPUs at $4.00/GPU-hour, 80 % of a year:
    4.00 · 8 · 8760 · 0.8 = $224,256 (~$224K/node/yr).
    """
    (cloud_usd_per_device_s, n_devices, duration_s, utilization_frac) = nonneg(
        cloud_usd_per_device_s, n_devices, duration_s, utilization_frac, broadcast=False)
    return jnp.asarray(cloud_usd_per_device_s) * n_devices * duration_s * utilization_frac


def breakeven_utilization(onprem_usd: Array, cloud_usd_per_device_s: Array, n_devices: Array,
                          duration_s: Array) -> Array:
    """Utilization above which owning beats renting: u* = C_onprem / (c · N · T).

    On-prem cost over T is (nearly) fixed; cloud cost grows with the hours used.

    Args:
      onprem_usd: C_onprem, owned-fleet cost over T (e.g. ``tco(...).tco_usd``), USD, ``[...]``.
      cloud_usd_per_device_s: c, USD per device-second, ``[...]``.
      n_devices: N, ``[...]``.
      duration_s: T, s, ``[...]``.

    Returns:
      u*, fraction (may exceed 1: then the cloud always wins), ``[...]``.

    Source: seed 000 section 6.

    Worked example: on-prem $134,167/node/yr (capex $116,667 + 5 % maintenance)
    vs cloud $4.00/GPU-hour x 8 GPUs: u* = 134,167 / 280,320 = 47.9 %. (The seed
    prints ~55 %; its own $2.40 vs $4.00 per GPU-hour at 80 % gives
    2.40 · 0.8 / 4.00 = 48 %.)
    """
    (onprem_usd, cloud_usd_per_device_s, n_devices, duration_s) = nonneg(
        onprem_usd, cloud_usd_per_device_s, n_devices, duration_s, broadcast=False)
    return safe_div(onprem_usd, cloud_usd_per_device_s * n_devices * duration_s, fill=UNBOUNDED)


def effective_usd_per_device_s(cost_usd: Array, n_devices: Array, duration_s: Array, *,
                               utilization_frac: Array = 1.0) -> Array:
    """Effective price per USED device-second, C / (N · T · u).

    Args:
      cost_usd: C, cost over T, USD, ``[...]``.
      n_devices: N, ``[...]``.
      duration_s: T, s, ``[...]``.
      utilization_frac: u, fraction of T the devices do useful work (default 1).

    Returns:
      USD per device-second (x 3600 for $/GPU-hour), ``[...]``.

    Source: seed 000 section 6.

    Worked example: $134,167 over a year for 8 GPUs at 80 %:
    134,167 / (8 · 8760 · 0.8) = $2.39/GPU-hour (seed: ~$2.40).
    """
    (cost_usd, n_devices, duration_s, utilization_frac) = nonneg(
        cost_usd, n_devices, duration_s, utilization_frac, broadcast=False)
    return safe_div(cost_usd, n_devices * duration_s * utilization_frac, fill=UNBOUNDED)


def cost_per_useful_flop(cost_usd: Array, n_devices: Array, duration_s: Array,
                         peak_flop_per_s: Array, mfu_frac: Array, *,
                         eta_scaling_frac: Array = 1.0, goodput_frac: Array = 1.0) -> Array:
    """USD per useful FLOP, C / (N · peak · MFU · η · goodput · T).

    Args:
      cost_usd: C, cost over T, USD, ``[...]``.
      n_devices: N, ``[...]``.
      duration_s: T, s, ``[...]``.
      peak_flop_per_s: per-device peak, FLOP/s, ``[...]``.
      mfu_frac: MFU (0-1), ``[...]``.
      eta_scaling_frac: scaling efficiency (default 1).
      goodput_frac: goodput (default 1).

    Returns:
      USD/FLOP, ``[...]`` (UNBOUNDED when a cost buys no useful FLOP: the +inf limit, the
      worst value for a cost objective; 0 when the cost is 0 too).

    Source: seed 000 sections 6 and 9 ("cost per useful TFLOP-hour").

    Worked example: $2.40 per H100-hour at MFU 0.4: 2.40 / (989e12 · 0.4 · 3600)
    = 1.69e-18 USD/FLOP ($6.1e-3 per useful PFLOP).
    """
    (cost_usd, n_devices, duration_s, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac) = nonneg(
        cost_usd, n_devices, duration_s, peak_flop_per_s, mfu_frac, eta_scaling_frac, goodput_frac, broadcast=False)
    useful = n_devices * peak_flop_per_s * mfu_frac * eta_scaling_frac * goodput_frac * duration_s
    return safe_div(cost_usd, useful, fill=UNBOUNDED)


# --------------------------------------------------------------------------- wall 18: sustainability

class Footprint(NamedTuple):
    """Energy, carbon and water of a run. Shapes ``[...]``."""

    it_energy_j: Array  # energy drawn by the IT equipment, J
    energy_j: Array     # facility energy, IT x PUE, J
    carbon_kg: Array    # kg CO2e (operational, from facility energy)
    water_l: Array      # litres of site water (from IT energy, The Green Grid WUE)


def energy_j(it_power_w: Array, duration_s: Array, pue: Array) -> Array:
    """Facility energy, E = P_IT · t · PUE.

    Args:
      it_power_w: total IT power, W, ``[...]``.
      duration_s: t, s, ``[...]``.
      pue: power usage effectiveness (>= 1), ``[...]``.

    Returns:
      E, J, ``[...]``.

    Source: seed 000 section 5.1.

    Worked example: 64 · 400 W for 336 h at PUE 1.2: 25.6 kW · 1,209,600 s · 1.2
    = 3.716e10 J = 10,322 kWh.
    """
    it_power_w, duration_s, pue = nonneg(it_power_w, duration_s, pue, broadcast=False)
    return jnp.asarray(it_power_w) * duration_s * pue


def sustainability(it_power_w: Array, duration_s: Array, pue: Array,
                   carbon_gco2e_per_kwh: Array, wue_l_per_kwh: Array) -> Footprint:
    """Energy, carbon and water: E = P·t·PUE; CO2e = E_kWh · g/kWh / 1000; water = E_IT,kWh · WUE.

    Carbon uses the FACILITY energy (PUE included: cooling also draws from the
    grid). Water uses the IT energy, because WUE is defined by The Green Grid
    (2011) as annual site water / IT equipment energy (L/kWh of IT energy).
    Scope: operational emissions only (no embodied carbon).

    Args:
      it_power_w: total IT power, W, ``[...]``.
      duration_s: t, s, ``[...]``.
      pue: PUE (>= 1), ``[...]``.
      carbon_gco2e_per_kwh: grid carbon intensity, g CO2e per kWh, ``[...]``.
      wue_l_per_kwh: water usage effectiveness, L per kWh of IT energy, ``[...]``.

    Returns:
      Footprint(it_energy_j [J], energy_j [J], carbon_kg [kg CO2e], water_l [L]), ``[...]``.

    Source: seed 000 sections 5.1-5.2; seed 002 wall 18; Patterson et al. (2021);
    The Green Grid WP#35 (2011).

    Worked example (seed 000 section 5): 64 GPUs x 400 W x 336 h = 8,602 kWh IT;
    PUE 1.2 -> 10,322 kWh; carbon 206 / 4,428 / 8,464 kg at 20 / 429 / 820 g/kWh;
    WUE 1.8 L/kWh -> 15,483 L.
    """
    (it_power_w, duration_s, pue, carbon_gco2e_per_kwh, wue_l_per_kwh) = nonneg(
        it_power_w, duration_s, pue, carbon_gco2e_per_kwh, wue_l_per_kwh, broadcast=False)
    it_e = jnp.asarray(it_power_w) * duration_s
    e = it_e * pue
    carbon = e / JOULES_PER_KWH * carbon_gco2e_per_kwh / 1000.0
    water = it_e / JOULES_PER_KWH * wue_l_per_kwh
    return Footprint(it_energy_j=it_e, energy_j=e, carbon_kg=carbon, water_l=water)


# --------------------------------------------------------------------------- wall 19: checkpointing

def young_daly_interval_s(checkpoint_s: Array, mtbf_s: Array) -> Array:
    """Optimal checkpoint interval (Young, first order), τ* = sqrt(2 δ M).

    τ* minimizes :func:`checkpoint_overhead` δ/τ + τ/(2M) (both terms equal there).

    Args:
      checkpoint_s: δ, time to write one checkpoint, s, ``[...]``.
      mtbf_s: M, cluster MTBF, s, ``[...]``.

    Returns:
      τ*, s, ``[...]``.

    Source: seed 000 section 7.2; Young (1974); Daly (2006).

    Worked examples: δ = 2 min, M = 180 min -> sqrt(720) = 26.8 min (seed: ~27);
    seed 003 self-check δ = 2 min, M = 4 h -> sqrt(960) = 31.0 min.
    """
    checkpoint_s, mtbf_s = nonneg(checkpoint_s, mtbf_s, broadcast=False)
    return safe_sqrt(2.0 * checkpoint_s * mtbf_s)  # finite gradient at δ = 0


def checkpoint_overhead(interval_s: Array, checkpoint_s: Array, mtbf_s: Array, *,
                        recovery_s: Array = 0.0) -> Array:
    """Steady-state wasted fraction, W = δ/τ + (τ/2 + R)/M.  RECOMMENDED form.

    Per interval τ of work: δ to write a checkpoint (δ/τ); failures arrive at
    rate 1/M and each costs, on average, half an interval of lost work plus the
    recovery time R (restart, reload, re-schedule). This is the first-order
    expansion of Daly's exact model (:func:`goodput_daly`), it is minimized by
    the Young interval sqrt(2δM) at R = 0 (the seed's τ_opt), and it is the
    "steady-state overhead (checkpoint/interval + recovery/MTBF)" model of the
    seed 002 fix. The δ/τ term alone is wall 19's "MFU_penalty = T_write/T_interval".

    Args:
      interval_s: τ, work time between checkpoints, s, ``[...]`` (floored at 1 ns).
      checkpoint_s: δ, checkpoint write time, s, ``[...]``.
      mtbf_s: M, cluster MTBF, s, ``[...]`` (floored at 1 ns).
      recovery_s: R, time to recover from one failure, s (default 0).

    Returns:
      W, fraction (can exceed 1 for absurd τ), ``[...]``.

    Source: seed 000 section 7; seed 002 wall 19 and its steady-state commit note;
    Young (1974); Daly (2006).

    Worked example: δ = 2, M = 180 (minutes): τ = 10 -> 22.8 %, τ = 26.8 -> 14.9 %,
    τ = 60 -> 20.0 %. (Seed 000 prints 17 % / 7 % / 15 %: see the tests.)
    """
    interval_s, checkpoint_s, mtbf_s, recovery_s = nonneg(interval_s, checkpoint_s, mtbf_s, recovery_s, broadcast=False)
    tau = floor_pos(interval_s, _TIME_FLOOR)
    m = floor_pos(mtbf_s, _TIME_FLOOR)
    return checkpoint_s / tau + (0.5 * tau + recovery_s) / m


def goodput(interval_s: Array, checkpoint_s: Array, mtbf_s: Array, *,
            recovery_s: Array = 0.0) -> Array:
    """Steady-state goodput, G = 1 - (δ/τ + (τ/2 + R)/M), clipped to [1e-6, 1].  USE THIS.

    Scenarios should use this form (with ``young_daly_interval_s`` for τ):
    it is consistent with the seed's τ_opt = sqrt(2δM) (its exact minimizer at
    R = 0), it carries a recovery term, it is the model seed 002's fix adopts,
    and it agrees with the exact :func:`goodput_daly` to first order in δ/τ, τ/M, R/M.
    The seed 000 section 7.3 form (:func:`goodput_halfwrite`) halves the write
    term, which makes sqrt(2δM) NOT its minimizer and contradicts the seed's
    own "both terms are equal at τ_opt".

    Args:
      interval_s: τ, s, ``[...]``.
      checkpoint_s: δ, s, ``[...]``.
      mtbf_s: M, s, ``[...]``.
      recovery_s: R, s (default 0).

    Returns:
      G in (0, 1], ``[...]``.

    Source: seed 002 (steady-state goodput); seed 000 sections 7 and 9.

    Worked example: δ = 2 min, M = 180 min, τ = sqrt(720) min, R = 0: G = 1 - 0.149 = 0.851.
    """
    interval_s, checkpoint_s, mtbf_s, recovery_s = nonneg(interval_s, checkpoint_s, mtbf_s, recovery_s, broadcast=False)
    w = checkpoint_overhead(interval_s, checkpoint_s, mtbf_s, recovery_s=recovery_s)
    return jnp.clip(1.0 - w, _MIN_GOODPUT, 1.0)


def checkpoint_overhead_halfwrite(interval_s: Array, checkpoint_s: Array, mtbf_s: Array) -> Array:
    """Seed 000 section 7.3 as printed, W = δ/(2τ) + τ/(2M).  Kept for reference only.

    Its minimizer is sqrt(δM), not the seed's τ_opt = sqrt(2δM). At δ = 2,
    M = 180 (minutes) it gives 12.8 % / 11.2 % / 18.3 % at τ = 10 / 27 / 60,
    not the seed's printed 17 % / 7 % / 15 %.

    Args:
      interval_s: τ, s, ``[...]``.
      checkpoint_s: δ, s, ``[...]``.
      mtbf_s: M, s, ``[...]``.

    Returns:
      W, fraction, ``[...]``.

    Source: seed 000 section 7.3.

    Worked example: δ = 2, τ = 10, M = 180 (min): 0.1 + 0.0278 = 12.8 %.
    """
    interval_s, checkpoint_s, mtbf_s = nonneg(interval_s, checkpoint_s, mtbf_s, broadcast=False)
    tau = floor_pos(interval_s, _TIME_FLOOR)
    return checkpoint_s / (2.0 * tau) + tau / (2.0 * floor_pos(mtbf_s, _TIME_FLOOR))


def goodput_halfwrite(interval_s: Array, checkpoint_s: Array, mtbf_s: Array) -> Array:
    """1 - :func:`checkpoint_overhead_halfwrite`, clipped to [1e-6, 1] (seed 000 section 7.3 form).

    Args:
      interval_s: τ, s; checkpoint_s: δ, s; mtbf_s: M, s; all ``[...]``.

    Returns:
      goodput in (0, 1], ``[...]``.

    Source: seed 000 section 7.3.

    Worked example: δ = 2, τ = 10, M = 180 (min): 1 - 0.128 = 0.872.
    """
    interval_s, checkpoint_s, mtbf_s = nonneg(interval_s, checkpoint_s, mtbf_s, broadcast=False)
    return jnp.clip(1.0 - checkpoint_overhead_halfwrite(interval_s, checkpoint_s, mtbf_s),
                    _MIN_GOODPUT, 1.0)


def goodput_daly(interval_s: Array, checkpoint_s: Array, mtbf_s: Array, *,
                 recovery_s: Array = 0.0) -> Array:
    """Exact goodput under exponential failures (Daly 2006), G = τ e^{-R/M} / (M (e^{(τ+δ)/M} - 1)).

    Expected wall time to complete one segment of τ work plus its δ write,
    with restart cost R after each failure, is M e^{R/M} (e^{(τ+δ)/M} - 1).
    Always in (0, 1]; to first order in δ/τ, τ/M and R/M it is 1 - (δ/τ + (τ/2 + R)/M).
    The exponent is capped at 80 so float32 stays finite.

    Args: as :func:`goodput` (τ, δ, M, R in s, ``[...]``).

    Returns:
      G, dimensionless in (0, 1], ``[...]``.

    Source: Daly (2006), "A higher order estimate of the optimum checkpoint interval".

    Worked example: δ = 2, τ = 26.8, M = 180 (min), R = 0:
    26.8 / (180 · (e^{28.8/180} - 1)) = 0.858 (first order: 0.851).
    """
    interval_s, checkpoint_s, mtbf_s, recovery_s = nonneg(interval_s, checkpoint_s, mtbf_s, recovery_s, broadcast=False)
    tau = floor_pos(interval_s, _TIME_FLOOR)
    m = floor_pos(mtbf_s, _TIME_FLOOR)
    x = jnp.minimum((tau + checkpoint_s) / m, _MAX_EXPONENT)
    g = tau / (m * jnp.expm1(x)) * jnp.exp(-jnp.minimum(recovery_s / m, _MAX_EXPONENT))
    return jnp.clip(g, 0.0, 1.0)


# --------------------------------------------------------------------------- wall 20: safety

def dp_sgd_slowdown(epsilon: Array, *, coef: float = 2.0, min_epsilon: float = 0.01) -> Array:
    """DP-SGD training-time multiplier, S = 1 + k / max(ε, ε_min).  HEURISTIC.

    A documented heuristic, not derived from Abadi et al. (2016): smaller
    privacy budgets ε need more noise and so more steps to converge (seed 002
    wall 20: "Slowdown ∝ 1/ε"). k = 2 is mlsysim's calibration (~3x at ε = 1,
    1.2x at ε = 10); S -> 1 as ε -> ∞ (the floor: never faster than non-private),
    and ε is floored at ε_min so ε -> 0 stays finite (S <= 1 + k/ε_min = 201).
    Monotone non-increasing in ε.

    Args:
      epsilon: ε, differential-privacy budget (> 0), ``[...]``.
      coef: k (default 2.0).
      min_epsilon: ε_min (default 0.01).

    Returns:
      S >= 1, ``[...]``.

    Source: seed 002 wall 20; mlsysim ResponsibleEngineeringModel
    (DP_SGD_SLOWDOWN_COEFFICIENT); Abadi et al. (2016) for DP-SGD itself.

    Worked example: ε = 1 -> 3.0; ε = 8 -> 1.25; ε = 10 -> 1.2.
    """
    [epsilon] = nonneg(epsilon, broadcast=False)
    return 1.0 + coef / floor_pos(epsilon, min_epsilon)
