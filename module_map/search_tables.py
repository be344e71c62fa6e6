"""The module map's constant search tables for :class:`~module_map.graph_builder.ModuleMapGraphBuilder`.

Built once per map with numpy (registered as the builder's buffers), so that each event's graph costs
only the torch work of the builder. Search keys:

* hits: a float64 (module, phi) key, "block + offset": module m owns [8 m, 8 m + 8), and a phi in
  [-pi, pi] sits at offset phi + 4, inside (0.85, 7.15); searched offsets are clamped to [0, 7.5], so a
  search never leaves its block (the builder's ``_offset`` / ``_block_key`` compute it at run time).
* edges: an exact int64 (doublet, dphi) key, ``doublet << 34`` plus :func:`gnn4itk.ordering.float_order_key`
  of dphi; each triplet side's dphi window is one key range of it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from gnn4itk.ordering import float_order_key
from module_map.container import (DOUBLET_BOUND_BRANCHES, TRIPLET_BOUND_BRANCHES, ModuleMap, bound_columns,
                                  float32_bounds)

BLOCK = 8.0
"""Width of a module's block of the (module, phi) key."""
OFFSET = 4.0
"""Offset of phi = 0 inside its block."""
OFFSET_MAX = 7.5
"""Searched offsets are clamped to [0, OFFSET_MAX]."""
SEARCH_SLACK = 1e-5
"""Search ranges are widened by this (float32 rounding of dphi is < 1e-6); the exact window test follows."""


def map_windows(module_map: ModuleMap, table: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 lower and upper windows [K, F] of ``"doublets"`` or ``"triplets"``, rounded outwards."""
    branches = DOUBLET_BOUND_BRANCHES if table == "doublets" else TRIPLET_BOUND_BRANCHES
    columns = getattr(module_map, table)
    lows, highs = bound_columns(branches)
    low = np.stack([float32_bounds(columns[c], upper=False) for c in lows], axis=1)
    high = np.stack([float32_bounds(columns[c], upper=True) for c in highs], axis=1)
    return low.reshape(-1, len(lows)), high.reshape(-1, len(highs))


def phi_search_table(d_m2: np.ndarray, dphi_low: np.ndarray, dphi_high: np.ndarray) -> np.ndarray:
    """float64 [4, D]: per doublet, the second module's key block, the dphi window as key offsets
    (widened by the slack) and the shift of the wrapped second range (see :meth:`ModuleMapGraphBuilder.doublet_edges`).

    A window at least pi wide searches the whole second module (exact: the window test follows)
    and gets a shift that puts its second range outside every block, so no pair is found twice. A
    narrower window can pass +pi only if it ends above pi / 2 and -pi only if it ends below, which is
    the builder's choice of the shifted range: one shifted range suffices.
    """
    start = dphi_low.astype(np.float64) - SEARCH_SLACK + OFFSET
    end = dphi_high.astype(np.float64) + SEARCH_SLACK + OFFSET
    whole = (end - start >= math.pi) | ~(end >= start)
    # phi_a + start <= 0 and phi_a + end >= 7.5 for every phi_a in [-pi, pi]: clamped to the whole block
    start = np.where(whole, -10.0, start)
    end = np.where(whole, 20.0, end)
    shift = np.where(whole, 100.0, 2 * math.pi)
    return np.stack([d_m2 * BLOCK, start, end, shift])


@dataclass
class SearchTables:
    """The map's tables for the graph builder.

    Attributes:
        num_dense: dense module indices run over [0, num_dense).
        num_doublets: D, map doublets (sorted by their modules).
        num_triplets: T, usable map triplets (both pairs are map doublets), sorted by first doublet.
        orphan_triplets: map triplets left out (a pair that is no map doublet).
        buffers: name -> array, in the builder's buffer order: ``dense_of`` int64 [num_dense + 2],
            ``module_bounds`` float64 [2D + 1], ``d_windows`` float32 [8, D], ``d_search`` float64 [4, D],
            ``side_windows`` float32 [6, 2T], ``side_keys`` int64 [2, 2T], ``t_extra`` float32 [4, T],
            ``first_slope_sign`` float32 [2, 1] (see the comments where each is made).
    """

    num_dense: int
    num_doublets: int
    num_triplets: int
    orphan_triplets: int
    buffers: dict = field(default_factory=dict)


def search_tables(module_map: ModuleMap, dydx_sign: float) -> SearchTables:
    """The :class:`SearchTables` of ``module_map``; ``dydx_sign``: :func:`module_map.quantities.dydx_factor`
    of the map's convention. Warns about orphan triplets."""
    num_dense = int(module_map.module_index.max()) + 1 if module_map.num_modules else 0
    buffers: dict = {}
    # dense_of[id + 1]: the dense index of id, or num_dense (unknown) for ids not in the map, -1
    # (negative or non-integer ids) and num_dense (ids beyond the map)
    dense_of = np.full(num_dense + 2, num_dense, dtype=np.int64)
    dense_of[module_map.module_index.astype(np.int64) + 1] = module_map.module_index

    d = module_map.doublets
    d_m1, d_m2 = d["Module1"].astype(np.int64), d["Module2"].astype(np.int64)
    d_order = np.lexsort((d_m2, d_m1))
    d_m1, d_m2 = d_m1[d_order], d_m2[d_order]
    d_low, d_high = map_windows(module_map, "doublets")
    d_low, d_high = d_low[d_order], d_high[d_order]
    d_keys = d_m1 * num_dense + d_m2
    num_doublets = len(d_m1)

    t = module_map.triplets
    t_m1, t_m2, t_m3 = (t[c].astype(np.int64) for c in ("Module1", "Module2", "Module3"))
    t_low, t_high = map_windows(module_map, "triplets")

    def doublet_of(a, b):
        key = a * num_dense + b
        pos = np.clip(np.searchsorted(d_keys, key), 0, max(len(d_keys) - 1, 0))
        found = (d_keys[pos] == key) if len(d_keys) else np.zeros(len(key), bool)
        return pos, found

    d12, ok12 = doublet_of(t_m1, t_m2)
    d23, ok23 = doublet_of(t_m2, t_m3)
    usable = ok12 & ok23
    orphan_triplets = int((~usable).sum())
    if orphan_triplets:
        warnings.warn(f"{orphan_triplets} map triplets have a pair that is not a map doublet; ignored")
    t_order = np.flatnonzero(usable)[np.argsort(d12[usable], kind="stable")]
    d12, d23 = d12[t_order], d23[t_order]
    t_low, t_high = t_low[t_order], t_high[t_order]
    num_triplets = len(t_order)

    buffers["dense_of"] = dense_of
    # (module, phi) key bounds of every doublet's first module, then of the unknown-module block:
    # one binary search on the sorted hits gives each doublet's first-module hits and the unknown count
    buffers["module_bounds"] = np.concatenate([d_m1 * BLOCK, (d_m1 + 1) * BLOCK, [num_dense * BLOCK]])
    buffers["d_windows"] = np.concatenate([d_low.T, d_high.T])  # feature-major [8, D], see gnn4itk.gather.take
    buffers["d_search"] = phi_search_table(d_m2, d_low[:, 1], d_high[:, 1])
    # Triplet sides, both in one table of 2T rows: rows [0, T) are the first pairs (doublet d12, the
    # 12 windows), rows [T, 2T) the second pairs (d23, the 23 windows). Their (doublet, dphi) search
    # keys are map constants.
    side_doublet = np.concatenate([d12, d23]).astype(np.int64)
    side_low = np.concatenate([t_low[:, 0:4], t_low[:, 4:8]]).T  # feature-major [4, 2T]
    side_high = np.concatenate([t_high[:, 0:4], t_high[:, 4:8]]).T
    # [6, 2T]: z0, phiSlope, deta lows, then highs (the exact (doublet, dphi) search tests dphi)
    buffers["side_windows"] = np.concatenate([side_low[[0, 2, 3]], side_high[[0, 2, 3]]])
    block = side_doublet << 34  # float_order_key lies in (-2**33, 2**33)
    dphi_keys = float_order_key(torch.from_numpy(np.stack([side_low[1], side_high[1]]).astype(np.float32))).numpy()
    key_from = block + dphi_keys[0]
    key_to = block + dphi_keys[1] + 1  # exclusive
    buffers["side_keys"] = np.stack([key_from, np.maximum(key_to, key_from)])  # [2, 2T], never a negative count
    buffers["t_extra"] = np.concatenate([t_low[:, 8:10].T, t_high[:, 8:10].T])  # [4, T]: dydx, dzdr lows, highs
    buffers["first_slope_sign"] = np.array([[dydx_sign], [1.0]], dtype=np.float32)  # [2, 1]
    return SearchTables(num_dense, num_doublets, num_triplets, orphan_triplets, buffers)
