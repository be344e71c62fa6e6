"""Pipeline stages: one small interface per stage kind (as in ACTS's GNN plugin), built from configuration.

| module | what it holds |
| --- | --- |
| :mod:`~gnn4itk.stages.interfaces` | the three stage interfaces (TorchScript-checked), the optional :class:`Stage` base, the LABELS rule for tiny events |
| :mod:`~gnn4itk.stages.registry` | configuration ``kind`` -> builder, one registry per stage kind, :class:`BuildContext` |
| :mod:`~gnn4itk.stages.features` | reading FEATURES: column indices, scaled inputs, edge features, :class:`InputGuard` |
| :mod:`~gnn4itk.stages.graph_construction` | ``module_map`` (:class:`ModuleMapGraph`), ``metric_learning`` (:class:`MetricLearningGraph`) |
| :mod:`~gnn4itk.stages.edge_classification` | ``filter`` (:class:`FilterStage`), ``gnn`` (:class:`GNNStage`) |
| :mod:`~gnn4itk.stages.track_building` | ``gnn4itk`` (:class:`TrackBuildingStage` around :class:`gnn4itk.track_building.TrackBuilder`) |

:func:`gnn4itk.pipeline.build_pipeline` composes them from ``configs/<Pipeline>.yaml``; ``docs/architecture.md``
says how to add a stage.
"""

from gnn4itk.stages.edge_classification import FilterStage, GNNStage
from gnn4itk.stages.features import GNN_POSITION_COLUMNS, EdgeFeatures, InputGuard, ScaledFeatures, column_indices
from gnn4itk.stages.graph_construction import MetricLearningGraph, ModuleMapGraph, orient_inner_to_outer
from gnn4itk.stages.interfaces import EdgeClassification, GraphConstruction, Stage, TrackBuilding
from gnn4itk.stages.registry import (
    EDGE_CLASSIFICATION,
    GRAPH_CONSTRUCTION,
    TRACK_BUILDING,
    BuildContext,
    register_edge_classification,
    register_graph_construction,
    register_track_building,
)
from gnn4itk.stages.track_building import TrackBuildingStage

__all__ = [
    "EDGE_CLASSIFICATION",
    "GNN_POSITION_COLUMNS",
    "GRAPH_CONSTRUCTION",
    "TRACK_BUILDING",
    "BuildContext",
    "EdgeClassification",
    "EdgeFeatures",
    "FilterStage",
    "GNNStage",
    "GraphConstruction",
    "InputGuard",
    "MetricLearningGraph",
    "ModuleMapGraph",
    "ScaledFeatures",
    "Stage",
    "TrackBuilding",
    "TrackBuildingStage",
    "column_indices",
    "orient_inner_to_outer",
    "register_edge_classification",
    "register_graph_construction",
    "register_track_building",
]
