"""KV-cache planning: how many Llama-3-70B sequences fit?  (seed 000 §4.3)

    KV = 2 · L · H_kv · d_head · S · B · bytes      (K and V, every layer)

Llama-3-70B: 80 layers, 8 KV heads (grouped-query attention), d_head 128, fp16:
    per token : 2 × 80 × 8 × 128 × 2  = 327,680 B = 327 KB
    B=16, 4096: 327 KB × 16 × 4096    = 21.5 GB
    B=32, 4096: 327 KB × 32 × 4096    = 43 GB

Note: the seed writes "weights (35 GB in FP16) + KV (43 GB) = 78 GB - barely
fits on an 80 GB H100".  Its own equation gives 70.6e9 × 2 B = 141 GB of fp16
weights; 35 GB is the int4 size.  We follow the equation: fp16 weights need at
least two H100s before any KV cache, int4 weights fit on one.

Run:  python examples/03_kv_cache_planning.py
"""
import mlsys_opt
from mlsys_opt.walls import node


def main() -> None:
    cat = mlsys_opt.load_catalog()
    m = cat.entry("models", "llama3_70b")
    L, kv_heads, d = float(m["n_layers"]), float(m["n_kv_heads"]), float(m["head_dim"])
    per_token = float(node.kv_cache_bytes(L, kv_heads, d, 1.0, 1.0, 2.0))
    print(f"Llama-3-70B KV cache per token (fp16): 2 × {L:.0f} × {kv_heads:.0f} × {d:.0f} × 2 B = "
          f"{per_token:,.0f} B = {per_token / 1e3:.1f} KB")
    for batch in (16, 32, 64):
        kv = float(node.kv_cache_bytes(L, kv_heads, d, 4096.0, float(batch), 2.0))
        print(f"  batch {batch:>2}, 4096 tokens: {kv / 1e9:.1f} GB")
    print()
    cap = float(cat.entry("accelerators", "h100_sxm")["mem_capacity_bytes"])
    per_seq = per_token * 4096
    print("Most 4096-token sequences that fit (H100 80 GB; max_batch = floor((C - W) / KV per sequence)):")
    for label, weights, gpus in (("fp16 weights, 1 × H100", 2.0 * float(m["n_params"]), 1),
                                 ("fp16 weights, 2 × H100 (tp 2)", 2.0 * float(m["n_params"]), 2),
                                 ("fp16 weights, 4 × H100 (tp 4)", 2.0 * float(m["n_params"]), 4),
                                 ("int4 weights, 1 × H100", 0.5 * float(m["n_params"]), 1)):
        n = float(node.max_batch(gpus * cap, weights, per_seq))
        print(f"  {label:<30} weights {weights / 1e9:6.1f} GB -> max batch {n:,.0f}")


if __name__ == "__main__":
    main()
