"""Parallel walkthrough on the GPU: segments, heights, independent starts, best-successor chains.

The reference (:func:`gnn4itk.track_building.reference.build_tracks_reference`) visits the hits of
the pruned walk graph one at a time in topological order and takes, from every unused hit, the best
path over unused hits. This module computes the same tracks with a constant number of torch ops per
*round*, each round taking a whole independent set of start hits at once:

1. **Segments.** A chain ``u -> v`` with ``out(u) == 1`` and ``in(v) == 1`` can never be split by the
   walk (a path that reaches ``u`` must go on to ``v`` to be longest, and no path enters ``v``
   elsewhere), so maximal chains are contracted into weighted segments by pointer jumping. Paths in
   the segment graph are a few hops long, which bounds every loop below.
2. **Heights.** ``H(S) = len(S) + max H(T)`` over unused successors: the longest path from each
   segment, by ``hops`` rounds of a scatter-max (a longest-path DP in topological levels).
3. **Best successor.** Among successors with ``H(T) == H(S) - len(S)`` (they keep the path longest),
   the highest score, then the lowest row index. This greedy choice *is* the reference's
   "longest path, then branching-point scores in order" (two different paths first differ at one
   branching hit, where their (score, -row) pairs differ).
4. **Independent starts.** Starts are unused segments whose best path has >= 2 hits, ordered by
   (depth, row). A start is processed now if no earlier start reaches any hit that it reaches: then
   nothing processed before it in the sequential order can change its path. ``m`` (forward min of
   start keys) and ``M`` (backward min of ``m``) find them; the earliest start is always ready.
5. Ready starts follow their best-successor chains and mark them used; repeat until no start is left.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from gnn4itk.track_building.ops import best_edge_mask, big_key, list_heads, segment_depths


def build_segments(src: Tensor, dst: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Contract unbranched chains of a DAG into segments.

    Args:
        src, dst: LongTensor [E], directed edges over ``num_nodes`` nodes.
        num_nodes: N.

    Returns:
        ``head`` LongTensor [N] (head node of each node's segment), ``seg_len`` LongTensor [N] (hits
        in the segment at head indices, 0 elsewhere) and ``link`` BoolTensor [E] (edge inside a
        segment; the others join a segment's last hit to another segment's head).
    """
    out_deg = torch.bincount(src, minlength=num_nodes)
    in_deg = torch.bincount(dst, minlength=num_nodes)
    link = (out_deg[src] == 1) & (in_deg[dst] == 1)
    prev = torch.full((num_nodes + 1,), -1, dtype=torch.long, device=src.device)
    prev.scatter_(0, torch.where(link, dst, torch.full_like(dst, num_nodes)), src)
    head, position = list_heads(prev[:num_nodes])
    seg_len = torch.zeros(num_nodes, dtype=torch.long, device=src.device)
    seg_len = seg_len.scatter_reduce(0, head, position + 1, "amax")
    return head, seg_len, link


def walk_tracks(src: Tensor, dst: Tensor, score: Tensor, num_nodes: int) -> Tensor:
    """Walkthrough over a pruned DAG.

    Node indices must be ordered like the spacepoint rows (compaction with ``nonzero`` keeps that),
    since rows break ties.

    Args:
        src, dst: LongTensor [E], pruned walk edges.
        score: FloatTensor [E].
        num_nodes: N.

    Returns:
        LongTensor [N]: for every node, the node that started its track, or -1.
    """
    device = src.device
    nodes = torch.arange(num_nodes, device=device)
    head, seg_len, link = build_segments(src, dst, num_nodes)
    is_head = head == nodes
    between = (~link).nonzero().squeeze(1)
    seg_src, seg_dst, seg_score = head[src[between]], dst[between], score[between]
    num_heads = int(is_head.sum())
    depth, hops = segment_depths(seg_src, seg_dst, seg_len, num_heads)
    order_key = depth * num_nodes + nodes  # topological order of the starts: depth, then row

    used = ~is_head  # segment state lives on head indices only
    start_of = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    no_next = torch.full((1,), num_nodes, dtype=torch.long, device=device)
    while True:
        alive = (~used[seg_src] & ~used[seg_dst]).nonzero().squeeze(1)
        a_src, a_dst, a_score = seg_src[alive], seg_dst[alive], seg_score[alive]
        has_next = torch.zeros(num_nodes, dtype=torch.bool, device=device)
        has_next[a_src] = True
        start = ~used & ((seg_len >= 2) | has_next)
        if not bool(start.any()):
            break
        free_len = torch.where(used, torch.zeros_like(seg_len), seg_len)
        height = free_len
        first = torch.where(start, order_key, torch.full_like(order_key, big_key()))
        for _ in range(hops):  # heights backwards, earliest reaching start forwards
            longest = torch.zeros_like(height).scatter_reduce(0, a_src, height[a_dst], "amax")
            height = free_len + longest
            first = first.scatter_reduce(0, a_dst, first[a_src], "amin")
        earliest = first
        for _ in range(hops):  # earliest start that reaches anything this segment reaches
            earliest = earliest.scatter_reduce(0, a_src, earliest[a_dst], "amin")
        ready = start & (earliest == order_key)

        keeps_longest = height[a_dst] == height[a_src] - seg_len[a_src]
        best = best_edge_mask(a_src, a_dst, a_score, keeps_longest, num_nodes)
        next_seg = torch.cat([torch.full((num_nodes,), num_nodes, dtype=torch.long, device=device), no_next])
        next_seg.scatter_(0, torch.where(best, a_src, no_next.expand_as(a_src)), torch.where(best, a_dst, no_next.expand_as(a_dst)))
        next_seg[num_nodes] = num_nodes
        owner = torch.cat([torch.where(ready, nodes, torch.full_like(nodes, -1)), -torch.ones_like(no_next)])
        for _ in range(hops):  # hand the start's id down its chain of best successors
            owner = owner.scatter_reduce(0, next_seg, owner, "amax")
        taken = owner[:num_nodes] >= 0
        start_of = torch.where(taken, owner[:num_nodes], start_of)
        used = used | taken
    return start_of[head]
