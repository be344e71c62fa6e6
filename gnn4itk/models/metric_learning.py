"""Metric-learning embeddings: spacepoints of one track land close together on the unit sphere.

Layouts follow acorn's graph-construction models (``GNN4ITkTeam/CommonFramework``,
``acorn/stages/graph_construction/models``): ``network`` is the MLP (LayerNorm on every hidden layer),
and the double form adds one-layer ``src_decoder`` / ``tgt_decoder`` heads.
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from gnn4itk.models.mlp import make_mlp, plain_hparams, require
from gnn4itk.models.registry import register_model


def _graph_construction_mlp(input_size: int, sizes: list[int], hparams: dict, output_activation) -> nn.Sequential:
    # acorn's graph-construction make_mlp: LayerNorm also after the output when there is an output
    # activation, BatchNorm (if any) without affine parameters and with the default eps.
    return make_mlp(
        input_size,
        sizes,
        hidden_activation=hparams.get("activation", "Tanh"),
        output_activation=output_activation,
        layer_norm=True,
        output_layer_norm=True,
        batch_norm=bool(hparams.get("batchnorm", False)),
        output_batch_norm=bool(hparams.get("batchnorm", False)),
        batch_norm_affine=False,
        batch_norm_eps=1e-5,
    )


class _Embedding(nn.Module):
    """What both embeddings share: the checked hyperparameters and ``network``, the MLP on the spacepoint
    features (first in the state dict, as in acorn).

    Args:
        hparams: the model's hyperparameters (see :class:`MetricLearning`).
        embedding_layer: ``network`` ends with the ``emb_dim`` output layer, no activation (the single
            form); else with its last hidden layer, LayerNorm + activation (the double form's trunk).
    """

    def __init__(self, hparams: dict, embedding_layer: bool):
        super().__init__()
        hparams = plain_hparams(hparams)
        require(hparams, "node_features", "emb_hidden", "nb_layer", "emb_dim")
        self.hparams = hparams
        sizes = [int(hparams["emb_hidden"])] * int(hparams["nb_layer"])
        if embedding_layer:
            sizes.append(int(hparams["emb_dim"]))
        output_activation = None if embedding_layer else hparams.get("activation", "Tanh")
        self.network = _graph_construction_mlp(len(hparams["node_features"]), sizes, hparams, output_activation)


@register_model
class MetricLearning(_Embedding):
    """One embedding per spacepoint; edges join spacepoints closer than ``r_max``.

    Hyperparameters (acorn names): ``node_features`` (list of columns), ``node_scales``, ``emb_hidden``,
    ``nb_layer`` (hidden layers), ``emb_dim``, ``activation``.

    Args (forward):
        x (FloatTensor [N, len(node_features)]): scaled spacepoint features.

    Returns:
        FloatTensor [N, emb_dim], each row of unit L2 norm.
    """

    directed = False
    """One embedding: the radius graph is undirected."""

    def __init__(self, hparams: dict):
        super().__init__(hparams, embedding_layer=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.network(x), p=2.0, dim=1)


@register_model
class DoubleMetricLearning(_Embedding):
    """A shared trunk and two heads: a source and a target embedding per spacepoint.

    The graph is directed: ``i -> j`` when ``||src_i - tgt_j|| < r_max``. Hyperparameters as for
    :class:`MetricLearning`; the trunk ends with LayerNorm + activation (acorn's layout).

    Args (forward):
        x (FloatTensor [N, len(node_features)]): scaled spacepoint features.

    Returns:
        (src, tgt): two FloatTensors [N, emb_dim], rows of unit L2 norm.
    """

    directed = True
    """Source and target embeddings: the radius graph is directed."""

    def __init__(self, hparams: dict):
        super().__init__(hparams, embedding_layer=False)
        hparams = self.hparams
        hidden, emb_dim = int(hparams["emb_hidden"]), int(hparams["emb_dim"])
        self.src_decoder = _graph_construction_mlp(hidden, [emb_dim], hparams, output_activation=None)
        self.tgt_decoder = _graph_construction_mlp(hidden, [emb_dim], hparams, output_activation=None)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        trunk = self.network(x)
        return F.normalize(self.src_decoder(trunk), p=2.0, dim=1), F.normalize(self.tgt_decoder(trunk), p=2.0, dim=1)


def double_from_single(single: MetricLearning) -> DoubleMetricLearning:
    """A :class:`DoubleMetricLearning` whose source and target embeddings both equal ``single``'s.

    The double form's trunk has exactly the single form's hidden layers, and each head its output layer,
    so the copy reproduces ``single`` on both heads (``src == tgt == single(x)``): its radius graph is the
    single embedding's in both directions. It is the natural start for training a double embedding
    (``gnn4itk train double_metric_learning --init-from``): a double embedding trained from random weights
    collapsed within minutes here (docs/models.md), while this one starts from a working graph.

    Args:
        single: a trained :class:`MetricLearning`.

    Returns:
        a new :class:`DoubleMetricLearning` (same hyperparameters, ``model`` set to its class name), in
        eval mode on ``single``'s device.
    """
    if not isinstance(single, MetricLearning):
        raise TypeError(f"double_from_single needs a MetricLearning model, not {type(single).__name__}")
    output_layer = single.network[len(single.network) - 1]
    if not isinstance(output_layer, nn.Linear) or bool(single.hparams.get("batchnorm", False)):
        # with batch norm the two layouts differ (the single form normalises its output as well)
        raise ValueError("double_from_single needs an embedding without batch norm (acorn's default)")
    hparams = {**single.hparams, "model": "DoubleMetricLearning"}
    double = DoubleMetricLearning(hparams).to(next(single.parameters()).device)
    with torch.no_grad():
        double.network.load_state_dict(nn.Sequential(*single.network[: len(single.network) - 1]).state_dict())
        double.src_decoder[0].load_state_dict(output_layer.state_dict())
        double.tgt_decoder[0].load_state_dict(output_layer.state_dict())
    return double.eval()
