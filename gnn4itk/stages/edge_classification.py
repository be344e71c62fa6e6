"""Edge classification stages: (FEATURES, edge_index, edge_attr) -> (edge_index, edge_attr, scores).

Registered kinds (entries of ``edge_classification`` in a pipeline configuration, applied in order):

* ``filter`` -- :class:`FilterStage`: the edge filter (``checkpoint``, ``filter_cut``, ``filter_batches``);
  keeps ``score > filter_cut``.
* ``gnn`` -- :class:`GNNStage`: the interaction GNN (``checkpoint``, ``auto_cast``); keeps every edge.

Both take ``node_features`` / ``node_scales`` from the configuration, else from the checkpoint.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from gnn4itk.stages.features import ScaledFeatures
from gnn4itk.stages.interfaces import Stage
from gnn4itk.stages.registry import register_edge_classification


@register_edge_classification("filter")
class FilterStage(Stage):
    """Edge filter: scores every edge in ``filter_batches`` chunks, keeps ``score > filter_cut``.

    Args:
        model: :class:`gnn4itk.models.Filter` (holds ``filter_cut`` and ``filter_batches``).
        columns: FEATURES column names. node_features, node_scales: the filter's inputs.
    """

    def __init__(self, model: nn.Module, columns: Sequence[str], node_features: Sequence[str], node_scales: Sequence[float]):
        super().__init__()
        self.model = model
        self.inputs = ScaledFeatures(columns, node_features, node_scales, "filter")

    @classmethod
    def from_config(cls, stage: dict, context) -> "FilterStage":
        model = context.checkpoint(stage)
        if "filter_cut" in stage:
            model.filter_cut = float(stage["filter_cut"])
        if "filter_batches" in stage:
            model.filter_batches = max(1, int(stage["filter_batches"]))
        return cls(model, context.columns, *context.node_inputs(model, stage))

    def settings(self) -> dict:
        return {"filter_cut": self.model.filter_cut}

    def forward(self, features: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        scores = torch.sigmoid(self.model(self.inputs(features), edge_index).float())
        keep = scores > self.model.filter_cut
        return edge_index[:, keep], edge_attr[keep], scores[keep]


@register_edge_classification("gnn")
class GNNStage(Stage):
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

    @classmethod
    def from_config(cls, stage: dict, context) -> "GNNStage":
        model = context.checkpoint(stage, context.gnn_checkpoint)
        if context.verbose:
            print(f"Use {type(model).__name__}")
        gnn = cls(model, context.columns, *context.node_inputs(model, stage))
        # the caller's choice (CLI -a / --float32, export --auto-cast / --float32) wins over the configuration's
        gnn.auto_cast = bool(stage.get("auto_cast", False)) if context.auto_cast is None else bool(context.auto_cast)
        return gnn

    def settings(self) -> dict:
        # recorded only when on, so a float32 export's config.pbtxt is as before
        return {"auto_cast": True} if self.auto_cast else {}

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
