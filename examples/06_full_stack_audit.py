"""Seed 003's full-stack audit of Llama-3-70B training, as one command.

512 H100s (64 DGX nodes, TP 8 within a node, DP 64), InfiniBand NDR, Quebec's
hydro grid, 40 % MFU, global batch 2048 × 2048 tokens, gradient overlap on, and
the seed's token budget (512 × 989 TFLOP/s × 30 days × 0.4 / 6P = 1.24e12
tokens).  One `mlsys-opt evaluate` prints every wall's figure - node roofline,
memory, software (MFU), data ingestion, Chinchilla ratio, communication,
fragility (MTBF), checkpointing, cost, carbon, the iron law and the binding
input from exact sensitivities - the seed's "Domain | Solver | Key metric |
Binding wall" summary table.

The same command in a shell:

    mlsys-opt evaluate --model llama3_70b --hardware h100_sxm --n-accelerators 512 --tp 8 \\
        --region quebec --tokens 1.24e12 --global-batch 2048 --seq-len 2048 --efficiency 0.4 \\
        --set overlap=0.9 --limit max_time='30 day'

Run:  python examples/06_full_stack_audit.py [--figure cascade.png]
"""
import argparse
import sys

from mlsys_opt.cli.app import main as mlsys_opt_main

SEED_003 = ["evaluate", "--model", "llama3_70b", "--hardware", "h100_sxm", "--n-accelerators", "512",
            "--tp", "8", "--region", "quebec", "--tokens", "1.24e12", "--global-batch", "2048",
            "--seq-len", "2048", "--efficiency", "0.4", "--set", "overlap=0.9",
            "--limit", "max_time=30 day", "--allow-infeasible"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", help="also draw the iron-law loss cascade (.png/.svg)")
    args = ap.parse_args()
    argv = SEED_003 + (["--figure", args.figure] if args.figure else [])
    return mlsys_opt_main(argv)


if __name__ == "__main__":
    sys.exit(main())
