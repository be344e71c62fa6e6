"""Fixed-radius neighbour graphs in an embedding space, in pure torch (no FRNN, no torch_cluster).

``radius_graph(query, database, r_max, k_max)`` returns every pair ``(i, j)`` with
``||query_i - database_j|| < r_max``, ``i != j``, keeping at most the ``k_max`` nearest ``j`` per ``i``.
Give the same tensor twice for the single metric-learning graph, or the source and target embeddings
for the double (directed) one.

Two exact methods:

* ``"grid"``: bin the database on its first ``grid_dims`` coordinates with cells of side ``r_max``.
  Since ``|a_d - b_d| <= ||a - b||``, every neighbour of a query lies in the ``3**grid_dims`` cells around
  the query's cell. Points are sorted by cell; for each query the candidates of its neighbouring cells
  are enumerated with ``repeat_interleave`` in query chunks holding at most ``max_candidates`` pairs, and
  checked with the exact distance. Memory is O(candidates per chunk), never O(N^2).
  Neighbouring cells whose box is ``r_max`` or farther from the query are skipped. ``rotate=True``
  first turns the points onto their principal axes (distances do not change), so the binned
  coordinates are the most spread ones and fewer candidates survive.
* ``"brute"``: distance matrix in row blocks of ``block_rows`` queries; O(block_rows * N) memory.

Both keep the nearest ``k_max`` per query by sorting (query, distance) and report edges grouped by query
(each query's edges adjacent).
"""

from typing import Final, List, Optional, Tuple

import torch
from torch import nn

def _exact_sq_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=1)


def _keep_nearest(src: torch.Tensor, dst: torch.Tensor, dist2: torch.Tensor, k_max: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep, for every ``src`` value, the ``k_max`` pairs of smallest ``dist2``.

    ``src`` must be grouped (equal values adjacent); the result stays grouped."""
    if src.numel() == 0:
        return src, dst, dist2
    # Callers pass edges grouped by source already; with no source over the cap nothing needs sorting
    # (the usual case for k_max = 1000).
    if int(torch.bincount(src).max().item()) <= k_max:
        return src, dst, dist2
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
    """Orthogonal matrix [D, D] whose columns are the principal axes of ``points``, largest first."""
    centred = points - points.mean(dim=0, keepdim=True)
    # A D x D eigenproblem: solved on the host, where it takes microseconds.
    covariance = centred.t().mm(centred).double().cpu()
    _, vectors = torch.linalg.eigh(covariance)
    return vectors.flip(1).to(dtype=points.dtype, device=points.device)


def radius_graph_brute_force(
    query: torch.Tensor,
    database: torch.Tensor,
    r_max: float,
    k_max: int,
    block_rows: int = 4096,
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
        approx = torch.cdist(block, database).pow(2)
        # cdist uses a matrix product whose rounding can move a pair across r: take a small margin
        # and decide with the exact difference below, so the edges never depend on that rounding.
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
    return torch.stack([src, dst]), dist2


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
    grid_dims: int = 3,
    max_candidates: int = 1 << 24,
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
        query_key, database_key = query.mm(axes), database.mm(axes)
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
    return torch.stack([torch.cat(sources), torch.cat(targets)]), torch.cat(distances)


def radius_graph(
    query: torch.Tensor,
    database: Optional[torch.Tensor],
    r_max: float,
    k_max: int,
    method: str = "grid",
    grid_dims: int = 3,
    max_candidates: int = 1 << 24,
    block_rows: int = 4096,
    rotate: bool = False,
) -> torch.Tensor:
    """Edges ``query_i -> database_j`` with distance < ``r_max``, at most ``k_max`` nearest per ``i``.

    Args:
        query (FloatTensor [N, D]): embeddings (source embeddings for the double form).
        database (FloatTensor [N, D] or None): target embeddings; None uses ``query`` (single form).
        r_max, k_max: radius and neighbour cap (GNN4ITk defaults 0.12 and 1000).
        method: ``"grid"`` or ``"brute"`` (see module doc); both give the same edges.

    Returns:
        edge_index (LongTensor [2, E]): (query row, database row), each query's edges adjacent; no
        self-loops.
    """
    if database is None:
        database = query
    if query.dim() != 2 or database.dim() != 2 or query.shape[1] != database.shape[1]:
        raise ValueError("query and database must be 2-d tensors [N, D] with the same D")
    if r_max <= 0 or k_max <= 0:
        raise ValueError("r_max and k_max must be positive")
    if method == "grid":
        return radius_graph_grid(query, database, r_max, k_max, grid_dims, max_candidates, rotate)[0]
    if method == "brute":
        return radius_graph_brute_force(query, database, r_max, k_max, block_rows)[0]
    raise ValueError("unknown radius-graph method " + method + ": expected 'grid' or 'brute'")


class RadiusGraph(nn.Module):
    """Scriptable module form of :func:`radius_graph` with the settings fixed at construction.

    Defaults: GNN4ITk's ``r_max`` 0.12 and ``k_max`` 1000, a grid on the 4 principal axes (the fewest
    candidates on track-like 12-d embeddings among 3-5 axes with or without rotation).

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

    def __init__(
        self,
        r_max: float = 0.12,
        k_max: int = 1000,
        method: str = "grid",
        grid_dims: int = 4,
        max_candidates: int = 1 << 24,
        block_rows: int = 4096,
        rotate: bool = True,
    ):
        super().__init__()
        if method not in ("grid", "brute"):
            raise ValueError(f"unknown radius-graph method {method!r}: expected 'grid' or 'brute'")
        self.r_max, self.k_max, self.method = float(r_max), int(k_max), method
        self.grid_dims, self.max_candidates = int(grid_dims), int(max_candidates)
        self.block_rows, self.rotate = int(block_rows), bool(rotate)

    def forward(self, query: torch.Tensor, database: Optional[torch.Tensor] = None) -> torch.Tensor:
        return radius_graph(
            query, database, self.r_max, self.k_max, self.method, self.grid_dims, self.max_candidates, self.block_rows, self.rotate
        )
