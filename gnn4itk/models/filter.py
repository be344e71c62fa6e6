"""The edge filter: an MLP on the scaled features of an edge's two spacepoints.

Layout as acorn's ``Filter`` (``acorn/stages/edge_classifier/models/filter.py``): one ``net`` MLP with
hidden widths ``hidden, hidden/2, hidden/4, ...`` (``nb_layer`` of them) and one output logit.
"""

from typing import Final, Tuple

import torch
from torch import nn

from gnn4itk.defaults import FILTER_CUT
from gnn4itk.models.mlp import make_mlp, plain_hparams, require
from gnn4itk.models.registry import register_model


@register_model
class Filter(nn.Module):
    """Edge scores from ``[x_src, x_dst]``, evaluated in ``filter_batches`` chunks of edges.

    Hyperparameters (acorn names): ``node_features``, ``node_scales``, ``hidden``, ``nb_layer``,
    ``layernorm``, ``batchnorm``, ``hidden_activation``, ``track_running_stats``; gnn4itk adds
    ``filter_batches`` (chunks, default 1) and ``filter_cut`` (default :data:`gnn4itk.defaults.FILTER_CUT`).

    With BatchNorm and ``track_running_stats=False`` (acorn's default) each chunk is normalised with its
    own statistics, exactly as acorn's chunked evaluation does; keep ``filter_batches`` equal to the one
    used in validation to reproduce scores.

    Args (forward):
        x (FloatTensor [N, len(node_features)]): scaled spacepoint features.
        edge_index (LongTensor [2, E]).

    Returns:
        FloatTensor [E]: logits (sigmoid gives the score).
    """

    filter_batches: Final[int]
    filter_cut: Final[float]
    edgewise = True
    """Scores each edge from its two spacepoints alone (``forward(x, edge_index)``): training may score a
    random subset of the edges, and validates at ``filter_cut``."""

    def __init__(self, hparams: dict):
        super().__init__()
        hparams = plain_hparams(hparams)
        require(hparams, "node_features", "hidden", "nb_layer")
        self.hparams = hparams
        hidden, layers = int(hparams["hidden"]), int(hparams["nb_layer"])
        self.net = make_mlp(
            2 * len(hparams["node_features"]),
            [hidden // (2**i) for i in range(layers)] + [1],
            hidden_activation=hparams.get("hidden_activation", "ReLU"),
            output_activation=None,
            layer_norm=bool(hparams.get("layernorm", False)),
            batch_norm=bool(hparams.get("batchnorm", False)),
            track_running_stats=bool(hparams.get("track_running_stats", False)),
        )
        self.filter_batches = max(1, int(hparams.get("filter_batches", 1)))
        self.filter_cut = float(hparams.get("filter_cut", FILTER_CUT))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        outputs = []
        for chunk in torch.tensor_split(edge_index, self.filter_batches, dim=1):
            outputs.append(self.net(torch.cat([x[chunk[0]], x[chunk[1]]], dim=1)).squeeze(-1))
        return torch.cat(outputs)

    @torch.jit.export
    def select(self, x: torch.Tensor, edge_index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Edges whose score passes ``filter_cut``: (LongTensor [2, E'], FloatTensor [E'] scores)."""
        scores = torch.sigmoid(self.forward(x, edge_index))
        keep = scores > self.filter_cut
        return edge_index[:, keep], scores[keep]
