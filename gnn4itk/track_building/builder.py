"""``TrackBuilder``: GNN4ITk track building as one scriptable ``nn.Module`` (CPU and CUDA).

Same semantics as :func:`gnn4itk.track_building.reference.build_tracks_reference` (see
``docs/track_building.md``), computed with whole-graph torch ops: simple-path components by chain
contraction (:func:`~gnn4itk.track_building.ops.build_segments`,
:func:`~gnn4itk.track_building.ops.split_segments`), the walkthrough by
:func:`gnn4itk.track_building.walk.walk_segments`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from gnn4itk.defaults import CC_CUT, TRACK_BUILDING_MODE, WALK_MAX, WALK_MIN
from gnn4itk.gather import take
from gnn4itk.ordering import float_order_key
from gnn4itk.track_building.ops import arange_of, best_edges, build_segments, filled, negated, split_segments
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

    # Constants for TorchScript: the branches on them are decided when scripting, so the call is
    # one block of code and the fuser can merge elementwise work across what were branches.
    __constants__ = ["cc_cut", "walk_min", "walk_max", "mode", "orient", "sequential_below"]

    def __init__(
        self,
        cc_cut: float = CC_CUT,
        walk_min: float = WALK_MIN,
        walk_max: float = WALK_MAX,
        mode: str = TRACK_BUILDING_MODE,
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
        score = scores.reshape(-1).to(torch.float32)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
        if score.numel() != edge_index.size(1):
            raise ValueError(f"{edge_index.size(1)} edges but {score.numel()} scores")
        if num_hits >= 1_073_741_824:
            raise ValueError(f"rows are packed into 30 bits: {num_hits} spacepoints are too many")
        if edge_index.size(1) == 0:  # no edge, no track
            no_track = torch.full((num_hits,), -1, dtype=torch.long, device=r2z2.device)
            return torch.full((1,), -1, dtype=torch.long, device=r2z2.device), no_track
        if num_hits == 0:
            raise ValueError(f"edge_index has row indices outside [0, {num_hits})")
        # (Checks above, before any device work: the rest is one block of code, which the fuser
        # can merge across.)
        src, dst, score, bad = self._filtered_edges(edge_index, score, r2z2)
        # One arange for the whole call (each use a view).
        positions = torch.arange(max(2 * num_hits, 2 * src.numel()), device=src.device)
        if self.mode == "cc_and_walk":
            key = float_order_key(score)
            track_of, flags = self._components_and_walk(src, dst, score, key, num_hits, bad, False, positions)
            if flags < 0:
                raise ValueError(f"edge_index has row indices outside [0, {num_hits})")
            if flags > 0:
                # Pointer jumping had not converged after its unchecked rounds (segments of more
                # than 32 hits, or a cycle of links): again, with a host sync per extra round.
                track_of, _ = self._components_and_walk(src, dst, score, key, num_hits, bad, True, positions)
        else:
            if bool(bad):  # one host sync, before the graph is used
                raise ValueError(f"edge_index has row indices outside [0, {num_hits})")
            if self.mode == "junction_removal":
                best_out, best_in, _ = best_edges(src, dst, float_order_key(score), num_hits, positions)
                kept = (best_out & best_in).nonzero().squeeze(1)
                src, dst = take(src, kept), take(dst, kept)
            head, seg_len, seg_degree, _, _, _ = build_segments(src, dst, num_hits, None, True, positions)
            track_of, _ = split_segments(src, dst, head, seg_len, seg_degree, False, positions)
        return labels_from_track_of(track_of, r2z2, positions)

    def _filtered_edges(
        self, edge_index: Tensor, score: Tensor, r2z2: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Edges with score > cc_cut and no self-loop; oriented and merged when ``orient``.

        Takes ``edge_index`` LongTensor [2, E] (checked shape, E > 0), ``score`` FloatTensor [E] and
        ``r2z2`` FloatTensor [N], N > 0. Returns ``src``, ``dst`` (LongTensor [E'], rows clamped
        into [0, N)), ``score`` (FloatTensor [E']) and ``bad`` (BoolTensor []: some row of
        ``edge_index`` lies outside [0, N)). ``bad`` is read at a later host sync (the first the
        call needs anyway); until then the clamped rows keep every gather in range (on CUDA an index
        out of range is a device-side assert that ends the context).
        """
        num_hits = r2z2.numel()
        edge_index = edge_index.long()
        first, second = edge_index[0], edge_index[1]
        lowest, highest = torch.aminmax(edge_index)
        bad = (lowest < 0) | (highest >= num_hits)
        # Rows clamped into range; both in one int64 (rows < 2**30). On CUDA packed before the
        # compaction, in the kernel that makes the mask: one gather then moves both rows. On the
        # CPU packed after it: fewer passes over all E edges.
        last = num_hits - 1
        if edge_index.is_cuda:
            keep = (score > self.cc_cut) & (first != second)
            packed = (first.clamp(0, last) << 32) | second.clamp(0, last)
            kept = keep.nonzero().squeeze(1)
            pair = take(packed, kept)
        else:
            kept = ((score > self.cc_cut) & (first != second)).nonzero().squeeze(1)
            pair = (take(first, kept).clamp(0, last) << 32) | take(second, kept).clamp(0, last)
        src, dst = pair >> 32, pair & 4_294_967_295
        score = take(score, kept)
        if self.orient:
            r_src, r_dst = take(r2z2, src), take(r2z2, dst)
            flip = (r_src > r_dst) | ((r_src == r_dst) & (src > dst))
            pair = torch.where(flip, dst, src) * num_hits + torch.where(flip, src, dst)
            pair, inverse = torch.unique(pair, sorted=True, return_inverse=True)
            best = torch.full((pair.numel(),), -1.0, dtype=score.dtype, device=score.device)
            score = best.scatter_reduce(0, inverse, score, "amax")
            src, dst = pair // num_hits, pair % num_hits
        return src, dst, score, bad

    def _components_and_walk(
        self,
        src: Tensor,
        dst: Tensor,
        score: Tensor,
        key: Tensor,
        num_hits: int,
        bad: Tensor,
        checked: bool,
        positions: Tensor,
    ) -> Tuple[Tensor, int]:
        """Simple-path components, then the walkthrough on the pruned walk components.

        The pruning runs over all components (a hit's edges all lie in its component, so its best
        edges are the same over all edges as over its component's; the pruned edges of the other
        components are left out of the walk afterwards). That way the segments of the filtered graph
        (for the components) and of the pruned graph (for the walk) come out of one pointer-jumping
        pass over two disjoint copies of the hits: rows ``[0, N)`` and ``[N, 2N)``.

        Args:
            src, dst: LongTensor [E], filtered edges; score: FloatTensor [E]; key: LongTensor [E],
                :func:`~gnn4itk.ordering.float_order_key` of the scores (all > cc_cut >= 0).
            num_hits: N.
            bad: BoolTensor [] from :meth:`_filtered_edges`.
            checked: pointer jumping checks its convergence itself (host syncs); otherwise the
                check, and ``bad``, wait for the walk's first host sync.
            positions: LongTensor [>= max(2N, 2E)]: ``arange``, shared.

        Returns:
            LongTensor [N]: a key shared by the hits of each track (see :func:`labels_from_track_of`),
            -1 for hits in no track; and 0, -1 if ``bad`` was set, or > 0 if pointer jumping had not
            converged (both only when not ``checked``; then the keys are meaningless).
        """
        num_edges = src.numel()
        best_out, best_in, src_has_incoming = best_edges(src, dst, key, num_hits, positions)
        strong = (best_out & (score >= self.walk_min)) | (score > self.walk_max)
        # The pruned graph stays a mask over the filtered edges (no compaction, no host sync).
        kept = strong & (src_has_incoming | best_in)
        both_src = torch.cat([src, src + num_hits])
        both_dst = torch.cat([dst, dst + num_hits])
        # The first copy holds every filtered edge (score > cc_cut holds for all: a mask of ones
        # from the fused kernel rather than a separate ones_like), the second the pruned ones.
        present = torch.cat([score > self.cc_cut, kept])
        head, seg_len, seg_degree, link, in_degree, unconverged = build_segments(
            both_src, both_dst, 2 * num_hits, present, checked, positions
        )
        track_of, walk_hit = split_segments(
            src, dst, head[:num_hits], seg_len[:num_hits], seg_degree[:num_hits], True, positions
        )
        walk_head = head[num_hits:] - num_hits
        outside = (walk_head != positions[:num_hits]) | negated(walk_hit)
        # On the CPU compact the segments (work there grows with array sizes) and finish sequentially
        # once rounds stall (dense graphs); on the GPU neither by default (each costs host syncs).
        compact = not src.is_cuda if self.compact_walk < 0 else self.compact_walk > 0
        sequential_below = self.sequential_below
        if sequential_below < 0:
            sequential_below = 128 if not src.is_cuda else 0
        pending: Optional[Tensor] = None
        if not checked:
            pending = torch.where(bad, -1, unconverged.clamp(max=1))  # (two ops: they fuse)
        start, flags = walk_segments(
            src,
            dst,
            score,
            walk_head,
            seg_len[num_hits:],
            link[num_edges:],
            outside,
            compact,
            sequential_below,
            kept,
            key,
            in_degree[num_hits:],
            pending,
            positions,
        )
        return torch.where(walk_hit, start, track_of), flags


def labels_from_track_of(track_of: Tensor, r2z2: Tensor, positions: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """LABELS and dense track ids from arbitrary per-hit track keys.

    Args:
        track_of: LongTensor [N], any key in [0, N) shared by the hits of a track (it need not be
            one of the track's rows), -1 elsewhere.
        r2z2: Tensor [N], orders the hits inside a track (ties by row).
        positions: LongTensor [>= N] or None: ``arange``, if the caller shares one.

    Returns:
        ``labels`` LongTensor [L] (tracks ordered by smallest row, ``[-1]`` if none) and
        ``track_ids`` LongTensor [N] (track position in ``labels`` or -1).
    """
    num_hits = track_of.numel()
    device = track_of.device
    if num_hits == 0:
        return torch.full((1,), -1, dtype=torch.long, device=device), torch.zeros(0, dtype=torch.long, device=device)
    nodes = arange_of(num_hits, positions, device)
    valid = track_of >= 0
    # Smallest row of each track, at its key: a scatter-max of N - row; hits without a track
    # scatter 0 to themselves (not to one spare slot: those atomics would serialise on the GPU).
    slot = torch.where(valid, track_of, nodes)
    first_row = filled(valid, 0).scatter_reduce_(0, slot, torch.where(valid, num_hits - nodes, 0), "amax")
    hit_first = torch.where(valid, num_hits - take(first_row, slot), num_hits)  # no track: N
    # Tracks are numbered by their smallest row. One cumsum counts both the rows that open a track
    # (low 32 bits) and the rows in a track (high bits).
    opens = hit_first == nodes
    counts = torch.cumsum(opens.long() + (valid.long() << 32), 0)
    total = int(counts[-1])  # one sync
    num_rows, num_tracks = total >> 32, total & 4_294_967_295
    if num_tracks >= 536_870_912:
        raise ValueError(f"LABELS packs track numbers into 29 bits: {num_tracks} tracks are too many")
    number = take(counts, hit_first.clamp(max=num_hits - 1)) & 4_294_967_295  # its track's number + 1
    track_ids = torch.where(valid, number - 1, -1)
    if num_rows == 0:
        return torch.full((1,), -1, dtype=torch.long, device=device), track_ids
    # By track, then r2z2, in one stable sort of ``track << 34 | order key`` (hits without a track
    # last; N < 2**30, so track numbers fit 29 bits; the key plus FLOAT_KEY_NAN lies in [2**24, 2**34)):
    # rows ascend, so equal r2z2 keep row order, and the sorted keys hold each row's track number (no
    # gather).
    order_key = float_order_key(r2z2) + 4_706_009_088  # FLOAT_KEY_NAN (TorchScript reads no globals)
    key, order = torch.sort((torch.where(valid, number - 1, num_tracks) << 34) | order_key, stable=True)
    # Each hit's place in LABELS: its place in the sorted hits plus one -1 per earlier track.
    labels = torch.full((num_rows + num_tracks,), -1, dtype=torch.long, device=device)
    labels.index_copy_(0, nodes[:num_rows] + (key[:num_rows] >> 34), order[:num_rows])
    return labels, track_ids
