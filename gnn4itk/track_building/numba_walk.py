"""CPU track building with numba: the GNN4ITk service's way (host + JIT loops), same semantics.

The benchmark's CPU baseline: :func:`build_tracks_numba` gives exactly the output of
:func:`gnn4itk.track_building.reference.build_tracks_reference` for ``mode="cc_and_walk"`` and
``orient=False``, with every per-hit and per-edge loop compiled by numba (the ``bench`` extra). Instead
of enumerating every path from a start hit, it runs the equivalent longest-path DP over the hits the
start can reach (see ``docs/track_building.md``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gnn4itk.defaults import CC_CUT, WALK_MAX, WALK_MIN


def build_tracks_numba(edge_index, scores, hit_r2z2, cc_cut=CC_CUT, walk_min=WALK_MIN, walk_max=WALK_MAX):
    """CC + walkthrough on the host.

    Args:
        edge_index: int64 [2, E] directed inner -> outer; scores: float [E]; hit_r2z2: float [N].
        cc_cut, walk_min, walk_max: as for :class:`~gnn4itk.track_building.TrackBuilder`.

    Returns:
        ``labels`` int64 [L] and ``track_ids`` int64 [N], as the reference.
    """
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    scores = np.asarray(scores, dtype=np.float32).ravel()
    r2z2 = np.asarray(hit_r2z2, dtype=np.float32).ravel()
    num_hits = len(r2z2)
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= num_hits):
        raise ValueError(f"edge_index has row indices outside [0, {num_hits})")
    keep = (scores > np.float32(cc_cut)) & (edge_index[0] != edge_index[1])
    src, dst, score = edge_index[0][keep], edge_index[1][keep], scores[keep]
    track_of = _split_components(src, dst, num_hits)  # -1: walk hit, -2: no track
    walk = (track_of[src] == -1)
    src, dst, score = src[walk], dst[walk], score[walk]
    kept = _prune(src, dst, score, num_hits, np.float32(walk_min), np.float32(walk_max))
    track_of = np.where(track_of == -1, -2, track_of)
    _walk(src[kept], dst[kept], score[kept], num_hits, track_of)
    return _labels(track_of, r2z2)


def _labels(track_of, r2z2):
    """LABELS and track ids from per-hit track keys (< 0: none), as the reference orders them."""
    track_ids = np.full(len(r2z2), -1, dtype=np.int64)
    rows = np.flatnonzero(track_of >= 0)
    if len(rows) == 0:
        return np.array([-1], dtype=np.int64), track_ids
    keys, first, number = np.unique(track_of[rows], return_index=True, return_inverse=True)
    first_row = rows[first][number]  # rows ascend: the first occurrence is the smallest row
    order = np.lexsort((rows, r2z2[rows], first_row))
    rows, first_row = rows[order], first_row[order]
    track = np.cumsum(np.r_[True, first_row[1:] != first_row[:-1]]) - 1
    labels = np.full(len(rows) + len(keys), -1, dtype=np.int64)
    labels[np.arange(len(rows)) + track] = rows
    track_ids[rows] = track
    return labels, track_ids


@njit(cache=True)
def _find(parent, node):
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


@njit(cache=True)
def _split_components(src, dst, num_hits):
    """Per hit: simple-path track key (its component's root), -1 for walk hits, -2 otherwise."""
    parent = np.arange(num_hits)
    in_deg = np.zeros(num_hits, np.int64)
    out_deg = np.zeros(num_hits, np.int64)
    for i in range(len(src)):
        out_deg[src[i]] += 1
        in_deg[dst[i]] += 1
        a, b = _find(parent, src[i]), _find(parent, dst[i])
        if a != b:
            parent[max(a, b)] = min(a, b)
    size = np.zeros(num_hits, np.int64)
    branching = np.zeros(num_hits, np.bool_)
    edges = np.zeros(num_hits, np.int64)
    for node in range(num_hits):
        root = _find(parent, node)
        if in_deg[node] + out_deg[node] > 0:
            size[root] += 1
            edges[root] += out_deg[node]
            branching[root] |= in_deg[node] > 1 or out_deg[node] > 1
    track_of = np.full(num_hits, -2, np.int64)
    for node in range(num_hits):
        root = parent[node]
        if size[root] == 0:
            continue
        if not branching[root] and edges[root] == size[root]:
            raise ValueError("the graph has a directed cycle; orient the edges (orient=True)")
        if size[root] >= 3:
            track_of[node] = -1 if branching[root] else root
    return track_of


@njit(cache=True)
def _best_edges(node, other, score, num_hits):
    """Index of the best edge per node: highest score, then lowest other end, then first."""
    best = np.full(num_hits, -1, np.int64)
    for i in range(len(node)):
        j = best[node[i]]
        if j < 0 or score[i] > score[j] or (score[i] == score[j] and other[i] < other[j]):
            best[node[i]] = i
    return best


@njit(cache=True)
def _prune(src, dst, score, num_hits, walk_min, walk_max):
    best_out = _best_edges(src, dst, score, num_hits)
    best_in = _best_edges(dst, src, score, num_hits)
    has_incoming = np.zeros(num_hits, np.bool_)
    for i in range(len(dst)):
        has_incoming[dst[i]] = True
    keep = np.zeros(len(src), np.bool_)
    for i in range(len(src)):
        strong = (best_out[src[i]] == i and score[i] >= walk_min) or score[i] > walk_max
        keep[i] = strong and (has_incoming[src[i]] or best_in[dst[i]] == i)
    return keep


@njit(cache=True)
def _walk(src, dst, score, num_hits, track_of):
    """Walkthrough; writes the start hit of each walk track into ``track_of``."""
    order_src = np.argsort(src, kind="mergesort")
    indptr = np.zeros(num_hits + 1, np.int64)
    for i in range(len(src)):
        indptr[src[i] + 1] += 1
    indptr = np.cumsum(indptr)
    succ, succ_score = dst[order_src], score[order_src]
    # Topological order: depth (longest path from a hit without incoming edges), then row.
    in_deg = np.zeros(num_hits, np.int64)
    for i in range(len(dst)):
        in_deg[dst[i]] += 1
    present = np.zeros(num_hits, np.bool_)
    present[src] = True
    present[dst] = True
    depth = np.zeros(num_hits, np.int64)
    queue = [n for n in range(num_hits) if present[n] and in_deg[n] == 0]
    seen = 0
    while queue:
        node = queue.pop()
        seen += 1
        for k in range(indptr[node], indptr[node + 1]):
            nxt = succ[k]
            depth[nxt] = max(depth[nxt], depth[node] + 1)
            in_deg[nxt] -= 1
            if in_deg[nxt] == 0:
                queue.append(nxt)
    if seen != present.sum():
        raise ValueError("the walk graph has a directed cycle; orient the edges (orient=True)")
    nodes = np.flatnonzero(present)
    order = nodes[np.argsort(depth[nodes] * num_hits + nodes)]
    position = np.zeros(num_hits, np.int64)
    position[order] = np.arange(len(order))
    used = np.zeros(num_hits, np.bool_)
    height = np.zeros(num_hits, np.int64)
    best = np.full(num_hits, -1, np.int64)
    stamp = np.full(num_hits, -1, np.int64)
    for start in order:
        if used[start]:
            continue
        reach = [start]  # hits reachable over unused hits
        stamp[start] = start
        k = 0
        while k < len(reach):
            node = reach[k]
            k += 1
            for e in range(indptr[node], indptr[node + 1]):
                nxt = succ[e]
                if not used[nxt] and stamp[nxt] != start:
                    stamp[nxt] = start
                    reach.append(nxt)
        reach_arr = np.array(reach)
        reach_arr = reach_arr[np.argsort(-position[reach_arr])]  # successors first
        for node in reach_arr:
            height[node], best[node] = 1, -1
            for e in range(indptr[node], indptr[node + 1]):
                nxt = succ[e]
                if used[nxt]:
                    continue
                b = best[node]
                better = height[nxt] + 1 > height[node]
                if not better and b >= 0 and height[nxt] + 1 == height[node]:
                    better = succ_score[e] > succ_score[b] or (succ_score[e] == succ_score[b] and nxt < succ[b])
                if better:
                    height[node], best[node] = height[nxt] + 1, e
        if height[start] < 2:
            continue
        node = start
        while node >= 0:
            used[node] = True
            track_of[node] = start
            node = succ[best[node]] if best[node] >= 0 else -1
