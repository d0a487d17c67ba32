"""The memory wall: one Llama-3-70B decode step on an H100 takes ~42 ms.  (seed 000 §4.2)

    ITL = max((weights + KV) / bandwidth, 2·P·batch / peak)

Generating a token reads every weight once but does only 2 FLOP per weight:
    compute: 2 × 70e9 / 989 TFLOP/s = 0.14 ms
    memory : 140 GB / 3.35 TB/s      = 41.8 ms
A 2× faster tensor core changes nothing; only bandwidth (or batching) helps.
(The seed labels the split "3 % / 97 %"; its own numbers give 0.14 / 41.9 =
0.3 % / 99.7 %, which is what we print.)

The seed rounds the model to 70e9 parameters (140 GB in fp16); the catalog's
70.6e9 gives 141.2 GB and 42.1 ms.  The full serving scenario adds the
efficiency model (80 % of peak HBM bandwidth, dispatch time), so its ITL is
longer than this ideal roofline number.

Run:  python examples/02_memory_wall_decode.py
"""
import mlsys_opt
from mlsys_opt.walls import node


def main() -> None:
    cat = mlsys_opt.load_catalog()
    h100 = cat.entry("accelerators", "h100_sxm")
    peak, bw = float(h100["peak_fp16_flop_per_s"]), float(h100["mem_bw_bytes_per_s"])
    print("Llama-3-70B, one decode step at batch 1 on an H100 SXM (fp16, ideal roofline):")
    for label, n_params in (("seed (70e9 params, 140 GB)", 70e9),
                            ("catalog (70.6e9 params)", float(cat.entry("models", "llama3_70b")["n_params"]))):
        d = node.decode(2.0 * n_params, 0.0, n_params, 1.0, peak, bw)
        t_c, t_m, itl = float(d.t_compute_s), float(d.t_memory_s), float(d.itl_s)
        print(f"  {label:<28} compute {1e3 * t_c:.2f} ms ({100 * t_c / (t_c + t_m):.1f} %), "
              f"memory {1e3 * t_m:.1f} ms ({100 * t_m / (t_c + t_m):.1f} %) -> ITL {1e3 * itl:.1f} ms "
              f"= {1 / itl:.0f} tokens/s, {('compute', 'memory', 'overhead')[int(d.bottleneck)]}-bound")
    print()
    print("What helps?  ITL at batch 1 (70e9 params, seed rounding):")
    for label, p, b in (("2x compute (1978 TFLOP/s)", 2 * peak, bw), ("H200 bandwidth (4.8 TB/s)", peak, 4.8e12),
                        ("B200 bandwidth (8 TB/s)", peak, 8e12)):
        print(f"  {label:<28} {1e3 * float(node.decode(140e9, 0.0, 70e9, 1.0, p, b).itl_s):.1f} ms")
    print()
    s = mlsys_opt.evaluate("serving", model="llama3_70b", hardware="h100_sxm", tp=2, batch=1,
                           request_rate="1 /s", prompt_tokens=1024, output_tokens=256)
    print(f"full serving scenario (tp 2, batch 1, 80 % of HBM peak, dispatch): ITL {1e3 * s['itl_s']:.1f} ms, "
          f"TTFT {1e3 * s['ttft_s']:.0f} ms, decode {s['bottleneck']}-bound")


if __name__ == "__main__":
    main()
