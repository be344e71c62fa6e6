"""Plain-Python reference of GNN4ITk track building (connected components + walkthrough).

This is the executable specification that :class:`gnn4itk.track_building.TrackBuilder` (pure torch,
scriptable, GPU) must reproduce exactly; ``docs/track_building.md`` states every rule and tie-break.
It favours clarity over speed: a union-find for the components and a literal enumeration of the
paths from each start hit, as in the GNN4ITk service's walkthrough.

All score comparisons are done in float32 (cuts are rounded to float32 first), as torch does when a
float32 tensor is compared with a Python number.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from gnn4itk.defaults import CC_CUT, TRACK_BUILDING_MODE, WALK_MAX, WALK_MIN
from gnn4itk.tracks import join_tracks

MODES = ("cc_and_walk", "cc", "junction_removal")
"""Track-building modes: components + walkthrough (default), simple-path components only, and ACTS's
junction removal followed by components."""


def build_tracks_reference(
    edge_index,
    scores,
    hit_r2z2,
    cc_cut: float = CC_CUT,
    walk_min: float = WALK_MIN,
    walk_max: float = WALK_MAX,
    mode: str = TRACK_BUILDING_MODE,
    orient: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Build track candidates from a scored graph, one hit at a time.

    Args:
        edge_index: int64 [2, E] spacepoint row indices, directed inner -> outer (unless ``orient``).
        scores: float [E] edge scores after the sigmoid (used as float32).
        hit_r2z2: float [N] ``r**2 + z**2`` of every spacepoint; N is the number of spacepoints.
        cc_cut: edges need ``score > cc_cut``.
        walk_min: the best outgoing edge of a hit survives the walk pruning when ``score >= walk_min``.
        walk_max: any edge with ``score > walk_max`` survives the walk pruning.
        mode: one of :data:`MODES`.
        orient: flip edges so that they point from lower to higher ``(r2z2, row)``, then merge
            duplicate edges keeping the highest score.

    Returns:
        ``labels`` int64 [L] (LABELS: row indices, each track sorted by (r2z2, row) and ended by -1;
        tracks ordered by their smallest row index; ``[-1]`` if none) and ``track_ids`` int64 [N]
        (position of each spacepoint's track in ``labels``, -1 if unassigned).
    """
    if mode not in MODES:
        raise ValueError(f"unknown track-building mode {mode!r}; choose one of {MODES}")
    r2z2 = np.asarray(hit_r2z2, dtype=np.float32).ravel()
    num_hits = len(r2z2)
    edges = _filtered_edges(edge_index, scores, r2z2, cc_cut, orient)

    if mode == "junction_removal":
        edges = _remove_junctions(edges)
    # After junction removal every component is a simple path, so it needs no walk.
    tracks, walk_nodes = _split_components(edges, num_hits)
    if mode == "cc_and_walk":
        walk_edges = [e for e in edges if e[0] in walk_nodes]
        tracks = tracks + _walk(_prune_for_walk(walk_edges, walk_min, walk_max))
    return _labels_from_tracks(tracks, r2z2, num_hits)


# --------------------------------------------------------------------------------------------------
# Step 1: orientation and filtering


def _filtered_edges(edge_index, scores, r2z2, cc_cut, orient) -> list[tuple[int, int, float]]:
    """Edges as (src, dst, score) with score > cc_cut, no self-loops; oriented and merged if asked."""
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    scores = np.asarray(scores, dtype=np.float32).ravel()
    if scores.shape[0] != edge_index.shape[1]:
        raise ValueError(f"{edge_index.shape[1]} edges but {scores.shape[0]} scores")
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= len(r2z2)):
        raise ValueError(f"edge_index has row indices outside [0, {len(r2z2)})")
    cut = np.float32(cc_cut)
    edges = []
    for src, dst, score in zip(edge_index[0].tolist(), edge_index[1].tolist(), scores.tolist()):
        if src == dst or not score > cut:
            continue
        if orient and (r2z2[src], src) > (r2z2[dst], dst):
            src, dst = dst, src
        edges.append((src, dst, score))
    if orient:  # flipping turns the two directions of a pair into one edge: keep its best score
        best: dict[tuple[int, int], float] = {}
        for src, dst, score in edges:
            best[(src, dst)] = max(score, best.get((src, dst), score))
        edges = [(src, dst, score) for (src, dst), score in best.items()]
    return edges


def _best_edges(edges, end: int) -> dict[int, int]:
    """Index of the best edge of each hit, outgoing (end=0) or incoming (end=1).

    Best = highest score, then lowest row index at the other end, then first in the edge list.
    """
    best: dict[int, int] = {}
    for i, edge in enumerate(edges):
        node, other = edge[end], edge[1 - end]
        j = best.get(node)
        if j is None or (edge[2], -other) > (edges[j][2], -edges[j][1 - end]):
            best[node] = i
    return best


def _remove_junctions(edges):
    """ACTS junction removal: keep an edge only if it is the best outgoing edge of its source and the
    best incoming edge of its target."""
    best_out, best_in = _best_edges(edges, 0), _best_edges(edges, 1)
    return [e for i, e in enumerate(edges) if best_out[e[0]] == i and best_in[e[1]] == i]


# --------------------------------------------------------------------------------------------------
# Step 2: weakly connected components


def _components(edges, num_hits) -> dict[int, list[int]]:
    """Weakly connected components of the hits that have an edge, keyed by their smallest row."""
    parent = list(range(num_hits))

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for src, dst, _ in edges:
        a, b = find(src), find(dst)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members = defaultdict(list)
    for node in sorted({n for e in edges for n in e[:2]}):
        members[find(node)].append(node)
    return members


def _split_components(edges, num_hits) -> tuple[list[list[int]], set[int]]:
    """Simple-path components (>= 3 hits, all in/out degrees <= 1) and the hits left for the walk."""
    in_deg, out_deg = defaultdict(int), defaultdict(int)
    for src, dst, _ in edges:
        out_deg[src] += 1
        in_deg[dst] += 1
    simple, walk_nodes = [], set()
    for nodes in _components(edges, num_hits).values():
        is_simple = all(in_deg[n] <= 1 and out_deg[n] <= 1 for n in nodes)
        if is_simple and sum(out_deg[n] for n in nodes) == len(nodes):  # as many edges as hits
            raise ValueError("the graph has a directed cycle; orient the edges (orient=True)")
        if len(nodes) < 3:
            continue
        if is_simple:
            simple.append(nodes)
        else:
            walk_nodes.update(nodes)
    return simple, walk_nodes


# --------------------------------------------------------------------------------------------------
# Steps 3 and 4: pruning and walkthrough


def _prune_for_walk(edges, walk_min, walk_max):
    """Keep an edge if (best outgoing of its source with score >= walk_min, or score > walk_max) and
    (its source has an incoming edge, or it is the best incoming edge of its target)."""
    lo, hi = np.float32(walk_min), np.float32(walk_max)
    best_out, best_in = _best_edges(edges, 0), _best_edges(edges, 1)
    has_incoming = {dst for _, dst, _ in edges}
    kept = []
    for i, (src, dst, score) in enumerate(edges):
        strong = (best_out[src] == i and score >= lo) or score > hi
        if strong and (src in has_incoming or best_in[dst] == i):
            kept.append((src, dst, score))
    return kept


def _topological_order(successors, nodes) -> list[int]:
    """Hits sorted by depth (longest path from a hit without incoming edges), then by row index."""
    in_deg = {n: 0 for n in nodes}
    for src in successors:
        for dst, _ in successors[src]:
            in_deg[dst] += 1
    depth = {n: 0 for n in nodes}
    queue = [n for n in nodes if in_deg[n] == 0]
    seen = 0
    while queue:
        node = queue.pop()
        seen += 1
        for dst, _ in successors.get(node, ()):
            depth[dst] = max(depth[dst], depth[node] + 1)
            in_deg[dst] -= 1
            if in_deg[dst] == 0:
                queue.append(dst)
    if seen != len(nodes):
        raise ValueError("the walk graph has a directed cycle; orient the edges (orient=True)")
    return sorted(nodes, key=lambda n: (depth[n], n))


def _paths_from(start, successors, used) -> list[tuple[list[int], list[tuple[float, int]]]]:
    """Every maximal path from ``start`` over unused hits, with its branching-point sequence.

    The sequence holds ``(score, -next_row)`` of the edge taken at every hit that has more than one
    edge to an unused hit.
    """
    complete, stack = [], [([start], [])]
    while stack:
        path, branching = stack.pop()
        options = [(dst, s) for dst, s in successors.get(path[-1], ()) if dst not in used and dst not in path]
        if not options:
            complete.append((path, branching))
            continue
        for dst, score in options:
            step = [(score, -dst)] if len(options) > 1 else []
            stack.append((path + [dst], branching + step))
    return complete


def _walk(edges) -> list[list[int]]:
    """Walkthrough: from each unused hit in topological order take the best path over unused hits:
    the longest, then the largest branching-point sequence (lexicographic)."""
    successors = defaultdict(list)
    for src, dst, score in edges:
        successors[src].append((dst, score))
    nodes = sorted({n for e in edges for n in e[:2]})
    used: set[int] = set()
    tracks = []
    for start in _topological_order(successors, nodes):
        if start in used:
            continue
        path, _ = max(_paths_from(start, successors, used), key=lambda p: (len(p[0]), p[1]))
        if len(path) > 1:
            tracks.append(path)
            used.update(path)
    return tracks


# --------------------------------------------------------------------------------------------------
# Step 5: output


def _labels_from_tracks(tracks, r2z2, num_hits) -> tuple[np.ndarray, np.ndarray]:
    """LABELS (tracks by smallest row, hits by (r2z2, row)) and per-hit track ids."""
    ordered = sorted((sorted(t, key=lambda n: (r2z2[n], n)) for t in tracks), key=min)
    track_ids = np.full(num_hits, -1, dtype=np.int64)
    for number, track in enumerate(ordered):
        track_ids[track] = number
    return join_tracks(ordered), track_ids
