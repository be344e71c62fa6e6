"""Graph primitives for GPU track building: pure torch, TorchScript-compatible, no custom ops.

Every function works on CPU and CUDA tensors and launches a number of kernels that depends on the
graph's *depth* (path lengths), never on its number of hits, edges or components.
"""

from __future__ import annotations

from typing import Tuple

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


def best_edges(src: Tensor, dst: Tensor, score: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
    """The best outgoing edge of every source and the best incoming edge of every target.

    Best means highest score, then lowest row index at the other end, then first in the edge list.
    Both choices are made in one pass over the edges listed twice (targets offset by ``num_nodes``).
    Node indices must be ordered like the spacepoint rows for the tie-break to match the reference.

    Args:
        src, dst: LongTensor [E], directed edges over ``num_nodes`` nodes.
        score: FloatTensor [E].
        num_nodes: N.

    Returns:
        ``best_out`` and ``best_in``, BoolTensor [E] each: exactly one True per source (target).
    """
    num_edges = src.numel()
    node = torch.cat([src, dst + num_nodes])
    other = torch.cat([dst, src])
    doubled = torch.cat([score, score])
    top = torch.full((2 * num_nodes,), -1.0, dtype=score.dtype, device=score.device)
    top = top.scatter_reduce(0, node, doubled, "amax")
    candidate = doubled == top[node]
    position = torch.arange(num_edges, device=src.device).repeat(2)
    tie_key = torch.where(candidate, other * num_edges + position, big_key())
    best = torch.full((2 * num_nodes,), big_key(), dtype=torch.long, device=src.device)
    best = best.scatter_reduce(0, node, tie_key, "amin")
    chosen = candidate & (tie_key == best[node])
    return chosen[:num_edges], chosen[num_edges:]


def list_heads(prev: Tensor) -> Tuple[Tensor, Tensor]:
    """Head and position of every node in linked lists given by predecessor pointers (-1 = head).

    Pointer jumping: O(log(longest list)) rounds.

    Args:
        prev: LongTensor [N], predecessor of each node or -1.

    Returns:
        ``head`` LongTensor [N] and ``position`` LongTensor [N] (0 at the head).

    Raises:
        RuntimeError: if the pointers form a cycle.
    """
    has_prev = prev >= 0
    pointer = torch.where(has_prev, prev, torch.arange(prev.numel(), device=prev.device))
    distance = has_prev.long()
    for step in range(64):  # 2**64 exceeds any list length: more rounds mean a cycle
        jumped = pointer[pointer]
        # Track segments are longer than 4 hits: the first checks would only cost host syncs
        # (extra rounds after convergence change nothing).
        if step >= 2 and torch.equal(jumped, pointer):
            break
        distance = distance + distance[pointer]
        pointer = jumped
    if not torch.equal(pointer[pointer], pointer):
        raise RuntimeError("the graph has a directed cycle; orient the edges (orient=True)")
    return pointer, distance


def build_segments(src: Tensor, dst: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Contract unbranched chains into segments.

    An edge ``u -> v`` is a *link* when ``out(u) == 1`` and ``in(v) == 1``; maximal runs of links are
    segments. Every other edge joins the last hit of one segment to the head of another.

    Args:
        src, dst: LongTensor [E], directed edges over ``num_nodes`` nodes.
        num_nodes: N.

    Returns:
        ``head`` LongTensor [N] (head node of each node's segment), ``seg_len`` LongTensor [N] (hits
        in the segment at head indices, 0 elsewhere) and ``link`` BoolTensor [E].

    Raises:
        RuntimeError: if links form a directed cycle.
    """
    out_deg = count(src, num_nodes)
    in_deg = count(dst, num_nodes)
    link = (out_deg[src] == 1) & (in_deg[dst] == 1)
    prev = torch.full((num_nodes + 1,), -1, dtype=torch.long, device=src.device)
    prev.scatter_(0, torch.where(link, dst, num_nodes), src)
    head, position = list_heads(prev[:num_nodes])
    seg_len = torch.zeros(num_nodes, dtype=torch.long, device=src.device)
    seg_len = seg_len.scatter_reduce(0, head, position + 1, "amax")
    return head, seg_len, link


def split_components(src: Tensor, dst: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
    """Weakly connected components that are simple paths, and those that need the walk.

    A component is a simple path (all in- and out-degrees <= 1) exactly when it is one segment that
    no non-link edge touches, so no component labelling is needed: one pointer-jumping pass finds
    them. Components of fewer than 3 hits are dropped; the only branching ones are two hits joined
    by parallel edges, recognised by each hit having the other as its only neighbour.

    Args:
        src, dst: LongTensor [E], directed edges (no self-loops) over ``num_nodes`` nodes.
        num_nodes: N.

    Returns:
        ``track_of`` LongTensor [N]: head of the simple path (>= 3 hits) of each hit, -1 elsewhere;
        ``walk_hit`` BoolTensor [N]: hit of a branching component with >= 3 hits.
    """
    head, seg_len, link = build_segments(src, dst, num_nodes)
    spare = torch.full_like(src, num_nodes)
    between = ~link
    touching = torch.cat([torch.where(between, head[src], spare), torch.where(between, dst, spare)])
    branching = (count(touching, num_nodes + 1) > 0)[head]
    track_of = torch.where(~branching & (seg_len[head] >= 3), head, -1)
    ends, others = torch.cat([src, dst]), torch.cat([dst, src])
    lowest = torch.full((num_nodes,), num_nodes, dtype=torch.long, device=src.device)
    lowest = lowest.scatter_reduce(0, ends, others, "amin")
    highest = torch.full((num_nodes,), -1, dtype=torch.long, device=src.device)
    highest = highest.scatter_reduce(0, ends, others, "amax")
    partner = torch.where(lowest == highest, lowest, num_nodes)  # the only neighbour, if one
    partner_ext = torch.cat([partner, torch.full((1,), -1, dtype=torch.long, device=src.device)])
    nodes = torch.arange(num_nodes, device=src.device)
    in_pair = partner_ext[partner] == nodes
    return track_of, branching & ~in_pair


def segment_depths(seg_src: Tensor, seg_dst: Tensor, seg_len: Tensor, num_heads: int) -> Tuple[Tensor, int]:
    """Topological depth of segment heads and the largest number of segment hops on any path.

    Args:
        seg_src, seg_dst: LongTensor [S_E], segment edges between head indices.
        seg_len: LongTensor [N], hits per segment at head indices (0 elsewhere).
        num_heads: number of segments (bounds the hop count of an acyclic graph).

    Returns:
        ``depth`` LongTensor [N]: longest path in hits from a source to the head (0 for sources),
        and ``hops``: the longest path in segment edges.

    Raises:
        RuntimeError: if the segment graph has a directed cycle.
    """
    # Column 0: depth in hits, column 1: depth in segment hops; one scatter per round for both.
    state = torch.zeros((seg_len.numel(), 2), dtype=torch.long, device=seg_len.device)
    step = torch.stack([seg_len[seg_src], torch.ones_like(seg_src)], dim=1)
    index = seg_dst.unsqueeze(1).expand(-1, 2)
    hops = 0
    while True:
        new_state = state.scatter_reduce(0, index, state[seg_src] + step, "amax")
        if torch.equal(new_state, state):
            break
        state = new_state
        hops += 1
        if hops > num_heads:  # an acyclic graph has fewer hops than segments
            raise RuntimeError("the walk graph has a directed cycle; orient the edges (orient=True)")
    return state[:, 0], hops
