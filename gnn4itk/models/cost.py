"""How much work the interaction GNN must do, and the shortest time the hardware allows for it.

The floor of one GNN call is the larger of two bounds (issue #15's yardstick):

* its multiply-add count over the rate a large dense half-precision matmul reaches on the device
  (tensor cores), and
* the bytes it cannot avoid moving (its inputs once, its logits once, its weights once) over the rate of
  a large device-to-device copy.

Both rates are measured, not taken from a data sheet, so the ratio ``time / floor`` says how far the
implementation is from what this card does at best.
"""

from __future__ import annotations

import torch
from torch import nn

from gnn4itk.models.mlp import gathered_is_cheaper


def _linear_flops(mlp: nn.Module, rows: int) -> int:
    """2 * multiply-adds of every Linear of ``mlp`` applied to ``rows`` rows."""
    return sum(2 * rows * m.in_features * m.out_features for m in mlp.modules() if isinstance(m, nn.Linear))


def _first_linear(mlp: nn.Module) -> nn.Linear:
    return next(m for m in mlp.modules() if isinstance(m, nn.Linear))


def gnn_flops(model: nn.Module, num_nodes: int, num_edges: int) -> int:
    """Floating-point operations (2 per multiply-add) of one :class:`InteractionGNN2` forward pass.

    Counts the matmuls only (they are all but a few percent of the arithmetic), in the order the model
    actually computes: the split first edge layer when ``optimized`` and ``E > N``.

    Args:
        model: an :class:`gnn4itk.models.InteractionGNN2`.
        num_nodes: N, the nodes the model processes (after dropping isolated ones, if it does).
        num_edges: E.

    Returns:
        int: FLOPs.
    """
    n, e = int(num_nodes), int(num_edges)
    gathered = bool(getattr(model, "optimized", False)) and gathered_is_cheaper(n, e)

    def edge_net_flops(mlp: nn.Module, row_width: int) -> int:
        """An MLP on ``[rows (row_width), x_src, x_dst]`` per edge; split when gathered."""
        if not gathered:
            return _linear_flops(mlp, e)
        first = _first_linear(mlp)
        node_width = (first.in_features - row_width) // 2
        rest = _linear_flops(mlp, e) - 2 * e * first.in_features * first.out_features
        return rest + 2 * e * row_width * first.out_features + 2 * 2 * n * node_width * first.out_features

    flops = _linear_flops(model.node_encoder, n)
    # without edge features the encoder reads [x_src, x_dst]: an edge MLP with no per-edge rows
    flops += _linear_flops(model.edge_encoder, e) if model.uses_edge_features else edge_net_flops(model.edge_encoder, 0)
    iterations = int(model.n_graph_iters)
    edge_nets = [model.edge_network] * iterations if model.edge_net_recurrent else list(model.edge_network)
    node_nets = [model.node_network] * iterations if model.node_net_recurrent else list(model.node_network)
    flops += sum(edge_net_flops(net, _edge_row_width(model)) for net in edge_nets)
    flops += sum(_linear_flops(net, n) for net in node_nets)
    return flops + _linear_flops(model.edge_decoder, e) + _linear_flops(model.edge_output_transform, e)


def _edge_row_width(model: nn.Module) -> int:
    """Width of the per-edge block of the edge network's input (``e``, or ``[e, e0]`` with concat)."""
    hidden = int(model.hparams["hidden"])
    return 2 * hidden if model.concat else hidden


def gnn_min_bytes(model: nn.Module, num_nodes: int, num_edges: int, num_edge_features: int, dtype_bytes: int = 4) -> int:
    """Bytes one GNN call cannot avoid moving: node and edge inputs, edge index, logits, weights, once each.

    Args:
        model: the GNN. num_nodes, num_edges: N, E. num_edge_features: columns of ``edge_attr`` (0 if none).
        dtype_bytes: bytes per float of the inputs and outputs (4 for float32).

    Returns:
        int: bytes.
    """
    n, e = int(num_nodes), int(num_edges)
    node_inputs = n * len(model.hparams["node_features"]) * dtype_bytes
    edge_inputs = e * int(num_edge_features) * dtype_bytes + e * 2 * 8  # edge_index is int64
    logits = e * dtype_bytes
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return node_inputs + edge_inputs + logits + weights


def measured_rates(device: torch.device | str, size: int = 8192, repeats: int = 10) -> dict:
    """Best sustained rates of this device: half-precision matmul FLOP/s and copy bytes/s.

    Args:
        device: a CUDA device (on the CPU the figures are those of float32 matmul and memory copy).
        size: the square matmul's side; the copy moves ``size * size * 16`` bytes.
        repeats: timed calls; the median is kept.

    Returns:
        dict with ``matmul_flops_per_s``, ``matmul_dtype``, ``copy_bytes_per_s`` (read + write counted).
    """
    from statistics import median

    from gnn4itk.timing import timed_calls

    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    matmul_s = median(timed_calls(lambda: torch.mm(a, b), device, warmup=3, repeats=repeats))
    source = torch.empty(size * size * 4, device=device, dtype=torch.float32)
    target = torch.empty_like(source)
    copy_s = median(timed_calls(lambda: target.copy_(source), device, warmup=3, repeats=repeats))
    return {
        "matmul_flops_per_s": 2 * size**3 / matmul_s,
        "matmul_dtype": str(dtype).replace("torch.", ""),
        "copy_bytes_per_s": 2 * source.numel() * source.element_size() / copy_s,
    }


def gnn_floor_seconds(flops: int, min_bytes: int, rates: dict) -> float:
    """The larger of compute time at the measured matmul rate and traffic time at the measured copy rate."""
    return max(flops / rates["matmul_flops_per_s"], min_bytes / rates["copy_bytes_per_s"])
