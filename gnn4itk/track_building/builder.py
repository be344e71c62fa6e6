"""``TrackBuilder``: GNN4ITk track building as one scriptable ``nn.Module`` (CPU and CUDA).

Same semantics as :func:`gnn4itk.track_building.reference.build_tracks_reference` (see
``docs/track_building.md``), computed with whole-graph torch ops: simple-path components by chain contraction
(:func:`~gnn4itk.track_building.ops.split_components`), the walkthrough by :func:`gnn4itk.track_building.walk.walk_tracks`.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor, nn

from gnn4itk.track_building.ops import best_edges, build_segments, split_components, split_segments, take
from gnn4itk.track_building.reference import MODES
from gnn4itk.track_building.walk import walk_segments


class TrackBuilder(nn.Module):
    """Scored graph -> track candidates (LABELS and per-spacepoint track ids).

    Args:
        cc_cut: edges need ``score > cc_cut`` (default 0.01).
        walk_min: best outgoing edges need ``score >= walk_min`` to survive the walk pruning (0.1).
        walk_max: any edge with ``score > walk_max`` survives the walk pruning (0.6).
        mode: ``"cc_and_walk"`` (default), ``"cc"`` (simple-path components only) or
            ``"junction_removal"`` (keep an edge only if it is the best outgoing edge of its source and
            the best incoming edge of its target, then components).
        orient: flip edges to point from lower to higher ``(r2z2, row)`` and merge duplicates (for
            graphs whose edges are not already inner -> outer, e.g. bidirectional ones).
        sequential_below: once a walk round takes fewer starts than this, finish the walk one start
            at a time on the host (dense graphs, where rounds stall; 0 = rounds only). Same results.
            -1 (default): 128 on the CPU, 0 on CUDA (there the host copy and loops cost more than
            the rounds on graphs of a trained GNN).

    ``forward(edge_index, scores, hit_r2z2)`` returns LABELS; :meth:`build` also returns track ids.
    """

    def __init__(
        self,
        cc_cut: float = 0.01,
        walk_min: float = 0.1,
        walk_max: float = 0.6,
        mode: str = "cc_and_walk",
        orient: bool = False,
        sequential_below: int = -1,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown track-building mode {mode!r}; choose one of {MODES}")
        if not 0.0 <= cc_cut < 1.0:
            raise ValueError(f"cc_cut must be in [0, 1), got {cc_cut}")
        if walk_min > walk_max:
            raise ValueError(f"walk_min ({walk_min}) must not exceed walk_max ({walk_max})")
        self.cc_cut = float(cc_cut)
        self.walk_min = float(walk_min)
        self.walk_max = float(walk_max)
        self.mode = mode
        self.orient = bool(orient)
        if sequential_below < -1:
            raise ValueError(f"sequential_below must be >= 0 (or -1: the device's default), got {sequential_below}")
        self.sequential_below = int(sequential_below)
        # Walk on compacted segments: -1 = on the CPU only (the default), 0 = never, 1 = always.
        # Only a testing knob: both give identical results (tests run the GPU path on the CPU).
        self.compact_walk = -1

    def extra_repr(self) -> str:
        return (
            f"cc_cut={self.cc_cut}, walk_min={self.walk_min}, walk_max={self.walk_max}, "
            f"mode={self.mode!r}, orient={self.orient}, sequential_below={self.sequential_below}"
        )

    def forward(self, edge_index: Tensor, scores: Tensor, hit_r2z2: Tensor) -> Tensor:
        """LABELS of the tracks.

        Args:
            edge_index: LongTensor [2, E], spacepoint rows, directed inner -> outer unless ``orient``.
            scores: Tensor [E], edge scores after the sigmoid (computed in float32).
            hit_r2z2: Tensor [N], ``r**2 + z**2`` of every spacepoint (N = number of spacepoints).

        Returns:
            LongTensor [L]: row indices, track after track, each sorted by (r2z2, row) and followed by
            -1; tracks in order of their smallest row; ``[-1]`` when there is no track.
        """
        return self.build(edge_index, scores, hit_r2z2)[0]

    @torch.jit.export
    def build(self, edge_index: Tensor, scores: Tensor, hit_r2z2: Tensor) -> Tuple[Tensor, Tensor]:
        """LABELS (see :meth:`forward`) and ``track_ids`` LongTensor [N]: the position of each
        spacepoint's track in LABELS, -1 if it is in none."""
        r2z2 = hit_r2z2.reshape(-1).to(torch.float32)  # as the reference: ties in float32 R
        num_hits = r2z2.numel()
        src, dst, score = self._filtered_edges(edge_index, scores, r2z2)
        if self.mode == "junction_removal":
            best_out, best_in, _ = best_edges(src, dst, score, num_hits)
            kept = (best_out & best_in).nonzero().squeeze(1)
            src, dst, score = src[kept], dst[kept], score[kept]

        if self.mode == "cc_and_walk":
            track_of = self._components_and_walk(src, dst, score, num_hits)
        else:
            track_of, _ = split_components(src, dst, num_hits, False)
        return labels_from_track_of(track_of, r2z2)

    def _filtered_edges(self, edge_index: Tensor, scores: Tensor, r2z2: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Edges with score > cc_cut and no self-loop; oriented and merged when ``orient``."""
        num_hits = r2z2.numel()
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
        score = scores.reshape(-1).to(torch.float32)
        if score.numel() != edge_index.size(1):
            raise ValueError(f"{edge_index.size(1)} edges but {score.numel()} scores")
        edge_index = edge_index.long()
        first, second = edge_index[0], edge_index[1]
        kept = ((score > self.cc_cut) & (first != second)).nonzero().squeeze(1)
        # Checked after the compaction's host sync, which has drained the GPU's queue: this second
        # sync then waits for four small kernels only.
        if edge_index.numel() > 0:
            lowest, highest = torch.aminmax(edge_index)
            if bool((lowest < 0) | (highest >= num_hits)):
                raise ValueError(f"edge_index has row indices outside [0, {num_hits})")
        src, dst, score = take(first, kept), take(second, kept), take(score, kept)
        if self.orient:
            r_src, r_dst = r2z2[src], r2z2[dst]
            flip = (r_src > r_dst) | ((r_src == r_dst) & (src > dst))
            pair = torch.where(flip, dst, src) * num_hits + torch.where(flip, src, dst)
            pair, inverse = torch.unique(pair, sorted=True, return_inverse=True)
            best = torch.full((pair.numel(),), -1.0, dtype=score.dtype, device=score.device)
            score = best.scatter_reduce(0, inverse, score, "amax")
            src, dst = pair // num_hits, pair % num_hits
        return src, dst, score

    def _components_and_walk(self, src: Tensor, dst: Tensor, score: Tensor, num_hits: int) -> Tensor:
        """Simple-path components, then the walkthrough on the pruned walk components.

        The pruning runs over all components (a hit's edges all lie in its component, so its best
        edges are the same over all edges as over its component's; the pruned edges of the other
        components are left out of the walk afterwards). That way the segments of the filtered graph
        (for the components) and of the pruned graph (for the walk) come out of one pointer-jumping
        pass over two disjoint copies of the hits: rows ``[0, N)`` and ``[N, 2N)``.

        Args:
            src, dst: LongTensor [E], filtered edges; score: FloatTensor [E].
            num_hits: N.

        Returns:
            LongTensor [N]: a key shared by the hits of each track (see :func:`labels_from_track_of`),
            -1 for hits in no track.
        """
        num_edges = src.numel()
        best_out, best_in, has_incoming = best_edges(src, dst, score, num_hits)
        strong = (best_out & (score >= self.walk_min)) | (score > self.walk_max)
        # The pruned graph stays a mask over the filtered edges (no compaction, no host sync).
        kept = strong & (take(has_incoming, src) | best_in)
        both_src = torch.cat([src, src + num_hits])
        both_dst = torch.cat([dst, dst + num_hits])
        present = torch.cat([torch.ones_like(kept), kept])
        head, seg_len, link, degree = build_segments(both_src, both_dst, 2 * num_hits, present)
        track_of, walk_hit = split_segments(src, dst, head[:num_hits], seg_len[:num_hits], degree[:num_hits], True)
        walk_head = head[num_hits:] - num_hits
        outside = (walk_head != torch.arange(num_hits, device=src.device)) | ~walk_hit
        # On the CPU compact the segments (work there grows with array sizes) and finish sequentially
        # once rounds stall (dense graphs); on the GPU neither by default (each costs host syncs).
        compact = not src.is_cuda if self.compact_walk < 0 else self.compact_walk > 0
        sequential_below = self.sequential_below
        if sequential_below < 0:
            sequential_below = 128 if not src.is_cuda else 0
        start = walk_segments(
            src, dst, score, walk_head, seg_len[num_hits:], link[num_edges:], outside, compact, sequential_below, kept
        )
        return torch.where(walk_hit, start, track_of)


def labels_from_track_of(track_of: Tensor, r2z2: Tensor) -> Tuple[Tensor, Tensor]:
    """LABELS and dense track ids from arbitrary per-hit track keys.

    Args:
        track_of: LongTensor [N], any key in [0, N) shared by the hits of a track (it need not be
            one of the track's rows), -1 elsewhere.
        r2z2: Tensor [N], orders the hits inside a track (ties by row).

    Returns:
        ``labels`` LongTensor [L] (tracks ordered by smallest row, ``[-1]`` if none) and
        ``track_ids`` LongTensor [N] (track position in ``labels`` or -1).
    """
    num_hits = track_of.numel()
    device = track_of.device
    nodes = torch.arange(num_hits, device=device)
    valid = track_of >= 0
    # Smallest row of each track, at its key; hits without a track scatter the neutral num_hits to
    # themselves (not to one spare slot: those atomics would serialise on the GPU).
    slot = torch.where(valid, track_of, nodes)
    first_row = torch.full((num_hits,), num_hits, dtype=torch.long, device=device)
    first_row.scatter_reduce_(0, slot, torch.where(valid, nodes, num_hits), "amin")
    hit_first = torch.where(valid, take(first_row, slot), num_hits)  # no track: num_hits, sorts last
    # Tracks are numbered by their smallest row: a running count of the rows that start a track.
    opens = hit_first == nodes
    number = torch.cumsum(opens, 0) - 1  # at a track's first row: its number
    sizes: List[int] = torch.stack([valid.sum(), opens.sum()]).tolist()  # one sync
    num_rows, num_tracks = sizes[0], sizes[1]
    track_ids = torch.where(valid, take(number, torch.where(valid, hit_first, 0)), -1)
    if num_rows == 0:
        return torch.full((1,), -1, dtype=torch.long, device=device), track_ids
    # By r2z2, then (stably) by track: rows ascend first, so equal r2z2 keep row order.
    order = torch.sort(r2z2, stable=True)[1]
    order = take(order, torch.sort(take(hit_first, order), stable=True)[1])
    rows = order[:num_rows]
    # Each hit's place in LABELS: its place in the sorted hits plus one -1 per earlier track.
    labels = torch.full((num_rows + num_tracks,), -1, dtype=torch.long, device=device)
    labels.index_copy_(0, nodes[:num_rows] + take(track_ids, rows), rows)
    return labels, track_ids
