"""Fixed-radius neighbour graphs in an embedding space, in pure torch (no FRNN, no torch_cluster).

``radius_graph(query, database, r_max, k_max)`` returns every pair ``(i, j)`` with
``||query_i - database_j|| < r_max``, ``i != j``, keeping at most the ``k_max`` nearest ``j`` per ``i``.
Give the same tensor twice for the single metric-learning graph, or the source and target embeddings
for the double (directed) one.

Three exact methods:

* ``"tree"`` (default): both point sets are sorted into balanced k-d trees (leaves of ~``leaf_size``
  points, on the principal axes); the two trees are descended together to the leaf pairs whose
  bounding boxes are closer than ``r_max``; each leaf pair's distances come from one batched float64
  matrix product of per-leaf operands, and pairs within 1e-3 of ``r_max^2`` are decided from the
  given coordinates, like the brute force. For the single form only leaf pairs a <= b are computed
  and mirrored. A few host syncs in all (one per ``levels_per_step`` tree levels below 8, one per
  product chunk, three at the end), memory O(``max_candidates`` + Q * ``k_max``): when the pairs within
  the radius outgrow ``max_candidates`` (a broad, e.g. untrained, embedding puts most points inside one
  radius), those pending are decided and cut to each query's ``k_max`` nearest before the next chunk.
* ``"grid"``: bin the database on its first ``grid_dims`` coordinates with cells of side ``r_max``.
  Since ``|a_d - b_d| <= ||a - b||``, every neighbour of a query lies in the ``3**grid_dims`` cells around
  the query's cell. Points are sorted by cell; for each query the candidates of its neighbouring cells
  are enumerated with ``repeat_interleave`` in query chunks holding at most ``max_candidates`` pairs, and
  checked with the exact distance. Memory is O(candidates per chunk), never O(N^2).
  Neighbouring cells whose box is ``r_max`` or farther from the query are skipped. ``rotate=True``
  first turns the points onto their principal axes (distances do not change), so the binned
  coordinates are the most spread ones and fewer candidates survive.
* ``"brute"``: distance matrix in row blocks of ``block_rows`` queries; O(block_rows * N) memory.

Every method decides an edge with the same distance of the given float32 coordinates: the float64
sum of their exact differences (:func:`_exact_sq_distance`), the same on CPU and CUDA. All keep the
nearest ``k_max`` per query by sorting (query, distance) and report edges grouped by query
(each query's edges adjacent).
"""

from typing import Final, List, Optional, Tuple

import torch
from torch import nn

from gnn4itk.defaults import (
    K_MAX,
    R_MAX,
    RADIUS_BLOCK_ROWS,
    RADIUS_GRID_DIMS,
    RADIUS_LEAF_SIZE,
    RADIUS_LEVELS_PER_STEP,
    RADIUS_MAX_CANDIDATES,
    RADIUS_METHOD,
    RADIUS_ROTATE,
)

def _exact_sq_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distances of row pairs (DoubleTensor [M]) for a, b (FloatTensor [M, D]).

    The deciding distance of every method. float64: the difference of two float32 values and its
    square are exact there, so the sum's rounding (~1e-16) is the only error and no realistic pair
    sits on it. A float32 sum would round at ~1e-7, and its rounding depends on the reduction order,
    which differs between CPU and CUDA (and between kernel shapes): a 140k-point event has about one
    pair within a float32 rounding step of r_max^2, enough for two devices to disagree on an edge."""
    difference = a.double() - b.double()
    return (difference * difference).sum(dim=1)


def _keep_nearest(src: torch.Tensor, dst: torch.Tensor, dist2: torch.Tensor, k_max: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep, for every ``src`` value, the ``k_max`` pairs of smallest ``dist2``.

    ``src`` must be grouped (equal values adjacent); the result stays grouped."""
    if src.numel() == 0:
        return src, dst, dist2
    # Callers pass edges grouped by source already; with no source over the cap nothing needs sorting
    # (the usual case for k_max = 1000).
    if int(torch.bincount(src).max().item()) <= k_max:
        return src, dst, dist2
    return _nearest_per_group(src, dst, dist2, k_max)


def _nearest_per_group(src: torch.Tensor, dst: torch.Tensor, dist2: torch.Tensor, k_max: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k_max`` pairs of smallest ``dist2`` of every ``src`` value, grouped by ``src`` (no check
    whether any group is over the cap)."""
    by_distance = torch.argsort(dist2)
    order = by_distance[torch.argsort(src[by_distance], stable=True)]
    src, dst, dist2 = src[order], dst[order], dist2[order]
    position = torch.arange(src.numel(), device=src.device)
    group_start = torch.ones_like(src, dtype=torch.bool)
    group_start[1:] = src[1:] != src[:-1]
    first = torch.cummax(torch.where(group_start, position, torch.zeros_like(position)), dim=0)[0]
    keep = (position - first) < k_max
    return src[keep], dst[keep], dist2[keep]


def _principal_rotation(points: torch.Tensor) -> torch.Tensor:
    """Orthogonal matrix (DoubleTensor [D, D]) whose columns are the principal axes of ``points``, largest first."""
    centred = points.double() - points.double().mean(dim=0, keepdim=True)
    # A D x D eigenproblem: solved on the host, where it takes microseconds. float64 throughout, so
    # a float32 matmul mode (tf32, bf16) cannot blur the axes.
    covariance = centred.t().mm(centred).cpu()
    _, vectors = torch.linalg.eigh(covariance)
    return vectors.flip(1).to(device=points.device)


def radius_graph_brute_force(
    query: torch.Tensor,
    database: torch.Tensor,
    r_max: float,
    k_max: int,
    block_rows: int = RADIUS_BLOCK_ROWS,
    skip_self: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Radius graph from blocks of the full distance matrix.

    Args:
        query (FloatTensor [Q, D]), database (FloatTensor [N, D]): points.
        r_max: radius; pairs with distance < r_max are edges.
        k_max: most neighbours kept per query (the nearest).
        block_rows: queries per distance-matrix block.
        skip_self: drop pairs ``i == j`` (same row number in query and database).

    Returns:
        (edge_index (LongTensor [2, E]) as (query row, database row), squared distances (FloatTensor [E])).
    """
    r2 = r_max * r_max
    sources: List[torch.Tensor] = []
    targets: List[torch.Tensor] = []
    distances: List[torch.Tensor] = []
    for start in range(0, query.shape[0], block_rows):
        block = query[start : start + block_rows]
        # Direct differences, not the matrix-product form: that one rounds to the float32 matmul mode
        # (tf32 or bf16 inputs when allowed), far beyond any fixed margin. The small margin covers the
        # sqrt/square round trip; the exact difference below decides.
        approx = torch.cdist(block, database, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        pairs = torch.nonzero(approx < r2 * 1.0001 + 1e-6)
        rows, cols = pairs[:, 0] + start, pairs[:, 1]
        dist2 = _exact_sq_distance(query[rows], database[cols])
        keep = dist2 < r2
        if skip_self:
            keep = keep & (rows != cols)
        sources.append(rows[keep])
        targets.append(cols[keep])
        distances.append(dist2[keep])
    if len(sources) == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=query.device), torch.zeros(0, dtype=query.dtype, device=query.device)
    src, dst, dist2 = torch.cat(sources), torch.cat(targets), torch.cat(distances)
    src, dst, dist2 = _keep_nearest(src, dst, dist2, k_max)
    return torch.stack([src, dst]), dist2.to(query.dtype)


def _grid_offsets(grid_dims: int, device: torch.device) -> torch.Tensor:
    """All 3**grid_dims cell offsets in {-1, 0, 1}^grid_dims, LongTensor [3**grid_dims, grid_dims]."""
    steps = torch.tensor([-1, 0, 1], dtype=torch.long, device=device)
    offsets = torch.zeros(1, 0, dtype=torch.long, device=device)
    for _ in range(grid_dims):
        n = offsets.shape[0]
        offsets = torch.cat([offsets.repeat_interleave(3, dim=0), steps.repeat(n).unsqueeze(1)], dim=1)
    return offsets


def radius_graph_grid(
    query: torch.Tensor,
    database: torch.Tensor,
    r_max: float,
    k_max: int,
    grid_dims: int = RADIUS_GRID_DIMS,
    max_candidates: int = RADIUS_MAX_CANDIDATES,
    rotate: bool = False,
    skip_self: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Radius graph through a uniform grid on the first ``grid_dims`` coordinates (see module doc).

    Args:
        query (FloatTensor [Q, D]), database (FloatTensor [N, D]): points.
        r_max, k_max, skip_self: as in :func:`radius_graph_brute_force`.
        grid_dims: coordinates binned (1 <= grid_dims <= D); 3**grid_dims cells are visited per query.
        max_candidates: candidate pairs examined at once (bounds memory).
        rotate: bin along principal axes instead of the first coordinates.

    Returns:
        (edge_index (LongTensor [2, E]), squared distances (FloatTensor [E])), grouped by query row (each
        query's edges adjacent; queries in cell order, not row order).
    """
    device = query.device
    empty = (torch.zeros(2, 0, dtype=torch.long, device=device), torch.zeros(0, dtype=query.dtype, device=device))
    if query.shape[0] == 0 or database.shape[0] == 0:
        return empty
    grid_dims = min(grid_dims, query.shape[1])
    if rotate:
        axes = _principal_rotation(database)[:, :grid_dims]
        query_key, database_key = query.double().mm(axes).to(query.dtype), database.double().mm(axes).to(database.dtype)
    else:
        query_key, database_key = query[:, :grid_dims], database[:, :grid_dims]

    # Cell coordinates relative to the database's lower corner; queries outside the box clamp to one
    # cell beyond it, which still has the right neighbours (cells outside hold no points).
    lower = database_key.min(dim=0)[0]
    shape = torch.floor((database_key.max(dim=0)[0] - lower) / r_max).long() + 1
    database_cell = torch.floor((database_key - lower) / r_max).long()
    query_position = (query_key - lower) / r_max
    unclamped = torch.floor(query_position).long()
    query_cell = torch.minimum(torch.maximum(unclamped, torch.full_like(unclamped, -1)), shape.unsqueeze(0))
    # Position inside the own cell, in cell units. A clamped query lies r_max or more outside the box
    # along some axis and so has no neighbours at all: any value is right for it, 0 is used.
    inner = torch.where((unclamped == query_cell).all(dim=1, keepdim=True), query_position - unclamped.to(query_key.dtype), torch.zeros_like(query_position))
    strides = torch.ones_like(shape)
    for d in range(grid_dims - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    n_cells = int((strides[0] * shape[0]).item())

    database_id = (database_cell * strides).sum(dim=1)
    order = torch.argsort(database_id)
    sorted_points = database[order]
    sorted_key = database_key[order]
    counts = torch.bincount(database_id, minlength=n_cells)
    starts = torch.cumsum(counts, dim=0) - counts

    # Visit queries in cell order too: consecutive queries then read the same database cells, which
    # keeps the gathers below in cache.
    query_id = (torch.minimum(query_cell.clamp(min=0), shape - 1) * strides).sum(dim=1)
    query_order = torch.argsort(query_id)
    query_cell, inner = query_cell[query_order], inner[query_order]
    sorted_query, sorted_query_key = query[query_order], query_key[query_order]

    # Candidates of every (query, neighbouring cell) pair; cells outside the grid contribute none.
    offsets = _grid_offsets(grid_dims, device)
    neighbour = query_cell.unsqueeze(1) + offsets.unsqueeze(0)  # [Q, 3^G, G]
    inside = ((neighbour >= 0) & (neighbour < shape)).all(dim=2)
    # Skip cells whose box lies r_max or farther from the query: gap to the box along each binned axis
    # (in units of r_max), summed in quadrature. This cuts the 3^G cube of cells down to about the cells
    # that meet the query's r_max ball.
    step = offsets.unsqueeze(0).to(query_key.dtype)
    frac = inner.unsqueeze(1)
    gap = torch.where(step > 0, 1.0 - frac, torch.where(step < 0, frac, torch.zeros_like(frac)))
    inside = inside & ((gap * gap).sum(dim=2) < 1.0001)  # margin: rounding must never drop a cell
    neighbour_id = torch.where(inside, (neighbour * strides).sum(dim=2), torch.zeros_like(inside, dtype=torch.long))
    pair_count = torch.where(inside, counts[neighbour_id], torch.zeros_like(neighbour_id))
    pair_start = starts[neighbour_id]
    per_query = pair_count.sum(dim=1)

    # Query chunks whose candidate total stays below max_candidates (a single query may exceed it).
    cumulative = torch.cumsum(per_query, dim=0)
    chunk_of_query = torch.div(cumulative - per_query, max_candidates, rounding_mode="floor")
    chunk_ends = torch.nonzero(torch.diff(chunk_of_query, append=chunk_of_query[-1:] + 1)).squeeze(1) + 1
    r2 = r_max * r_max
    n_offsets = offsets.shape[0]
    sources: List[torch.Tensor] = []
    targets: List[torch.Tensor] = []
    distances: List[torch.Tensor] = []
    begin = 0
    chunk_end_list: List[int] = chunk_ends.tolist()
    for end in chunk_end_list:
        counts_flat = pair_count[begin:end].reshape(-1)
        starts_flat = pair_start[begin:end].reshape(-1)
        total = int(counts_flat.sum().item())
        if total > 0:
            owner = torch.repeat_interleave(torch.arange(counts_flat.numel(), device=device), counts_flat, output_size=total)
            first = torch.cumsum(counts_flat, dim=0) - counts_flat
            position = starts_flat[owner] + torch.arange(total, device=device) - first[owner]
            src = torch.div(owner, n_offsets, rounding_mode="floor") + begin
            # Cheap pre-check on the binned coordinates alone: their distance never exceeds the full
            # one (a projection onto orthonormal axes), so only pairs passing it can be edges.
            near = _exact_sq_distance(sorted_query_key[src], sorted_key[position]) < r2 * 1.0001 + 1e-7
            src, position = src[near], position[near]
            dist2 = _exact_sq_distance(sorted_query[src], sorted_points[position])
            keep = dist2 < r2
            dst = order[position[keep]]
            src, dist2 = query_order[src[keep]], dist2[keep]
            if skip_self:
                not_self = src != dst
                src, dst, dist2 = src[not_self], dst[not_self], dist2[not_self]
            src, dst, dist2 = _keep_nearest(src, dst, dist2, k_max)
            sources.append(src)
            targets.append(dst)
            distances.append(dist2)
        begin = end
    if len(sources) == 0:
        return empty
    return torch.stack([torch.cat(sources), torch.cat(targets)]), torch.cat(distances).to(query.dtype)


# --------------------------------------------------------------------------------------------------
# "tree": k-d tree leaves, near leaf pairs, dense distance blocks

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
    empty = (torch.zeros(2, 0, dtype=torch.long, device=device), torch.zeros(0, dtype=query.dtype, device=device))
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


def radius_graph(
    query: torch.Tensor,
    database: Optional[torch.Tensor],
    r_max: float,
    k_max: int,
    method: str = RADIUS_METHOD,
    grid_dims: int = RADIUS_GRID_DIMS,
    max_candidates: int = RADIUS_MAX_CANDIDATES,
    block_rows: int = RADIUS_BLOCK_ROWS,
    rotate: bool = RADIUS_ROTATE,
    leaf_size: int = RADIUS_LEAF_SIZE,
    levels_per_step: int = RADIUS_LEVELS_PER_STEP,
) -> torch.Tensor:
    """Edges ``query_i -> database_j`` with distance < ``r_max``, at most ``k_max`` nearest per ``i``.

    Args:
        query (FloatTensor [N, D]): embeddings (source embeddings for the double form).
        database (FloatTensor [N, D] or None): target embeddings; None uses ``query`` (single form).
        r_max, k_max: radius and neighbour cap (GNN4ITk defaults 0.12 and 1000).
        method: ``"tree"``, ``"grid"`` or ``"brute"`` (see module doc); all give the same edges.
        grid_dims ("grid"), max_candidates ("tree", "grid"), block_rows ("brute"), rotate ("tree",
        "grid"), leaf_size, levels_per_step ("tree"): see the method's function.

    Returns:
        edge_index (LongTensor [2, E]): (query row, database row), each query's edges adjacent; no
        self-loops.
    """
    symmetric = database is None
    if database is None:
        database = query
    if query.dim() != 2 or database.dim() != 2 or query.shape[1] != database.shape[1]:
        raise ValueError("query and database must be 2-d tensors [N, D] with the same D")
    if r_max <= 0 or k_max <= 0:
        raise ValueError("r_max and k_max must be positive")
    if method == "tree":
        if leaf_size < 1 or levels_per_step < 1:
            raise ValueError("leaf_size and levels_per_step must be positive")
        return radius_graph_tree(query, database, r_max, k_max, leaf_size, max_candidates, rotate, symmetric, True, levels_per_step)[0]
    if method == "grid":
        return radius_graph_grid(query, database, r_max, k_max, grid_dims, max_candidates, rotate)[0]
    if method == "brute":
        return radius_graph_brute_force(query, database, r_max, k_max, block_rows)[0]
    raise ValueError("unknown radius-graph method " + method + ": expected 'tree', 'grid' or 'brute'")


class RadiusGraph(nn.Module):
    """Scriptable module form of :func:`radius_graph` with the settings fixed at construction.

    Defaults: GNN4ITk's ``r_max`` 0.12 and ``k_max`` 1000, the ``"tree"`` method with leaves of about
    32 points on the principal axes (the fastest on track-like 12-d embeddings, CPU and GPU).

    Args (forward):
        query (FloatTensor [N, D]), database (FloatTensor [N, D] or None).

    Returns:
        edge_index (LongTensor [2, E]).
    """

    method: Final[str]
    r_max: Final[float]
    k_max: Final[int]
    grid_dims: Final[int]
    max_candidates: Final[int]
    block_rows: Final[int]
    rotate: Final[bool]
    leaf_size: Final[int]
    levels_per_step: Final[int]

    def __init__(
        self,
        r_max: float = R_MAX,
        k_max: int = K_MAX,
        method: str = RADIUS_METHOD,
        grid_dims: int = RADIUS_GRID_DIMS,
        max_candidates: int = RADIUS_MAX_CANDIDATES,
        block_rows: int = RADIUS_BLOCK_ROWS,
        rotate: bool = RADIUS_ROTATE,
        leaf_size: int = RADIUS_LEAF_SIZE,
        levels_per_step: int = RADIUS_LEVELS_PER_STEP,
    ):
        super().__init__()
        if method not in ("tree", "grid", "brute"):
            raise ValueError(f"unknown radius-graph method {method!r}: expected 'tree', 'grid' or 'brute'")
        if leaf_size < 1 or levels_per_step < 1:
            raise ValueError("leaf_size and levels_per_step must be positive")
        self.levels_per_step = int(levels_per_step)
        self.r_max, self.k_max, self.method = float(r_max), int(k_max), method
        self.grid_dims, self.max_candidates = int(grid_dims), int(max_candidates)
        self.block_rows, self.rotate, self.leaf_size = int(block_rows), bool(rotate), int(leaf_size)

    def forward(self, query: torch.Tensor, database: Optional[torch.Tensor] = None) -> torch.Tensor:
        return radius_graph(
            query, database, self.r_max, self.k_max, self.method, self.grid_dims, self.max_candidates, self.block_rows,
            self.rotate, self.leaf_size, self.levels_per_step,
        )
