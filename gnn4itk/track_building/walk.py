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

    Every pass over the edges moves all quantities at once: the edge list is doubled (rows ``[0, E)``
    read their source and write their target, rows ``[E, 2E)`` the reverse) and one scatter-max per
    hop updates a state with a column per quantity; rows add ``blocked()`` to the columns that do not
    travel their way, so those never win. Used segments are blocked the same way (a penalty added
    to what is read from them) instead of rewriting the edges every round.

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
    state, hops = _first_pass(gather_at, scatter_to, step, free, num_nodes)
    # Topological order of the starts: depth, then row (keys below 2**61 for < 2**30 nodes).
    neg_order_key = -(state.select(1, 3) * num_nodes + nodes)
    start_of = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    # Best successor in one scatter-min of a packed key: descending score, then the target's row.
    no_successor = 9_223_372_036_854_775_807  # 2**63 - 1, above every packed key
    successor_key = ((8_589_934_591 - positive_float_key(score)) << 30) | dst
    if present is not None:
        successor_key = torch.where(present, successor_key, no_successor)
    row_mask = 1_073_741_823  # 2**30 - 1 (literal: ** gives a float in TorchScript)
    # A node without a usable successor keeps this key: above every real one, it decodes to itself.
    self_key = nodes | (8_589_934_591 << 30)
    # Later rounds: columns 0-1 backward (heights without the segment itself), 2 forward
    # (-key of the earliest free segment reaching each one); the same doubled rows as the first pass.
    step = step.narrow(1, 0, 3)
    scatter_to = scatter_to.unsqueeze(1).expand(-1, 3)
    seed = torch.stack([torch.zeros_like(nodes), torch.zeros_like(nodes), neg_order_key], dim=1)
    # Longest free path after each segment, in hits and in segments; -key of the earliest free
    # segment reaching it.
    after_hits, after_segments, neg_first = state.select(1, 0), state.select(1, 1), state.select(1, 2)
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
            penalty = torch.where(free, 0, blocked()).unsqueeze(1)
            moving = seed.clone()
            for _ in range(hops):
                moving.scatter_reduce_(0, scatter_to, take(moving + penalty, gather_at) + step, "amax")
            after_hits, after_segments, neg_first = moving.select(1, 0), moving.select(1, 1), moving.select(1, 2)
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
    """Rows of the doubled edge list: ``gather_at`` LongTensor [2E] (node read), ``scatter_to``
    LongTensor [2E] (node written) and ``step`` LongTensor [2E, 5] (added to what is read), in the
    column layout of :func:`_first_pass`; edges not ``present`` (BoolTensor [E] or None) are
    blocked in every column."""
    real = src != dst  # a (parked) self-loop adds no hop
    if present is not None:
        real = real & present
    real = real.long()
    never = torch.full_like(real, blocked())
    zero = torch.zeros_like(real)
    forward = torch.stack([never, never, zero, take(seg_len, src), real], dim=1)
    backward = torch.stack([take(seg_len, dst), real, never, never, never], dim=1)
    step = torch.cat([forward, backward])
    if present is not None:
        step = torch.where(present.repeat(2).unsqueeze(1), step, blocked())
    return torch.cat([src, dst]), torch.cat([dst, src]), step


def _first_pass(
    gather_at: Tensor, scatter_to: Tensor, step: Tensor, free: Tensor, num_nodes: int
) -> Tuple[Tensor, int]:
    """Depth and the first round's heights and earliest starts, in one scatter per hop.

    Columns of the state: 0 = longest path in hits after the segment (its height without itself),
    1 = the same in segments, 2 = -(row) of the earliest *source* reaching the segment, 3 = depth in
    hits (longest path from a source to the head), 4 = depth in segment hops. Column 2 needs no
    depth: every segment is reached by a source (depth 0, the smallest keys), so the earliest free
    segment reaching it is the source with the lowest row.

    Args:
        gather_at, scatter_to, step: the doubled edge list (:func:`_doubled_edges`), [2E], [2E]
            and [2E, 5].
        free: BoolTensor [S], segments that take part.
        num_nodes: S.

    Returns:
        ``state`` LongTensor [S, 5] and the longest path in segment edges.

    Raises:
        RuntimeError: if the segment graph has a directed cycle.
    """
    num_edges = gather_at.numel() // 2
    nodes = torch.arange(num_nodes, device=free.device)
    real = step[:num_edges, 4]  # forward rows: 1 for an edge between two segments, else 0 or blocked
    has_incoming = torch.zeros_like(nodes).scatter_reduce_(0, scatter_to[:num_edges], real, "amax") > 0
    # Non-sources start below every row (-2**31, not blocked(): the state's sum must fit an int64).
    source_key = torch.where(free & ~has_incoming, -nodes, -2_147_483_648)
    zero = torch.zeros_like(nodes)
    state = torch.stack([zero, zero, source_key, zero, zero], dim=1)
    scatter_to = scatter_to.unsqueeze(1).expand(-1, 5)
    total = state[0, 0]  # placeholder for TorchScript's types: set after round 2, before it is read
    for rounds in range(num_nodes + 4):  # an acyclic graph has fewer hops than segments
        state.scatter_reduce_(0, scatter_to, take(state, gather_at) + step, "amax")
        # The first rounds always change something on real graphs: checking them would only cost
        # host syncs (a round without change leaves the state as it is). Every column only grows,
        # so an unchanged sum means an unchanged state; one sync reads that and the longest path.
        if rounds >= 3:
            new_total = state.sum()
            flags: List[int] = torch.stack([new_total - total, state[:, 4].max()]).tolist()
            if flags[0] == 0:
                return state, flags[1]
            total = new_total
        elif rounds == 2:
            total = state.sum()
    raise RuntimeError("the walk graph has a directed cycle; orient the edges (orient=True)")
