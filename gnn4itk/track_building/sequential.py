"""The walkthrough's sequential finish on the CPU, for dense graphs where parallel rounds stall.

The parallel rounds of :mod:`gnn4itk.track_building.walk` take a start only when no earlier start
reaches anything it reaches. On dense graphs (an under-trained GNN leaves almost every module-map
edge above ``cc_cut``) every start reaches most of the graph, so a round takes a handful of starts
while costing ``hops`` passes over all edges: thousands of rounds, about a minute per event on two
cores. This module runs the reference's sequential order directly instead, in TorchScript loops over
Python lists (compiled, no per-op dispatch), with the heights maintained incrementally:

* Starts are visited in order (depth, row); a start takes its best path (longest, then highest
  score, then lowest row at every step) by following the heights ``H``.
* Marking a path used can only lower the heights of its *ancestors*. A hit keeps a count of the
  successors that give it its height; only when the last one is lowered is its height recomputed
  (and its own predecessors visited in turn). Hits visited before the current start are skipped:
  such a hit can never be a start or lie on a later path (a later path only holds hits deeper than
  its start, whose depth is at least the current start's), so its height is never read again. The
  nodes are renumbered in visiting order, so "visited before" is a comparison of numbers and each
  predecessor list (latest first) is cut at the first visited entry.

The work is about one pass over the edges for the set-up plus, per track, the edges around its path
and its ancestors' height updates: seconds for a million dense edges instead of a minute.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from gnn4itk.gather import take


def _csr(index: Tensor, values: Tensor, size: int) -> Tuple[List[int], List[int]]:
    """Adjacency lists: ``values`` grouped by ``index`` (LongTensor [E] each, entries of ``index`` in
    [0, size)), keeping the given order inside a group.

    Returns the grouped values and ``size + 1`` offsets (group ``i`` is ``offsets[i]:offsets[i+1]``).
    """
    order = torch.sort(index, stable=True)[1]
    counts = torch.zeros(size, dtype=torch.long, device=index.device).scatter_add_(0, index, torch.ones_like(index))
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=index.device), torch.cumsum(counts, 0)])
    grouped: List[int] = values.index_select(0, order).tolist()
    starts: List[int] = offsets.tolist()
    return grouped, starts


def walk_sequential(
    seg_edges: Tensor,
    score: Tensor,
    seg_len: Tensor,
    used: Tensor,
    height: Tensor,
    order_key: Tensor,
    start_of: Tensor,
    present: Optional[Tensor] = None,
) -> Tensor:
    """Finish the walk one start at a time, in the reference's order (on the host; tensors on any
    device, the result on theirs).

    Args:
        seg_edges: LongTensor [2, E], edges between segments; segment numbers ordered like the rows of
            their heads (they break ties). Self-loops only on used nodes.
        score: FloatTensor [E].
        seg_len: LongTensor [S], hits per segment (0 on nodes that are no segment).
        used: BoolTensor [S], segments already taken (or no segment).
        height: LongTensor [S], longest path in hits from each free segment over free segments (as
            of ``used``); anything on used segments.
        order_key: LongTensor [S], the visiting order of the starts (depth, then row), distinct.
        start_of: LongTensor [S], the start of each taken segment's track, -1 elsewhere.
        present: BoolTensor [E] or None: only these edges count.

    Returns:
        LongTensor [S]: ``start_of`` with every remaining track filled in.
    """
    device = seg_len.device
    free = ~used
    free_edge = ~(used.index_select(0, seg_edges[0]) | used.index_select(0, seg_edges[1]))
    if present is not None:
        free_edge = free_edge & present
    kept = free_edge.nonzero().squeeze(1)
    src = seg_edges[0].index_select(0, kept)
    dst = seg_edges[1].index_select(0, kept)
    # Only free segments that can start a track (height >= 2) or lie on one (a free predecessor)
    # take part; the others are never read. They are renumbered 0..K-1 in visiting order, so that
    # "visited before" is a comparison of numbers, and the work scales with what is left.
    has_pred = torch.zeros_like(seg_len).index_fill_(0, dst, 1) > 0
    old_of = (free & ((height >= 2) | has_pred)).nonzero().squeeze(1)
    old_of = old_of.index_select(0, torch.sort(order_key.index_select(0, old_of))[1])  # new -> old
    num_nodes = old_of.numel()
    new_of = torch.full_like(seg_len, -1).index_copy_(0, old_of, torch.arange(num_nodes, device=device))
    # Successors sorted by score (descending), then old number (= row order): the first one that
    # keeps the path longest is the best successor, so the walk along a path stops scanning early.
    by_row = torch.sort(dst, stable=True)[1]
    kept_score = score.index_select(0, kept).index_select(0, by_row)
    by_preference = by_row.index_select(0, torch.sort(kept_score, descending=True, stable=True)[1])
    h_old = torch.where(free, height, -1)
    # support[u]: free successors that give u its height (len[u] + H[t] == H[u]). A lowered
    # successor only matters to u when it was the last one: then u's height drops.
    gives_height = take(h_old, src) == take(seg_len, src) + take(h_old, dst)
    support_old = torch.zeros_like(seg_len).scatter_add_(0, src, gives_height.long())
    src, dst = take(new_of, src), take(new_of, dst)
    succ, succ_at = _csr(src.index_select(0, by_preference), dst.index_select(0, by_preference), num_nodes)
    # Predecessors latest-visited first: a scan stops at the first one already visited.
    by_visit = torch.sort(src, descending=True)[1]
    pred, pred_at = _csr(take(dst, by_visit), take(src, by_visit), num_nodes)
    # h[v]: height of a free node; -1 once taken (or no segment), so that one comparison of h both
    # skips taken nodes and compares heights (free heights are >= 1). rest[v] = h[v] - len[v], the
    # height that v's best successor gives (-1 once taken): kept beside h, as the loops read both.
    h_new = take(h_old, old_of)
    length_new = take(seg_len, old_of)
    h: List[int] = h_new.tolist()
    rest: List[int] = torch.where(h_new >= 0, h_new - length_new, -1).tolist()
    support: List[int] = take(support_old, old_of).tolist()
    length: List[int] = length_new.tolist()
    old_number: List[int] = old_of.tolist()
    owner: List[int] = take(start_of, old_of).tolist()  # old numbers, at new positions
    for start in range(num_nodes):
        if h[start] < 2:
            continue
        # Follow the best successors: the first free one (in preference order) whose height keeps
        # the path longest. Old heights are kept for the update below.
        path: List[int] = []
        old_heights: List[int] = []
        node = start
        while node >= 0:
            path.append(node)
            wanted = rest[node]
            old_heights.append(h[node])
            h[node] = -1
            rest[node] = -1
            owner[node] = old_number[start]
            nxt = -1
            if wanted > 0:
                for e in range(succ_at[node], succ_at[node + 1]):
                    if h[succ[e]] == wanted:
                        nxt = succ[e]
                        break
            node = nxt
        # Lower the heights of the ancestors still to be visited: a hit whose last supporting
        # successor was lowered is recomputed, which may lower its own predecessors in turn.
        while len(path) > 0:
            node = path.pop()
            old_height = old_heights.pop()
            for e in range(pred_at[node], pred_at[node + 1]):
                u = pred[e]
                if u <= start:
                    break  # this and all further predecessors were visited: never read again
                if rest[u] != old_height:
                    continue  # taken, or its height comes from another successor
                support[u] -= 1
                if support[u] > 0:
                    continue
                best = 0
                count = 0
                for f in range(succ_at[u], succ_at[u + 1]):
                    height_t = h[succ[f]]
                    if height_t > best:
                        best = height_t
                        count = 1
                    elif height_t == best:
                        count += 1
                path.append(u)
                old_heights.append(h[u])
                h[u] = length[u] + best
                rest[u] = best
                support[u] = count if best > 0 else 0
    new_owner = torch.tensor(owner, dtype=torch.long, device=device)
    return start_of.index_copy(0, old_of, new_owner)
