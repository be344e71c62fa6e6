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
   pairs are expanded (``repeat_interleave``). They are culled by the dphi window first (the selective
   one: ~30% pass at mu=200), and only the survivors get every doublet window.
2. Surviving edges are sorted by (doublet, dphi). For each triplet side (first pair with the 12
   windows, second pair with the 23 windows; one table of both sides, built once), the edges of its
   doublet whose dphi can meet the side's window are a contiguous range; they are tested with all four
   pair windows in one pass.
3. The two sides are joined on (triplet, middle hit) by sorting and binary search. Joined rows are
   culled by ``diff_dzdr`` (2-15% pass), read from per-match tables; ``diff_dydx`` is tested on the
   survivors only. An edge is kept if it is either pair of a passing row.

Every expansion is chunked (``pair_chunk``, ``triplet_chunk`` rows) by one helper (:func:`_chunks`), so
peak memory is set by the chunk sizes and the number of (edge, triplet) matches, not by the candidate
count. Host syncs (each one drains the GPU queue) are one per size the host must know: with one chunk
per stage, 9 per call.

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


def _chunks(cum: torch.Tensor, total: int, chunk: int) -> List[Tuple[int, int, int, int]]:
    """Non-empty ranges ``(first item, end item, rows before, rows)`` of about ``chunk`` rows, for items
    with cumulative sizes ``cum`` (int64 [n]) summing to ``total`` (read by the caller, with its other
    sizes, in one host sync). One range, and no device work, when ``total <= chunk``.

    Every chunked expansion of the builder loops over these ranges and calls :func:`_expand` for each.
    """
    plan = _chunk_plan(cum, total, chunk)
    bounds, sizes = plan[0], plan[1]
    ranges: List[Tuple[int, int, int, int]] = []
    for k in range(len(bounds) - 1):
        if sizes[k + 1] > sizes[k]:
            ranges.append((bounds[k], bounds[k + 1], sizes[k], sizes[k + 1] - sizes[k]))
    return ranges


def _expand(counts: torch.Tensor, first_item: int, end_item: int, rows_before: int, rows: int,
            base: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Items ``first_item .. end_item-1`` repeated ``counts`` (int64 [n]) times.

    Returns (owner, slot), int64 [rows]: the item of each row and ``base[owner] + g``, g the row's
    index in the whole expansion. With ``base = start - excl`` (``excl`` the exclusive cumsum of
    ``counts``) the slot is ``start[owner] + rank within the owner``: the element a row stands for.
    """
    owner = torch.repeat_interleave(torch.arange(first_item, end_item, device=counts.device),
                                    counts[first_item:end_item], output_size=rows)
    slot = base[owner] + torch.arange(rows_before, rows_before + rows, device=counts.device)
    return owner, slot


def _joined(parts: List[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    """The chunk results ``parts`` concatenated along their last dimension (no copy for one chunk)."""
    if len(parts) == 0:
        return empty
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts, dim=-1)


def _where_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """int64 [K]: positions of the true entries of ``mask`` [R] (one host sync, as every compaction)."""
    return torch.nonzero(mask).squeeze(1)


_KEY_BLOCK = 64.0  # each module owns [64 m, 64 m + 64) of the (module, eta) sort key
_SEARCH_SLACK = 1e-6  # binary-search ranges are widened by this; the exact window test follows


def _key_offset(eta: torch.Tensor) -> torch.Tensor:
    """Position of an eta inside its module's key block (monotone, clamped into the block)."""
    return torch.clamp(eta + 32.0, 0.0, 63.0)


def _dphi_offset(dphi: torch.Tensor) -> torch.Tensor:
    """Position of a dphi inside its doublet's block of 8 in the (doublet, dphi) key (monotone, clamped)."""
    return torch.clamp(dphi + 4.0, 0.0, 7.5)


def _inside(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """bool [R]: every feature of ``values`` [F, R] inside ``[low, high]`` [F, R] (feature-major)."""
    return ((values >= low) & (values <= high)).all(dim=0)


def _between(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """bool [R]: ``low <= values <= high``, all [R]."""
    return (values >= low) & (values <= high)


def _columns(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[:, index]`` [F, R] of a feature-major table [F, K].

    Tables are kept feature-major on purpose: gathering rows of a [K, F] table whose rows are 16 bytes
    (``table[index]``, also ``index_select``) takes a vectorised slice-gather kernel on CUDA that ran
    ~50x slower than this element gather (H100, torch 2.11: 3.3 ms for 4M rows).
    """
    return table[:, index]


def _wrapped_dphi(phi1: torch.Tensor, phi2: torch.Tensor) -> torch.Tensor:
    """float32 [R]: ``phi2 - phi1`` wrapped once into [-pi, pi], with the operations of
    :func:`module_map.quantities.pair_quantities_feature_major` (bit-identical), for the dphi cull."""
    pi = torch.full((), math.pi, dtype=torch.float32, device=phi1.device)  # fills: torch.tensor would copy (a CUDA sync)
    two_pi = torch.full((), 2 * math.pi, dtype=torch.float32, device=phi1.device)
    dphi = phi2 - phi1
    return torch.where(dphi > pi, dphi - two_pi, torch.where(dphi < -pi, dphi + two_pi, dphi))


def _slope_or_nan(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """float32 [E]: ``num / den``, NaN where ``den == 0`` (no slope). With finite positions a real
    slope is never NaN, so one table holds both the value and :func:`slope`'s mask."""
    value, has = slope(num, den)
    return torch.where(has, value, torch.full_like(value, float("nan")))


def _slope_difference_nan(q12: torch.Tensor, q23: torch.Tensor) -> torch.Tensor:
    """:func:`slope_difference` of NaN-coded slopes (:func:`_slope_or_nan`), float32 [R]."""
    return slope_difference(q12, q12 == q12, q23, q23 == q23)


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
        d_low, d_high = d_low[d_order], d_high[d_order]
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
        self.num_triplets = len(t_order)

        def buffer(name, array):
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array)))

        buffer("known", known)
        buffer("d_m1", d_m1)
        buffer("d_low", d_low.T)  # feature-major [4, D], see _columns
        buffer("d_high", d_high.T)
        # Per-doublet search constants (float64, exact): the second hit's eta must lie in
        # [eta_a + from, eta_a + to]; its (module, eta) key in d_block + _key_offset(that range widened).
        deta_low, deta_high = d_low[:, 3].astype(np.float64), d_high[:, 3].astype(np.float64)
        eta_from, eta_to = (-deta_high, -deta_low) if self.deta_sign > 0 else (deta_low, deta_high)  # deta = eta_a - eta_b or eta_b - eta_a
        buffer("d_block", d_m2.astype(np.float64) * _KEY_BLOCK)
        buffer("d_eta_from", eta_from - _SEARCH_SLACK)
        buffer("d_eta_to", eta_to + _SEARCH_SLACK)
        # Triplet sides, both in one table of 2T rows: rows [0, T) are the first pairs (doublet d12, the
        # 12 windows), rows [T, 2T) the second pairs (d23, the 23 windows). Their (doublet, dphi) search
        # keys are map constants.
        side_doublet = np.concatenate([d12, d23]).astype(np.int64)
        side_low = np.concatenate([t_low[:, 0:4], t_low[:, 4:8]]).T  # feature-major [4, 2T]
        side_high = np.concatenate([t_high[:, 0:4], t_high[:, 4:8]]).T
        block = side_doublet.astype(np.float64) * 8.0
        buffer("side_low", side_low)
        buffer("side_high", side_high)
        buffer("side_key_from", block + np.clip(side_low[1].astype(np.float64) - _SEARCH_SLACK + 4.0, 0.0, 7.5))
        buffer("side_key_to", block + np.clip(side_high[1].astype(np.float64) + _SEARCH_SLACK + 4.0, 0.0, 7.5))
        buffer("t_lowx", t_low[:, 8:10].T)  # feature-major [2, T]: diff_dydx row, diff_dzdr row
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

    def doublet_edges(self, pos: torch.Tensor, sort_key: torch.Tensor, nrows: torch.Tensor, cum: torch.Tensor,
                      total: int, first_hit: torch.Tensor, chunk: int) -> List[torch.Tensor]:
        """Candidate edges: [src, dst, doublet (int64 [E]), quantities (float32 [4, E]), passes (bool [E])]
        in sorted-hit space; ``passes`` flags the pairs inside every window of their doublet.

        ``pos`` is feature-major float32 [6, N] (``x, y, z, r, phi, eta`` rows), hits sorted by
        ``sort_key`` (float64 [N], (module, eta)); doublet ``k`` has ``nrows[k]`` first hits starting at
        sorted hit ``first_hit[k]`` (int64 [D]); ``cum`` = cumsum(nrows), ``total`` its last value.

        For each doublet and each hit a of its first module, the hits b of the second module whose eta
        can satisfy the deta window form a contiguous range, found by binary search on ``sort_key``
        (widened by 1e-6 so that rounding never drops a pair). Those pairs are tested with the dphi
        window first (gathers of phi only), the survivors with every doublet window, in float32.
        """
        device = pos.device
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        if total == 0:
            return [empty, empty, empty, torch.zeros((4, 0), dtype=torch.float32, device=device),
                    torch.zeros(0, dtype=torch.bool, device=device)]
        base = first_hit - (cum - nrows)
        zrpe = pos[2:6]  # z, r, phi, eta: all that the pair quantities read
        srcs: List[torch.Tensor] = []
        dsts: List[torch.Tensor] = []
        dbls: List[torch.Tensor] = []
        qs: List[torch.Tensor] = []
        passes: List[torch.Tensor] = []
        for first_item, end_item, before, size in _chunks(cum, total, chunk):
            dbl, a = _expand(nrows, first_item, end_item, before, size, base)
            eta = pos[5][a].to(torch.float64)
            block = self.d_block[dbl]
            first = torch.searchsorted(sort_key, block + _key_offset(eta + self.d_eta_from[dbl]))
            last = torch.searchsorted(sort_key, block + _key_offset(eta + self.d_eta_to[dbl]), right=True)
            nb = torch.clamp(last - first, min=0)
            cum2 = torch.cumsum(nb, 0)
            total2 = int(cum2[-1])
            base2 = first - (cum2 - nb)
            phi_a = pos[4][a]
            dphi_low, dphi_high = self.d_low[1][dbl], self.d_high[1][dbl]
            for first_row, end_row, before2, size2 in _chunks(cum2, total2, chunk):
                row, pb = _expand(nb, first_row, end_row, before2, size2, base2)
                dphi = _wrapped_dphi(phi_a[row], pos[4][pb])
                near = _where_nonzero(_between(dphi, dphi_low[row], dphi_high[row]))
                row, pb = row[near], pb[near]
                pa, pd = a[row], dbl[row]
                q = pair_quantities_feature_major(_columns(zrpe, pa), _columns(zrpe, pb), self.deta_sign)
                # ~96% of the dphi survivors pass: flag them instead of compacting (no sync)
                passes.append(_inside(q, _columns(self.d_low, pd), _columns(self.d_high, pd)))
                srcs.append(pa)
                dsts.append(pb)
                dbls.append(pd)
                qs.append(q)
        return [_joined(srcs, empty), _joined(dsts, empty), _joined(dbls, empty),
                _joined(qs, torch.zeros((4, 0), dtype=torch.float32, device=device)),
                _joined(passes, torch.zeros(0, dtype=torch.bool, device=device))]

    def side_matches(self, dbl: torch.Tensor, q: torch.Tensor, valid: torch.Tensor, chunk: int) -> List[torch.Tensor]:
        """(edge, triplet side) pairs where edge ``e`` (doublet ``dbl`` int64 [E], quantities ``q``
        float32 [4, E]) is in the side's doublet and inside its four pair windows.

        Only edges flagged ``valid`` (bool [E]) can match. Returns [edge (int64 [M]), side (int64 [M], in
        [0, 2T)), passes (bool [M]), first-pair count (int64 [1])], sorted by side, so the first-pair
        matches (sides < T) come first; rows that passed the z0 window but not all four are kept,
        flagged ``passes = False`` (cheaper than a second compaction). Edges are sorted by (doublet, dphi);
        a side's candidates are found by binary search on that key (widened by 1e-6), then tested
        exactly."""
        device = q.device
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        key = dbl.to(torch.float64) * 8.0 + _dphi_offset(q[1].to(torch.float64))
        # invalid edges go to a block after every doublet's, which no search range reaches
        key = torch.where(valid, key, torch.full_like(key, 8.0 * (self.d_m1.size(0) + 1)))
        sorted_key, by_dphi = torch.sort(key)
        q_sorted = _columns(q, by_dphi)
        first = torch.searchsorted(sorted_key, self.side_key_from)
        count = torch.clamp(torch.searchsorted(sorted_key, self.side_key_to, right=True) - first, min=0)
        cum = torch.cumsum(count, 0)
        total = int(cum[-1])
        base = first - (cum - count)
        edges: List[torch.Tensor] = []
        sides: List[torch.Tensor] = []
        passes: List[torch.Tensor] = []
        for first_item, end_item, before, size in _chunks(cum, total, chunk):
            side, slot = _expand(count, first_item, end_item, before, size, base)
            # z0 first (55-70% pass at mu=200), then dphi, phi_slope, deta on the survivors
            near = _where_nonzero(_between(q_sorted[0][slot], self.side_low[0][side], self.side_high[0][side]))
            side, slot = side[near], slot[near]
            passes.append(_inside(_columns(q_sorted[1:], slot), _columns(self.side_low[1:], side),
                                  _columns(self.side_high[1:], side)))
            edges.append(by_dphi[slot])
            sides.append(side)
        side = _joined(sides, empty)
        first_pairs = torch.searchsorted(side, torch.full((1,), self.num_triplets, dtype=torch.int64, device=device))
        return [_joined(edges, empty), side, _joined(passes, torch.zeros(0, dtype=torch.bool, device=device)), first_pairs]

    def triplet_support(self, pos: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, dbl: torch.Tensor,
                        q: torch.Tensor, valid: torch.Tensor, chunk: int) -> torch.Tensor:
        """bool [E]: edges that are the first or second pair of a triplet passing all its windows.

        Both pairs are matched to triplet sides (:meth:`side_matches`), then joined on (triplet, middle
        hit) by sorting and binary search. Joined rows are culled with ``diff_dzdr`` (per-match tables:
        nearly sequential reads); ``diff_dydx`` is formed for the survivors only.
        """
        n = pos.size(1)  # hits (pos is feature-major [6, N])
        support = torch.zeros(src.size(0), dtype=torch.int32, device=pos.device)
        if src.numel() == 0 or self.num_triplets == 0:
            return support > 0
        matches = self.side_matches(dbl, q, valid, chunk)
        edge, side, passes = matches[0], matches[1], matches[2]
        n_first = int(matches[3])
        e1, t1, pass1 = edge[:n_first], side[:n_first], passes[:n_first]
        e2, t2, pass2 = edge[n_first:], side[n_first:] - self.num_triplets, passes[n_first:]
        if e1.numel() == 0 or e2.numel() == 0:
            return support > 0
        # per-edge slopes, NaN where none: the triplet differences then need no positions (bit-identical
        # to triplet_quantities, which forms the same quotients; MMG's dx12 = x1 - x2 is an exact negation)
        p_src = _columns(pos[0:4], src)  # x, y, z, r: all that the slopes read
        p_dst = _columns(pos[0:4], dst)
        slope_xy = _slope_or_nan(p_dst[1] - p_src[1], p_dst[0] - p_src[0])
        slope_rz = _slope_or_nan(p_dst[2] - p_src[2], p_dst[3] - p_src[3])
        # failed matches: key -1 on side b (never equal to a key of side a), no rows on side a
        key_b, order_b = torch.sort(torch.where(pass2, t2 * n + src[e2], torch.full_like(t2, -1)))
        e2 = e2[order_b]  # second pairs in join-key order
        key_a = t1 * n + dst[e1]
        first = torch.searchsorted(key_b, key_a)
        count = torch.where(pass1, torch.searchsorted(key_b, key_a, right=True) - first, torch.zeros_like(first))
        cum = torch.cumsum(count, 0)
        total = int(cum[-1])
        base = first - (cum - count)
        # per-match tables of what every joined row reads (rows of one first-pair match are adjacent)
        rz_a, rz_b = slope_rz[e1], slope_rz[e2]  # NaN where no slope
        dzdr_low, dzdr_high = self.t_lowx[1][t1], self.t_highx[1][t1]
        for first_item, end_item, before, size in _chunks(cum, total, chunk):
            row, b_slot = _expand(count, first_item, end_item, before, size, base)
            # cull: where both slopes exist diff_dzdr is their plain difference; NaN (a slope missing,
            # or inf - inf) rows go on to the exact test
            dzdr = rz_a[row] - rz_b[b_slot]
            near = _where_nonzero(_between(dzdr, dzdr_low[row], dzdr_high[row]) | (dzdr != dzdr))
            row, b_slot = row[near], b_slot[near]
            a_edge, b_edge, t = e1[row], e2[b_slot], t1[row]
            x = _slope_difference_nan(torch.stack([slope_xy[a_edge] * self.dydx_sign, slope_rz[a_edge]]),
                                      torch.stack([slope_xy[b_edge], slope_rz[b_edge]]))  # [2, R]
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
        key = module.to(torch.float64) * 64.0 + _key_offset(positions[:, 5].to(torch.float64))
        key, order = torch.sort(key)
        # per-module hit counts without bincount (which reads its maximum back to the host on CUDA)
        counts = torch.zeros(self.num_dense + 1, dtype=torch.int64, device=module.device)
        counts.scatter_add_(0, module, torch.ones_like(module))
        starts = torch.cumsum(counts, 0) - counts
        nrows = counts[self.d_m1]
        cum = torch.cumsum(nrows, 0)
        # one host sync for the first expansion's size and the unknown-module count
        sizes: List[int] = torch.cat([cum[-1:], counts[-1:]]).tolist()
        total = sizes[0] if len(sizes) == 2 else 0
        unknown = sizes[-1]
        self.last_unknown = unknown
        if unknown > 0:
            warnings.warn("module map graph: {} of {} spacepoints are in modules unknown to the map (or have a "
                          "non-integer module id); they stay isolated".format(unknown, positions.size(0)))
        default_chunk = self.cuda_chunk if positions.is_cuda else self.cpu_chunk
        pair_chunk = self.pair_chunk if self.pair_chunk > 0 else default_chunk
        triplet_chunk = self.triplet_chunk if self.triplet_chunk > 0 else default_chunk
        pos = _columns(positions.t(), order)  # feature-major [6, N], hits in key order
        found = self.doublet_edges(pos, key, nrows, cum, total, starts[self.d_m1], pair_chunk)
        src, dst, dbl, q, valid = found[0], found[1], found[2], found[3], found[4]
        keep = _where_nonzero(self.triplet_support(pos, src, dst, dbl, q, valid, triplet_chunk))
        edge_index = torch.stack([order[src[keep]], order[dst[keep]]])
        nodes = scaled_coordinates(positions[:, 3], positions[:, 4], positions[:, 2], positions[:, 5])
        return edge_index, edge_features(nodes, edge_index)


def build_graph(module_map: ModuleMap, event, device: str = "cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """Convenience: the graph of a :class:`gnn4itk.event.Event` with an eager builder."""
    builder = ModuleMapGraphBuilder(module_map).to(device)
    positions = torch.from_numpy(event.hits[["x", "y", "z", "r", "phi", "eta"]].to_numpy(np.float32)).to(device)
    module_id = torch.from_numpy(event.hits["module_id"].to_numpy()).to(device)
    return builder(positions, module_id)
