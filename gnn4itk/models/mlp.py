"""The MLP builder shared by every learned stage, laid out exactly like acorn's ``make_mlp``.

acorn checkpoints address layers by their position in an ``nn.Sequential`` (``node_encoder.0.weight``,
``node_encoder.3.weight``, ...), so the order and number of modules here must match acorn's: per hidden
layer ``[Dropout (first layer, if input_dropout)] Linear [LayerNorm] [BatchNorm1d] activation
[Dropout (if hidden_dropout)]``, then the final ``Linear`` followed, only when an output activation is
given, by ``[LayerNorm] [BatchNorm1d] activation``. LayerNorms carry no parameters
(``elementwise_affine=False``), as in acorn.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn


class MLP(nn.Sequential):
    """``nn.Sequential`` with one more way in: :meth:`forward_gathered`.

    The layers and their state-dict names are those of a plain ``nn.Sequential`` (acorn's layout).
    """

    def forward_edges(self, rows: Tensor, nodes: Tensor, src: Tensor, dst: Tensor, gathered: bool) -> Tensor:
        """``self(cat([rows, nodes[src], nodes[dst]], -1))``, by :meth:`forward_gathered` when ``gathered``.

        Args:
            rows (FloatTensor [E, R]), nodes (FloatTensor [N, D]), src, dst (LongTensor [E]): as for
                :meth:`forward_gathered`. gathered: split the first layer (:func:`gathered_is_cheaper`).

        Returns:
            FloatTensor [E, out].
        """
        if gathered:
            return self.forward_gathered(rows, nodes, src, dst)
        return self.forward(torch.cat([rows, nodes[src], nodes[dst]], dim=-1))

    def forward_gathered(self, rows: Optional[Tensor], nodes: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        """``self(cat([rows, nodes[src], nodes[dst]], -1))`` without building the ``[E, 2 * D]`` gathers.

        The first ``Linear`` is split by input columns, ``y = rows W_r + (nodes W_s)[src] + (nodes W_d)[dst] + b``,
        so the node part is projected once per node and only its ``[N, H]`` projections are gathered per
        edge. That is less work when there are more edges than nodes (``E > N``); otherwise call the
        module directly (:func:`gathered_is_cheaper`). Equal up to float rounding.

        Args:
            rows (FloatTensor [E, R] or None): per-edge inputs (the first ``R`` columns), or None.
            nodes (FloatTensor [N, D]): per-node inputs, gathered for both ends of every edge.
            src, dst (LongTensor [E]): edge ends.

        Returns:
            FloatTensor [E, out]: the MLP output, as from the concatenated input.
        """
        first = self[0]  # a Linear in every MLP of the interaction GNN (no input dropout there)
        h = _split_first_linear(first.weight, first.bias, rows, nodes, src, dst)
        for i, layer in enumerate(self):
            if i > 0:
                h = layer(h)
        return h


def _split_first_linear(
    weight: Tensor, bias: Optional[Tensor], rows: Optional[Tensor], nodes: Tensor, src: Tensor, dst: Tensor
) -> Tensor:
    """``linear(cat([rows, nodes[src], nodes[dst]]), weight, bias)`` by column blocks of ``weight``."""
    width = nodes.shape[1]
    start = 0 if rows is None else rows.shape[1]
    # The projections run as matmuls (autocast casts them like the Linear they replace); the sums
    # afterwards are out of place so that their dtype follows the matmuls'.
    from_src = torch.matmul(nodes, weight[:, start : start + width].t()).index_select(0, src)
    from_dst = torch.matmul(nodes, weight[:, start + width : start + 2 * width].t()).index_select(0, dst)
    out = from_src + from_dst
    if rows is not None:
        out = out + torch.matmul(rows, weight[:, :start].t())
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out


def gathered_is_cheaper(num_nodes: int, num_edges: int) -> bool:
    """Whether :meth:`MLP.forward_gathered` does fewer multiply-adds than the concatenated input.

    With edge and node inputs of equal width ``D`` (the interaction GNN's), the concatenated first layer
    costs ``E * 3D * H`` and the split one ``E * D * H + N * 2D * H``: the split pays when ``E > N``.
    """
    return num_edges > num_nodes


def activation_class(name: str) -> type[nn.Module]:
    """The ``torch.nn`` activation class called ``name`` (e.g. ``"ReLU"``, ``"SiLU"``, ``"Tanh"``)."""
    module = getattr(nn, str(name), None)
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise ValueError(f"unknown activation {name!r}: expected a torch.nn class name such as 'ReLU'")
    return module


def make_mlp(
    input_size: int,
    sizes: Sequence[int],
    hidden_activation: str = "ReLU",
    output_activation: str | None = None,
    layer_norm: bool = False,
    output_layer_norm: bool = False,
    batch_norm: bool = False,
    output_batch_norm: bool = False,
    input_dropout: float = 0.0,
    hidden_dropout: float = 0.0,
    track_running_stats: bool = False,
    batch_norm_affine: bool = True,
    batch_norm_eps: float = 6e-05,
) -> MLP:
    """Fully connected network ``input_size -> sizes[0] -> ... -> sizes[-1]``.

    Args:
        input_size: features per input row.
        sizes: output width of every ``Linear``; ``len(sizes)`` layers in all.
        hidden_activation: torch.nn class name after each hidden layer.
        output_activation: class name after the last layer, or None for a plain linear output (then no
            output normalisation is added either, as in acorn).
        layer_norm, batch_norm: normalise hidden layers. ``output_layer_norm``, ``output_batch_norm``:
            normalise the output (only with an output activation).
        track_running_stats, batch_norm_affine, batch_norm_eps: BatchNorm1d settings. acorn's edge
            classifiers use affine=True, eps=6e-5; its graph-construction MLPs use affine=False, eps=1e-5.

    Returns:
        :class:`MLP` (an ``nn.Sequential``) mapping float [N, input_size] to float [N, sizes[-1]].
    """
    sizes = [int(s) for s in sizes]
    if not sizes:
        raise ValueError("an MLP needs at least one layer size")
    hidden = activation_class(hidden_activation)
    output = activation_class(output_activation) if output_activation is not None else None
    widths = [int(input_size), *sizes]

    def batch_norm_layer(width: int) -> nn.BatchNorm1d:
        return nn.BatchNorm1d(
            width, eps=batch_norm_eps, affine=batch_norm_affine, track_running_stats=track_running_stats
        )

    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        if i == 0 and input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if layer_norm:
            layers.append(nn.LayerNorm(widths[i + 1], elementwise_affine=False))
        if batch_norm:
            layers.append(batch_norm_layer(widths[i + 1]))
        layers.append(hidden())
        if hidden_dropout > 0:
            layers.append(nn.Dropout(hidden_dropout))
    layers.append(nn.Linear(widths[-2], widths[-1]))
    if output is not None:
        if output_layer_norm:
            layers.append(nn.LayerNorm(widths[-1], elementwise_affine=False))
        if output_batch_norm:
            layers.append(batch_norm_layer(widths[-1]))
        layers.append(output())
    return MLP(*layers)


def require(hparams: dict, *names: str) -> None:
    """Raise a ValueError naming every hyperparameter of ``names`` that ``hparams`` lacks."""
    missing = [n for n in names if n not in hparams]
    if missing:
        raise ValueError(f"hyperparameters missing: {missing}")


def plain_hparams(hparams) -> dict:
    """A plain-``dict`` copy of ``hparams`` (Lightning AttributeDicts, OmegaConf-like mappings)."""
    return {str(k): v for k, v in dict(hparams).items()}
