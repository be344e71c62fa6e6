"""Loading a module map in either format, and the names of the :class:`ModuleMap` container.

:func:`load_map` reads the native ``.npz`` (:mod:`module_map.container`) or the GNN4ITk ROOT files
(:mod:`module_map.root_io`). The container's names are importable from here too (``from module_map.map
import ModuleMap, load_map``), as they were before the container had a module of its own: both formats
build on it, and neither imports this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from module_map.container import (
    DEFAULT_ATTRIBUTES,
    DOUBLET_BOUND_BRANCHES,
    DOUBLET_MODULES,
    EXTRA_BRANCHES,
    NATIVE_SUFFIX,
    TRIPLET_BOUND_BRANCHES,
    TRIPLET_MODULES,
    ModuleMap,
    bound_columns,
    check_float32_exact,
    float32_bounds,
    load_native,
    pair_branches,
)
from module_map.root_io import read_root


def load_map(path: str | Path, verbose: bool = True, dense_ids: np.ndarray | None = None) -> ModuleMap:
    """Load a map in either format: ``*.npz`` (native) or a ROOT base / ``*.triplets.root`` file.

    Args:
        path: native file, or the GNN4ITk base name (``<base>.triplets.root`` and ``<base>.doublets.root``).
        dense_ids: for ROOT maps only, see :func:`module_map.root_io.read_root`.
    """
    text = str(path)
    if text.endswith(NATIVE_SUFFIX):
        return load_native(path, verbose=verbose)
    return read_root(text, verbose=verbose, dense_ids=dense_ids)


__all__ = [
    "DEFAULT_ATTRIBUTES",
    "DOUBLET_BOUND_BRANCHES",
    "DOUBLET_MODULES",
    "EXTRA_BRANCHES",
    "NATIVE_SUFFIX",
    "TRIPLET_BOUND_BRANCHES",
    "TRIPLET_MODULES",
    "ModuleMap",
    "bound_columns",
    "check_float32_exact",
    "float32_bounds",
    "load_map",
    "load_native",
    "pair_branches",
]
