"""Learned GNN4ITk stages as TorchScript-ready ``nn.Module`` s.

* :class:`MetricLearning`, :class:`DoubleMetricLearning` -- spacepoint embeddings (graph construction).
* :class:`RadiusGraph` -- fixed-radius neighbour graph in the embedding space, pure torch.
* :class:`Filter` -- edge-pair MLP that prunes a graph.
* :class:`InteractionGNN2` (and the :class:`ChainedInteractionGNN2` / :class:`RecurrentInteractionGNN2`
  forms) -- the edge classifier.

Every model is built from an acorn-style ``hparams`` dict, keeps acorn's state-dict key names, and
loads acorn Lightning checkpoints through :func:`load_acorn_checkpoint`, which finds the class by the
checkpoint's model name in :mod:`gnn4itk.models.registry` (a new model class registers itself with
``@register_model``). ``docs/models_architecture.md`` describes the layouts.
"""

from gnn4itk.models.checkpoint import build_model, load_acorn_checkpoint, save_acorn_checkpoint
from gnn4itk.models.filter import Filter
from gnn4itk.models.interaction_gnn import (
    ChainedInteractionGNN2,
    InteractionGNN2,
    RecurrentInteractionGNN2,
    chained_from_recurrent,
)
from gnn4itk.models.metric_learning import DoubleMetricLearning, MetricLearning, double_from_single
from gnn4itk.models.mlp import make_mlp
from gnn4itk.models.radius_graph import RadiusGraph, radius_graph, radius_graph_brute_force
from gnn4itk.models.registry import model_class, model_name_of, register_model

__all__ = [
    "ChainedInteractionGNN2",
    "DoubleMetricLearning",
    "Filter",
    "InteractionGNN2",
    "MetricLearning",
    "RadiusGraph",
    "RecurrentInteractionGNN2",
    "build_model",
    "chained_from_recurrent",
    "double_from_single",
    "load_acorn_checkpoint",
    "make_mlp",
    "model_class",
    "model_name_of",
    "radius_graph",
    "radius_graph_brute_force",
    "register_model",
    "save_acorn_checkpoint",
]
