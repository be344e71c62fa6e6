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

from gnn4itk.gather import take
from gnn4itk.ordering import float_order_key
from gnn4itk.track_building.ops import arange_of, build_segments, filled, fresh, negated
from gnn4itk.track_building.sequential import walk_sequential


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
    head, seg_len, _, link, in_degree, _ = build_segments(src, dst, num_nodes)
    nodes = torch.arange(num_nodes, device=src.device)
    start, _ = walk_segments(
        src, dst, score, head, seg_len, link, head != nodes, compact, sequential_below, in_degree=in_degree
    )
    return start


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
    key: Optional[Tensor] = None,
    in_degree: Optional[Tensor] = None,
    pending: Optional[Tensor] = None,
    positions: Optional[Tensor] = None,
) -> Tuple[Tensor, int]:
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
        key: LongTensor [E] or None: :func:`~gnn4itk.ordering.float_order_key` of ``score``, if the caller has it.
        in_degree: LongTensor [N] or None: present edges into each node (from
            :func:`~gnn4itk.track_building.ops.build_segments`), if the caller has it.
        pending: LongTensor [] or None: checks the caller left for the walk's first host sync. If it
            is not 0 there, the walk stops at once and returns it.
        positions: LongTensor [>= N] or None: ``arange``, if the caller shares one.

    Returns:
        LongTensor [N]: for every node, the node that started its track, or -1; and 0, or the value
        of ``pending`` if that was not 0 (then the tracks are meaningless).
    """
    device = src.device
    num_nodes = head.numel()
    if num_nodes > 1_073_741_824:
        raise ValueError(f"the walk packs rows into 30 bits: {num_nodes} spacepoints are too many")
    if key is None:
        key = float_order_key(score)
    if num_nodes == 0:
        return torch.zeros(0, dtype=torch.long, device=device), _read(pending)
    if compact:
        heads = negated(outside).nonzero().squeeze(1)
        num_segments = heads.numel()
        if num_segments == 0:  # no walk component
            no_track = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
            return no_track, _read(pending)
        segment_of = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
        segment_of.index_copy_(0, heads, torch.arange(num_segments, device=device))
        between = negated(link) & negated(take(outside, take(head, src)))
        if present is not None:
            between = between & present
        between = between.nonzero().squeeze(1)
        start_of, flags = _walk_rounds(
            take(segment_of, take(head, take(src, between))),
            take(segment_of, take(dst, between)),
            take(score, between),
            take(key, between),
            take(seg_len, heads),
            torch.ones(num_segments, dtype=torch.bool, device=device),
            None,
            None,
            None,
            sequential_below,
            pending,
            positions,
        )
        if flags != 0:
            return head, flags  # (meaningless, sized like the result)
        start_row = torch.where(start_of >= 0, take(heads, start_of.clamp(min=0)), -1)
        return torch.where(take(outside, head), -1, take(start_row, take(segment_of, head).clamp(min=0))), 0
    # A segment is represented by its head node, so ties by segment number are ties by row, and
    # nothing needs compacting (no host syncs). Links become self-loops on their target (no head:
    # its seg_len is 0, so they move nothing; not one shared spare slot: a million atomics on one
    # address serialise the scatters on the GPU); absent edges are blocked in the walk's steps.
    # Only heads take part; every other node counts as used from the start.
    seg_src = torch.where(link, dst, take(head, src))
    start_of, flags = _walk_rounds(
        seg_src, dst, score, key, seg_len, negated(outside), present, link, in_degree, sequential_below, pending, positions
    )
    return take(start_of, head), flags


def _read(pending: Optional[Tensor]) -> int:
    """The value of ``pending`` (one host sync), 0 for None."""
    if pending is None:
        return 0
    return int(pending)


def _walk_rounds(
    src: Tensor,
    dst: Tensor,
    score: Tensor,
    key: Tensor,
    seg_len: Tensor,
    free: Tensor,
    present: Optional[Tensor],
    link: Optional[Tensor],
    in_degree: Optional[Tensor],
    sequential_below: int,
    pending: Optional[Tensor],
    positions: Optional[Tensor] = None,
) -> Tuple[Tensor, int]:
    """The rounds of the walk on the segment graph (see the module docstring).

    Every pass over the edges moves all quantities at once, in one gather, one add and one
    scatter-max per hop over a flat, feature-major state of four quantities per segment (element
    gathers only: see :func:`~gnn4itk.track_building.ops.take`):

    ======== ========================================== ========= ======== ============
    rows      quantity (per segment ``v``)               reads     writes   step
    ======== ========================================== ========= ======== ============
    [0, S)    -key of the earliest free start reaching   ``src``   ``dst``  0
    [S, 2S)   longest path after ``v``, in hits          ``dst``   ``src``  len(dst)
    [2S, 3S)  longest path after ``v``, in segments      ``dst``   ``src``  1
    [3S, 4S)  depth (longest path before ``v``, in hits) ``src``   ``dst``  len(src)
    ======== ========================================== ========= ======== ============

    The depth is needed once (first pass); later passes move the first three only. Used segments
    are blocked by a step of ``blocked()`` on the edges that read them (one gather per round
    instead of rewriting the edges); absent edges are blocked in every pass.

    Args:
        src, dst: LongTensor [E], segment edges; self-loops only on nodes that are used from the
            start and have ``seg_len`` 0 (parked links, which change nothing), or on cycles.
        score: FloatTensor [E]; key: LongTensor [E], its :func:`~gnn4itk.ordering.float_order_key`.
        seg_len: LongTensor [S], hits per segment (0 on nodes that are no segment).
        free: BoolTensor [S], nodes that take part; edges join only two free or two other nodes.
        present: BoolTensor [E] or None: only these edges count (the others are blocked).
        link: BoolTensor [E] or None: parked links (present, but no hop).
        in_degree: LongTensor [S] or None: present edges into each node (else counted here).
        sequential_below: finish sequentially once a round has fewer ready starts (0: never).
        pending, positions: see :func:`walk_segments`.

    Returns:
        LongTensor [S]: the segment that started each segment's track, or -1; and the flags of
        ``pending`` (0: none).
    """
    device = seg_len.device
    num_nodes = seg_len.numel()
    num_edges = src.numel()
    nodes = arange_of(num_nodes, positions, device)
    if present is None:
        present = torch.ones(num_edges, dtype=torch.bool, device=device)
    real = present if link is None else present ^ link  # links are present edges
    if in_degree is None:
        in_degree = torch.zeros_like(nodes).scatter_add_(0, dst, real.long())
    # The earliest start needs no depth in the first pass: every segment is reached by a source
    # (depth 0, the smallest keys), so the earliest free segment reaching it is the source with the
    # lowest row: sources start at -row, the other segments below every row (-2**31, not
    # blocked(): blocked steps are added to what is read, and the sums must fit an int64).
    source = free & (in_degree == 0)
    zero = filled(free, 0)
    state = torch.cat([torch.where(source, -nodes, -2_147_483_648), zero, zero, zero])
    start_of = filled(free, -1)
    # The segment lengths at both ends of every edge, and whether its source is a source, in one
    # gather.
    ends = torch.cat([src, dst])
    end_info = take(seg_len * 2 + source.long(), ends)
    len_src, len_dst = end_info[:num_edges] >> 1, end_info[num_edges:] >> 1
    absent = torch.where(present, 0, blocked())
    hits_step, segments_step = torch.where(present, len_dst, blocked()), torch.where(real, 1, absent)
    depth_step = torch.where(present, len_src, blocked())
    step = torch.cat([absent, hits_step, segments_step, depth_step])
    gather_at = torch.cat([src, dst + num_nodes, dst + 2 * num_nodes, src + 3 * num_nodes])
    scatter_to = torch.cat([dst, src + num_nodes, src + 2 * num_nodes, dst + 3 * num_nodes])
    # What the first hop reads needs no gather: the seeds at the edges' sources, zeros elsewhere.
    source_key = torch.where((end_info[:num_edges] & 1) > 0, -src, -2_147_483_648)
    first_hop = torch.cat([source_key + absent, hits_step, segments_step, depth_step])
    hops, flags, last_read = _first_pass(state, gather_at, scatter_to, step, first_hop, num_nodes, pending)
    if flags != 0:
        return nodes, flags
    forward_key, after_hits = state[:num_nodes], state[num_nodes : 2 * num_nodes]
    after_segments = state[2 * num_nodes : 3 * num_nodes]
    # Topological order of the starts: depth, then row (keys below 2**61 for < 2**30 nodes).
    neg_order_key = -(state[3 * num_nodes :] * num_nodes + nodes)
    # Later passes: forward rows start from the order keys, backward rows from 0 (used segments
    # from blocked(), set each round). Their first hop reads the seeds (if the read segment is
    # free), the same in every round: the order key at each edge's source, zeros elsewhere (the
    # first pass's last hop read the sources' depths, converged).
    seed = torch.cat([neg_order_key, zero, zero])
    zero_edges = filled(present, 0)
    seed_read = torch.cat([-(last_read[3 * num_edges :] * num_nodes + src), zero_edges, zero_edges])
    gather_at, scatter_to, step = gather_at[: 3 * num_edges], scatter_to[: 3 * num_edges], step[: 3 * num_edges]
    read_node = torch.cat([ends, dst])  # the segment each of those edge rows reads
    # Best successor in one scatter-min of a packed key: descending score, then the target's row.
    no_successor = 9_223_372_036_854_775_807  # 2**63 - 1, above every packed key
    successor_key = torch.where(present, ((8_589_934_591 - key) << 30) | dst, no_successor)
    row_mask = 1_073_741_823  # 2**30 - 1 (literal: ** gives a float in TorchScript)
    pending_round = True
    while pending_round:  # one round: every start that no earlier start can disturb
        # Height: the longest free path from the segment, in hits. Used nodes read -1: no edge into
        # them keeps a path longest, and none is a start.
        height = torch.where(free, after_hits + seg_len, -1)
        start = height >= 2  # its best path has at least two hits

        # Best successor of each free segment: keeps the path longest, then highest score, then
        # lowest row. (Used segments get none: chains from free starts never enter them.)
        end_height = take(height, ends)
        src_height = end_height[:num_edges]
        keeps_longest = (end_height[num_edges:] == src_height - len_src) & (src_height >= 0)
        # A node without a usable successor keeps its self key: above every real one, it decodes to
        # itself. (fresh: a copy of nodes made in the kernel that computes start.)
        best = fresh(nodes, start) | (8_589_934_591 << 30)
        best.scatter_reduce_(0, src, torch.where(keeps_longest, successor_key, no_successor), "amin")
        # A start is ready when no earlier start reaches any segment of its best path: the earlier
        # starts' paths then never touch it, so it stays the best path in the sequential order.
        # (-earliest key reaching anything on the path from each segment, gathered up the chain
        # by pointer doubling: the best successor applied 1 (next_seg), 2 (twice), 4, 8, ...
        # (further) times; on_path, combined along the last pointer here, covers at least
        # ``hops`` steps. Up to 3 steps, the usual case, it is code without a loop, which the
        # fuser merges across.)
        next_seg = best & row_mask
        twice, last, further, on_path = _chain_jumps(next_seg, forward_key, hops)
        on_path = torch.max(on_path, take(on_path, last))
        ready = start & (on_path == neg_order_key)
        # Ready starts hand their id down their chains: one scatter per pointer, in place on the
        # halves of one fresh buffer (a scatter may not read the tensor it writes).
        own = torch.where(ready, nodes, -1)
        marks = torch.cat([own, own])
        if sequential_below > 0 and int(ready.sum()) < sequential_below:
            # Rounds stall (dense graphs): the rest one start at a time, from this round's state.
            seg_edges = torch.stack([src, dst])
            used = negated(free)
            return walk_sequential(seg_edges, score, seg_len, used, height, -neg_order_key, start_of, present), 0
        owner = _hand_down(marks, next_seg, twice, further)
        start_of = torch.max(start_of, owner)  # -1 wherever nothing is taken now
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
        pending_round, hops = longest_left > 0, longest_left - 1
        if pending_round:
            # Heights and earliest keys over the free segments: edges that read a used segment are
            # blocked, and used segments start blocked (what free ones write into them is never
            # read).
            readable = take(free, read_node)
            step_now = torch.where(readable, step, step + blocked())
            moving = torch.where(torch.cat([free, free, free]), seed, blocked())
            # (A row that reads a used segment writes step_now alone: below every free seed.)
            moving.scatter_reduce_(0, scatter_to, torch.where(readable, seed_read + step, step_now), "amax")
            for _ in range(hops - 1):
                moving.scatter_reduce_(0, scatter_to, take(moving, gather_at) + step_now, "amax")
            forward_key = moving[:num_nodes]
            after_hits, after_segments = moving[num_nodes : 2 * num_nodes], moving[2 * num_nodes :]
    return start_of, 0


def _chain_jumps(next_seg: Tensor, forward_key: Tensor, hops: int) -> Tuple[Tensor, Tensor, List[Tensor], Tensor]:
    """Pointers along the best-successor chains, and the largest ``forward_key`` on a chain's start.

    Pointer doubling: ``next_seg`` applied 1, 2, 4, ... times. Each doubling step moves the running
    maximum and the pointer in one gather (of ``[maximum, pointer]`` at ``[pointer, S + pointer]``).
    Returned after ``k >= 2`` pointers, with the maximum over ``2**(k-1) - 1`` steps: one more
    gather along the last pointer (by the caller) covers ``2**k - 1 >= hops`` steps. Chain ends
    point to themselves, so going further changes nothing.

    Args:
        next_seg: LongTensor [S], the best successor of each segment (itself at a chain's end).
        forward_key: LongTensor [S].
        hops: steps to cover.

    Returns:
        LongTensor [S] each: ``next_seg`` applied twice and the last pointer; the pointers after
        the second (List of LongTensor [S], usually none: kept apart from ``next_seg``, whose
        kernel the fuser then shares with the code around); and the largest ``forward_key`` over
        the segment and the next ``2**(k-1) - 1`` segments of its chain.
    """
    num_nodes = forward_key.numel()  # (not next_seg's: that would wait for its kernel and split it)
    both = take(torch.cat([forward_key, next_seg]), torch.cat([next_seg, next_seg + num_nodes]))
    on_path = torch.max(forward_key, both[:num_nodes])
    twice = both[num_nodes:]
    jump = twice
    further: List[Tensor] = []
    covered = 3  # by on_path and the caller's gather along the last pointer
    while covered < hops:
        both = take(torch.cat([on_path, jump]), torch.cat([jump, jump + num_nodes]))
        on_path = torch.max(on_path, both[:num_nodes])
        jump = both[num_nodes:]
        further.append(jump)
        covered = 2 * covered + 1
    return twice, jump, further, on_path


def _hand_down(marks: Tensor, next_seg: Tensor, twice: Tensor, further: List[Tensor]) -> Tensor:
    """Hand each start's id down its chain: one scatter-max along each pointer of :func:`_chain_jumps`.

    The scatters run in place on the two halves of ``marks``, each reading the other (a scatter
    may not read the tensor it writes): the first moves the ids by one step into the upper half,
    the second the upper half by two steps into the lower half, and the maximum of both halves then
    covers three steps. From the third pointer on the halves are merged before each scatter.

    Args:
        marks: LongTensor [2S], fresh: twice the start's own id at each ready start, -1 elsewhere.
        next_seg, twice, further: the pointers (1, 2, then 4, 8, ... steps).

    Returns:
        LongTensor [S]: the id of the start whose chain (within the pointers' reach) holds each
        segment, -1 elsewhere. Chains of different ready starts are disjoint.
    """
    num_nodes = next_seg.numel()
    lower, upper = marks[:num_nodes], marks[num_nodes:]
    upper.scatter_reduce_(0, next_seg, lower, "amax")
    lower.scatter_reduce_(0, twice, upper, "amax")
    for jump in further:
        merged = torch.max(lower, upper)
        marks = torch.cat([merged, merged])
        lower, upper = marks[:num_nodes], marks[num_nodes:]
        upper.scatter_reduce_(0, jump, lower, "amax")
    return torch.max(lower, upper)


def blocked() -> int:
    """-2**61: added to a value that must not count in a scatter-max (below every real value; three
    of them still fit an int64). A function: TorchScript cannot read module-level ints."""
    return -2_305_843_009_213_693_952


def _first_pass(
    state: Tensor,
    gather_at: Tensor,
    scatter_to: Tensor,
    step: Tensor,
    first_hop: Tensor,
    num_nodes: int,
    pending: Optional[Tensor],
) -> Tuple[int, int, Tensor]:
    """Depth and the first round's heights and earliest starts, in one scatter per hop (in place).

    After ``k`` hops every quantity is exact for paths of up to ``k`` segment edges, and the longest
    path in segment edges (rows ``[2S, 3S)``) reads ``min(longest, k)``. So a maximum below ``k``
    means that everything has converged. Three hops run unchecked (mu=200 graphs need four), then
    one host sync per hop reads the maximum (and ``pending``).

    Args:
        state: LongTensor [4S], the layout of :func:`_walk_rounds`, seeded.
        gather_at, scatter_to, step: LongTensor [4E] each: the rows each edge row reads and writes,
            and what it adds.
        first_hop: LongTensor [4E], what the first hop writes (read from the seeds without a gather).
        num_nodes: S.
        pending: see :func:`walk_segments`.

    Returns:
        The longest path in segment edges; the flags of ``pending`` (0: none; else the state is not
        converged); and LongTensor [4E]: what the last hop read (the converged state at
        ``gather_at``).

    Raises:
        RuntimeError: if the segment graph has a directed cycle.
    """
    after_segments = state[2 * num_nodes : 3 * num_nodes]
    state.scatter_reduce_(0, scatter_to, first_hop, "amax")
    read = first_hop
    for hop in range(1, num_nodes + 4):  # an acyclic graph has fewer hops than segments
        read = take(state, gather_at)
        state.scatter_reduce_(0, scatter_to, read + step, "amax")
        if hop >= 3:
            longest = after_segments.max()
            if pending is None:
                most = int(longest)
            else:
                values: List[int] = torch.stack([longest, pending]).tolist()
                if values[1] != 0:
                    return -1, values[1], read
                most = values[0]
            if most <= hop:  # converged before this hop: it read the final state
                return most, 0, read
    raise RuntimeError("the walk graph has a directed cycle; orient the edges (orient=True)")
