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

1. Hits are sorted by (module, phi). For each map doublet and each hit a of its first module, the hits b
   of its second module whose phi can meet the dphi window are at most two contiguous ranges (two when
   the window crosses +-pi), found by one binary search; only those pairs are expanded. They are culled
   by the deta window (~30% pass at mu=200), and only the survivors get every doublet window.
2. Surviving edges are sorted by an exact int64 (doublet, dphi) key. For each triplet side (first pair
   with the 12 windows, second pair with the 23 windows; one table of both sides, built once), the
   edges of its doublet inside the side's dphi window are exactly one key range; they are tested with
   the other three pair windows (failures flagged, not compacted).
3. The two sides are joined on (triplet, middle hit) by sorting and binary search. Joined rows are
   culled by ``diff_dzdr`` (2-15% pass), read from per-match tables; ``diff_dydx`` is tested on the
   survivors only. An edge is kept if it is either pair of a passing row.

Every expansion is chunked (``pair_chunk``, ``triplet_chunk`` rows) by one helper
(:func:`module_map.expansion.chunks`), so peak memory is set by the chunk sizes and the number of (edge,
triplet) matches, not by the candidate count. Host syncs (each one drains the GPU queue) are one per size the host must know: with one chunk
per stage, 7 per call.

Host cost: on CUDA a mu=200 call is about 240 torch ops, and the host's cost per op is a large part of the
time, so every gather is :func:`gnn4itk.gather.take` (the cheapest kind per device; tables feature-major),
and expansions avoid ``repeat_interleave`` on CUDA (:func:`module_map.expansion.expand`).

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
from gnn4itk.gather import take
from gnn4itk.ordering import float_order_key
from module_map.container import ModuleMap
from module_map.expansion import chunks, expand, joined, where_nonzero
from module_map.quantities import (deta_factor, dydx_factor, pair_quantities_feature_major, quantity_constants, slope,
                                   slope_difference)
from module_map.search_tables import search_tables


# The (module, phi) key of the hits: module_map.search_tables describes it and holds its constants, which
# the two functions below repeat as literals (TorchScript reads no globals).


def _offset(angle: torch.Tensor) -> torch.Tensor:
    """float64: position of ``angle`` (float64) inside its key block (monotone, clamped)."""
    return torch.clamp(angle + 4.0, 0.0, 7.5)  # OFFSET, OFFSET_MAX of module_map.search_tables


def _block_key(block: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """float64 [K]: the search key of ``angle`` (float64 [K]) in key block ``block`` (int64 [K])."""
    return block.to(torch.float64) * 8.0 + _offset(angle)  # 8.0: search_tables.BLOCK


def _inside(values: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """bool [R]: every feature of ``values`` [F, R] inside its window; ``windows`` [2F, R] holds the
    F lower bounds, then the F upper bounds (feature-major)."""
    f = values.size(0)
    return ((values >= windows[:f]) & (values <= windows[f:])).all(dim=0)


def _between(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """bool [R]: ``low <= values <= high``, all [R]."""
    return (values >= low) & (values <= high)


def _slopes_or_nan(num: torch.Tensor, den: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """float32, shape of ``num``: ``num / den``, NaN where ``den == 0`` (no slope). With finite
    positions a real slope is never NaN, so one table holds both the value and :func:`slope`'s mask.
    ``constants``: :func:`module_map.quantities.quantity_constants`."""
    value, has = slope(num, den, constants)
    return torch.where(has, value, float("nan"))


def _slope_difference_nan(q12: torch.Tensor, q23: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """:func:`slope_difference` of NaN-coded slopes (:func:`_slopes_or_nan`), float32, any shape."""
    return slope_difference(q12, q12 == q12, q23, q23 == q23, constants)


CPU_CHUNK = 1 << 20
"""Default chunk rows on the CPU (cache-sized work per step): 1M rows ran 1.2-1.5x faster than 4M on
the 2-core build machine, with a hard-gun map on a Pythia8 event, the default map on the demo event and
a 2M-particle all-pT map on a synthetic mu=200 event."""
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
        edge_index: int64 [2, E], inner (earlier) hit -> outer hit, in the order (map doublet, inner hit)
            within each pair chunk, except the pairs found across phi = +-pi, which close their chunk.
        edge_attr: float32 [E, 6], :func:`gnn4itk.edge_features.edge_features`.
    """

    def __init__(self, module_map: ModuleMap, pair_chunk: int = 0, triplet_chunk: int = 0):
        super().__init__()
        self.pair_chunk = int(pair_chunk)
        self.triplet_chunk = int(triplet_chunk)
        self.cpu_chunk, self.cuda_chunk = CPU_CHUNK, CUDA_CHUNK  # attributes: TorchScript reads no globals
        # compact the side matches before the join on the CPU (1.15x faster there) and on CUDA above
        # compaction_rows matches (two more host syncs); host_compaction=False keeps the failed matches
        # flagged everywhere (the CUDA path below compaction_rows), for tests
        self.host_compaction = True
        self.compaction_rows = 1 << 23
        self.deta_sign = deta_factor(module_map.attributes["deta_sign"])
        self.dydx_sign = dydx_factor(module_map.attributes["dydx_convention"])
        self.last_unknown = 0
        tables = search_tables(module_map, self.dydx_sign)
        self.num_dense, self.num_doublets = tables.num_dense, tables.num_doublets
        self.num_triplets, self.orphan_triplets = tables.num_triplets, tables.orphan_triplets
        for name, array in tables.buffers.items():
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array)))
        # the quantities' float32 constants, made once: no fill kernels per call
        self.register_buffer("constants", quantity_constants(torch.device("cpu")))

    # ------------------------------------------------------------------ steps
    def dense_module(self, module_id: torch.Tensor) -> torch.Tensor:
        """int64 [N]: the dense index of each hit, or ``num_dense`` for hits the map cannot place."""
        if module_id.is_floating_point():
            rounded = torch.round(module_id)
            # non-integers (NaN too) become -1; clamping first keeps huge floats inside int64
            whole = torch.where(rounded == module_id, rounded, -1.0)
            index = torch.clamp(whole, -1.0, float(self.num_dense)).to(torch.int64)
        else:
            index = torch.clamp(module_id.to(torch.int64), -1, self.num_dense)
        return take(self.dense_of, index + 1)

    def doublet_edges(self, pos: torch.Tensor, phi: torch.Tensor, key: torch.Tensor, first_hit: torch.Tensor, nrows: torch.Tensor,
                      cum: torch.Tensor, total: int, chunk: int) -> List[torch.Tensor]:
        """Candidate edges: [pairs (int64 [2, E]: src, dst), doublet (int64 [E]), quantities (float32
        [4, E]), passes (bool [E])] in sorted-hit space; ``passes`` flags the pairs inside every window
        of their doublet (all pass the deta window).

        ``pos`` is feature-major float32 [6, N] (``x, y, z, r, phi, eta`` rows), hits sorted by ``key``
        (float64 [N], (module, phi)); ``phi`` (float64 [N]) is the phi of the key, in [-pi, pi]; doublet ``k`` has ``nrows[k]`` first hits starting at sorted hit
        ``first_hit[k]`` (int64 [D]); ``cum`` = cumsum(nrows), ``total`` its last value.

        For each doublet and each hit a of its first module, the hits b of the second module whose phi
        can satisfy the dphi window (widened by the slack) are one key range, or two where the window
        crosses +-pi: the part beyond is searched again shifted by -+2 pi (a window narrower than pi
        crosses at most one side). The four range ends come from one binary search. Those pairs are
        culled by the deta window, the survivors tested with every doublet window, in float32.
        """
        device = pos.device
        base = first_hit - (cum - nrows)
        zrpe = pos[2:6]  # z, r, phi, eta: all that the pair quantities read
        pairs: List[torch.Tensor] = []
        dbls: List[torch.Tensor] = []
        qs: List[torch.Tensor] = []
        passes: List[torch.Tensor] = []
        for first_item, end_item, before, size in chunks(cum, total, chunk):
            dbl, a = expand(nrows, cum, first_item, end_item, before, size, base)
            search = take(self.d_search, dbl)  # float64 [4, R]: block, start, end, shift
            phi_a = take(phi, a)
            start, end = phi_a + search[1], phi_a + search[2]  # b's phi + 4 must lie in [start, end]
            # a second range 2 pi lower where the window may pass +pi, else 2 pi higher (search_tables.phi_search_table)
            shift = torch.where(end >= 4.0 + 0.5 * math.pi, search[3], -search[3])  # 4.0: search_tables.OFFSET
            # [4, R]: the firsts of both ranges, then their ends. Range-major (stacked along dim 0): a
            # row-major [R, 4] stack was several times slower on CUDA, its strided writes the cost
            # (docs/benchmarks.md, figures moved from code).
            ends = torch.stack([start, start - shift, end, end - shift])
            found = torch.searchsorted(key, search[0] + torch.clamp(ends, 0.0, 7.5))  # left: ends exclusive
            first = found[0:2].reshape(-1)  # [2R]: item k R + i is range k of row i
            nb = found[2:4].reshape(-1) - first
            cum2 = torch.cumsum(nb, 0)
            total2 = int(cum2[-1])
            base2 = first - (cum2 - nb)
            num_rows = dbl.size(0)
            for first_row, end_row, before2, size2 in chunks(cum2, total2, chunk):
                item, pb = expand(nb, cum2, first_row, end_row, before2, size2, base2)
                row = torch.where(item >= num_rows, item - num_rows, item)
                pa, pd = take(a, row), take(dbl, row)
                eta_a, eta_b = take(pos[5], pa), take(pos[5], pb)
                deta = eta_a - eta_b if self.deta_sign > 0 else eta_b - eta_a  # as pair_quantities
                deta_window = take(self.d_windows[3::4], pd)  # [2, R]: low, high
                near = where_nonzero(_between(deta, deta_window[0], deta_window[1]))
                pa, pb, pd = take(pa, near), take(pb, near), take(pd, near)
                q = pair_quantities_feature_major(take(zrpe, pa), take(zrpe, pb), self.deta_sign, self.constants)
                # most deta survivors pass every window: flag them instead of compacting (no sync)
                passes.append(_inside(q, take(self.d_windows, pd)))
                pairs.append(torch.stack([pa, pb]))
                dbls.append(pd)
                qs.append(q)
        return [joined(pairs, 2, torch.int64, device), joined(dbls, 0, torch.int64, device),
                joined(qs, 4, torch.float32, device), joined(passes, 0, torch.bool, device)]

    def side_matches(self, dbl: torch.Tensor, q: torch.Tensor, valid: torch.Tensor, chunk: int) -> Tuple[List[torch.Tensor], int]:
        """(edge, triplet side) pairs where edge ``e`` (doublet ``dbl`` int64 [E], quantities ``q``
        float32 [4, E]) is in the side's doublet and inside its dphi window.

        Only edges flagged ``valid`` (bool [E]) are candidates. Returns ([edge (int64 [M]), side (int64
        [M], in [0, 2T)), passes (bool [M]: inside the other three pair windows of the side too)],
        first-pair count): rows sorted by side, so the first-pair rows (sides < T) come first.

        Edges are sorted by the int64 key (doublet, dphi as an order-preserving integer), so a side's
        edges inside its dphi window are exactly one range of that key (binary search, no slack and no
        dphi test). z0, phi_slope and deta are tested on every row and failures only flagged: z0
        passes ~64% at mu=200 and all three ~60%, too many for a compaction (a host sync, and another
        to find the first-pair count) to pay off.
        """
        device = q.device
        # invalid edges go to a block after every doublet's, which no search range reaches
        key = torch.where(valid, dbl * 17179869184 + float_order_key(q[1]), (self.num_doublets + 1) * 17179869184)  # << 34
        sorted_key, by_dphi = torch.sort(key)
        q_sorted = take(torch.cat([q[0:1], q[2:4]]), by_dphi)  # [3, E]: z0, phi_slope, deta
        found = torch.searchsorted(sorted_key, self.side_keys)  # [2, 2T]: first, end (exclusive)
        count = found[1] - found[0]
        cum = torch.cumsum(count, 0)
        # one host sync for all candidate rows and those of the first pairs (sides before T)
        sizes: List[int] = torch.stack([cum[-1], cum[self.num_triplets - 1]]).tolist()
        total, n_first = sizes[0], sizes[1]
        base = found[0] - (cum - count)
        edges: List[torch.Tensor] = []
        sides: List[torch.Tensor] = []
        passes: List[torch.Tensor] = []
        for first_item, end_item, before, size in chunks(cum, total, chunk):
            side, slot = expand(count, cum, first_item, end_item, before, size, base)
            passes.append(_inside(take(q_sorted, slot), take(self.side_windows, side)))
            edges.append(take(by_dphi, slot))
            sides.append(side)
        matches = [joined(edges, 0, torch.int64, device), joined(sides, 0, torch.int64, device),
                   joined(passes, 0, torch.bool, device)]
        return matches, n_first

    def triplet_support(self, pos: torch.Tensor, pairs: torch.Tensor, dbl: torch.Tensor, q: torch.Tensor,
                        valid: torch.Tensor, chunk: int) -> torch.Tensor:
        """bool [E]: edges (``pairs`` int64 [2, E], sorted-hit src and dst) that are the first or second
        pair of a triplet passing all its windows.

        Both pairs are matched to triplet sides (:meth:`side_matches`), then joined on (triplet, middle
        hit) by sorting and binary search. Joined rows are culled with ``diff_dzdr`` (per-match tables:
        nearly sequential reads); ``diff_dydx`` is formed for the survivors only.
        """
        n = pos.size(1)  # hits (pos is feature-major [6, N])
        support = torch.zeros(pairs.size(1), dtype=torch.int32, device=pos.device)
        if pairs.size(1) == 0 or self.num_triplets == 0:
            return support > 0
        matches, n_first = self.side_matches(dbl, q, valid, chunk)
        edge, side, passes = matches[0], matches[1], matches[2]
        e1, t1, pass1 = edge[:n_first], side[:n_first], passes[:n_first]
        e2, t2, pass2 = edge[n_first:], side[n_first:] - self.num_triplets, passes[n_first:]
        # drop the failed matches before the join where that is cheap: on the CPU (no host sync to save)
        # and where there are so many that the join's work outweighs two syncs
        if self.host_compaction and (not pos.is_cuda or edge.size(0) > self.compaction_rows):
            keep1, keep2 = where_nonzero(pass1), where_nonzero(pass2)
            e1, t1, pass1 = take(e1, keep1), take(t1, keep1), take(pass1, keep1)
            e2, t2, pass2 = take(e2, keep2), take(t2, keep2), take(pass2, keep2)
        if e1.numel() == 0 or e2.numel() == 0:
            return support > 0
        src, dst = pairs[0], pairs[1]
        # per-edge slopes dy/dx and dz/dr, NaN where none: the triplet differences then need no
        # positions (bit-identical to triplet_quantities, which forms the same quotients; MMG's
        # dx12 = x1 - x2 is an exact negation, applied to the first pair's row)
        delta = take(pos[0:4], dst) - take(pos[0:4], src)  # [4, E]: dx, dy, dz, dr
        slopes = _slopes_or_nan(delta[1:3], delta[0::3], self.constants)  # [2, E]: dy/dx, dz/dr
        # failed matches: key -1 on side b (never equal to a key of side a), no rows on side a
        key_b, order_b = torch.sort(torch.where(pass2, t2 * n + take(src, e2), -1))
        e2 = take(e2, order_b)  # second pairs in join-key order
        key_a = t1 * n + take(dst, e1)
        first = torch.searchsorted(key_b, key_a)
        count = torch.where(pass1, torch.searchsorted(key_b, key_a, right=True) - first, 0)
        cum = torch.cumsum(count, 0)
        total = int(cum[-1])
        base = first - (cum - count)
        # per-match tables of what every joined row reads (rows of one first-pair match are adjacent)
        rz_a, rz_b = take(slopes[1], e1), take(slopes[1], e2)  # NaN where no slope
        dzdr_window = take(self.t_extra[1::2], t1)  # [2, M1]: low, high
        first_slopes = slopes * self.first_slope_sign
        for first_item, end_item, before, size in chunks(cum, total, chunk):
            row, b_slot = expand(count, cum, first_item, end_item, before, size, base)
            # cull: where both slopes exist diff_dzdr is their plain difference; NaN (a slope missing,
            # or inf - inf) rows go on to the exact test
            dzdr = take(rz_a, row) - take(rz_b, b_slot)
            dzdr_low, dzdr_high = take(dzdr_window[0], row), take(dzdr_window[1], row)
            near = where_nonzero(_between(dzdr, dzdr_low, dzdr_high) | (dzdr != dzdr))
            row, b_slot = take(row, near), take(b_slot, near)
            a_edge, b_edge = take(e1, row), take(e2, b_slot)
            x = _slope_difference_nan(take(first_slopes, a_edge), take(slopes, b_edge), self.constants)  # [2, R]
            hits = _inside(x, take(self.t_extra, take(t1, row))).to(torch.int32)
            support.index_add_(0, a_edge, hits)
            support.index_add_(0, b_edge, hits)
        return support > 0

    def forward(self, positions: torch.Tensor, module_id: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() != 2 or positions.size(1) != 6 or positions.dtype != torch.float32:
            raise ValueError("positions must be float32 [N, 6] with columns x, y, z, r, phi, eta")
        if module_id.dim() != 1 or module_id.size(0) != positions.size(0):
            raise ValueError("module_id must be [N], one per spacepoint")
        module = self.dense_module(module_id)
        # the keys need phi in [-pi, pi]; another range (e.g. [0, 2 pi)) is moved by 2 pi k for the keys
        # only: the window tests use the inputs, whose dphi wraps once as before
        phi = torch.remainder(positions[:, 4].to(torch.float64) + math.pi, 2 * math.pi) - math.pi
        key, order = torch.sort(_block_key(module, phi))
        bounds = torch.searchsorted(key, self.module_bounds)  # [2D + 1], see __init__
        d = self.num_doublets
        first_hit = bounds[:d]
        nrows = bounds[d:2 * d] - first_hit
        cum = torch.cumsum(nrows, 0)
        # one host sync for the first expansion's size and the unknown-module count
        sizes: List[int] = torch.cat([cum[-1:], bounds[-1:]]).tolist()
        total = sizes[0] if len(sizes) == 2 else 0
        unknown = positions.size(0) - sizes[-1]
        self.last_unknown = unknown
        if unknown > 0:
            warnings.warn("module map graph: {} of {} spacepoints are in modules unknown to the map (or have a "
                          "non-integer module id); they stay isolated".format(unknown, positions.size(0)))
        default_chunk = self.cuda_chunk if positions.is_cuda else self.cpu_chunk
        pair_chunk = self.pair_chunk if self.pair_chunk > 0 else default_chunk
        triplet_chunk = self.triplet_chunk if self.triplet_chunk > 0 else default_chunk
        pos = take(positions.t(), order)  # feature-major [6, N], hits in key order
        found = self.doublet_edges(pos, take(phi, order), key, first_hit, nrows, cum, total, pair_chunk)
        pairs, dbl, q, valid = found[0], found[1], found[2], found[3]
        keep = where_nonzero(self.triplet_support(pos, pairs, dbl, q, valid, triplet_chunk))
        edge_index = order[pairs[:, keep]]
        nodes = scaled_coordinates(positions[:, 3], positions[:, 4], positions[:, 2], positions[:, 5])
        return edge_index, edge_features(nodes, edge_index)
