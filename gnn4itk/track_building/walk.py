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

from typing import List

import torch
from torch import Tensor

from gnn4itk.track_building.ops import big_key, build_segments, segment_depths


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
    # From here on one entry per segment, numbered in the order of their head rows (rows break ties).
    heads = (head == nodes).nonzero().squeeze(1)
    num_segments = heads.numel()
    segments = torch.arange(num_segments, device=device)
    segment_of = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    segment_of[heads] = segments
    seg_len = seg_len[heads]
    between = (~link).nonzero().squeeze(1)
    seg_src, seg_dst, seg_score = segment_of[head[src[between]]], segment_of[dst[between]], score[between]
    depth, hops = segment_depths(seg_src, seg_dst, seg_len, num_segments)
    order_key = depth * num_segments + segments  # topological order of the starts: depth, then row
    big = big_key()

    used = torch.zeros(num_segments, dtype=torch.bool, device=device)
    start_of = torch.full((num_segments,), -1, dtype=torch.long, device=device)
    zeros = torch.zeros_like(seg_len)
    neg_order_key = -order_key
    no_owner = torch.full((1,), -1, dtype=torch.long, device=device)
    pending = True
    while pending:  # one round: every start that no earlier start can disturb
        free = ~used
        alive = (free[seg_src] & free[seg_dst]).nonzero().squeeze(1)
        a_src, a_dst, a_score = seg_src[alive], seg_dst[alive], seg_score[alive]
        # -(key of the earliest free segment that reaches each segment), forwards over alive edges.
        # Free segments that are not starts reach only themselves, and anything a start reaches
        # comes after it in the order, so they never change the readiness test below.
        neg_first = torch.where(free, neg_order_key, -big)
        for _ in range(hops):
            neg_first = neg_first.scatter_reduce(0, a_dst, neg_first[a_src], "amax")
        # Backwards, in one scatter per hop: column 0 = height (longest path in hits from each
        # segment), 1 = -(earliest key reaching anything this segment reaches), 2 = height in
        # segments (bounds the loops of the next round).
        base = torch.stack([zeros, neg_first, zeros], dim=1)
        add_len = torch.stack([torch.where(free, seg_len, 0), zeros, free.long()], dim=1)
        state = base + add_len
        index = a_src.unsqueeze(1).expand(-1, 3)
        for _ in range(hops):
            state = base.scatter_reduce(0, index, state[a_dst], "amax") + add_len
        height = state[:, 0]
        start = free & (height >= 2)  # its best path has at least two hits
        ready = start & (state[:, 1] == neg_order_key)

        # Best successor: keeps the path longest, then highest score, then lowest row.
        keeps_longest = height[a_dst] == (height - seg_len)[a_src]
        top = torch.full((num_segments,), -2.0, dtype=a_score.dtype, device=device)
        top = top.scatter_reduce(0, a_src, torch.where(keeps_longest, a_score, -1.0), "amax")
        chosen = keeps_longest & (a_score == top[a_src])
        next_seg = torch.full((num_segments + 1,), num_segments, dtype=torch.long, device=device)
        next_seg = next_seg.scatter_reduce(0, torch.where(chosen, a_src, num_segments), a_dst, "amin")
        next_seg[num_segments] = num_segments  # the spare slot collects the edges that were not chosen
        owner = torch.cat([torch.where(ready, segments, -1), no_owner])
        for _ in range(hops):  # hand the start's id down its chain of best successors
            owner = owner.scatter_reduce(0, next_seg, owner, "amax")
        taken = owner[:num_segments] >= 0
        start_of = torch.where(taken, owner[:num_segments], start_of)
        used = used | taken
        # Starts never appear later (used only grows): done once every start is used. Paths left
        # for the next round are no longer (in segments) than the unused ones of this round.
        left_hops = torch.where(used, 1, state[:, 2]).max() - 1
        flags: List[int] = torch.stack([(start > used).any().long(), left_hops]).tolist()
        pending, hops = flags[0] > 0, flags[1]
    start_hit = torch.where(start_of >= 0, heads[start_of.clamp(min=0)], -1)
    return start_hit[segment_of[head]]
