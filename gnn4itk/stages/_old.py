"""Pipeline stages: one small interface per stage kind, as in ACTS's GNN plugin.

Every stage is an ``nn.Module`` that reads what it needs from the raw ``FEATURES`` tensor [N, F]
(columns named by the pipeline configuration) through column indices fixed at construction, so the
same module runs eagerly, under ``torch.jit.script`` and inside Triton.

* **Graph construction** -- ``forward(features [N, F]) -> (edge_index [2, E], edge_attr [E, 6])``:
  :class:`ModuleMapGraph`, :class:`MetricLearningGraph`.
* **Edge classification** -- ``forward(features, edge_index, edge_attr) -> (edge_index, edge_attr,
  scores [E'])``; it may drop edges: :class:`FilterStage` (keeps ``score > filter_cut``),
  :class:`GNNStage` (keeps every edge), :class:`NoEdgeClassification`.
* **Track building** -- :class:`TrackBuildingStage` around
  :class:`gnn4itk.track_building.TrackBuilder`: ``forward(features, edge_index, scores) -> LABELS``.

:class:`InputGuard` comes first: it checks the request and replaces NaN/inf. Because every stage takes
the FEATURES tensor, each one can also be served as its own model in a Triton ensemble.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from gnn4itk.edge_features import edge_features, unique_edges

GNN_POSITION_COLUMNS = ["r", "phi", "z", "eta"]


def column_indices(columns: Sequence[str], wanted: Sequence[str], stage: str) -> List[int]:
    """Positions of ``wanted`` in the FEATURES ``columns``; a missing column is a configuration error."""
    columns = list(columns)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"{stage} needs FEATURES columns {missing}, which the configuration does not list")
    return [columns.index(c) for c in wanted]


class ScaledFeatures(nn.Module):
    """Selects and scales FEATURES columns: ``features[:, index] / scales``.

    Args:
        columns: the FEATURES column names, in order.
        wanted: the columns this stage reads.
        scales: one divisor per wanted column.
    """

    def __init__(self, columns: Sequence[str], wanted: Sequence[str], scales: Sequence[float], stage: str):
        super().__init__()
        if len(scales) != len(wanted):
            raise ValueError(f"{stage}: {len(scales)} scales for {len(wanted)} node features")
        self.register_buffer("index", torch.tensor(column_indices(columns, wanted, stage), dtype=torch.long))
        self.register_buffer("scales", torch.tensor([float(s) for s in scales], dtype=torch.float32))

    def forward(self, features: Tensor) -> Tensor:
        """features (FloatTensor [N, F]) -> FloatTensor [N, len(wanted)]."""
        return features.index_select(1, self.index) / self.scales


class EdgeFeatures(nn.Module):
    """The six GNN4ITk edge features from the ``r, phi, z, eta`` FEATURES columns (mm, rad)."""

    def __init__(self, columns: Sequence[str]):
        super().__init__()
        scales = [1000.0, math.pi, 1000.0, 1.0]
        self.coordinates = ScaledFeatures(columns, GNN_POSITION_COLUMNS, scales, "edge features")

    def forward(self, features: Tensor, edge_index: Tensor) -> Tensor:
        """features [N, F], edge_index [2, E] -> FloatTensor [E, 6] (``dr, dphi, dz, deta, phislope, rphislope``)."""
        return edge_features(self.coordinates(features), edge_index)


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


# ---------------------------------------------------------------------------------------------------
# Input checks


class InputGuard(nn.Module):
    """Refuses a FEATURES tensor the pipeline cannot take and replaces NaN/inf by 0.

    Args:
        columns: the F FEATURES column names.
        max_spacepoints: larger events are refused (an error, not an out-of-memory crash).

    Forward:
        features (FloatTensor [N, F]) -> FloatTensor [N, F] with every non-finite value set to 0;
        :attr:`last_non_finite` holds how many there were.
    """

    def __init__(self, columns: Sequence[str], max_spacepoints: int):
        super().__init__()
        self.columns: List[str] = list(columns)
        self.num_features = len(self.columns)
        self.max_spacepoints = int(max_spacepoints)
        self.last_non_finite = 0

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 2:
            raise ValueError(f"FEATURES must be a 2-d tensor [N, {self.num_features}], got {features.dim()} dimensions")
        if features.shape[1] != self.num_features:
            raise ValueError(
                f"FEATURES has {features.shape[1]} columns, this pipeline expects {self.num_features}: {self.columns}"
            )
        if features.dtype != torch.float32:
            raise ValueError(f"FEATURES must be float32, got {features.dtype}")
        if features.shape[0] > self.max_spacepoints:
            raise ValueError(
                f"event has {features.shape[0]} spacepoints, above max_spacepoints = {self.max_spacepoints}"
            )
        bad = ~torch.isfinite(features)
        self.last_non_finite = int(bad.sum())
        if self.last_non_finite > 0:
            features = torch.where(bad, torch.zeros_like(features), features)
        return features


# ---------------------------------------------------------------------------------------------------
# Graph construction


class _SharedEmbedding(nn.Module):
    """A single embedding seen as a double one: ``x -> (emb, emb)``."""

    def __init__(self, embedding: nn.Module):
        super().__init__()
        self.model = embedding

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        emb = self.model(x)
        return emb, emb


class ModuleMapGraph(nn.Module):
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

    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """features (FloatTensor [N, F]) -> edge_index (LongTensor [2, E], inner -> outer), edge_attr [E, 6]."""
        positions = features.index_select(1, self.position_index)
        return self.builder(positions, features[:, self.module_column])


class MetricLearningGraph(nn.Module):
    """Embedding + radius graph, single or double (source/target) embedding.

    Single embedding: undirected neighbours, oriented inner -> outer by ``r² + z²``. Double embedding:
    ``i -> j`` when ``|src_i - tgt_j| < r_max`` (then oriented the same way, so that the track builder
    sees inner -> outer edges).

    Args:
        embedding: :class:`gnn4itk.models.MetricLearning` or :class:`gnn4itk.models.DoubleMetricLearning`.
        radius_graph: :class:`gnn4itk.models.RadiusGraph` (holds ``r_max`` and ``k_max``).
        columns: FEATURES column names.
        node_features, node_scales: the embedding's inputs (acorn hyperparameters).
        double: True for the double (directed) embedding.
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


# ---------------------------------------------------------------------------------------------------
# Edge classification


class NoEdgeClassification(nn.Module):
    """Placeholder for an absent filter: keeps every edge with score 1."""

    def forward(self, features: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        scores = torch.ones(edge_index.shape[1], dtype=torch.float32, device=edge_index.device)
        return edge_index, edge_attr, scores


class FilterStage(nn.Module):
    """Edge filter: scores every edge in ``filter_batches`` chunks, keeps ``score > filter_cut``.

    Args:
        model: :class:`gnn4itk.models.Filter`.
        columns: FEATURES column names. node_features, node_scales: the filter's inputs.
    """

    def __init__(self, model: nn.Module, columns: Sequence[str], node_features: Sequence[str], node_scales: Sequence[float]):
        super().__init__()
        self.model = model
        self.inputs = ScaledFeatures(columns, node_features, node_scales, "filter")

    def forward(self, features: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        scores = torch.sigmoid(self.model(self.inputs(features), edge_index).float())
        keep = scores > self.model.filter_cut
        return edge_index[:, keep], edge_attr[keep], scores[keep]


class GNNStage(nn.Module):
    """Interaction GNN: edge scores (sigmoid of the logits, float32); keeps every edge.

    With ``auto_cast`` on CUDA the GNN runs under float16 autocast; if any logit comes out non-finite
    the event is recomputed in float32 (the fall-back), so mixed precision can never return NaN scores.

    Args:
        model: :class:`gnn4itk.models.InteractionGNN2` (or a subclass).
        columns: FEATURES column names. node_features, node_scales: the GNN's inputs.
    """

    def __init__(self, model: nn.Module, columns: Sequence[str], node_features: Sequence[str], node_scales: Sequence[float]):
        super().__init__()
        self.model = model
        self.inputs = ScaledFeatures(columns, node_features, node_scales, "GNN")
        self.auto_cast = False

    def forward(self, features: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        x = self.inputs(features)
        if self.auto_cast and x.is_cuda:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                logits = self.model(x, edge_index, edge_attr)
            logits = logits.float()
            if not bool(torch.isfinite(logits).all()):
                logits = self.model(x, edge_index, edge_attr)
        else:
            logits = self.model(x, edge_index, edge_attr)
        return edge_index, edge_attr, torch.sigmoid(logits.float())


# ---------------------------------------------------------------------------------------------------
# Track building


class TrackBuildingStage(nn.Module):
    """Track building on FEATURES: ``R = r² + z²`` from the ``r`` and ``z`` columns, LABELS out.

    Args:
        builder: :class:`gnn4itk.track_building.TrackBuilder`.
        columns: FEATURES column names.

    Forward:
        features (FloatTensor [N, F]), edge_index (LongTensor [2, E]), scores (FloatTensor [E]) ->
        LABELS (LongTensor [L]); ``[-1]`` for fewer than 3 spacepoints.
    """

    def __init__(self, builder: nn.Module, columns: Sequence[str]):
        super().__init__()
        self.builder = builder
        self.r_column, self.z_column = column_indices(columns, ["r", "z"], "track building")

    def forward(self, features: Tensor, edge_index: Tensor, scores: Tensor) -> Tensor:
        if features.shape[0] < 3:
            return torch.full((1,), -1, dtype=torch.long, device=features.device)
        r2z2 = features[:, self.r_column] ** 2 + features[:, self.z_column] ** 2
        return self.builder(edge_index, scores, r2z2)
