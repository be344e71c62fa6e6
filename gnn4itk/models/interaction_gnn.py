"""InteractionGNN2, the GNN4ITk edge classifier, with acorn's state-dict layout.

Layout and forward order follow acorn's ``InteractionGNN2`` (``acorn/stages/edge_classifier/models/
interaction_gnn.py``) and the TorchScript ``ChainedInteractionGNN2`` / ``RecurrentInteractionGNN2`` of the
GNN4ITk Triton service:

1. ``x = node_encoder(x)``; ``e = edge_encoder(edge_attr)`` (or of ``[x_src, x_dst]`` without edge features).
2. ``n_graph_iters`` times: with ``concat``, ``x = [x, x0]`` and ``e = [e, e0]`` (the encodings);
   ``e = edge_network([e, x_src, x_dst])``; messages are summed into each node over incoming edges
   (``in``, indexed by dst) and outgoing edges (``out``, indexed by src);
   ``x = node_network([in, out, x])`` with ``in_out_diff_agg``, else ``node_network([in + out, x])``.
3. logits ``= edge_output_transform(edge_decoder(e))`` of the last iteration.

``edge_network`` / ``node_network`` are one MLP each (recurrent: shared by all iterations) or a
``ModuleList`` with one MLP per iteration (chained), per ``edge_net_recurrent`` / ``node_net_recurrent``.
Aggregation is ``index_add_``, a native torch scatter.

With ``optimized`` (the default) the same function is computed with less work (equal up to float
rounding; ``optimized = False`` gives the plain order above, the benchmarks' baseline):

* when there are more edges than nodes, the first layer of the edge MLPs is split by input blocks
  (:meth:`gnn4itk.models.mlp.MLP.forward_gathered`), so node states are projected once per node instead
  of being gathered and multiplied per edge;
* nodes without any edge are dropped before the first layer when no node MLP normalises with batch
  statistics. acorn's ``batchnorm`` without running statistics does (every node of the event enters the
  mean and variance), and so does any BatchNorm in training mode: then isolated nodes stay, since
  dropping them would change the scores. A model whose statistics were frozen
  (:mod:`gnn4itk.models.batch_statistics`, ``track_running_stats: true``) drops them in evaluation.
"""

from typing import Final, Optional, Tuple

import torch
from torch import nn

from gnn4itk.models.mlp import gathered_is_cheaper, make_mlp, plain_hparams, require

HPARAM_DEFAULTS = {
    "batchnorm": False,
    "layernorm": False,
    "output_batch_norm": False,
    "output_layer_norm": False,
    "edge_output_transform_final_batch_norm": False,
    "edge_output_transform_final_activation": None,
    "track_running_stats": False,
    "hidden_activation": "ReLU",
    "output_activation": None,
    "concat": True,
    "in_out_diff_agg": True,
    "node_net_recurrent": True,
    "edge_net_recurrent": True,
    "edge_features": [],
}
"""Defaults for hyperparameters an acorn config may omit (acorn's own defaults)."""

# acorn names the MLP depths n_*_layers for InteractionGNN2; the older nb_* names are accepted as well.
_DEPTH_ALIASES = {
    "n_node_net_layers": "nb_node_layer",
    "n_edge_net_layers": "nb_edge_layer",
    "n_edge_decoder_layers": "nb_edge_layer",
}


def complete_hparams(hparams: dict) -> dict:
    """``hparams`` with acorn's defaults filled in and depth aliases resolved (a new plain dict)."""
    full = {**HPARAM_DEFAULTS, **plain_hparams(hparams)}
    for name, alias in _DEPTH_ALIASES.items():
        if name not in full and alias in full:
            full[name] = full[alias]
    if full.get("edge_features") is None:
        full["edge_features"] = []
    require(full, "node_features", "hidden", "n_graph_iters", "n_node_net_layers", "n_edge_net_layers", "n_edge_decoder_layers")
    return full


class InteractionGNN2(nn.Module):
    """Directed interaction network giving one logit per edge.

    Hyperparameters (acorn names): ``node_features``, ``node_scales``, ``edge_features``, ``hidden``,
    ``n_graph_iters``, ``n_node_net_layers``, ``n_edge_net_layers``, ``n_edge_decoder_layers`` (or
    ``nb_node_layer`` / ``nb_edge_layer``), ``layernorm``, ``batchnorm``, ``output_batch_norm``,
    ``track_running_stats``, ``hidden_activation``, ``output_activation``,
    ``edge_output_transform_final_activation``, ``edge_output_transform_final_batch_norm``, ``concat``,
    ``in_out_diff_agg``, ``node_net_recurrent``, ``edge_net_recurrent``.

    Args (forward):
        x (FloatTensor [N, len(node_features)]): scaled node features.
        edge_index (LongTensor [2, E]): (src, dst).
        edge_attr (FloatTensor [E, len(edge_features)] or None): edge features; required when the model
            was built with ``edge_features``.

    Returns:
        FloatTensor [E]: edge logits.
    """

    concat: Final[bool]
    in_out_diff_agg: Final[bool]
    node_net_recurrent: Final[bool]
    edge_net_recurrent: Final[bool]
    uses_edge_features: Final[bool]
    n_graph_iters: Final[int]
    isolated_nodes_matter: Final[bool]
    node_batch_norm: Final[bool]

    def __init__(self, hparams: dict):
        super().__init__()
        hparams = complete_hparams(hparams)
        self.hparams = hparams
        hidden = int(hparams["hidden"])
        self.n_graph_iters = int(hparams["n_graph_iters"])
        self.concat = bool(hparams["concat"])
        self.in_out_diff_agg = bool(hparams["in_out_diff_agg"])
        self.node_net_recurrent = bool(hparams["node_net_recurrent"])
        self.edge_net_recurrent = bool(hparams["edge_net_recurrent"])
        self.uses_edge_features = len(hparams["edge_features"]) > 0

        def mlp(input_size: int, sizes: list[int], **overrides) -> nn.Sequential:
            settings = dict(
                hidden_activation=hparams["hidden_activation"],
                output_activation=hparams["output_activation"],
                layer_norm=bool(hparams["layernorm"]),
                batch_norm=bool(hparams["batchnorm"]),
                output_batch_norm=bool(hparams["output_batch_norm"]),
                track_running_stats=bool(hparams["track_running_stats"]),
            )
            settings.update(overrides)
            return make_mlp(input_size, sizes, **settings)

        node_layers = [hidden] * int(hparams["n_node_net_layers"])
        edge_layers = [hidden] * int(hparams["n_edge_net_layers"])
        width = 2 * hidden if self.concat else hidden
        edge_net_input = 3 * width
        node_net_input = (2 * hidden if self.in_out_diff_agg else hidden) + width

        self.node_encoder = mlp(len(hparams["node_features"]), node_layers)
        edge_input = len(hparams["edge_features"]) if self.uses_edge_features else 2 * hidden
        self.edge_encoder = mlp(edge_input, edge_layers)
        if self.edge_net_recurrent:
            self.edge_network = mlp(edge_net_input, edge_layers)
        else:
            self.edge_network = nn.ModuleList([mlp(edge_net_input, edge_layers) for _ in range(self.n_graph_iters)])
        if self.node_net_recurrent:
            self.node_network = mlp(node_net_input, node_layers)
        else:
            self.node_network = nn.ModuleList([mlp(node_net_input, node_layers) for _ in range(self.n_graph_iters)])
        self.edge_decoder = mlp(hidden, [hidden] * int(hparams["n_edge_decoder_layers"]))
        self.edge_output_transform = mlp(
            hidden,
            [hidden, 1],
            output_activation=hparams["edge_output_transform_final_activation"],
            output_batch_norm=bool(hparams["edge_output_transform_final_batch_norm"]),
        )
        # A node without edges never reaches an edge score, except through batch statistics: those of a
        # BatchNorm without running statistics always, those of any BatchNorm in training mode.
        node_norms = [m for net in (self.node_encoder, self.node_network) for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
        self.node_batch_norm = len(node_norms) > 0
        self.isolated_nodes_matter = any(not m.track_running_stats for m in node_norms)
        self.optimized = True

    def drops_isolated_nodes(self) -> bool:
        """Whether :meth:`forward` leaves out the nodes without an edge now: in the optimised order, unless
        some node BatchNorm normalises with batch statistics (always without running statistics, and
        every BatchNorm in training mode)."""
        return self.optimized and not self.isolated_nodes_matter and not (self.training and self.node_batch_norm)

    def _concat(self, x: torch.Tensor, e: torch.Tensor, x0: torch.Tensor, e0: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """With ``concat``, the states joined to the encodings: ``([x, x0], [e, e0])``."""
        if self.concat:
            return torch.cat([x, x0], dim=-1), torch.cat([e, e0], dim=-1)
        return x, e

    def _node_inputs(self, x: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        # Messages are summed in float32 whatever e's dtype: under float16 autocast, float16 atomics round
        # at every addition in an order that changes from run to run (two autocast runs of the held-out
        # event gave different LABELS on an H100, 2026-12-07). A no-op for float32 and float64 messages.
        total = torch.float32 if e.dtype == torch.float16 or e.dtype == torch.bfloat16 else e.dtype
        messages = e.to(total)
        incoming = torch.zeros(x.shape[0], e.shape[1], dtype=total, device=e.device).index_add_(0, dst, messages).to(e.dtype)
        outgoing = torch.zeros(x.shape[0], e.shape[1], dtype=total, device=e.device).index_add_(0, src, messages).to(e.dtype)
        if self.in_out_diff_agg:
            return torch.cat([incoming, outgoing, x], dim=-1)
        return torch.cat([incoming + outgoing, x], dim=-1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: Optional[torch.Tensor] = None) -> torch.Tensor:
        src, dst = edge_index[0], edge_index[1]
        if self.drops_isolated_nodes():
            x, src, dst = drop_isolated_nodes(x, src, dst)
        gathered = self.optimized and gathered_is_cheaper(x.shape[0], src.shape[0])
        x = self.node_encoder(x)
        if self.uses_edge_features:
            if edge_attr is None:
                raise ValueError("this InteractionGNN2 was built with edge_features: pass edge_attr")
            e = self.edge_encoder(edge_attr)
        elif gathered:
            e = self.edge_encoder.forward_gathered(None, x, src, dst)
        else:
            e = self.edge_encoder(torch.cat([x[src], x[dst]], dim=-1))
        x0, e0 = x, e
        # Four loops, one per recurrent/chained combination: TorchScript indexes a ModuleList only by
        # iterating it, and prunes the branches that the Final flags rule out. (One loop indexing the
        # ModuleLists into interface-typed locals scripts, but needs forward_edges @torch.jit.export-ed,
        # and TorchScript's shared module types then lose that method when an equal MLP type was compiled
        # first elsewhere in the process: "Method ... is not defined", tried 2026-12-07.)
        if self.edge_net_recurrent and self.node_net_recurrent:
            for _ in range(self.n_graph_iters):
                x, e = self._concat(x, e, x0, e0)
                e = self.edge_network.forward_edges(e, x, src, dst, gathered)
                x = self.node_network(self._node_inputs(x, e, src, dst))
        elif self.edge_net_recurrent:
            for node_net in self.node_network:
                x, e = self._concat(x, e, x0, e0)
                e = self.edge_network.forward_edges(e, x, src, dst, gathered)
                x = node_net(self._node_inputs(x, e, src, dst))
        elif self.node_net_recurrent:
            for edge_net in self.edge_network:
                x, e = self._concat(x, e, x0, e0)
                e = edge_net.forward_edges(e, x, src, dst, gathered)
                x = self.node_network(self._node_inputs(x, e, src, dst))
        else:
            for edge_net, node_net in zip(self.edge_network, self.node_network):
                x, e = self._concat(x, e, x0, e0)
                e = edge_net.forward_edges(e, x, src, dst, gathered)
                x = node_net(self._node_inputs(x, e, src, dst))
        # acorn decodes after every iteration but returns only the last output; decoding once is equal.
        return self.edge_output_transform(self.edge_decoder(e)).squeeze(-1)

    @torch.jit.unused
    def forward_checkpointed(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`forward` with activation checkpointing per iteration (training of large graphs).

        Equal to :meth:`forward`, trading compute for memory as acorn's ``checkpointing`` does: only
        the inputs of each iteration are kept and the rest is recomputed in the backward pass. Not part
        of the TorchScript model.
        """
        from torch.utils.checkpoint import checkpoint

        src, dst = edge_index[0], edge_index[1]
        if self.drops_isolated_nodes():
            x, src, dst = drop_isolated_nodes(x, src, dst)
        gathered = self.optimized and gathered_is_cheaper(x.shape[0], src.shape[0])
        x = checkpoint(self.node_encoder, x, use_reentrant=False)
        if self.uses_edge_features:
            if edge_attr is None:
                raise ValueError("this InteractionGNN2 was built with edge_features: pass edge_attr")
            e = checkpoint(self.edge_encoder, edge_attr, use_reentrant=False)
        else:
            e = checkpoint(self.edge_encoder, torch.cat([x[src], x[dst]], dim=-1), use_reentrant=False)
        x0, e0 = x, e
        for i in range(self.n_graph_iters):
            x, e = checkpoint(self._iteration, x, e, x0, e0, src, dst, i, gathered, use_reentrant=False)
        decode = lambda edges: self.edge_output_transform(self.edge_decoder(edges))  # noqa: E731
        return checkpoint(decode, e, use_reentrant=False).squeeze(-1)

    @torch.jit.unused
    def _iteration(self, x, e, x0, e0, src, dst, i: int, gathered: bool):
        edge_net = self.edge_network if self.edge_net_recurrent else self.edge_network[i]
        node_net = self.node_network if self.node_net_recurrent else self.node_network[i]
        x, e = self._concat(x, e, x0, e0)
        e = edge_net.forward_edges(e, x, src, dst, gathered)
        return node_net(self._node_inputs(x, e, src, dst)), e


def drop_isolated_nodes(x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep only the nodes that some edge touches, and renumber the edges.

    Args:
        x (FloatTensor [N, F]): node features. src, dst (LongTensor [E]): edge ends.

    Returns:
        (FloatTensor [N', F], LongTensor [E], LongTensor [E]): the kept nodes in their original order and
        the edges in the new numbering (same order). Unchanged when every node has an edge.
    """
    touched = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    touched[src] = True
    touched[dst] = True
    kept = touched.nonzero().squeeze(1)
    if kept.shape[0] == x.shape[0]:
        return x, src, dst
    renumber = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    renumber[kept] = torch.arange(kept.shape[0], dtype=torch.long, device=x.device)
    return x.index_select(0, kept), renumber[src], renumber[dst]


class ChainedInteractionGNN2(InteractionGNN2):
    """:class:`InteractionGNN2` with separate node and edge MLPs per iteration (the CTD2023 model)."""

    def __init__(self, hparams: dict):
        super().__init__({**plain_hparams(hparams), "node_net_recurrent": False, "edge_net_recurrent": False})


class RecurrentInteractionGNN2(InteractionGNN2):
    """:class:`InteractionGNN2` with one node and one edge MLP shared by all iterations."""

    def __init__(self, hparams: dict):
        super().__init__({**plain_hparams(hparams), "node_net_recurrent": True, "edge_net_recurrent": True})


def chained_from_recurrent(model: InteractionGNN2) -> ChainedInteractionGNN2:
    """The :class:`ChainedInteractionGNN2` that computes what ``model`` computes: each iteration gets its
    own copy of the node and edge MLPs that ``model`` shares between iterations.

    Same outputs, ``n_graph_iters`` times the shared MLPs' weights. What it is for: a shared MLP's
    BatchNorm sees a different distribution in every iteration, so only the unrolled form, whose
    BatchNorms each run once per event, can have its batch statistics frozen
    (:mod:`gnn4itk.models.batch_statistics`).

    Args:
        model: an :class:`InteractionGNN2` with recurrent node and/or edge MLPs (a chained one is copied).

    Returns:
        a new :class:`ChainedInteractionGNN2` (``model`` set to its class name) in ``model``'s train/eval
        mode, on its device.
    """
    hparams = {**plain_hparams(model.hparams), "model": "ChainedInteractionGNN2"}
    chained = ChainedInteractionGNN2(hparams).to(next(model.parameters()).device)
    state = {}
    for key, value in model.state_dict().items():
        prefix, _, rest = key.partition(".")
        shared = (prefix == "edge_network" and model.edge_net_recurrent) or (prefix == "node_network" and model.node_net_recurrent)
        if shared:
            state.update({f"{prefix}.{i}.{rest}": value for i in range(model.n_graph_iters)})
        else:
            state[key] = value
    chained.load_state_dict(state, strict=True)
    return chained.train(model.training)
