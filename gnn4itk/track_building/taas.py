"""Plain-Python model of the GNN4ITk service's track building (CC + walkthrough), for comparisons.

The service is xju2/tracking-as-a-service, branch ``alina_ml_pipe`` (commit 6f055b3), ``models/ModuleMap/2/``:
``inference.py`` (filter ``score > cc_cut``) and ``fastwalkthrough.py`` (``get_simple_path``,
``walk_through``). This module was written from reading that code (not copied) and reproduces its
behaviour step by step, including the details that decide which tracks come out:

* the best outgoing / incoming edge of a hit is ``torch_scatter.scatter_max``'s argmax, which on the
  CPU is the **first** edge in the edge list among equal scores (on CUDA it is unspecified);
* the walk visits its starts in the order of a Kahn topological sort with a FIFO queue, fed in the
  insertion order of its dictionaries (first appearance of a hit as an edge source, then edge order);
* ``find_paths`` enumerates paths breadth first but keeps only the paths that ended in the **last two
  levels** (the longest paths and those one hit shorter), and the path kept is the one with the
  largest list of branching scores (``[0.0]`` followed by the score of the edge taken at every hit
  with more than one unused successor), compared lexicographically; the first path found wins ties;
* tracks come out as the simple-path components (ordered by their smallest row) followed by the
  walk's tracks in the order they were found, each sorted by R (= r**2 + z**2).

The knobs ``argmax``, ``start_order`` and ``select`` switch single rules to ours
(:mod:`gnn4itk.track_building.reference`), so that every difference can be attributed to one rule;
with ``argmax="lowest_row", start_order="depth_row", select="longest"`` the tracks are the same as
:func:`gnn4itk.track_building.build_tracks_reference` (``orient=False``, graphs without self-loops
or directed cycles).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from gnn4itk.defaults import CC_CUT, WALK_MAX, WALK_MIN
from gnn4itk.tracks import join_tracks

ARGMAX = ("first", "lowest_row")
START_ORDER = ("kahn", "depth_row")
SELECT = ("taas", "longest")


def build_tracks_taas(
    edge_index,
    scores,
    hit_r2z2,
    cc_cut: float = CC_CUT,
    walk_min: float = WALK_MIN,
    walk_max: float = WALK_MAX,
    argmax: str = "first",
    start_order: str = "kahn",
    select: str = "taas",
) -> list[list[int]]:
    """The service's track candidates, in its order (simple-path components first, then the walk's).

    Args:
        edge_index: int64 [2, E] row indices, directed inner -> outer, in the order the service gets them.
        scores: float [E] edge scores after the sigmoid (compared in float32, as the service does).
        hit_r2z2: float [N] ``r**2 + z**2`` of every spacepoint (hits of a track are sorted by it; equal
            values keep row order, torch.argsort in the service does not promise an order there).
        cc_cut, walk_min, walk_max: the service's cuts (``score > cc_cut``; best outgoing edge kept if
            ``score >= walk_min``; any edge kept if ``score > walk_max``).
        argmax: ``"first"`` (service, CPU scatter_max) or ``"lowest_row"`` (ours: lowest row at the other
            end among equal scores) for the best edges of the walk's pruning.
        start_order: ``"kahn"`` (service) or ``"depth_row"`` (ours: longest-path depth, then row).
        select: ``"taas"`` (service: largest branching-score list among the paths of the last two BFS
            levels) or ``"longest"`` (ours: longest path, then the branching sequence of
            ``(score, -next row)``).

    Returns:
        list of tracks, each a list of row indices sorted by (R, row).
    """
    if argmax not in ARGMAX or start_order not in START_ORDER or select not in SELECT:
        raise ValueError(f"argmax in {ARGMAX}, start_order in {START_ORDER}, select in {SELECT}")
    r2z2 = np.asarray(hit_r2z2, dtype=np.float32).ravel()
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    scores = np.asarray(scores, dtype=np.float32).ravel()
    keep = scores > np.float32(cc_cut)
    edges = list(zip(edge_index[0][keep].tolist(), edge_index[1][keep].tolist(), scores[keep].tolist()))

    simple, complex_edges = _simple_paths(edges)
    pruned = _max_add_cuts(complex_edges, walk_min, walk_max, argmax)
    walk = _walk_through(pruned, start_order, select)
    return [sorted(t, key=lambda n: (r2z2[n], n)) for t in simple + walk]


def labels_from_tracks(tracks) -> np.ndarray:
    """LABELS of a list of tracks, kept in the given order."""
    return join_tracks([np.asarray(t, dtype=np.int64) for t in tracks])


# --------------------------------------------------------------------------------------------------
# get_simple_path: weakly connected components of the filtered graph


def _simple_paths(edges):
    """Components of >= 3 hits whose hits all have in- and out-degree <= 1 are tracks (hits in row
    order, components by their smallest row, like scipy's labels); the edges of the other components
    of >= 3 hits go to the walk, in input order. Degrees count duplicate edges."""
    parent: dict[int, int] = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    in_deg: dict[int, int] = {}
    out_deg: dict[int, int] = {}
    for src, dst, _ in edges:
        a, b = find(src), find(dst)
        if a != b:
            parent[max(a, b)] = min(a, b)
        out_deg[src] = out_deg.get(src, 0) + 1
        in_deg[dst] = in_deg.get(dst, 0) + 1
    members: dict[int, list[int]] = {}
    for node in sorted(parent):
        members.setdefault(find(node), []).append(node)
    simple, walk_roots = [], set()
    for root, nodes in sorted(members.items()):
        if len(nodes) < 3:
            continue
        if all(in_deg.get(n, 0) <= 1 and out_deg.get(n, 0) <= 1 for n in nodes):
            simple.append(nodes)
        else:
            walk_roots.add(root)
    return simple, [e for e in edges if find(e[0]) in walk_roots]


# --------------------------------------------------------------------------------------------------
# max_add_cuts: pruning before the walk


def _argmax(edges, end, rule):
    best: dict[int, int] = {}
    for i, edge in enumerate(edges):
        node = edge[end]
        j = best.get(node)
        if j is None:
            best[node] = i
        elif rule == "first":  # scatter_max on the CPU: strictly greater replaces
            if edge[2] > edges[j][2]:
                best[node] = i
        elif (edge[2], -edge[1 - end]) > (edges[j][2], -edges[j][1 - end]):
            best[node] = i
    return best


def _max_add_cuts(edges, th_min, th_add, rule):
    lo, hi = np.float32(th_min), np.float32(th_add)
    best_out, best_in = _argmax(edges, 0, rule), _argmax(edges, 1, rule)
    has_incoming = {dst for _, dst, _ in edges}
    kept = []
    for i, (src, dst, score) in enumerate(edges):
        j = best_out[src]
        strong = (j == i and np.float32(edges[j][2]) >= lo) or np.float32(score) > hi
        if strong and (src in has_incoming or best_in[dst] == i):
            kept.append((src, dst, score))
    return kept


# --------------------------------------------------------------------------------------------------
# walk_through


def _walk_through(edges, start_order, select):
    successors: dict[int, dict[int, float]] = {}  # insertion-ordered, like numba's typed Dict
    for src, dst, score in edges:
        successors.setdefault(src, {})[dst] = score  # a duplicate edge overwrites the score
    if not successors:
        return []
    order = _kahn(successors) if start_order == "kahn" else _depth_row(successors)
    used: set[int] = set()
    tracks = []
    for start in order:
        if start in used:
            continue
        if select == "taas":
            path = _taas_path(start, successors, used, len(order))
        else:
            path = _longest_path(start, successors, used)
        if len(path) > 1:
            tracks.append(path)
            used.update(path)
    return tracks


def _kahn(successors):
    """topological_sort_numba: in-degrees in dictionary order, FIFO queue."""
    in_degree: dict[int, int] = {}
    for node, targets in successors.items():
        in_degree.setdefault(node, 0)
        for dst in targets:
            in_degree[dst] = in_degree.get(dst, 0) + 1
    queue = deque(n for n, d in in_degree.items() if d == 0)
    order = []
    while queue:
        node = queue.popleft()
        order.append(node)
        for dst in successors.get(node, ()):
            in_degree[dst] -= 1
            if in_degree[dst] == 0:
                queue.append(dst)
    return order  # hits on a directed cycle are left out, as in the service


def _depth_row(successors):
    nodes = set(successors) | {d for t in successors.values() for d in t}
    order = _kahn(successors)
    depth = dict.fromkeys(nodes, 0)
    for node in order:
        for dst in successors.get(node, ()):
            depth[dst] = max(depth[dst], depth[node] + 1)
    return sorted(order, key=lambda n: (depth[n], n))


def _taas_path(start, successors, used, max_len):
    """find_paths + find_most_likely_local_path of the service."""
    paths, scores = deque([[start]]), deque([[0.0]])
    complete, complete_scores = [], []
    old, old_scores = [], []
    while paths:
        old, old_scores = complete, complete_scores  # paths that ended before the previous level are lost
        complete, complete_scores = [], []
        for _ in range(len(paths)):
            path, branching = paths.popleft(), scores.popleft()
            if len(path) > max_len:
                raise ValueError("the walk graph has a directed cycle")
            options = [(d, s) for d, s in successors.get(path[-1], {}).items() if d not in used]
            if not options:
                complete.append(path)
                complete_scores.append(branching)
                continue
            for dst, score in options:
                paths.append(path + [dst])
                scores.append(branching + [score] if len(options) > 1 else branching)
    complete += old
    complete_scores += old_scores
    best, best_score = [], []
    for path, branching in zip(complete, complete_scores):
        if branching > best_score:  # lexicographic; the first path wins ties
            best, best_score = path, branching
    return best


def _longest_path(start, successors, used):
    """Ours: every maximal path; the longest, then the largest sequence of (score, -next row)."""
    best_key, best, stack = None, [start], [([start], [])]
    while stack:
        path, branching = stack.pop()
        options = [(d, s) for d, s in successors.get(path[-1], {}).items() if d not in used and d not in path]
        if not options:
            key = (len(path), branching)
            if best_key is None or key > best_key:
                best_key, best = key, path
            continue
        for dst, score in options:
            stack.append((path + [dst], branching + ([(score, -dst)] if len(options) > 1 else [])))
    return best
