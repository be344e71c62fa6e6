"""GNN4ITk (MMG) ROOT module maps, read and written with uproot.

``<base>.triplets.root`` holds TTree ``TreeModuleTriplet``: ``Module1, Module2, Module3`` (uint64 module
ids), ``Occurence`` (uint32), ``{z0,dphi,phiSlope,deta}{min,max}_{12,23}`` and
``diff_{dzdr,dydx}_{min,max}``. ``<base>.doublets.root`` holds TTree ``TreeModuleDoublet``: ``Module1,
Module2`` and the ``_12`` bounds. Bounds are float or double, as the map was made.

Files written here carry three additions that MMG readers ignore (they read branches by name): an
``Occurence`` branch in the doublet tree, a ``TreeModules`` tree (``ID`` uint64, ``index`` int32) with
the dense index of every module, and a ``gnn4itk_attributes`` JSON string. With them a native map
survives native -> ROOT -> native unchanged. A map without them (a real ITk map) gets MMG's conventions
(``deta_sign = inner_minus_outer``, ``dydx_convention = mmg``) and doublet occurrences of 0 (unknown).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from module_map.container import (
    DOUBLET_BOUND_BRANCHES,
    DOUBLET_MODULES,
    TRIPLET_BOUND_BRANCHES,
    TRIPLET_MODULES,
    ModuleMap,
    check_float32_exact,
)

TRIPLET_TREE = "TreeModuleTriplet"
DOUBLET_TREE = "TreeModuleDoublet"
MODULE_TREE = "TreeModules"
ATTRIBUTES_KEY = "gnn4itk_attributes"
MMG_ATTRIBUTES = {"deta_sign": "inner_minus_outer", "dydx_convention": "mmg"}


def root_paths(base: str | Path) -> tuple[Path, Path]:
    """``(<base>.triplets.root, <base>.doublets.root)``; ``base`` may also name either file."""
    text = str(base)
    for suffix in (".triplets.root", ".doublets.root"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return Path(text + ".triplets.root"), Path(text + ".doublets.root")


def write_root(module_map: ModuleMap, base: str | Path) -> tuple[Path, Path]:
    """Write ``<base>.triplets.root`` and ``<base>.doublets.root``; returns both paths."""
    import uproot

    triplet_path, doublet_path = root_paths(base)
    triplet_path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.float64 if module_map.attributes["precision"] == "float64" else np.float32
    for path, tree, table, modules, bounds in (
        (triplet_path, TRIPLET_TREE, module_map.triplets, TRIPLET_MODULES, TRIPLET_BOUND_BRANCHES),
        (doublet_path, DOUBLET_TREE, module_map.doublets, DOUBLET_MODULES, DOUBLET_BOUND_BRANCHES),
    ):
        branches = {m: module_map.dense_to_ids(table[m]).astype(np.uint64) for m in modules}
        branches["Occurence"] = table["Occurence"].astype(np.uint32)
        branches.update({b: table[b].astype(dtype, copy=False) for b in bounds})
        with uproot.recreate(path) as handle:
            handle[tree] = branches
            if tree == TRIPLET_TREE:
                handle[MODULE_TREE] = {"ID": module_map.module_ids, "index": module_map.module_index}
                handle[ATTRIBUTES_KEY] = json.dumps(module_map.attributes, sort_keys=True)
    return triplet_path, doublet_path


def _dense(ids: np.ndarray, table_ids: np.ndarray, table_index: np.ndarray, what: str) -> np.ndarray:
    order = np.argsort(table_ids)
    pos = np.clip(np.searchsorted(table_ids, ids, sorter=order), 0, len(order) - 1)
    found = table_ids[order][pos] == ids
    if not found.all():
        raise ValueError(f"{what}: {int((~found).sum())} module ids are not in the module table "
                         f"(e.g. {ids[~found][:3].tolist()})")
    return table_index[order][pos].astype(np.int32)


def read_root(base: str | Path, verbose: bool = True, dense_ids: np.ndarray | None = None) -> ModuleMap:
    """Read a GNN4ITk ROOT map, mapping 64-bit module ids to dense int32 indices explicitly.

    Args:
        base: ``<base>`` or either of its two file names.
        dense_ids: uint64 [M]: the module id of each dense index (position = index), e.g. a detector
            table's ids. Without it, files written by gnn4itk use their ``TreeModules`` table, and other
            files number their modules 0..M-1 in increasing id order.
        verbose: print the summary line (entries, modules, load time).
    """
    import uproot

    start = time.perf_counter()
    triplet_path, doublet_path = root_paths(base)
    for path in (triplet_path, doublet_path):
        if not path.exists():
            raise FileNotFoundError(f"no module map file {path}")
    with uproot.open(triplet_path) as handle:
        triplets = handle[TRIPLET_TREE].arrays(library="np")
        attributes = dict(MMG_ATTRIBUTES)
        if ATTRIBUTES_KEY in handle:
            attributes = json.loads(str(handle[ATTRIBUTES_KEY]))
        stored = handle[MODULE_TREE].arrays(library="np") if MODULE_TREE in handle else None
    with uproot.open(doublet_path) as handle:
        doublets = handle[DOUBLET_TREE].arrays(library="np")

    missing = [b for b in TRIPLET_MODULES + ["Occurence"] + TRIPLET_BOUND_BRANCHES if b not in triplets]
    missing += [b for b in DOUBLET_MODULES + DOUBLET_BOUND_BRANCHES if b not in doublets]
    if missing:
        raise ValueError(f"{base}: not a GNN4ITk module map, missing branches {missing}")
    all_ids = np.unique(np.concatenate([np.asarray(t[m], np.uint64) for t, ms in
                                        ((triplets, TRIPLET_MODULES), (doublets, DOUBLET_MODULES)) for m in ms]))
    if dense_ids is not None:
        table_ids = np.asarray(dense_ids, dtype=np.uint64)
        table_index = np.arange(len(table_ids), dtype=np.int32)
    elif stored is not None:
        table_ids, table_index = stored["ID"].astype(np.uint64), stored["index"].astype(np.int32)
    else:
        table_ids, table_index = all_ids, np.arange(len(all_ids), dtype=np.int32)
    dense_of_map = _dense(all_ids, table_ids, table_index, str(base))
    check_float32_exact(dense_of_map)
    order = np.argsort(dense_of_map)
    module_index, module_ids = dense_of_map[order], all_ids[order]

    precision = "float64" if triplets[TRIPLET_BOUND_BRANCHES[0]].dtype == np.float64 else "float32"
    attributes["precision"] = precision
    out = []
    for table, modules, bounds, what in ((doublets, DOUBLET_MODULES, DOUBLET_BOUND_BRANCHES, "doublets"),
                                         (triplets, TRIPLET_MODULES, TRIPLET_BOUND_BRANCHES, "triplets")):
        columns = {m: _dense(np.asarray(table[m], np.uint64), table_ids, table_index, what) for m in modules}
        size = len(columns[modules[0]])
        occurrence = table["Occurence"] if "Occurence" in table else np.zeros(size, np.uint32)
        columns["Occurence"] = np.asarray(occurrence).astype(np.uint32)
        columns.update({b: np.asarray(table[b], dtype=precision) for b in bounds})
        out.append(columns)
    module_map = ModuleMap(module_index, module_ids, out[0], out[1], attributes)
    if verbose:
        print(f"{triplet_path}: " + module_map.summary_line(time.perf_counter() - start))
    return module_map
