"""Shared vocabulary: array alias, precision codes, enumerations as int codes.

Categorical values never enter jitted code as strings: they are int32 codes
into the tuples below (the names are used only by reports and the CLI).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see the real alias; at run time jax is not imported here
    from jax.typing import ArrayLike as Array  # a jax.Array, numpy array or Python scalar, [...]
else:
    Array = "jax.typing.ArrayLike"  # annotations only (modules use `from __future__ import annotations`)

# Numeric precisions, in table-column order.  "fp16" is the 16-bit tensor
# path (FP16 or BF16, dense, no sparsity); "tf32" the TF32 tensor path.
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "fp8", "int8", "int4")
BYTES_PER_ELEMENT: tuple[float, ...] = (4.0, 4.0, 2.0, 1.0, 1.0, 0.5)
PRECISION_ALIASES: dict[str, str] = {"bf16": "fp16", "float16": "fp16", "bfloat16": "fp16",
                                     "float32": "fp32", "fp4": "int4"}

# Network topology kinds (fabrics table column `topology`).
TOPOLOGIES: tuple[str, ...] = ("fat_tree", "torus", "ring", "dragonfly", "switch")

# Roofline regime (walls.node.roofline(...).bottleneck).
BOTTLENECKS: tuple[str, ...] = ("compute", "memory", "overhead")

# Model families (models table column `kind`).
MODEL_KINDS: tuple[str, ...] = ("transformer", "moe", "cnn")

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
SECONDS_PER_YEAR = 365.0 * 86400.0
JOULES_PER_KWH = 3.6e6
