"""Design spaces: a spec file (TOML or dict) -> a validated `Space` of mixed-radix axes.

- ``spec``: `Space`, `Axis`, `load_space`, `list_spaces` (reads a file; [fixed] and [axes]).
- ``values``: one value -> (label, SI float or code); one [axes] entry -> its values.
- ``checks``: [constraints], [objectives], [search], [sweep]; whole-space feasibility.
- ``indexing``: mixed-radix digits of a configuration (host exact ints, device chunks).

The format reference is spaces/README.md.
"""
from __future__ import annotations

from .spec import (
                   AXIS_FORMS,
                   INT64_MAX,
                   MAX_AXIS_LEN,
                   SEARCH_ALGORITHMS,
                   SPACES_DIR,
                   TOP_KEYS,
                   Axis,
                   Space,
                   SpaceInfo,
                   column_name,
                   list_spaces,
                   load_space,
)

__all__ = ["Axis", "Space", "SpaceInfo", "load_space", "list_spaces", "column_name", "AXIS_FORMS", "INT64_MAX",
           "MAX_AXIS_LEN", "SEARCH_ALGORITHMS", "SPACES_DIR", "TOP_KEYS"]
