"""Hello, roofline: is a dense layer on an H100 compute- or memory-bound?  (seed 000 §1.2)

    T = max(FLOP / peak, bytes / bandwidth);  ridge point I* = peak / bandwidth

A 2048 -> 512 dense layer in fp16 at batch 1 does 2·2048·512 = 2.1 MFLOP and
reads 2048·512·2 = 2.1 MB of weights: intensity ~1 FLOP/byte, far left of the
H100's ridge at 989 TFLOP/s / 3.35 TB/s = 295 FLOP/byte.  Batching reuses the
weights and walks the layer up the roof.

Run:  python examples/01_hello_roofline.py [--figure roofline.png]
"""
import argparse

from mlsys_opt import load_catalog
from mlsys_opt.walls import node


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", help="also draw the roofline with the layers on it (.png/.svg)")
    args = ap.parse_args()

    h100 = load_catalog().entry("accelerators", "h100_sxm")
    peak, bw = float(h100["peak_fp16_flop_per_s"]), float(h100["mem_bw_bytes_per_s"])
    ridge = float(node.ridge_point(peak, bw))
    print(f"H100 SXM: {peak / 1e12:,.0f} TFLOP/s fp16, {bw / 1e12:.2f} TB/s HBM -> ridge point {ridge:.0f} FLOP/byte")
    print()
    print(f"{'batch':>6} {'FLOP':>10} {'bytes':>10} {'FLOP/byte':>10} {'time (µs)':>10} {'% of peak':>10}  bound")
    points = []
    for batch in (1, 8, 64, 512, 4096):
        layer = node.dense_layer(2048, 512, batch, 2.0)          # fp16: 2 bytes per element
        r = node.roofline(layer.flop, layer.bytes_moved, peak, bw)
        intensity = float(r.arithmetic_intensity)
        achieved = float(layer.flop) / float(r.latency_s)
        bound = ("compute", "memory", "overhead")[int(r.bottleneck)]
        print(f"{batch:>6} {float(layer.flop):>10.3g} {float(layer.bytes_moved):>10.3g} {intensity:>10.1f} "
              f"{1e6 * float(r.latency_s):>10.3f} {100 * achieved / peak:>9.1f}%  {bound}")
        points.append({"label": f"batch {batch}", "intensity": intensity, "flop_per_s": achieved,
                       "hardware": "h100_sxm"})
    print()
    print(f"dense layer 2048->512, batch 1: intensity {points[0]['intensity']:.2f} FLOP/byte "
          f"<< ridge {ridge:.0f}: memory-bound, {100 * points[0]['flop_per_s'] / peak:.2f} % of peak")
    if args.figure:
        from mlsys_opt.cli.plots import roofline
        roofline(["h100_sxm", "a100_80gb"], points, path=args.figure,
                 title="Dense layer 2048→512 (fp16) on the roofline, batch 1 to 4096")
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
