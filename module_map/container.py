"""The :class:`ModuleMap` container: its tables, their branch names and checks, and its native file format.

A map has two tables whose columns are named exactly like the GNN4ITk (MMG) ROOT branches:

* ``doublets``: ``Module1, Module2`` (int32 dense module indices), ``Occurence`` (uint32), and the pair
  bounds ``{z0,dphi,phiSlope,deta}{min,max}_12``.
* ``triplets``: ``Module1, Module2, Module3``, ``Occurence``, the pair bounds for ``_12`` and ``_23``, and
  ``diff_dydx_{min,max}``, ``diff_dzdr_{min,max}``.

Module identifiers: the tables hold *dense* int32 module indices (what spacepoints carry in
``module_id``). ``module_index`` (int32 [M], sorted) lists the map's modules and ``module_ids`` (uint64 [M])
their detector-wide 64-bit identifiers (ITk ids for maps read from ROOT; the dense index itself for maps
built here from gnn4itk events).

Native format: one uncompressed ``.npz`` (``np.load`` maps it without unpickling); ``attributes`` is a
JSON string. A map of a million triplets loads in about 0.1 s. The ROOT (MMG) format is
:mod:`module_map.root_io`; :func:`module_map.map.load_map` reads either.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from module_map.quantities import PAIR_NAMES, TRIPLET_EXTRA_NAMES

NATIVE_SUFFIX = ".npz"


def pair_branches(pair: str) -> list[str]:
    """ROOT branch names of the pair bounds, e.g. ``z0min_12, z0max_12, ...`` for pair ``"12"``."""
    return [f"{name}{side}_{pair}" for name in PAIR_NAMES for side in ("min", "max")]


EXTRA_BRANCHES = [f"{name}_{side}" for name in TRIPLET_EXTRA_NAMES for side in ("min", "max")]
DOUBLET_BOUND_BRANCHES = pair_branches("12")
TRIPLET_BOUND_BRANCHES = pair_branches("12") + pair_branches("23") + EXTRA_BRANCHES
DOUBLET_MODULES = ["Module1", "Module2"]
TRIPLET_MODULES = ["Module1", "Module2", "Module3"]

DEFAULT_ATTRIBUTES = {
    "deta_sign": "inner_minus_outer",
    "dydx_convention": "difference",
    "precision": "float32",
    "tolerance": 0.0,
    "min_occurrence": 1,
}


def bound_columns(names: list[str]) -> tuple[list[str], list[str]]:
    """Split bound branch names into the ``min`` and the ``max`` list, in quantity order."""
    lows = [n for n in names if "min" in n]
    highs = [n.replace("min", "max") for n in lows]
    return lows, highs


@dataclass
class ModuleMap:
    """A module map: doublet and triplet tables plus the module list.

    Attributes:
        module_index: int32 [M], sorted dense indices of the modules in the map.
        module_ids: uint64 [M], the 64-bit identifier of each of those modules.
        doublets: dict of column name -> array [D] (see module docstring).
        triplets: dict of column name -> array [T].
        attributes: ``deta_sign``, ``dydx_convention``, ``precision``, ``tolerance``,
            ``min_occurrence`` and provenance (events, particles, options).
    """

    module_index: np.ndarray
    module_ids: np.ndarray
    doublets: dict
    triplets: dict
    attributes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.attributes = {**DEFAULT_ATTRIBUTES, **self.attributes}
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ValueError naming the problem if the tables are inconsistent or hold NaN/inf."""
        if self.module_index.dtype != np.int32 or self.module_ids.dtype != np.uint64:
            raise ValueError("module_index must be int32 and module_ids uint64")
        if len(self.module_index) != len(self.module_ids):
            raise ValueError("module_index and module_ids differ in length")
        if np.any(np.diff(self.module_index) <= 0):
            raise ValueError("module_index must be strictly increasing")
        check_float32_exact(self.module_index)
        for label, table, modules, bounds in (
            ("doublets", self.doublets, DOUBLET_MODULES, DOUBLET_BOUND_BRANCHES),
            ("triplets", self.triplets, TRIPLET_MODULES, TRIPLET_BOUND_BRANCHES),
        ):
            missing = [c for c in modules + ["Occurence"] + bounds if c not in table]
            if missing:
                raise ValueError(f"{label} table lacks columns {missing}")
            sizes = {len(table[c]) for c in modules + ["Occurence"] + bounds}
            if len(sizes) != 1:
                raise ValueError(f"{label} columns differ in length: {sorted(sizes)}")
            for c in modules:
                if table[c].dtype != np.int32:
                    raise ValueError(f"{label}.{c} must be int32 dense module indices")
                unknown = ~np.isin(table[c], self.module_index)
                if unknown.any():
                    raise ValueError(f"{label}.{c} has {int(unknown.sum())} modules not in module_index")
            for c in bounds:
                if not np.all(np.isfinite(table[c])):
                    raise ValueError(f"{label}.{c} holds NaN or inf")
        if self.attributes["precision"] not in ("float32", "float64"):
            raise ValueError("precision must be float32 or float64")

    # ------------------------------------------------------------------ info
    @property
    def num_doublets(self) -> int:
        return int(len(self.doublets["Module1"]))

    @property
    def num_triplets(self) -> int:
        return int(len(self.triplets["Module1"]))

    @property
    def num_modules(self) -> int:
        return int(len(self.module_index))

    def summary_line(self, load_seconds: float | None = None) -> str:
        line = (
            f"module map: {self.num_triplets:,} triplet entries, {self.num_doublets:,} doublet entries, "
            f"{self.num_modules:,} modules"
        )
        if load_seconds is not None:
            line += f", loaded in {load_seconds:.3f} s"
        return line

    def dense_to_ids(self, dense: np.ndarray) -> np.ndarray:
        """uint64 identifiers of dense module indices (all must be in the map)."""
        position = np.searchsorted(self.module_index, dense)
        return self.module_ids[position]

    def equals(self, other: "ModuleMap") -> bool:
        """Exact equality: same arrays (values and dtypes) and same attributes."""
        def same(a, b):
            return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)

        if self.attributes != other.attributes:
            return False
        if not (same(self.module_index, other.module_index) and same(self.module_ids, other.module_ids)):
            return False
        for mine, theirs in ((self.doublets, other.doublets), (self.triplets, other.triplets)):
            if set(mine) != set(theirs) or not all(same(mine[k], theirs[k]) for k in mine):
                return False
        return True

    # ------------------------------------------------------------------ native IO
    def save(self, path: str | Path) -> Path:
        """Write the native ``.npz`` (uncompressed); returns the path written."""
        path = Path(path)
        if path.suffix != NATIVE_SUFFIX:
            path = path.with_name(path.name + NATIVE_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "attributes": np.array(json.dumps(self.attributes, sort_keys=True)),
            "module_index": self.module_index,
            "module_ids": self.module_ids,
        }
        arrays.update({f"doublets.{k}": v for k, v in self.doublets.items()})
        arrays.update({f"triplets.{k}": v for k, v in self.triplets.items()})
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return path


def check_float32_exact(ids: np.ndarray) -> None:
    """Refuse module ids whose float32 rounding is not one-to-one (dense ids travel as float32)."""
    ids = np.asarray(ids)
    as_float = ids.astype(np.float32)
    if len(np.unique(as_float)) != len(np.unique(ids)):
        raise ValueError(
            "module ids are not one-to-one in float32 (some exceed 2**24 and collide); "
            "use dense module indices"
        )


def load_native(path: str | Path, verbose: bool = True) -> ModuleMap:
    """Read a native ``.npz`` map; prints the summary line with the load time when ``verbose``."""
    start = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no module map file {path}")
    with np.load(path, allow_pickle=False) as data:
        doublets = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("doublets.")}
        triplets = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("triplets.")}
        mmap = ModuleMap(
            module_index=data["module_index"],
            module_ids=data["module_ids"],
            doublets=doublets,
            triplets=triplets,
            attributes=json.loads(str(data["attributes"])),
        )
    if verbose:
        print(f"{path}: " + mmap.summary_line(time.perf_counter() - start))
    return mmap


def float32_bounds(values: np.ndarray, upper: bool) -> np.ndarray:
    """Round bounds to float32 outwards (a lower bound down, an upper bound up).

    The graph builder compares float32 quantities; rounding float64 bounds outwards keeps every value
    the float64 window accepts (the window grows by at most one float32 step). float32 input is
    returned unchanged.
    """
    values = np.asarray(values)
    if values.dtype == np.float32:
        return values
    rounded = values.astype(np.float32)
    wide = rounded.astype(np.float64)
    if upper:
        fix = wide < values
        rounded[fix] = np.nextafter(rounded[fix], np.float32(np.inf))
    else:
        fix = wide > values
        rounded[fix] = np.nextafter(rounded[fix], np.float32(-np.inf))
    return rounded
