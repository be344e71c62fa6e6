"""Radius graph by brute force: the distance matrix in row blocks of ``block_rows`` queries, O(block_rows * N)
memory. The simplest method, the reference the others are tested against."""

from typing import List, Tuple

import torch

from gnn4itk.defaults import RADIUS_BLOCK_ROWS
from gnn4itk.models.radius_graph.common import _exact_sq_distance, _keep_nearest, _no_edges


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
        return _no_edges(query)
    src, dst, dist2 = torch.cat(sources), torch.cat(targets), torch.cat(distances)
    src, dst, dist2 = _keep_nearest(src, dst, dist2, k_max)
    return torch.stack([src, dst]), dist2.to(query.dtype)
