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


def best_edge_mask(node: Tensor, other: Tensor, score: Tensor, valid: Tensor, num_nodes: int) -> Tensor:
    """Mark the single best valid edge at the ``node`` end of every node.

    Best means highest score, then lowest ``other`` (row index at the opposite end), then lowest edge
    position. ``other`` must be ordered like the global row indices for the tie-break to match the
    reference.

    Args:
        node: LongTensor [E], the end that owns the choice (src for outgoing, dst for incoming).
        other: LongTensor [E], the opposite end.
        score: FloatTensor [E].
        valid: BoolTensor [E], edges allowed to be chosen.
        num_nodes: number of nodes (upper bound of ``node``).

    Returns:
        BoolTensor [E], True for exactly one valid edge of each node that has one.
    """
    num_edges = node.numel()
    masked = torch.where(valid, score, torch.full_like(score, -1.0))
    top = torch.full((num_nodes,), -2.0, dtype=score.dtype, device=score.device)
    top = top.scatter_reduce(0, node, masked, "amax", include_self=True)
    candidate = valid & (masked == top[node])
    tie_key = other * num_edges + torch.arange(num_edges, device=node.device)
    tie_key = torch.where(candidate, tie_key, torch.full_like(tie_key, big_key()))
    best = torch.full((num_nodes,), big_key(), dtype=torch.long, device=node.device)
    best = best.scatter_reduce(0, node, tie_key, "amin", include_self=True)
    return candidate & (tie_key == best[node])


def connected_components(src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """Weakly connected components by min-label propagation with root hooking and pointer jumping.

    Labels only ever decrease and always name a node of the same component, so the fixed point gives
    every node the smallest row index of its component. Converges in O(log(diameter)) rounds on
    track-like graphs (one host sync per round).

    Args:
        src, dst: LongTensor [E], edges (direction ignored).
        num_nodes: N.

    Returns:
        LongTensor [N], the smallest node index of each node's component (isolated nodes: themselves).
    """
    label = torch.arange(num_nodes, device=src.device)
    changed = True
    while changed:
        label_src, label_dst = label[src], label[dst]
        new = label.clone()
        new.scatter_reduce_(0, src, label_dst, "amin")
        new.scatter_reduce_(0, dst, label_src, "amin")
        # Hook the current representatives too: it merges whole trees per round, not single nodes.
        new.scatter_reduce_(0, label_src, label_dst, "amin")
        new.scatter_reduce_(0, label_dst, label_src, "amin")
        new = torch.minimum(new, new[new])
        changed = not torch.equal(new, label)
        label = new
    return label


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
    for _ in range(64):  # 2**64 exceeds any list length: more rounds mean a cycle
        jumped = pointer[pointer]
        if torch.equal(jumped, pointer):
            break
        distance = distance + distance[pointer]
        pointer = jumped
    if not torch.equal(pointer[pointer], pointer):
        raise RuntimeError("the walk graph has a directed cycle; orient the edges (orient=True)")
    return pointer, distance


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
