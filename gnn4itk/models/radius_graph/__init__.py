"""Fixed-radius neighbour graphs in an embedding space, in pure torch (no FRNN, no torch_cluster).

``radius_graph(query, database, r_max, k_max)`` returns every pair ``(i, j)`` with
``||query_i - database_j|| < r_max``, ``i != j``, keeping at most the ``k_max`` nearest ``j`` per ``i``.
Give the same tensor twice for the single metric-learning graph, or the source and target embeddings
for the double (directed) one. :class:`RadiusGraph` is its scriptable module form (the graph-construction
stage of the metric-learning pipelines).

Three exact methods, one module each:

* ``"tree"`` (default, what the shipped configurations run): k-d tree leaves, dense distance blocks
  between leaves whose boxes are near (:mod:`~gnn4itk.models.radius_graph.tree`).
* ``"grid"``: a uniform grid of cells of side ``r_max`` on the first ``grid_dims`` coordinates
  (:mod:`~gnn4itk.models.radius_graph.grid`).
* ``"brute"``: the distance matrix in row blocks (:mod:`~gnn4itk.models.radius_graph.brute_force`).

Every method decides an edge with the same distance of the given float32 coordinates: the float64
sum of their exact differences (:func:`~gnn4itk.models.radius_graph.common._exact_sq_distance`), the
same on CPU and CUDA. All keep the nearest ``k_max`` per query by sorting (query, distance) and report
edges grouped by query (each query's edges adjacent).
"""

from typing import Final, Optional

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
from gnn4itk.models.radius_graph.brute_force import radius_graph_brute_force
from gnn4itk.models.radius_graph.grid import radius_graph_grid
from gnn4itk.models.radius_graph.tree import radius_graph_tree

__all__ = ["RadiusGraph", "radius_graph", "radius_graph_brute_force", "radius_graph_grid", "radius_graph_tree"]


def _check_tree_settings(leaf_size: int, levels_per_step: int) -> None:
    """The "tree" method's settings are positive (ValueError otherwise)."""
    if leaf_size < 1 or levels_per_step < 1:
        raise ValueError("leaf_size and levels_per_step must be positive")


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
        _check_tree_settings(leaf_size, levels_per_step)
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
        _check_tree_settings(leaf_size, levels_per_step)
        self.levels_per_step = int(levels_per_step)
        self.r_max, self.k_max, self.method = float(r_max), int(k_max), method
        self.grid_dims, self.max_candidates = int(grid_dims), int(max_candidates)
        self.block_rows, self.rotate, self.leaf_size = int(block_rows), bool(rotate), int(leaf_size)

    def forward(self, query: torch.Tensor, database: Optional[torch.Tensor] = None) -> torch.Tensor:
        return radius_graph(
            query, database, self.r_max, self.k_max, self.method, self.grid_dims, self.max_candidates, self.block_rows,
            self.rotate, self.leaf_size, self.levels_per_step,
        )
