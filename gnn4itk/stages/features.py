"""Reading FEATURES: column positions, scaled node inputs, the GNN4ITk edge features, and the input guard.

Every stage reads its inputs from the raw FEATURES tensor [N, F] through column indices fixed when the
pipeline is built (a missing column is a configuration error then, not a failure at run time).
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import Tensor, nn

from gnn4itk.edge_features import edge_features

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
        stage: the stage's name, for error messages.

    Forward:
        features (FloatTensor [N, F]) -> FloatTensor [N, len(wanted)].
    """

    def __init__(self, columns: Sequence[str], wanted: Sequence[str], scales: Sequence[float], stage: str):
        super().__init__()
        if len(scales) != len(wanted):
            raise ValueError(f"{stage}: {len(scales)} scales for {len(wanted)} node features")
        self.register_buffer("index", torch.tensor(column_indices(columns, wanted, stage), dtype=torch.long))
        self.register_buffer("scales", torch.tensor([float(s) for s in scales], dtype=torch.float32))

    def forward(self, features: Tensor) -> Tensor:
        return features.index_select(1, self.index) / self.scales


class EdgeFeatures(nn.Module):
    """The six GNN4ITk edge features from the ``r, phi, z, eta`` FEATURES columns (mm, rad).

    Forward:
        features (FloatTensor [N, F]), edge_index (LongTensor [2, E]) -> FloatTensor [E, 6]
        (``dr, dphi, dz, deta, phislope, rphislope``).
    """

    def __init__(self, columns: Sequence[str]):
        super().__init__()
        scales = [1000.0, math.pi, 1000.0, 1.0]
        self.coordinates = ScaledFeatures(columns, GNN_POSITION_COLUMNS, scales, "edge features")

    def forward(self, features: Tensor, edge_index: Tensor) -> Tensor:
        return edge_features(self.coordinates(features), edge_index)


class InputGuard(nn.Module):
    """Refuses a FEATURES tensor the pipeline cannot take and replaces NaN/inf by 0.

    The one place that counts non-finite FEATURES values in gnn4itk: :attr:`last_non_finite` holds how
    many the last call replaced (the CLI reports it).

    Args:
        columns: the F FEATURES column names.
        max_spacepoints: larger events are refused (an error, not an out-of-memory crash).

    Forward:
        features (FloatTensor [N, F]) -> FloatTensor [N, F] with every non-finite value set to 0.

    Raises:
        ValueError (``torch.jit.Error`` when scripted) for a wrong rank, width or dtype, or an event above
        ``max_spacepoints``.
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
