"""Track building stages: (FEATURES, edge_index, scores) -> LABELS.

Registered kinds (``track_building.kind`` of a pipeline configuration; default ``gnn4itk``):

* ``gnn4itk`` -- :class:`TrackBuildingStage` around :class:`gnn4itk.track_building.TrackBuilder`: GNN4ITk's
  connected components + walkthrough (``mode``: ``cc_and_walk``, ``cc``, ``junction_removal``; cuts
  ``cc_cut``, ``walk_min``, ``walk_max``; defaults in :mod:`gnn4itk.defaults`).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from gnn4itk.defaults import CC_CUT, TRACK_BUILDING_MODE, WALK_MAX, WALK_MIN
from gnn4itk.stages.features import column_indices
from gnn4itk.stages.interfaces import Stage, no_tracks, too_few_spacepoints
from gnn4itk.stages.registry import register_track_building


@register_track_building("gnn4itk")
class TrackBuildingStage(Stage):
    """Track building on FEATURES: ``R = r² + z²`` from the ``r`` and ``z`` columns, LABELS out.

    Args:
        builder: :class:`gnn4itk.track_building.TrackBuilder` (``forward(edge_index, scores, r2z2) -> LABELS``).
        columns: FEATURES column names.

    Forward:
        features (FloatTensor [N, F]), edge_index (LongTensor [2, E]), scores (FloatTensor [E]) ->
        LABELS (LongTensor [L]); ``[-1]`` for too few spacepoints (so also as its own ensemble step).
    """

    def __init__(self, builder: nn.Module, columns: Sequence[str]):
        super().__init__()
        self.builder = builder
        self.r_column, self.z_column = column_indices(columns, ["r", "z"], "track building")

    @classmethod
    def from_config(cls, stage: dict, context) -> "TrackBuildingStage":
        from gnn4itk.track_building import TrackBuilder

        builder = TrackBuilder(
            cc_cut=float(stage.get("cc_cut", CC_CUT)),
            walk_min=float(stage.get("walk_min", WALK_MIN)),
            walk_max=float(stage.get("walk_max", WALK_MAX)),
            mode=str(stage.get("mode", TRACK_BUILDING_MODE)),
        )
        return cls(builder, context.columns)

    def settings(self) -> dict:
        builder = self.builder
        return {"cc_cut": builder.cc_cut, "walk_min": builder.walk_min, "walk_max": builder.walk_max,
                "track_building_mode": builder.mode}

    def forward(self, features: Tensor, edge_index: Tensor, scores: Tensor) -> Tensor:
        if too_few_spacepoints(features):
            return no_tracks(features)
        r2z2 = features[:, self.r_column] ** 2 + features[:, self.z_column] ** 2
        return self.builder(edge_index, scores, r2z2)
