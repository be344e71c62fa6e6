"""Radius graph from k-d tree leaves: the shipped default method.

Both point sets are sorted into balanced k-d trees (leaves of ~``leaf_size`` points, on the principal
axes); the two trees are descended together to the leaf pairs whose bounding boxes are closer than
``r_max``; each leaf pair's distances come from one batched float64 matrix product of per-leaf operands,
and pairs within 1e-3 of ``r_max^2`` are decided from the given coordinates, like the brute force. For
the single form only leaf pairs a <= b are computed and mirrored. A few host syncs in all (one per
``levels_per_step`` tree levels below 8, one per product chunk, three at the end), memory
O(``max_candidates`` + Q * ``k_max``): when the pairs within the radius outgrow ``max_candidates`` (a
broad, e.g. untrained, embedding puts most points inside one radius), those pending are decided and cut
to each query's ``k_max`` nearest before the next chunk.
"""

from typing import List, Optional, Tuple

import torch

from gnn4itk.defaults import RADIUS_LEAF_SIZE, RADIUS_LEVELS_PER_STEP, RADIUS_MAX_CANDIDATES
from gnn4itk.models.radius_graph.common import _exact_sq_distance, _nearest_per_group, _no_edges, _principal_rotation


def _tree_levels(n: int, leaf_size: int) -> int:
    """Halvings of ``n`` points that leave leaves of ``0.75 * leaf_size`` to ``1.5 * leaf_size`` points."""
    levels = 0
    while 2 * n > 3 * leaf_size * (1 << levels):
        levels += 1
    return levels


def _kd_order(points: torch.Tensor, levels: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Balanced k-d tree as a permutation: every tree node is a contiguous run of the returned slots.

    The points are padded to ``2**levels * leaf`` slots with rows at +inf; at each level every node is
    sorted along its widest coordinate, so its lower and upper halves become its two children.

    Args:
        points (FloatTensor [N, D]).
        levels: tree depth (``2**levels`` leaves).

    Returns:
        (order (LongTensor [S]) row of ``points`` in each slot, ``>= N`` in padding slots;
        valid (BoolTensor [S]) False in padding slots), ``S = 2**levels * ceil(N / 2**levels)``.
    """
    n, d = points.shape[0], points.shape[1]
    leaves = 1 << levels
    n_slots = leaves * ((n + leaves - 1) // leaves)
    # Padding rows at +inf sort last in every split, so they collect in the last leaves and never
    # unbalance a real split. A node holding padding gets an infinite (or NaN) spread on every axis
    # and splits on whichever axis argmax names: only the one node per level at the padded end.
    padded = torch.cat([points, torch.full([n_slots - n, d], float("inf"), dtype=points.dtype, device=points.device)])
    order = torch.arange(n_slots, device=points.device)
    for level in range(levels):
        nodes = 1 << level
        coords = padded.index_select(0, order).view(nodes, n_slots // nodes, d)
        lowest, highest = torch.aminmax(coords, dim=1)
        widest = (highest - lowest).argmax(dim=1).view(nodes, 1, 1).expand(nodes, coords.shape[1], 1)
        within = torch.argsort(coords.gather(2, widest).squeeze(2), dim=1)
        order = order.view(nodes, -1).gather(1, within).view(-1)
    return order, order < n


def _node_boxes(leaf_points: torch.Tensor, leaf_valid: torch.Tensor, coarsest: int = 0) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Bounding boxes of the tree's nodes per level, root first: (lower, upper) (FloatTensor [2**l, D]).

    Args:
        leaf_points (FloatTensor [L, T, D]), leaf_valid (BoolTensor [L, T]): the leaves in tree order.
        coarsest: levels above this one get empty boxes (FloatTensor [0, D]): the descent of
            :func:`_near_leaf_pairs` never tests them, so they are not computed.

    A leaf of padding only gets lower = +inf, upper = -inf, which no box test passes."""
    inf = torch.full([1], float("inf"), dtype=leaf_points.dtype, device=leaf_points.device)
    inside = leaf_valid.unsqueeze(2)
    lower = torch.where(inside, leaf_points, inf).amin(dim=1)
    upper = torch.where(inside, leaf_points, -inf).amax(dim=1)
    boxes = [(lower, upper)]
    unused = lower[:0]
    while lower.shape[0] > 1:
        if lower.shape[0] > (1 << coarsest):
            lower = lower.view(-1, 2, lower.shape[1]).amin(dim=1)
            upper = upper.view(-1, 2, upper.shape[1]).amax(dim=1)
            boxes.insert(0, (lower, upper))
        else:
            lower = lower[: lower.shape[0] // 2]
            boxes.insert(0, (unused, unused))
    return boxes


def _near_leaf_pairs(
    query_boxes: List[Tuple[torch.Tensor, torch.Tensor]],
    database_boxes: List[Tuple[torch.Tensor, torch.Tensor]],
    reach2: torch.Tensor,
    symmetric: bool,
    first_levels: int = 8,
    levels_per_step: int = RADIUS_LEVELS_PER_STEP,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Leaf pairs whose boxes are closer than ``sqrt(reach2)``, found by descending both trees together.

    A node pair is split into its child pairs only while its boxes are near, so the work follows the
    number of near pairs, not leaves^2. The first step goes straight to level ``first_levels`` (at
    most ``4**first_levels`` node pairs, all tested), then ``levels_per_step`` levels per step (one
    host sync each: fewer, larger steps trade syncs for box tests). ``symmetric`` (the two trees are
    one) keeps only pairs a <= b.

    Returns:
        (query leaf (LongTensor [P]), database leaf (LongTensor [P])).
    """
    device = reach2.device
    a = torch.zeros(1, dtype=torch.long, device=device)
    b = torch.zeros(1, dtype=torch.long, device=device)
    level_a, level_b = 0, 0
    depth_a, depth_b = len(query_boxes) - 1, len(database_boxes) - 1
    jump = first_levels
    while level_a < depth_a or level_b < depth_b:
        step_a, step_b = min(jump, depth_a - level_a), min(jump, depth_b - level_b)
        jump = levels_per_step
        level_a, level_b = level_a + step_a, level_b + step_b
        child_a = torch.arange(1 << step_a, device=device).view(1, -1, 1)
        child_b = torch.arange(1 << step_b, device=device).view(1, 1, -1)
        a = ((a << step_a).view(-1, 1, 1) + child_a).expand(-1, child_a.shape[1], child_b.shape[2]).reshape(-1)
        b = ((b << step_b).view(-1, 1, 1) + child_b).expand(-1, child_a.shape[1], child_b.shape[2]).reshape(-1)
        lower_a, upper_a = query_boxes[level_a]
        lower_b, upper_b = database_boxes[level_b]
        gap = torch.maximum(lower_b[b] - upper_a[a], lower_a[a] - upper_b[b]).clamp_min(0.0)
        near = (gap * gap).sum(dim=1) < reach2
        if symmetric:
            near = near & (a <= b)
        kept = torch.nonzero(near).squeeze(1)
        a, b = a[kept], b[kept]
    return a, b


class _Tree:
    """One point set in k-d leaf order (L leaves of T slots, S = L * T; padding slots are marked).

    Attributes:
        rows (LongTensor [S]): original row of each slot (0 in padding slots).
        boxes: per-level node boxes (:func:`_node_boxes`, float32 tree frame).
        leaf_points (DoubleTensor [L, T, D]): tree-frame coordinates, 0 in padding slots.
        norm (DoubleTensor [L, T]): squared norms, +inf in padding slots (puts padding infinitely far
            from everything in :func:`_leaf_pair_candidates`).
    """

    def __init__(self, frame: torch.Tensor, leaf_size: int, coarsest: int):
        """frame (DoubleTensor [N, D]): centred (and rotated) coordinates; coarsest: the first tree level
        whose boxes are needed (:func:`_node_boxes`)."""
        levels = _tree_levels(frame.shape[0], leaf_size)
        order, valid = _kd_order(frame.float(), levels)
        leaves, d = 1 << levels, frame.shape[1]
        self.rows = torch.where(valid, order, torch.zeros_like(order))
        valid = valid.view(leaves, -1)
        coords = frame.index_select(0, self.rows).view(leaves, -1, d)
        coords = torch.where(valid.unsqueeze(2), coords, torch.zeros([1], dtype=frame.dtype, device=frame.device))
        self.boxes = _node_boxes(coords.float(), valid, coarsest)
        self.leaf_points = coords
        self.norm = torch.where(valid, (coords * coords).sum(dim=2), torch.full([1], float("inf"), dtype=frame.dtype, device=frame.device))

    def query_operand(self) -> torch.Tensor:
        """``[a, |a|^2, 1]`` per slot (DoubleTensor [L, T, D + 2])."""
        ones = torch.ones_like(self.norm).unsqueeze(2)
        return torch.cat([self.leaf_points, self.norm.unsqueeze(2), ones], dim=2)

    def database_operand(self) -> torch.Tensor:
        """``[-2b, 1, |b|^2]`` per slot, transposed (DoubleTensor [L, D + 2, T])."""
        ones = torch.ones_like(self.norm).unsqueeze(2)
        return torch.cat([-2.0 * self.leaf_points, ones, self.norm.unsqueeze(2)], dim=2).transpose(1, 2).contiguous()


def _leaf_pair_candidates(
    query_operand: torch.Tensor, database_operand: torch.Tensor, leaf_a: torch.Tensor, leaf_b: torch.Tensor, threshold: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Point pairs of the leaf pairs ``(leaf_a[p], leaf_b[p])`` with squared distance below ``threshold``.

    The distances come from one batched float64 product ``[a, |a|^2, 1] . [-2b, 1, |b|^2]`` of the
    per-leaf operands (:meth:`_Tree.query_operand`, :meth:`_Tree.database_operand`), gathered whole
    per leaf pair (contiguous blocks). float64 because float32 products may run in tf32 or bf16
    (torch.set_float32_matmul_precision), whose rounding would need a wide margin and many more
    exact re-checks; in float64 the rounding (~1e-16 of the squared norms) is far below the margin.

    Args:
        query_operand (DoubleTensor [L, Tq, D + 2]), database_operand (DoubleTensor [L', D + 2, Td]).
        leaf_a, leaf_b (LongTensor [P]): leaf pairs.
        threshold (DoubleTensor [1] or []): squared-distance cut.

    Returns:
        (query slot (LongTensor [H]), database slot (LongTensor [H]), squared distance (DoubleTensor [H])).
    """
    # index_select: whole leaf blocks copied as contiguous slices.
    approx = torch.bmm(query_operand.index_select(0, leaf_a), database_operand.index_select(0, leaf_b)).view(-1)  # [P * Tq * Td]
    hits = torch.nonzero(approx < threshold).squeeze(1)
    tq, td = query_operand.shape[1], database_operand.shape[2]
    pair = torch.div(hits, tq * td, rounding_mode="floor")
    within = hits - pair * (tq * td)
    i = torch.div(within, td, rounding_mode="floor")
    return leaf_a[pair] * tq + i, leaf_b[pair] * td + (within - i * td), approx[hits]


def radius_graph_tree(
    query: torch.Tensor,
    database: torch.Tensor,
    r_max: float,
    k_max: int,
    leaf_size: int = RADIUS_LEAF_SIZE,
    max_candidates: int = RADIUS_MAX_CANDIDATES,
    rotate: bool = True,
    symmetric: bool = False,
    skip_self: bool = True,
    levels_per_step: int = RADIUS_LEVELS_PER_STEP,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Radius graph from k-d tree leaves: dense distance blocks between leaves whose boxes are near.

    Both point sets are sorted into balanced k-d trees (leaves of about ``leaf_size`` points); the
    trees are descended together to the leaf pairs whose bounding boxes are closer than ``r_max``;
    each such pair's ``Tq x Td`` distances come from one batched float64 matrix product, and the pairs
    near ``r_max`` are decided from the given coordinates (float64 sum of their exact differences).

    Args:
        query (FloatTensor [Q, D]), database (FloatTensor [N, D]): points.
        r_max, k_max, skip_self: as in :func:`radius_graph_brute_force`.
        leaf_size: points per leaf (leaves hold 0.75x to 1.5x that many).
        max_candidates: point pairs in one batched product (bounds memory).
        rotate: build the trees on the database's principal axes (tighter leaves).
        symmetric: ``database`` is ``query``: only leaf pairs a <= b are computed, the rest mirrored.
        levels_per_step: tree levels descended per host sync below level 8 (:func:`_near_leaf_pairs`).

    Returns:
        (edge_index (LongTensor [2, E]) sorted by query row, squared distances (FloatTensor [E]); exact
        within 1e-3 of r_max^2 or when the k_max cap applies, else from the float64 frame).
    """
    device = query.device
    empty = _no_edges(query)
    if query.shape[0] == 0 or database.shape[0] == 0:
        return empty
    # The trees live in a centred (optionally rotated) float64 frame; it only orders, prunes and
    # pre-decides, and every pair whose frame distance is within `slack` of r_max is decided again
    # from the given coordinates (_exact_sq_distance), as the brute force does.
    origin = database.double().mean(dim=0, keepdim=True)
    frame = _principal_rotation(database) if rotate else torch.eye(query.shape[1], dtype=torch.float64, device=device)
    query_frame = (query.double() - origin).mm(frame)
    first_levels = 8  # the descent's first jump; boxes above it are never tested
    query_tree = _Tree(query_frame, leaf_size, first_levels)
    database_tree = query_tree if symmetric else _Tree((database.double() - origin).mm(frame), leaf_size, first_levels)
    r2 = r_max * r_max
    scale = query_frame.abs().max() + r_max
    # Rounding of the float32 tree frame (boxes) and of the float64 frame distances: far below this.
    slack = r2 * 1e-3 + 1e-5 * r_max * scale * scale
    threshold = r2 + slack
    leaf_a, leaf_b = _near_leaf_pairs(query_tree.boxes, database_tree.boxes, threshold.to(query.dtype), symmetric, first_levels, levels_per_step)

    query_operand, database_operand = query_tree.query_operand(), database_tree.database_operand()
    leaf_q, leaf_d = query_operand.shape[1], database_operand.shape[2]
    pairs_per_product = max(1, max_candidates // (leaf_q * leaf_d))
    candidates_q: List[torch.Tensor] = []
    candidates_d: List[torch.Tensor] = []
    candidates_dist: List[torch.Tensor] = []
    pending = 0
    # Kept pairs of earlier chunks, capped at k_max per query; None until the candidates overflow.
    settled: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
    for start in range(0, leaf_a.numel(), pairs_per_product):
        a, b = leaf_a[start : start + pairs_per_product], leaf_b[start : start + pairs_per_product]
        slot_q, slot_d, approx = _leaf_pair_candidates(query_operand, database_operand, a, b, threshold)
        candidates_q.append(slot_q)
        candidates_d.append(slot_d)
        candidates_dist.append(approx)
        pending += slot_q.numel()
        if pending > max_candidates and start + pairs_per_product < leaf_a.numel():
            # A broad embedding (an untrained one, say) puts most points inside one radius: keeping every
            # candidate until the end would need memory quadratic in N. Decide what is pending now and keep
            # only each query's k_max nearest, so memory stays O(max_candidates + Q * k_max).
            settled = _settle(
                query, database, query_tree.rows, database_tree.rows, candidates_q, candidates_d, candidates_dist,
                r2, slack, leaf_q, leaf_d, skip_self, symmetric, k_max, settled)
            # cleared in place: rebinding the names to new lists miscompiled under TorchScript (torch 2.13:
            # candidates of earlier chunks came back after a second settle)
            candidates_q.clear()
            candidates_d.clear()
            candidates_dist.clear()
            pending = 0
    # A settle always has a later chunk, so candidates are pending here unless there were no leaf pairs.
    if len(candidates_q) == 0:
        return empty
    src, dst, dist2 = _settle(
        query, database, query_tree.rows, database_tree.rows, candidates_q, candidates_d, candidates_dist,
        r2, slack, leaf_q, leaf_d, skip_self, symmetric, k_max, settled)
    return torch.stack([src, dst]), dist2.to(query.dtype)


def _settle(
    query: torch.Tensor, database: torch.Tensor, query_rows: torch.Tensor, database_rows: torch.Tensor,
    candidates_q: List[torch.Tensor], candidates_d: List[torch.Tensor], candidates_dist: List[torch.Tensor],
    r2: float, slack: torch.Tensor, leaf_q: int, leaf_d: int, skip_self: bool, symmetric: bool, k_max: int,
    settled: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pending candidate chunks of :func:`radius_graph_tree` decided, joined to the pairs ``settled`` before
    (all kept), grouped by query row and capped at each row's ``k_max`` nearest: (src, dst, dist2 (DoubleTensor))."""
    if len(candidates_q) == 1:  # the usual case: no concatenation copy
        slot_q, slot_d, approx = candidates_q[0], candidates_d[0], candidates_dist[0]
    else:
        slot_q, slot_d, approx = torch.cat(candidates_q), torch.cat(candidates_d), torch.cat(candidates_dist)
    rows, cols, dist2, keep = _decide_candidates(
        query, database, query_rows, database_rows, slot_q, slot_d, approx, r2, slack, leaf_q, leaf_d, skip_self, symmetric)
    if settled is not None:
        rows, cols = torch.cat([settled[0], rows]), torch.cat([settled[1], cols])
        dist2 = torch.cat([settled[2], dist2])
        keep = torch.cat([torch.ones(settled[0].shape, dtype=torch.bool, device=keep.device), keep])
    return _group_and_cap(query, database, rows, cols, dist2, keep, k_max)


def _decide_candidates(
    query: torch.Tensor, database: torch.Tensor, query_rows: torch.Tensor, database_rows: torch.Tensor,
    slot_q: torch.Tensor, slot_d: torch.Tensor, approx: torch.Tensor, r2: float, slack: torch.Tensor,
    leaf_q: int, leaf_d: int, skip_self: bool, symmetric: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate pairs of :func:`radius_graph_tree` (tree slots, float64 frame distances) to point rows,
    squared distances (DoubleTensor) and a keep mask, mirrored when ``symmetric``; nothing compacted."""
    rows, cols = query_rows[slot_q], database_rows[slot_d]
    # Pairs near r_max: the distance of the given coordinates decides (_exact_sq_distance), as in the
    # brute force.
    dist2 = approx
    near_edge = torch.nonzero(approx > r2 - slack).squeeze(1)
    dist2[near_edge] = _exact_sq_distance(query[rows[near_edge]], database[cols[near_edge]])
    keep = dist2 < r2
    if skip_self:
        keep = keep & (rows != cols)
    if symmetric:
        # Leaf pairs a < b were computed one way only (a == b blocks hold both): add their mirror.
        mirror = keep & (slot_q // leaf_q != slot_d // leaf_d)
        rows, cols = torch.cat([rows, cols]), torch.cat([cols, rows])
        dist2, keep = torch.cat([dist2, dist2]), torch.cat([keep, mirror])
    return rows, cols, dist2, keep


def _group_and_cap(
    query: torch.Tensor, database: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, dist2: torch.Tensor,
    keep: torch.Tensor, k_max: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept pairs grouped by query row, at most the ``k_max`` nearest per row (exact distances rank)."""
    # One stable 32-bit sort (half the passes of a 64-bit one) in which the dropped candidates sort last,
    # past every row: no separate compaction of the candidates.
    n_kept = int(keep.sum().item())
    key = torch.where(keep, rows, torch.full_like(rows, query.shape[0])).to(torch.int32)
    sorted_rows, order = torch.sort(key, stable=True)
    order = order[:n_kept]
    src, dst = sorted_rows[:n_kept].long(), cols[order]
    if n_kept > 0 and int(torch.bincount(src).max().item()) > k_max:
        # The cap picks the nearest: rank by the exact distances, like the brute force.
        dist2 = _exact_sq_distance(query[src], database[dst])
        return _nearest_per_group(src, dst, dist2, k_max)
    return src, dst, dist2[order]
