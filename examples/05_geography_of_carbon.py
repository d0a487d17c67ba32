"""The geography of carbon: the same training run in Quebec and in Poland.  (seed 000 §5)

    E = IT power × hours × PUE;   CO2e = E × carbon intensity

Seed's worked example: 64 GPUs × 400 W × 336 h = 8,602 kWh of IT energy,
× PUE 1.2 = 10,322 kWh.  At 20 g/kWh (Quebec hydro) that is 206 kg CO2e, at
429 g/kWh (US average) 4,428 kg, at 820 g/kWh (Poland, coal) 8,464 kg: a ~41×
difference for identical work.  The carbon intensities come from the catalog;
the seed's PUE 1.2 is used for all three, then each region's own PUE.

Run:  python examples/05_geography_of_carbon.py
"""
import mlsys_opt
from mlsys_opt.walls import ops


def main() -> None:
    cat = mlsys_opt.load_catalog()
    it_power_w, hours = 64 * 400.0, 336.0
    print(f"64 GPUs × 400 W × {hours:.0f} h = {it_power_w * hours / 1e3:,.0f} kWh IT energy; "
          f"PUE 1.2 -> {1.2 * it_power_w * hours / 1e3:,.0f} kWh")
    print(f"{'region':<12} {'g CO2e/kWh':>10} {'kg CO2e (PUE 1.2)':>18} {'region PUE':>10} {'kg CO2e':>9} {'water L':>8}")
    results = {}
    for name in ("quebec", "norway", "france", "us_avg", "germany", "poland"):
        r = cat.entry("regions", name)
        ci, pue, wue = float(r["carbon_gco2e_per_kwh"]), float(r["pue"]), float(r["wue_l_per_kwh"])
        seed = ops.sustainability(it_power_w, hours * 3600.0, 1.2, ci, wue)
        own = ops.sustainability(it_power_w, hours * 3600.0, pue, ci, wue)
        results[name] = float(seed.carbon_kg)
        print(f"{name:<12} {ci:>10.0f} {float(seed.carbon_kg):>18,.0f} {pue:>10.2f} {float(own.carbon_kg):>9,.0f} "
              f"{float(own.water_l):>8,.0f}")
    print()
    print(f"Quebec vs Poland at the same PUE: {results['quebec']:,.0f} kg vs {results['poland']:,.0f} kg "
          f"= {results['poland'] / results['quebec']:.0f}× more carbon for identical work")


if __name__ == "__main__":
    main()
