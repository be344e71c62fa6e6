"""Radius graph through a uniform grid.

The database is binned on its first ``grid_dims`` coordinates with cells of side ``r_max``. Since
``|a_d - b_d| <= ||a - b||``, every neighbour of a query lies in the ``3**grid_dims`` cells around the
query's cell. Points are sorted by cell; for each query the candidates of its neighbouring cells are
enumerated with ``repeat_interleave`` in query chunks holding at most ``max_candidates`` pairs, and
checked with the exact distance. Memory is O(candidates per chunk), never O(N^2). Neighbouring cells
whose box is ``r_max`` or farther from the query are skipped. ``rotate=True`` first turns the points onto
their principal axes (distances do not change), so the binned coordinates are the most spread ones and
fewer candidates survive.
"""

from typing import List, Tuple

import torch

from gnn4itk.defaults import RADIUS_GRID_DIMS, RADIUS_MAX_CANDIDATES
from gnn4itk.models.radius_graph.common import _exact_sq_distance, _keep_nearest, _no_edges, _principal_rotation


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
    empty = _no_edges(query)
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
