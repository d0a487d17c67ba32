"""Scaling to 1,000 GPUs: all-reduce, pipeline bubbles, scaling efficiency.  (seed 000 §2)

    ring all-reduce  T = 2(N-1)·α + 2(N-1)/N · M/β
    pipeline bubble  (P-1) / (V·M + P-1)
    scaling eff.     T_compute / (T_compute + T_dp + T_tp + T_ep + T_bubble)

Seed's worked example: a 140 GB fp16 gradient of a 70B model on 1,024 GPUs over
InfiniBand NDR (β = 50 GB/s, α = 2 µs): bandwidth term 2·1023/1024·140/50 ≈
5.6 s, latency term 2·1023·2 µs ≈ 4 ms.  Then the full training scenario shows
what overlap, tensor parallelism and the network do to the scaling efficiency.

Run:  python examples/04_scaling_to_1000_gpus.py
"""
import mlsys_opt
from mlsys_opt.walls import fleet, laws


def main() -> None:
    cat = mlsys_opt.load_catalog()
    ndr = cat.entry("fabrics", "ib_ndr")
    beta, alpha = float(ndr["bw_bytes_per_s"]), float(ndr["latency_s"])
    msg, n = 140e9, 1024
    t = float(fleet.ring_allreduce(msg, n, beta, alpha))
    bw_term = 2 * (n - 1) / n * msg / beta
    lat_term = 2 * (n - 1) * alpha
    print(f"ring all-reduce of 140 GB on {n:,} GPUs, IB NDR ({beta / 1e9:.0f} GB/s, α = {alpha * 1e6:.0f} µs):")
    print(f"  bandwidth term {bw_term:.2f} s + latency term {1e3 * lat_term:.1f} ms = {t:.2f} s")
    eth = cat.entry("fabrics", "eth_100g")
    print(f"  on 100 GbE ({float(eth['bw_bytes_per_s']) / 1e9:.1f} GB/s): "
          f"{float(fleet.ring_allreduce(msg, n, float(eth['bw_bytes_per_s']), float(eth['latency_s']))):.1f} s")
    print()
    print("pipeline bubble (P-1)/(V·M+P-1):")
    for p, m, v in ((4, 16, 1), (4, 16, 2), (8, 32, 1), (16, 16, 1)):
        print(f"  P={p:<2} M={m:<2} V={v}: {100 * float(fleet.pipeline_bubble(p, m, v)):.1f} %")
    print()
    print("Gustafson scaled speed-up with 5 % serial work: "
          f"{float(laws.gustafson(0.05, 8)):.2f}x on 8 GPUs, {float(laws.gustafson(0.05, 1000)):.0f}x on 1,000")
    print("Amdahl speed-up with 5 % serial work:          "
          f"{float(laws.amdahl(0.05, 8)):.2f}x on 8 GPUs, {float(laws.amdahl(0.05, 1000)):.1f}x on 1,000")
    print()
    print("Llama-3-70B on 1,024 H100s, training scenario (global batch 2048 x 4096 tokens):")
    grid = mlsys_opt.evaluate("training", model="llama3_70b", hardware="h100_sxm", n_accelerators=1024,
                              n_tokens="1e12 token", tp=[1, 8], fabric=["eth_100g", "ib_ndr"],
                              overlap=0.0, global_batch=2048)
    for _, r in grid.iterrows():
        print(f"  tp {r['tp']}, {r['fabric']:<8}: scaling efficiency {100 * r['scaling_efficiency']:5.1f} %, "
              f"step {r['step_time_s']:.1f} s, MFU {100 * r['mfu']:.1f} %"
              + ("" if r["feasible"] else f"  (infeasible: {r['binding_constraint']})"))


if __name__ == "__main__":
    main()
