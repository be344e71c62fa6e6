"""Graph primitives for GPU track building: pure torch, TorchScript-compatible, no custom ops.

Every function works on CPU and CUDA tensors and launches a number of kernels that depends on the
graph's *depth* (path lengths), never on its number of hits, edges or components.

On the GPU these graphs are small enough that the host's cost per op, not the kernels, sets the
latency, hence the habits here: ``index_select`` rather than ``tensor[index]`` (advanced indexing
costs about twice as much on the host), in-place scatters into fresh tensors (no copy of the input)
and few host syncs (each convergence check is one).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor


def big_key() -> int:
    """A sentinel larger than any packed key (< 2**63); a function because TorchScript cannot read
    module-level ints."""
    return 9_000_000_000_000_000_000


def count(index: Tensor, size: int) -> Tensor:
    """How often each value in [0, size) occurs in ``index`` (LongTensor [size]).

    Unlike ``torch.bincount`` this never syncs with the host (bincount reads the maximum on CUDA).
    """
    counts = torch.zeros(size, dtype=torch.long, device=index.device)
    return counts.scatter_add_(0, index, torch.ones_like(index))


def take(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` along dim 0 via ``index_select`` (cheaper on the host than advanced indexing).

    Args:
        values: Tensor [N, ...].
        index: LongTensor [M], entries in [0, N).

    Returns:
        Tensor [M, ...].
    """
    return values.index_select(0, index)


def best_edges(src: Tensor, dst: Tensor, score: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The best outgoing edge of every source and the best incoming edge of every target.

    Best means highest score, then lowest row index at the other end, then first in the edge list.
    Both choices are made in one pass over the edges listed twice (targets offset by ``num_nodes``).
    Node indices must be ordered like the spacepoint rows for the tie-break to match the reference.

    Args:
        src, dst: LongTensor [E], directed edges over ``num_nodes`` nodes.
        score: FloatTensor [E].
        num_nodes: N.

    Returns:
        ``best_out`` and ``best_in``, BoolTensor [E] each: exactly one True per source (target);
        ``has_incoming`` BoolTensor [N]: the node is the target of an edge (scores must be >= 0).
    """
    num_edges = src.numel()
    node = torch.cat([src, dst + num_nodes])
    other = torch.cat([dst, src])
    doubled = torch.cat([score, score])
    top = torch.full((2 * num_nodes,), -1.0, dtype=score.dtype, device=score.device)
    top.scatter_reduce_(0, node, doubled, "amax")
    candidate = doubled == take(top, node)
    position = torch.arange(num_edges, device=src.device).repeat(2)
    tie_key = torch.where(candidate, other * num_edges + position, big_key())
    best = torch.full((2 * num_nodes,), big_key(), dtype=torch.long, device=src.device)
    best.scatter_reduce_(0, node, tie_key, "amin")
    chosen = candidate & (tie_key == take(best, node))
    return chosen[:num_edges], chosen[num_edges:], top[num_nodes:] > -1.0


def list_heads(prev: Tensor) -> Tensor:
    """Head of every node in linked lists given by predecessor pointers (-1 = head).

    Pointer jumping: O(log(longest list)) rounds of one gather each.

    Args:
        prev: LongTensor [N], predecessor of each node or -1.

    Returns:
        ``head`` LongTensor [N].

    Raises:
        RuntimeError: if the pointers form a cycle.
    """
    has_prev = prev >= 0
    pointer = torch.where(has_prev, prev, torch.arange(prev.numel(), device=prev.device))
    for step in range(64):  # 2**64 exceeds any list length: more rounds mean a cycle
        # Converged once every pointer is a head (on a cycle none ever is). Five unchecked rounds
        # cover lists of 32 hits, longer than tracks: checking earlier would only cost host syncs,
        # and rounds after convergence change nothing.
        if step >= 5 and not bool(take(has_prev, pointer).any()):
            return pointer
        pointer = take(pointer, pointer)
    raise RuntimeError("the graph has a directed cycle; orient the edges (orient=True)")


def build_segments(
    src: Tensor, dst: Tensor, num_nodes: int, present: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Contract unbranched chains into segments.

    An edge ``u -> v`` is a *link* when ``out(u) == 1`` and ``in(v) == 1``; maximal runs of links are
    segments. Every other edge joins the last hit of one segment to the head of another.

    Args:
        src, dst: LongTensor [E], directed edges over ``num_nodes`` nodes.
        num_nodes: N.
        present: BoolTensor [E] or None: only these edges count (the others are ignored and are
            never links), so that a subgraph needs no compaction.

    Returns:
        ``head`` LongTensor [N] (head node of each node's segment), ``seg_len`` LongTensor [N] (hits
        in the segment at head indices, 0 elsewhere), ``link`` BoolTensor [E] and ``degree``
        LongTensor [N] (in- plus out-degree of each node, counting present edges).

    Raises:
        RuntimeError: if links form a directed cycle.
    """
    if present is None:
        out_deg, in_deg = count(src, num_nodes), count(dst, num_nodes)
        link = (take(out_deg, src) == 1) & (take(in_deg, dst) == 1)
    else:
        weight = present.long()
        out_deg = torch.zeros(num_nodes, dtype=torch.long, device=src.device).scatter_add_(0, src, weight)
        in_deg = torch.zeros(num_nodes, dtype=torch.long, device=src.device).scatter_add_(0, dst, weight)
        link = present & (take(out_deg, src) == 1) & (take(in_deg, dst) == 1)
    # A target has at most one incoming link; other edges offer -1 to their own target (not to one
    # shared spare slot, whose writes would serialise on the GPU).
    prev = torch.full((num_nodes,), -1, dtype=torch.long, device=src.device)
    prev.scatter_reduce_(0, dst, torch.where(link, src, -1), "amax")
    head = list_heads(prev)
    seg_len = count(head, num_nodes)  # hits of each segment, at its head
    return head, seg_len, link, out_deg + in_deg


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
    head, seg_len, _, degree = build_segments(src, dst, num_nodes)
    return split_segments(src, dst, head, seg_len, degree, find_walk)


def split_segments(
    src: Tensor, dst: Tensor, head: Tensor, seg_len: Tensor, degree: Tensor, find_walk: bool = True
) -> Tuple[Tensor, Tensor]:
    """Weakly connected components that are simple paths, and those that need the walk, from the
    segments of the graph.

    A component is a simple path (all in- and out-degrees <= 1) exactly when it is one segment that
    no non-link edge touches, so no component labelling is needed. Components of fewer than 3 hits
    are dropped; the only branching ones are two hits joined by parallel edges, recognised by each
    hit having the other as its only neighbour.

    Args:
        src, dst: LongTensor [E], directed edges (no self-loops) over N nodes.
        head, seg_len, degree: LongTensor [N] each: :func:`build_segments` of the edges.
        find_walk: tell the small branching components apart (not needed without the walk).

    Returns:
        ``track_of`` LongTensor [N]: head of the simple path (>= 3 hits) of each hit, -1 elsewhere;
        ``walk_hit`` BoolTensor [N]: hit of a branching component with >= 3 hits (with
        ``find_walk=False``: of any branching component).
    """
    num_nodes = head.numel()
    device = src.device
    # Inside a segment every hit but the head has one incoming link and every hit but the last one
    # outgoing link, so its degrees add up to 2 (len - 1) exactly when no other edge touches it.
    degree_sum = torch.zeros_like(degree).scatter_add_(0, head, degree)
    branching = take(degree_sum > 2 * seg_len - 2, head)
    track_of = torch.where(~branching & (take(seg_len, head) >= 3), head, -1)
    if not find_walk:
        return track_of, branching
    ends, others = torch.cat([src, dst]), torch.cat([dst, src])
    # Lowest and highest neighbour (no neighbour: N - 1 and 0, which never agree for N > 1; N = 1
    # has no edge). A hit whose lowest and highest neighbour agree has one neighbour only.
    lowest = torch.full((num_nodes,), num_nodes - 1, dtype=torch.long, device=device)
    lowest.scatter_reduce_(0, ends, others, "amin")
    highest = torch.zeros_like(lowest).scatter_reduce_(0, ends, others, "amax")
    nodes = torch.arange(num_nodes, device=device)
    in_pair = (lowest == highest) & (take(lowest, lowest) == nodes) & (take(highest, lowest) == nodes)
    return track_of, branching & ~in_pair
