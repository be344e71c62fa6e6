"""Graph construction stages: FEATURES [N, F] -> (edge_index [2, E] inner -> outer, edge_attr [E, 6]).

Registered kinds (``graph_construction.kind`` of a pipeline configuration):

* ``module_map`` -- :class:`ModuleMapGraph`: the module-map graph (``module_map``, ``pair_chunk``,
  ``triplet_chunk``).
* ``metric_learning`` -- :class:`MetricLearningGraph`: an embedding (``checkpoint``; single or double) and a
  radius graph (``r_max``, ``k_max``, ``method``, ``grid_dims``, ``max_candidates``, ``block_rows``,
  ``leaf_size``, ``levels_per_step``; defaults in :mod:`gnn4itk.defaults`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from gnn4itk.defaults import K_MAX, R_MAX, RADIUS_METHOD
from gnn4itk.edge_features import unique_edges
from gnn4itk.stages.features import EdgeFeatures, ScaledFeatures, column_indices
from gnn4itk.stages.interfaces import Stage
from gnn4itk.stages.registry import register_graph_construction

RADIUS_OPTIONS = ("grid_dims", "max_candidates", "block_rows", "leaf_size", "levels_per_step")
"""Integer radius-graph settings a ``metric_learning`` section may give (see :class:`gnn4itk.models.RadiusGraph`)."""


def orient_inner_to_outer(edge_index: Tensor, r2z2: Tensor) -> Tensor:
    """Flip edges so that they point from smaller to larger ``(r² + z², row)`` and drop duplicates.

    Args:
        edge_index: LongTensor [2, E]. r2z2: FloatTensor [N].

    Returns:
        LongTensor [2, E'] sorted by (source, target), without self-loops or repeated edges.
    """
    src, dst = edge_index[0], edge_index[1]
    flip = (r2z2[src] > r2z2[dst]) | ((r2z2[src] == r2z2[dst]) & (src > dst))
    oriented = torch.stack([torch.where(flip, dst, src), torch.where(flip, src, dst)])
    oriented = oriented[:, oriented[0] != oriented[1]]
    return unique_edges(oriented, r2z2.shape[0])


@register_graph_construction("module_map")
class ModuleMapGraph(Stage):
    """Module-map graph construction on FEATURES.

    Args:
        builder: a :class:`module_map.graph_builder.ModuleMapGraphBuilder`.
        columns: FEATURES column names; needs ``x, y, z, r, phi, eta, module_id``.
    """

    def __init__(self, builder: nn.Module, columns: Sequence[str]):
        super().__init__()
        self.builder = builder
        self.register_buffer(
            "position_index",
            torch.tensor(column_indices(columns, ["x", "y", "z", "r", "phi", "eta"], "module-map graph")),
        )
        self.module_column = column_indices(columns, ["module_id"], "module-map graph")[0]

    @classmethod
    def from_config(cls, stage: dict, context) -> "ModuleMapGraph":
        from module_map.graph_builder import ModuleMapGraphBuilder
        from module_map.map import load_map

        if context.module_map_path is not None:  # given by the user: relative to where they are
            map_path = context.module_map_path
        elif stage.get("module_map") is not None:
            map_path = context.path(stage["module_map"])
        else:
            raise ValueError("the module-map pipeline needs a module map (graph_construction.module_map or -mmp)")
        if str(map_path).endswith(".npz") and not Path(map_path).exists():
            hint = " (build the default map with `make default-map`)" if context.module_map_path is None else ""
            raise FileNotFoundError(f"no module map file {map_path}{hint}")
        module_map = load_map(map_path, verbose=context.verbose)
        chunks = {k: int(stage[k]) for k in ("pair_chunk", "triplet_chunk") if k in stage}
        return cls(ModuleMapGraphBuilder(module_map, **chunks), context.columns)

    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        positions = features.index_select(1, self.position_index)
        return self.builder(positions, features[:, self.module_column])


class _SharedEmbedding(nn.Module):
    """A single embedding seen as a double one: ``x -> (emb, emb)``."""

    def __init__(self, embedding: nn.Module):
        super().__init__()
        self.model = embedding

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        emb = self.model(x)
        return emb, emb


@register_graph_construction("metric_learning")
class MetricLearningGraph(Stage):
    """Embedding + radius graph, single or double (source/target) embedding.

    Single embedding: undirected neighbours, oriented inner -> outer by ``r² + z²``. Double embedding:
    ``i -> j`` when ``|src_i - tgt_j| < r_max`` (then oriented the same way, so that the track builder
    sees inner -> outer edges).

    Args:
        embedding: :class:`gnn4itk.models.MetricLearning` or :class:`gnn4itk.models.DoubleMetricLearning`.
        radius_graph: :class:`gnn4itk.models.RadiusGraph` (holds ``r_max`` and ``k_max``).
        columns: FEATURES column names.
        node_features, node_scales: the embedding's inputs (acorn hyperparameters).
        double: True for the double (directed) embedding, whose forward gives (source, target) embeddings.
    """

    def __init__(
        self,
        embedding: nn.Module,
        radius_graph: nn.Module,
        columns: Sequence[str],
        node_features: Sequence[str],
        node_scales: Sequence[float],
        double: bool,
    ):
        super().__init__()
        # both forms present one interface, (source, target) embeddings, so TorchScript sees one type
        self.embedding = embedding if double else _SharedEmbedding(embedding)
        self.radius_graph = radius_graph
        self.inputs = ScaledFeatures(columns, node_features, node_scales, "embedding")
        self.edge_features = EdgeFeatures(columns)
        self.r2z2_index = column_indices(columns, ["r", "z"], "metric-learning graph")

    @classmethod
    def from_config(cls, stage: dict, context) -> "MetricLearningGraph":
        from gnn4itk.models import RadiusGraph

        embedding = context.checkpoint(stage)
        names, scales = context.node_inputs(embedding, stage)
        radius = RadiusGraph(
            r_max=float(stage.get("r_max", R_MAX)),
            k_max=int(stage.get("k_max", K_MAX)),
            method=str(stage.get("method", RADIUS_METHOD)),
            **{k: int(stage[k]) for k in RADIUS_OPTIONS if k in stage},
        )
        if context.verbose:
            print(f"Use {type(embedding).__name__} (r_max={radius.r_max}, k_max={radius.k_max})")
        return cls(embedding, radius, context.columns, names, scales, double=bool(getattr(embedding, "directed", False)))

    def settings(self) -> dict:
        return {"r_max": self.radius_graph.r_max, "k_max": self.radius_graph.k_max}

    @torch.jit.export
    def embed(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """Source and target embeddings [N, D] (the same tensor twice for the single form)."""
        return self.embedding(self.inputs(features))

    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        src_emb, dst_emb = self.embed(features)
        edge_index = self.radius_graph(src_emb, dst_emb)
        r2z2 = features[:, self.r2z2_index[0]] ** 2 + features[:, self.r2z2_index[1]] ** 2
        edge_index = orient_inner_to_outer(edge_index, r2z2)
        return edge_index, self.edge_features(features, edge_index)
