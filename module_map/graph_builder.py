"""Module-map graph construction as a scriptable torch module (CPU and CUDA, no custom ops).

Semantics (MMG's): an edge a -> b, with a in module Ma and b in module Mb, is kept iff

1. (Ma, Mb) is a doublet of the map and the pair passes its windows (z0, dphi, phi_slope, deta), and
2. some hit c makes (a, b, c) or (c, a, b) pass every window of a map triplet: both pairs' windows
   and diff_dydx, diff_dzdr.

All windows are inclusive. The triplet search joins doublet edges that share their middle hit, so the
second pair of a triplet must also pass its own doublet windows; for maps whose triplet windows lie
inside their doublet windows (every map built by :mod:`module_map.build`, and MMG's maps, whose
doublets are made from the same occurrences) this is the same set.

Algorithm, all vectorised torch with no loop over modules or hits (docs/module_map.md):

1. Hits are sorted by (module, eta). For each map doublet and each hit a of its first module, the hits b
   of its second module that can meet the deta window are a contiguous range (binary search); only those
   pairs are expanded (``repeat_interleave``) and tested with every doublet window.
2. Surviving edges are sorted by (doublet, dphi). For each triplet, the edges of its first doublet whose
   dphi can meet the triplet's 12 window are a contiguous range; they are tested with all 12 windows.
   The same for the second pair and the 23 windows.
3. The two lists are joined on (triplet, middle hit) by sorting and binary search; ``diff_dydx`` and
   ``diff_dzdr`` come from per-edge slopes for the joined rows only. An edge is kept if it is either
   pair of a passing row.

Every expansion is chunked (``pair_chunk``, ``triplet_chunk`` rows), so peak memory is set by the chunk
sizes and the number of (edge, triplet) matches, not by the candidate count. Each chunking step costs
one host sync.

Precision: positions and windows are float32; the quantities come from
:mod:`module_map.quantities` (bit-identical to the numpy versions used to build maps).
"""

from __future__ import annotations

import math
import warnings
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

from gnn4itk.edge_features import edge_features, scaled_coordinates
from module_map.map import DOUBLET_BOUND_BRANCHES, TRIPLET_BOUND_BRANCHES, ModuleMap, bound_columns, float32_bounds
from module_map.quantities import deta_factor, dydx_factor, pair_quantities_feature_major, slope, slope_difference


def map_windows(module_map: ModuleMap, table: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 lower and upper windows [K, F] of ``"doublets"`` or ``"triplets"``, rounded outwards."""
    branches = DOUBLET_BOUND_BRANCHES if table == "doublets" else TRIPLET_BOUND_BRANCHES
    columns = getattr(module_map, table)
    lows, highs = bound_columns(branches)
    low = np.stack([float32_bounds(columns[c], upper=False) for c in lows], axis=1)
    high = np.stack([float32_bounds(columns[c], upper=True) for c in highs], axis=1)
    return low.reshape(-1, len(lows)), high.reshape(-1, len(highs))


def _chunk_plan(cum: torch.Tensor, total: int, chunk: int) -> List[List[int]]:
    """Split items with cumulative sizes ``cum`` [n] into ranges of about ``chunk`` (one host sync).

    Returns ``[boundaries, offsets]``: item ranges ``boundaries[k] .. boundaries[k+1]`` and the running
    size before each boundary (a range holds ``offsets[k+1] - offsets[k]`` rows; a single item larger
    than ``chunk`` gets a range of its own).
    """
    n = cum.size(0)
    if total <= chunk:  # one range: no device work, no sync
        return [[0, n], [0, total]]
    targets = torch.arange(chunk, total, chunk, device=cum.device, dtype=cum.dtype)
    cuts = torch.searchsorted(cum, targets, right=True)
    cuts = torch.unique_consecutive(cuts[(cuts > 0) & (cuts < n)])
    zero = torch.zeros(1, dtype=cuts.dtype, device=cuts.device)
    edges = torch.cat([zero, cuts, torch.full((1,), n, dtype=cuts.dtype, device=cuts.device)])
    offsets = torch.cat([zero, cum])[edges]
    plan: List[List[int]] = torch.stack([edges, offsets]).tolist()
    return plan


def _expand(counts: torch.Tensor, first: int, last: int, excl: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Items ``first..last-1`` repeated ``counts`` times: (owner index, rank within the owner)."""
    owner = torch.repeat_interleave(torch.arange(first, last, device=counts.device), counts[first:last],
                                    output_size=size)
    rank = torch.arange(size, device=counts.device) - (excl[owner] - excl[first])
    return owner, rank


_KEY_BLOCK = 64.0  # each module owns [64 m, 64 m + 64) of the (module, eta) sort key


def _key_offset(eta: torch.Tensor) -> torch.Tensor:
    """Position of an eta inside its module's key block (monotone, clamped into the block)."""
    return torch.clamp(eta + 32.0, 0.0, 63.0)


def _dphi_offset(dphi: torch.Tensor) -> torch.Tensor:
    """Position of a dphi inside its doublet's block of 8 in the (doublet, dphi) key (monotone, clamped)."""
    return torch.clamp(dphi + 4.0, 0.0, 7.5)


def _inside(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """bool [R]: every feature of ``values`` [F, R] inside ``[low, high]`` [F, R] (feature-major)."""
    return ((values >= low) & (values <= high)).all(dim=0)


def _columns(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[:, index]`` [F, R] of a feature-major table [F, K].

    Tables are kept feature-major on purpose: gathering rows of a [K, F] table whose rows are 16 bytes
    (``table[index]``, also ``index_select``) takes a vectorised slice-gather kernel on CUDA that ran
    ~50x slower than this element gather (H100, torch 2.11: 3.3 ms for 4M rows).
    """
    return table[:, index]


CPU_CHUNK = 1 << 22
"""Default chunk rows on the CPU (cache-sized work per step)."""
CUDA_CHUNK = 1 << 24
"""Default chunk rows on CUDA: one step per stage for mu=200 (each step costs host syncs), ~1.4 GB peak."""


class ModuleMapGraphBuilder(nn.Module):
    """Builds the module-map graph of one event.

    Args:
        module_map: the :class:`ModuleMap`.
        pair_chunk: candidate hit pairs examined at once (memory knob); 0 (default): ``CPU_CHUNK`` or
            ``CUDA_CHUNK`` by the device of the input.
        triplet_chunk: candidate (edge, triplet) rows examined at once (memory knob); 0: as above.

    Forward:
        positions: float32 [N, 6], spacepoint ``x, y, z, r, phi, eta`` (mm, rad).
        module_id: [N] dense module index, integer or float dtype (a float that is not an exact integer,
            or an index outside the map, leaves the hit isolated; they are counted in a warning and in
            ``last_unknown``).

    Returns:
        edge_index: int64 [2, E], inner (earlier) hit -> outer hit, grouped by map doublet.
        edge_attr: float32 [E, 6], :func:`gnn4itk.edge_features.edge_features`.
    """

    def __init__(self, module_map: ModuleMap, pair_chunk: int = 0, triplet_chunk: int = 0):
        super().__init__()
        self.pair_chunk = int(pair_chunk)
        self.triplet_chunk = int(triplet_chunk)
        self.cpu_chunk, self.cuda_chunk = CPU_CHUNK, CUDA_CHUNK  # attributes: TorchScript reads no globals
        self.deta_sign = deta_factor(module_map.attributes["deta_sign"])
        self.dydx_sign = dydx_factor(module_map.attributes["dydx_convention"])
        self.last_unknown = 0
        self.num_dense = int(module_map.module_index.max()) + 1 if module_map.num_modules else 0
        known = np.zeros(self.num_dense + 1, dtype=bool)
        known[module_map.module_index] = True

        d = module_map.doublets
        d_m1, d_m2 = d["Module1"].astype(np.int64), d["Module2"].astype(np.int64)
        d_order = np.lexsort((d_m2, d_m1))
        d_m1, d_m2 = d_m1[d_order], d_m2[d_order]
        d_low, d_high = map_windows(module_map, "doublets")
        d_keys = d_m1 * self.num_dense + d_m2

        t = module_map.triplets
        t_m1, t_m2, t_m3 = (t[c].astype(np.int64) for c in ("Module1", "Module2", "Module3"))
        t_low, t_high = map_windows(module_map, "triplets")

        def doublet_of(a, b):
            key = a * self.num_dense + b
            pos = np.clip(np.searchsorted(d_keys, key), 0, max(len(d_keys) - 1, 0))
            found = (d_keys[pos] == key) if len(d_keys) else np.zeros(len(key), bool)
            return pos, found

        d12, ok12 = doublet_of(t_m1, t_m2)
        d23, ok23 = doublet_of(t_m2, t_m3)
        usable = ok12 & ok23
        self.orphan_triplets = int((~usable).sum())
        if self.orphan_triplets:
            warnings.warn(f"{self.orphan_triplets} map triplets have a pair that is not a map doublet; ignored")
        t_order = np.flatnonzero(usable)[np.argsort(d12[usable], kind="stable")]
        d12, d23 = d12[t_order], d23[t_order]
        t_low, t_high = t_low[t_order], t_high[t_order]

        def buffer(name, array):
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array)))

        buffer("known", known)
        buffer("d_m1", d_m1)
        buffer("d_m2", d_m2)
        buffer("d_low", d_low[d_order].T)  # feature-major [4, D], see _columns
        buffer("d_high", d_high[d_order].T)
        # the eta range of a doublet's second hit, relative to the first hit's eta (float64, exact):
        # eta_b in [eta_a + d_eta_from, eta_a + d_eta_to]; and the doublet's block of the sort key
        deta_low, deta_high = d_low[d_order][:, 3].astype(np.float64), d_high[d_order][:, 3].astype(np.float64)
        if self.deta_sign > 0:  # deta = eta_a - eta_b
            buffer("d_eta_from", -deta_high)
            buffer("d_eta_to", -deta_low)
        else:
            buffer("d_eta_from", deta_low)
            buffer("d_eta_to", deta_high)
        buffer("d_block", d_m2.astype(np.float64) * _KEY_BLOCK)
        buffer("t_d12", d12.astype(np.int64))
        buffer("t_d23", d23.astype(np.int64))
        buffer("t_low12", t_low[:, 0:4].T)  # feature-major [F, T]
        buffer("t_high12", t_high[:, 0:4].T)
        buffer("t_low23", t_low[:, 4:8].T)
        buffer("t_high23", t_high[:, 4:8].T)
        buffer("t_lowx", t_low[:, 8:10].T)
        buffer("t_highx", t_high[:, 8:10].T)

    # ------------------------------------------------------------------ steps
    def dense_module(self, module_id: torch.Tensor) -> torch.Tensor:
        """int64 [N]: the dense index of each hit, or ``num_dense`` for hits the map cannot place."""
        if module_id.is_floating_point():
            rounded = torch.round(module_id)
            valid = (rounded == module_id) & (module_id >= 0) & (module_id < self.num_dense)
            index = torch.where(valid, rounded, torch.zeros_like(rounded)).to(torch.int64)
        else:
            index = module_id.to(torch.int64)
            valid = (index >= 0) & (index < self.num_dense)
            index = torch.where(valid, index, torch.zeros_like(index))
        valid = valid & self.known[index]
        return torch.where(valid, index, torch.full_like(index, self.num_dense))

    def doublet_edges(self, pos: torch.Tensor, sort_key: torch.Tensor, counts: torch.Tensor,
                      starts: torch.Tensor, chunk: int) -> List[torch.Tensor]:
        """Pairs passing their doublet windows: [src, dst, doublet, quantities [4, E]] in sorted-hit space.

        ``pos`` is feature-major float32 [6, N] (``x, y, z, r, phi, eta`` rows), hits sorted by ``sort_key``.

        Hits are sorted by (module, eta). For each doublet and each hit a of its first module, the hits b
        of the second module whose eta can satisfy the deta window form a contiguous range, found by
        binary search on ``sort_key`` (the range is widened by 1e-6 so that rounding never drops a pair).
        Only those pairs are expanded and tested with every doublet window, in float32.
        """
        device = pos.device
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        nrows = counts[self.d_m1]
        cum = torch.cumsum(nrows, 0)
        total = int(cum[-1]) if cum.numel() > 0 else 0
        if total == 0:
            return [empty, empty, empty, torch.zeros((4, 0), dtype=torch.float32, device=device)]
        excl = cum - nrows
        first_hit = starts[self.d_m1]
        plan = _chunk_plan(cum, total, chunk)
        bounds, sizes = plan[0], plan[1]
        srcs: List[torch.Tensor] = []
        dsts: List[torch.Tensor] = []
        dbls: List[torch.Tensor] = []
        qs: List[torch.Tensor] = []
        for k in range(len(bounds) - 1):
            size = sizes[k + 1] - sizes[k]
            if size == 0:
                continue
            dbl, rank = _expand(nrows, bounds[k], bounds[k + 1], excl, size)
            a = first_hit[dbl] + rank
            eta = pos[5][a].to(torch.float64)
            low = eta + self.d_eta_from[dbl]
            high = eta + self.d_eta_to[dbl]
            block = self.d_block[dbl]
            first = torch.searchsorted(sort_key, block + _key_offset(low - 1e-6))
            last = torch.searchsorted(sort_key, block + _key_offset(high + 1e-6), right=True)
            nb = torch.clamp(last - first, min=0)
            cum2 = torch.cumsum(nb, 0)
            total2 = int(cum2[-1])
            if total2 == 0:
                continue
            excl2 = cum2 - nb
            plan2 = _chunk_plan(cum2, total2, chunk)
            bounds2, sizes2 = plan2[0], plan2[1]
            for m in range(len(bounds2) - 1):
                size2 = sizes2[m + 1] - sizes2[m]
                if size2 == 0:
                    continue
                row, rank2 = _expand(nb, bounds2[m], bounds2[m + 1], excl2, size2)
                pa = a[row]
                pb = first[row] + rank2
                pd = dbl[row]
                zrpe = pos[2:6]  # z, r, phi, eta: all that the pair quantities read
                q = pair_quantities_feature_major(_columns(zrpe, pa), _columns(zrpe, pb), self.deta_sign)
                keep = torch.nonzero(_inside(q, _columns(self.d_low, pd), _columns(self.d_high, pd))).squeeze(1)
                srcs.append(pa[keep])
                dsts.append(pb[keep])
                dbls.append(pd[keep])
                qs.append(q[:, keep])
        if len(srcs) == 0:
            return [empty, empty, empty, torch.zeros((4, 0), dtype=torch.float32, device=device)]
        if len(srcs) == 1:  # one chunk: no copy
            return [srcs[0], dsts[0], dbls[0], qs[0]]
        return [torch.cat(srcs), torch.cat(dsts), torch.cat(dbls), torch.cat(qs, dim=1)]

    def _pair_side(self, q_sorted: torch.Tensor, sorted_key: torch.Tensor, by_dphi: torch.Tensor,
                   doublet: torch.Tensor, low: torch.Tensor, high: torch.Tensor, chunk: int) -> List[torch.Tensor]:
        """(edge, triplet) pairs where the edge is in the triplet's ``doublet`` and inside its ``low``/``high``
        pair windows [4, T]. Edges are in (doublet, dphi) order: ``sorted_key`` [E], their quantities
        ``q_sorted`` [4, E] and edge ids ``by_dphi`` [E]. A triplet's candidates are found by binary search
        on dphi (widened by 1e-6), then every window is tested exactly."""
        device = q_sorted.device
        block = doublet.to(torch.float64) * 8.0
        first = torch.searchsorted(sorted_key, block + _dphi_offset(low[1].to(torch.float64) - 1e-6))
        last = torch.searchsorted(sorted_key, block + _dphi_offset(high[1].to(torch.float64) + 1e-6), right=True)
        count = torch.clamp(last - first, min=0)
        cum = torch.cumsum(count, 0)
        total = int(cum[-1]) if cum.numel() > 0 else 0
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        edges: List[torch.Tensor] = []
        trips: List[torch.Tensor] = []
        if total == 0:
            return [empty, empty]
        excl = cum - count
        plan = _chunk_plan(cum, total, chunk)
        bounds, sizes = plan[0], plan[1]
        for k in range(len(bounds) - 1):
            size = sizes[k + 1] - sizes[k]
            if size == 0:
                continue
            trip, rank = _expand(count, bounds[k], bounds[k + 1], excl, size)
            slot = first[trip] + rank
            keep = torch.nonzero(_inside(_columns(q_sorted, slot), _columns(low, trip), _columns(high, trip))).squeeze(1)
            edges.append(by_dphi[slot[keep]])
            trips.append(trip[keep])
        if len(edges) == 0:
            return [empty, empty]
        if len(edges) == 1:  # one chunk: no copy
            return [edges[0], trips[0]]
        return [torch.cat(edges), torch.cat(trips)]

    def triplet_support(self, pos: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, dbl: torch.Tensor,
                        q: torch.Tensor, chunk: int) -> torch.Tensor:
        """bool [E]: edges that are the first or second pair of a triplet passing all its windows.

        Both pairs are matched to triplets separately ((a -> b, t) inside t's 12 windows, (b -> c, t) inside
        its 23 windows), then joined on (t, b) by sorting and binary search; ``diff_dydx`` and
        ``diff_dzdr`` are computed only for the joined rows.
        """
        n = pos.size(1)  # hits (pos is feature-major [6, N])
        support = torch.zeros(src.size(0), dtype=torch.int32, device=pos.device)
        if src.numel() == 0 or self.t_d12.numel() == 0:
            return support > 0
        sorted_key, by_dphi = torch.sort(dbl.to(torch.float64) * 8.0 + _dphi_offset(q[1].to(torch.float64)))
        q_sorted = _columns(q, by_dphi)
        side_a = self._pair_side(q_sorted, sorted_key, by_dphi, self.t_d12, self.t_low12, self.t_high12, chunk)
        side_b = self._pair_side(q_sorted, sorted_key, by_dphi, self.t_d23, self.t_low23, self.t_high23, chunk)
        e1, t1, e2, t2 = side_a[0], side_a[1], side_b[0], side_b[1]
        if e1.numel() == 0 or e2.numel() == 0:
            return support > 0
        # per-edge slopes: the triplet differences then need no positions (bit-identical to
        # triplet_quantities, which forms the same quotients; MMG's dx12 = x1 - x2 is an exact negation)
        p_src = _columns(pos, src)
        p_dst = _columns(pos, dst)
        sxy, hxy = slope(p_dst[1] - p_src[1], p_dst[0] - p_src[0])
        srz, hrz = slope(p_dst[2] - p_src[2], p_dst[3] - p_src[3])
        # [2, E] tables (dydx row, dzdr row): one gather and one slope_difference serve both quantities
        slope_first = torch.stack([sxy * self.dydx_sign, srz])
        slope_second = torch.stack([sxy, srz])
        has_slope = torch.stack([hxy, hrz])
        key_b, order_b = torch.sort(t2 * n + src[e2])
        e2 = e2[order_b]  # side b in join-key order
        key_a = t1 * n + dst[e1]
        first = torch.searchsorted(key_b, key_a)
        count = torch.searchsorted(key_b, key_a, right=True) - first
        cum = torch.cumsum(count, 0)
        total = int(cum[-1])
        if total == 0:
            return support > 0
        excl = cum - count
        plan = _chunk_plan(cum, total, chunk)
        bounds, sizes = plan[0], plan[1]
        for k in range(len(bounds) - 1):
            size = sizes[k + 1] - sizes[k]
            if size == 0:
                continue
            row, rank = _expand(count, bounds[k], bounds[k + 1], excl, size)
            a_edge = e1[row]
            b_edge = e2[first[row] + rank]
            t = t1[row]
            x = slope_difference(_columns(slope_first, a_edge), _columns(has_slope, a_edge),
                                 _columns(slope_second, b_edge), _columns(has_slope, b_edge))  # [2, R]
            hits = _inside(x, _columns(self.t_lowx, t), _columns(self.t_highx, t)).to(torch.int32)
            support.index_add_(0, a_edge, hits)
            support.index_add_(0, b_edge, hits)
        return support > 0

    def forward(self, positions: torch.Tensor, module_id: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() != 2 or positions.size(1) != 6 or positions.dtype != torch.float32:
            raise ValueError("positions must be float32 [N, 6] with columns x, y, z, r, phi, eta")
        if module_id.dim() != 1 or module_id.size(0) != positions.size(0):
            raise ValueError("module_id must be [N], one per spacepoint")
        module = self.dense_module(module_id)
        unknown = int((module == self.num_dense).sum())
        self.last_unknown = unknown
        if unknown > 0:
            warnings.warn("module map graph: {} of {} spacepoints are in modules unknown to the map (or have a "
                          "non-integer module id); they stay isolated".format(unknown, positions.size(0)))
        key = module.to(torch.float64) * 64.0 + _key_offset(positions[:, 5].to(torch.float64))
        key, order = torch.sort(key)
        counts = torch.bincount(module, minlength=self.num_dense + 1)
        starts = torch.cumsum(counts, 0) - counts
        default_chunk = self.cuda_chunk if positions.is_cuda else self.cpu_chunk
        pair_chunk = self.pair_chunk if self.pair_chunk > 0 else default_chunk
        triplet_chunk = self.triplet_chunk if self.triplet_chunk > 0 else default_chunk
        pos = _columns(positions.t(), order)  # feature-major [6, N], hits in key order
        found = self.doublet_edges(pos, key, counts, starts, pair_chunk)
        src, dst, dbl, q = found[0], found[1], found[2], found[3]
        keep = self.triplet_support(pos, src, dst, dbl, q, triplet_chunk)
        edge_index = torch.stack([order[src[keep]], order[dst[keep]]])
        nodes = scaled_coordinates(positions[:, 3], positions[:, 4], positions[:, 2], positions[:, 5])
        return edge_index, edge_features(nodes, edge_index)


def build_graph(module_map: ModuleMap, event, device: str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """Convenience: the graph of a :class:`gnn4itk.event.Event` with an eager builder."""
    builder = ModuleMapGraphBuilder(module_map).to(device)
    positions = torch.from_numpy(event.hits[["x", "y", "z", "r", "phi", "eta"]].to_numpy(np.float32)).to(device)
    module_id = torch.from_numpy(event.hits["module_id"].to_numpy()).to(device)
    return builder(positions, module_id)
