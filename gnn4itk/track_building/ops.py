"""Graph primitives for GPU track building: pure torch, TorchScript-compatible, no custom ops.

Every function works on CPU and CUDA tensors and launches a number of kernels that depends on the
graph's *depth* (path lengths), never on its number of hits, edges or components.

On the GPU these graphs are small enough that the host's cost per op, not the kernels, sets the
latency, hence the habits here (see "How the GPU implementation works" in ``docs/track_building.md``):

* element gathers on 1-D tensors (:func:`gnn4itk.gather.take`: ``torch.gather`` on CUDA);
* several scatters into one zero-filled buffer (one allocation and fill kernel), values packed into
  one int64 where one scatter can carry two quantities, in-place scatters into fresh tensors;
* elementwise work written so that TorchScript's fuser can put it into few kernels: ``torch.max``
  of two tensors rather than ``torch.maximum``, ``== False`` rather than ``~`` on masks (neither
  ``maximum`` nor ``bitwise_not`` fuses: :func:`negated`), ``torch.where`` with scalars only inside fused
  expressions (alone it allocates two scalar tensors on the device);
* few host syncs (each convergence check is one).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from gnn4itk.gather import take


def arange_of(size: int, positions: Optional[Tensor], device: torch.device) -> Tensor:
    """``arange(size)``: a prefix of the caller's ``positions`` (one arange shared by a whole call,
    each further use a view) or a new one."""
    if positions is None:
        return torch.arange(size, device=device)
    return positions[:size]


def filled(like: Tensor, value: int) -> Tensor:
    """A fresh LongTensor of ``value`` shaped like the BoolTensor ``like`` (say a scatter target).

    Computed as ``where(like, value, value)`` so that TorchScript's fuser makes it in the kernel
    that makes ``like``: a ``full_like`` / ``zeros_like`` would be one more kernel and host op.
    """
    return torch.where(like, value, value)


def fresh(values: Tensor, like: Tensor) -> Tensor:
    """A fresh copy of ``values`` (say a scatter target), made in the kernel that makes the
    BoolTensor ``like`` (see :func:`filled`; a ``clone`` would be one more kernel and host op)."""
    return torch.where(like, values, values)


def negated(mask: Tensor) -> Tensor:
    """``~mask`` for a BoolTensor, written so that TorchScript's fuser takes it into a kernel with
    its neighbours (``bitwise_not`` does not fuse; ``mask ^ True`` turns into an int64 tensor in
    TorchScript)."""
    return mask == False  # noqa: E712


def best_edges(
    src: Tensor, dst: Tensor, key: Tensor, num_nodes: int, positions: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor, Tensor]:
    """The best outgoing edge of every source and the best incoming edge of every target.

    Best means highest score, then lowest row index at the other end, then first in the edge list.
    Both choices are made in one pass over the edges listed twice (targets offset by ``num_nodes``):
    a scatter-max of the packed key ``score key << 30 | (2**30 - 1 - other row)``, then, among the
    edges that reach it (parallel edges with equal scores), a scatter-max of ``2E - position``.
    Node indices must be ordered like the spacepoint rows for the tie-break to match the reference.

    Args:
        src, dst: LongTensor [E], directed edges over ``num_nodes`` nodes (< 2**30).
        key: LongTensor [E] in [1, 2**33), orders like the scores
            (:func:`gnn4itk.ordering.float_order_key` of positive scores).
        num_nodes: N.
        positions: LongTensor [>= 2E] or None: ``arange``, if the caller shares one.

    Returns:
        ``best_out`` and ``best_in``, BoolTensor [E] each: exactly one True per source (target);
        ``src_has_incoming`` BoolTensor [E]: the edge's source is the target of an edge.
    """
    num_edges = src.numel()
    row_mask = 1_073_741_823  # 2**30 - 1 (literal: ** gives a float in TorchScript)
    node = torch.cat([src, dst + num_nodes])
    packed = torch.cat([(key << 30) | (row_mask - dst), (key << 30) | (row_mask - src)])  # > 0
    # One buffer for both scatters: [0, 2N) the best packed key, [2N, 4N) the first position.
    best = torch.zeros(4 * num_nodes, dtype=torch.long, device=src.device)
    best.scatter_reduce_(0, node, packed, "amax")
    # The best key at each edge's node, and at its source's incoming side (> 0: it has an edge).
    top = take(best, torch.cat([node, src + num_nodes]))
    candidate = packed == top[: 2 * num_edges]
    # First in the edge list: the highest 2E - position (the second copy's offset E is the same
    # for all edges of a node, so it keeps their order).
    later = torch.where(candidate, 2 * num_edges - arange_of(2 * num_edges, positions, src.device), 0)
    slot = node + 2 * num_nodes
    best.scatter_reduce_(0, slot, later, "amax")
    chosen = candidate & (later == take(best, slot))
    return chosen[:num_edges], chosen[num_edges:], top[2 * num_edges :] > 0


def list_heads(prev: Tensor, checked: bool = True, positions: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Head of every node in linked lists given by predecessor pointers.

    Pointer jumping: O(log(longest list)) rounds of one gather each. Five rounds cover lists of 32
    hits, longer than tracks; they run unchecked (checking earlier would only cost host syncs, and
    rounds after convergence change nothing).

    Args:
        prev: LongTensor [N], predecessor of each node plus one, 0 for a head.
        checked: then keep jumping, one host sync per round, until every pointer is a head.
            Otherwise stop after the five rounds and leave the check to the caller.
        positions: LongTensor [>= N] or None: ``arange``, if the caller shares one.

    Returns:
        ``head`` LongTensor [N] and ``unconverged`` LongTensor [] (> 0 if some pointer is no head
        yet; 0 when ``checked``).

    Raises:
        RuntimeError: if the pointers form a cycle (only when ``checked``).
    """
    pointer = torch.where(prev > 0, prev - 1, arange_of(prev.numel(), positions, prev.device))
    for step in range(64):  # 2**64 exceeds any list length: more rounds mean a cycle
        if step >= 5:
            # A head's prev is 0, so the largest prev at the pointers is 0 exactly once every
            # pointer is a head (on a cycle none ever is).
            unconverged = take(prev, pointer).max()
            if not checked:
                return pointer, unconverged
            if int(unconverged) == 0:
                return pointer, unconverged
        pointer = take(pointer, pointer)
    raise RuntimeError("the graph has a directed cycle; orient the edges (orient=True)")


def build_segments(
    src: Tensor,
    dst: Tensor,
    num_nodes: int,
    present: Optional[Tensor] = None,
    checked: bool = True,
    positions: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Contract unbranched chains into segments.

    An edge ``u -> v`` is a *link* when ``out(u) == 1`` and ``in(v) == 1``; maximal runs of links are
    segments. Every other edge joins the last hit of one segment to the head of another.

    Args:
        src, dst: LongTensor [E], directed edges over ``num_nodes`` nodes.
        num_nodes: N.
        present: BoolTensor [E] or None: only these edges count (the others are ignored and are
            never links), so that a subgraph needs no compaction.
        checked, positions: see :func:`list_heads`.

    Returns:
        ``head`` LongTensor [N] (head node of each node's segment), ``seg_len`` LongTensor [N] (hits
        in the segment at head indices, 0 elsewhere), ``seg_degree`` LongTensor [N] (in- plus
        out-degrees of the segment's hits, at head indices, 0 elsewhere), ``link`` BoolTensor [E],
        ``in_degree`` LongTensor [N] (present edges into each node) and
        ``unconverged`` LongTensor [] (see :func:`list_heads`).

    Raises:
        RuntimeError: if links form a directed cycle (only when ``checked``).
    """
    num_edges = src.numel()
    if present is None:
        weight = torch.ones_like(src)
    else:
        weight = present.long()
    # One zero buffer for the three scatters: [0, 2N) out- and in-degrees, [2N, 3N) predecessor
    # over a link plus one, [3N, 5N) segment lengths and degrees.
    counts = torch.zeros(5 * num_nodes, dtype=torch.long, device=src.device)
    ends = torch.cat([src, dst + num_nodes])
    counts.scatter_add_(0, ends, torch.cat([weight, weight]))
    end_degree = take(counts, ends)  # out-degree at src, in-degree at dst
    link = (end_degree[:num_edges] == 1) & (end_degree[num_edges:] == 1)
    if present is not None:
        link = link & present
    # A target has at most one incoming link; other edges offer 0 to their own target (not to one
    # shared spare slot, whose writes would serialise on the GPU).
    counts.scatter_reduce_(0, dst + 2 * num_nodes, torch.where(link, src + 1, 0), "amax")
    prev = counts[2 * num_nodes : 3 * num_nodes]
    head, unconverged = list_heads(prev, checked, positions)
    in_degree = counts[num_nodes : 2 * num_nodes]
    # Hits and degrees of each segment, at its head, in one scatter (1 for every hit: from the
    # kernel that adds the degrees, rather than a separate ones_like).
    per_segment = counts[3 * num_nodes :]
    degree = counts[:num_nodes] + in_degree
    per_segment.scatter_add_(0, torch.cat([head, head + num_nodes]), torch.cat([filled(prev >= 0, 1), degree]))
    return head, per_segment[:num_nodes], per_segment[num_nodes:], link, in_degree, unconverged


def split_components(src: Tensor, dst: Tensor, num_nodes: int, find_walk: bool = True) -> Tuple[Tensor, Tensor]:
    """Weakly connected components that are simple paths, and those that need the walk.

    Builds the segments (:func:`build_segments`) and calls :func:`split_segments`.

    Args:
        src, dst: LongTensor [E], directed edges (no self-loops) over ``num_nodes`` nodes.
        num_nodes: N.
        find_walk: tell the small branching components apart (not needed without the walk).

    Returns:
        ``track_of`` LongTensor [N] and ``walk_hit`` BoolTensor [N], see :func:`split_segments`.
    """
    head, seg_len, seg_degree, _, _, _ = build_segments(src, dst, num_nodes)
    return split_segments(src, dst, head, seg_len, seg_degree, find_walk)


def split_segments(
    src: Tensor,
    dst: Tensor,
    head: Tensor,
    seg_len: Tensor,
    seg_degree: Tensor,
    find_walk: bool = True,
    positions: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Weakly connected components that are simple paths, and those that need the walk, from the
    segments of the graph.

    A component is a simple path (all in- and out-degrees <= 1) exactly when it is one segment that
    no non-link edge touches, so no component labelling is needed. Components of fewer than 3 hits
    are dropped; the only branching ones are two hits joined by parallel edges, recognised by each
    hit having the other as its only neighbour.

    Args:
        src, dst: LongTensor [E], directed edges (no self-loops) over N nodes.
        head, seg_len, seg_degree: LongTensor [N] each: :func:`build_segments` of the edges.
        find_walk: tell the small branching components apart (not needed without the walk).
        positions: LongTensor [>= N] or None: ``arange``, if the caller shares one.

    Returns:
        ``track_of`` LongTensor [N]: head of the simple path (>= 3 hits) of each hit, -1 elsewhere;
        ``walk_hit`` BoolTensor [N]: hit of a branching component with >= 3 hits (with
        ``find_walk=False``: of any branching component).
    """
    num_nodes = head.numel()
    device = src.device
    # Inside a segment every hit but the head has one incoming link and every hit but the last one
    # outgoing link, so its degrees add up to 2 (len - 1) exactly when no other edge touches it.
    # One gather carries both verdicts of the head: 2 branching, 1 simple path of >= 3 hits.
    verdict = torch.where(seg_degree > 2 * seg_len - 2, 2, (seg_len >= 3).long())
    hit_verdict = take(verdict, head)
    track_of = torch.where(hit_verdict == 1, head, -1)
    branching = hit_verdict == 2
    if not find_walk:
        return track_of, branching
    # Lowest and highest neighbour in one scatter-max: N - neighbour into [0, N), neighbour + 1
    # into [N, 2N). No neighbour: N and -1, which never agree.
    ends, others = torch.cat([src, dst]), torch.cat([dst, src])
    reach = torch.zeros(2 * num_nodes, dtype=torch.long, device=device)
    reach.scatter_reduce_(0, torch.cat([ends, ends + num_nodes]), torch.cat([num_nodes - others, others + 1]), "amax")
    lowest, highest = num_nodes - reach[:num_nodes], reach[num_nodes:] - 1
    # A hit's only neighbour (-1: none or several); a pair is two hits that are each other's.
    partner = torch.where(lowest == highest, lowest, -1)
    in_pair = (partner >= 0) & (take(partner, partner.clamp(min=0)) == arange_of(num_nodes, positions, device))
    return track_of, branching & negated(in_pair)
