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
   (depth, row). A start is processed now if no earlier start reaches any segment of its best path:
   the earlier starts' paths lie inside what they reach, so they never touch it, and taking hits
   away elsewhere only removes other paths, so it stays the best one in the sequential order.
   ``m`` (forward min of start keys) gathered along the best-successor chain finds them; the
   earliest start is always ready.
5. Ready starts follow their best-successor chains and mark them used; repeat until no start is left
   (or, once every start left is a lone segment, each takes itself).
6. On dense graphs rounds stall (few ready starts each); ``sequential_below`` then hands the rest to
   :func:`gnn4itk.track_building.sequential.walk_sequential`, which runs the reference's order on
   the host.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from gnn4itk.track_building.ops import build_segments, take
from gnn4itk.track_building.sequential import walk_sequential


def positive_float_key(values: Tensor) -> Tensor:
    """An integer key that orders like the values, for positive float32 values (scores > cc_cut >= 0).

    Exponent and 24-bit mantissa from ``frexp`` (TorchScript cannot reinterpret the bits); +inf gets
    the largest key.

    Args:
        values: FloatTensor [E], positive.

    Returns:
        LongTensor [E] in [2**24, 2**33).
    """
    mantissa, exponent = torch.frexp(values)
    key = ((exponent.long() + 149) << 24) | (mantissa * 16777216.0).long()
    return torch.where(torch.isinf(values), 8_589_934_591, key)  # 2**33 - 1


def walk_tracks(
    src: Tensor, dst: Tensor, score: Tensor, num_nodes: int, compact: bool = False, sequential_below: int = 0
) -> Tensor:
    """Walkthrough over a pruned DAG.

    Node indices must be ordered like the spacepoint rows (compaction with ``nonzero`` keeps that),
    since rows break ties. Nodes without an edge are simply never part of a track, so the graph can
    be given over all spacepoints.

    Args:
        src, dst: LongTensor [E], pruned walk edges.
        score: FloatTensor [E].
        num_nodes: N.
        compact: number the segments 0..S-1 and keep only the edges between them (two ``nonzero``,
            i.e. host syncs: the better choice on the CPU, where the work grows with the array
            sizes); otherwise a segment is its head node and masked edges become self-loops (no
            syncs, arrays of size N and E: the better choice on the GPU, where the host's cost per
            op sets the time). Both give identical results.
        sequential_below: once a round finds fewer ready starts than this, finish the walk one start
            at a time on the host (:func:`~gnn4itk.track_building.sequential.walk_sequential`,
            for dense graphs where rounds stall). 0: rounds only. Identical results either way.

    Returns:
        LongTensor [N]: for every node, the node that started its track, or -1.
    """
    if num_nodes > 1_073_741_824:
        raise ValueError(f"the walk packs rows into 30 bits: {num_nodes} spacepoints are too many")
    if num_nodes == 0:
        return torch.zeros(0, dtype=torch.long, device=src.device)
    head, seg_len, link, _ = build_segments(src, dst, num_nodes)
    nodes = torch.arange(num_nodes, device=src.device)
    return walk_segments(src, dst, score, head, seg_len, link, head != nodes, compact, sequential_below)


def walk_segments(
    src: Tensor,
    dst: Tensor,
    score: Tensor,
    head: Tensor,
    seg_len: Tensor,
    link: Tensor,
    outside: Tensor,
    compact: bool = False,
    sequential_below: int = 0,
    present: Optional[Tensor] = None,
) -> Tensor:
    """Walkthrough over a pruned DAG whose segments are already built (:func:`walk_tracks` without
    the :func:`~gnn4itk.track_building.ops.build_segments` call, for callers that build them
    together with other graphs' segments).

    Args:
        src, dst: LongTensor [E], pruned walk edges over N nodes ordered like the spacepoint rows.
        score: FloatTensor [E].
        head, seg_len: LongTensor [N] each, link: BoolTensor [E]: the segments of the edges.
        outside: BoolTensor [N], True on every node that is no segment head (``head != arange(N)``)
            and on the heads of segments that must not take part (their whole component must be
            outside: edges between taking and non-taking segments are not allowed).
        compact, sequential_below: as in :func:`walk_tracks`.
        present: BoolTensor [E] or None: only these edges belong to the pruned graph (the others
            are ignored; ``link`` must be False on them), so that it needs no compaction.

    Returns:
        LongTensor [N]: for every node, the node that started its track, or -1.
    """
    device = src.device
    num_nodes = head.numel()
    if num_nodes > 1_073_741_824:
        raise ValueError(f"the walk packs rows into 30 bits: {num_nodes} spacepoints are too many")
    if num_nodes == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    if compact:
        heads = (~outside).nonzero().squeeze(1)
        num_segments = heads.numel()
        if num_segments == 0:  # no walk component
            return torch.full((num_nodes,), -1, dtype=torch.long, device=device)
        segment_of = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
        segment_of.index_copy_(0, heads, torch.arange(num_segments, device=device))
        between = ~link & ~take(outside, take(head, src))
        if present is not None:
            between = between & present
        between = between.nonzero().squeeze(1)
        seg_edges = torch.stack([take(segment_of, take(head, take(src, between))), take(segment_of, take(dst, between))])
        used = torch.zeros(num_segments, dtype=torch.bool, device=device)
        start_of = _walk_rounds(seg_edges, take(score, between), take(seg_len, heads), used, sequential_below)
        start_row = torch.where(start_of >= 0, take(heads, start_of.clamp(min=0)), -1)
        return torch.where(take(outside, head), -1, take(start_row, take(segment_of, head).clamp(min=0)))
    # A segment is represented by its head node, so ties by segment number are ties by row, and
    # nothing needs compacting (no host syncs). Edges that do not count (links, and later edges
    # with a used end) become self-loops on a used node, where they change nothing. (Not on one
    # shared spare slot: a million atomics on one address serialise the scatters on the GPU.)
    # The target of a link is no head: its seg_len is 0, so its self-loop adds no depth. Only heads
    # take part; every other node counts as used from the start.
    seg_edges = torch.stack([torch.where(link, dst, take(head, src)), dst])
    return take(_walk_rounds(seg_edges, score, seg_len, outside, sequential_below, present), head)


def _walk_rounds(
    seg_edges: Tensor,
    score: Tensor,
    seg_len: Tensor,
    used: Tensor,
    sequential_below: int = 0,
    present: Optional[Tensor] = None,
) -> Tensor:
    """The rounds of the walk on the segment graph (see the module docstring).

    Every pass over the edges moves all quantities at once, in one scatter-max per hop over a
    doubled edge list and a doubled node state (:func:`_doubled_edges`): rows ``[0, S)`` of the
    state hold what travels forward (earliest start, depth), rows ``[S, 2S)`` what travels backward
    (longest path after the segment). Used segments are blocked by a penalty added to what is read
    from them instead of rewriting the edges every round; absent edges are blocked in their step.

    Args:
        seg_edges: LongTensor [2, E], segment edges; self-loops only on nodes that are used from
            the start and have ``seg_len`` 0 (they change nothing).
        score: FloatTensor [E].
        seg_len: LongTensor [S], hits per segment (0 on nodes that are no segment).
        used: BoolTensor [S], nodes that take no part; edges join only two used or two unused nodes.
        sequential_below: finish sequentially once a round has fewer ready starts (0: never).
        present: BoolTensor [E] or None: only these edges count (the others are blocked).

    Returns:
        LongTensor [S]: the segment that started each segment's track, or -1.
    """
    device = seg_len.device
    num_nodes = seg_len.numel()
    nodes = torch.arange(num_nodes, device=device)
    src, dst = seg_edges[0], seg_edges[1]
    free = ~used
    gather_at, scatter_to, step = _doubled_edges(src, dst, seg_len, present)
    state, hops = _first_pass(dst, gather_at, scatter_to, step, free)
    forward, backward = state.narrow(0, 0, num_nodes), state.narrow(0, num_nodes, num_nodes)
    # Topological order of the starts: depth, then row (keys below 2**61 for < 2**30 nodes).
    neg_order_key = -(forward.select(1, 1) * num_nodes + nodes)
    start_of = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    # Best successor in one scatter-min of a packed key: descending score, then the target's row.
    no_successor = 9_223_372_036_854_775_807  # 2**63 - 1, above every packed key
    successor_key = ((8_589_934_591 - positive_float_key(score)) << 30) | dst
    if present is not None:
        successor_key = torch.where(present, successor_key, no_successor)
    row_mask = 1_073_741_823  # 2**30 - 1 (literal: ** gives a float in TorchScript)
    # A node without a usable successor keeps this key: above every real one, it decodes to itself.
    self_key = nodes | (8_589_934_591 << 30)
    # Later rounds: forward rows start from the order keys (column 1, the depth, is recomputed
    # and not used), backward rows from 0.
    seed = torch.cat([torch.stack([neg_order_key, torch.zeros_like(nodes)], dim=1), torch.zeros_like(forward)])
    scatter_to = scatter_to.unsqueeze(1).expand(-1, 2)
    # Longest free path after each segment, in hits and in segments; -key of the earliest free
    # segment reaching it.
    after_hits, after_segments, neg_first = backward.select(1, 0), backward.select(1, 1), forward.select(1, 0)
    pending = True
    while pending:  # one round: every start that no earlier start can disturb
        # Height: the longest free path from the segment, in hits. Used nodes read -1: no edge into
        # them keeps a path longest, and none is a start.
        height = torch.where(free, after_hits + seg_len, -1)
        start = height >= 2  # its best path has at least two hits

        # Best successor: keeps the path longest, then highest score, then lowest row.
        keeps_longest = take(height, dst) == take(after_hits, src)
        best = self_key.clone()
        best.scatter_reduce_(0, src, torch.where(keeps_longest, successor_key, no_successor), "amin")
        next_seg = best & row_mask
        # A start is ready when no earlier start reaches any segment of its best path: the earlier
        # starts' paths then never touch it, so it stays the best path in the sequential order.
        # (-earliest key reaching anything on the path from each segment, gathered up the chain.)
        jumps = _chain_jumps(next_seg, hops)
        on_path = neg_first
        for jump in jumps:
            on_path = torch.maximum(on_path, take(on_path, jump))
        ready = start & (on_path == neg_order_key)
        if sequential_below > 0 and int(ready.sum()) < sequential_below:
            # Rounds stall (dense graphs): the rest one start at a time, from this round's state.
            return walk_sequential(seg_edges, score, seg_len, ~free, height, -neg_order_key, start_of, present)
        owner = torch.where(ready, nodes, -1)
        for jump in jumps:  # hand the start's id down its chain of best successors
            owner = owner.scatter_reduce(0, jump, owner, "amax")
        start_of = torch.maximum(start_of, owner)  # -1 wherever nothing is taken now
        free = free & (owner < 0)
        # Starts never appear later (used only grows): done once every start is used. Every free
        # path of two or more segments begins at a start, and paths only shrink, so the longest
        # unused start (in segments) bounds the loops of the next round. One sync reads both.
        left = start & free
        longest_left = int(torch.where(left, after_segments, -1).max()) + 1
        if longest_left == 1:
            # Every start left is one segment without a free successor: nothing can reach or take
            # it any more, so each is its own track. This saves the last round.
            start_of = torch.where(left, nodes, start_of)
            longest_left = 0
        pending, hops = longest_left > 0, longest_left - 1
        if pending:
            # Heights and earliest keys over the free segments: used ones read as blocked().
            penalty = torch.where(free, 0, blocked()).repeat(2).unsqueeze(1)
            moving = seed.clone()
            for _ in range(hops):
                moving.scatter_reduce_(0, scatter_to, take(moving + penalty, gather_at) + step, "amax")
            backward = moving.narrow(0, num_nodes, num_nodes)
            after_hits, after_segments = backward.select(1, 0), backward.select(1, 1)
            neg_first = moving.select(1, 0).narrow(0, 0, num_nodes)
    return start_of


def _chain_jumps(next_seg: Tensor, hops: int) -> List[Tensor]:
    """Pointers that, applied in turn, cover ``hops`` steps along the best-successor chains.

    A gather (or scatter) along each of them in turn reaches every segment up to ``hops`` steps
    down the chain: ``hops`` times ``next_seg`` itself, or, where fewer ops, pointer doubling
    (``next_seg`` applied 1, 2, 4, ... times: ``k`` pointers cover ``2**k - 1`` steps and cost
    ``k - 1`` gathers to build). Chain ends point to themselves, so going further changes nothing.

    Args:
        next_seg: LongTensor [S], the best successor of each segment (itself at a chain's end).
        hops: steps to cover.

    Returns:
        List of LongTensor [S].
    """
    if hops < 3:  # doubling saves ops only from 3 steps on
        return [next_seg for _ in range(hops)]
    jumps = [next_seg]
    covered = 1
    while covered < hops:
        jumps.append(take(jumps[-1], jumps[-1]))
        covered = 2 * covered + 1
    return jumps


def blocked() -> int:
    """-2**61: added to a value that must not count in a scatter-max (below every real value; three
    of them still fit an int64). A function: TorchScript cannot read module-level ints."""
    return -2_305_843_009_213_693_952


def _doubled_edges(
    src: Tensor, dst: Tensor, seg_len: Tensor, present: Optional[Tensor]
) -> Tuple[Tensor, Tensor, Tensor]:
    """The doubled edge list over the doubled node state of the walk's passes.

    Node ``v`` has two rows in the state: ``v`` (forward: column 0 = -key of the earliest start
    reaching it, 1 = depth in hits) and ``S + v`` (backward: column 0 = longest path in hits after
    it, 1 = the same in segments). Edge rows ``[0, E)`` read ``src`` and write ``dst`` (forward),
    rows ``[E, 2E)`` read ``S + dst`` and write ``S + src`` (backward), so one scatter-max moves
    both directions and every column of every row carries a real quantity.

    Args:
        src, dst: LongTensor [E], segment edges over S nodes (self-loops: parked links).
        seg_len: LongTensor [S].
        present: BoolTensor [E] or None: edges not present are blocked in every column.

    Returns:
        ``gather_at`` LongTensor [2E] (row read), ``scatter_to`` LongTensor [2E] (row written) and
        ``step`` LongTensor [2E, 2] (added to what is read).
    """
    num_nodes = seg_len.numel()
    real = (src != dst).long()  # a (parked) self-loop adds no hop
    forward = torch.stack([torch.zeros_like(real), take(seg_len, src)], dim=1)
    backward = torch.stack([take(seg_len, dst), real], dim=1)
    step = torch.cat([forward, backward])
    if present is not None:
        step = torch.where(present.repeat(2).unsqueeze(1), step, blocked())
    return torch.cat([src, dst + num_nodes]), torch.cat([dst, src + num_nodes]), step


def _first_pass(
    dst: Tensor, gather_at: Tensor, scatter_to: Tensor, step: Tensor, free: Tensor
) -> Tuple[Tensor, int]:
    """Depth and the first round's heights and earliest starts, in one scatter per hop.

    The state has the layout of :func:`_doubled_edges`. The earliest start needs no depth in the
    first round: every segment is reached by a source (depth 0, the smallest keys), so the earliest
    free segment reaching it is the source with the lowest row: sources start at ``-row``, the other
    segments below every row.

    Args:
        dst: LongTensor [E], edge targets (for the sources: segments without a present incoming edge).
        gather_at, scatter_to, step: the doubled edge list (:func:`_doubled_edges`).
        free: BoolTensor [S], segments that take part.

    Returns:
        ``state`` LongTensor [2S, 2] and the longest path in segment edges.

    Raises:
        RuntimeError: if the segment graph has a directed cycle.
    """
    num_nodes = free.numel()
    nodes = torch.arange(num_nodes, device=free.device)
    real = step.select(1, 1).narrow(0, dst.numel(), dst.numel())  # backward rows: 1, 0 or blocked
    has_incoming = torch.zeros_like(nodes).scatter_reduce_(0, dst, real, "amax") > 0
    # Non-sources start below every row (-2**31, not blocked(): the state's sum must fit an int64).
    source_key = torch.where(free & ~has_incoming, -nodes, -2_147_483_648)
    zero = torch.zeros_like(nodes)
    state = torch.cat([torch.stack([source_key, zero], dim=1), torch.zeros((num_nodes, 2), dtype=torch.long, device=free.device)])
    scatter_to = scatter_to.unsqueeze(1).expand(-1, 2)
    total = state[0, 0]  # placeholder for TorchScript's types: set after round 2, before it is read
    for rounds in range(num_nodes + 4):  # an acyclic graph has fewer hops than segments
        state.scatter_reduce_(0, scatter_to, take(state, gather_at) + step, "amax")
        # The first rounds always change something on real graphs: checking them would only cost
        # host syncs (a round without change leaves the state as it is). Every column only grows,
        # so an unchanged sum means an unchanged state; one sync reads that and the longest path
        # in segment edges (the largest count of segments after a segment: backward column 1).
        if rounds >= 3:
            new_total = state.sum()
            flags: List[int] = torch.stack([new_total - total, state.select(1, 1).narrow(0, num_nodes, num_nodes).max()]).tolist()
            if flags[0] == 0:
                return state, flags[1]
            total = new_total
        elif rounds == 2:
            total = state.sum()
    raise RuntimeError("the walk graph has a directed cycle; orient the edges (orient=True)")
