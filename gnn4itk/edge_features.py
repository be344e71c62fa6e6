"""Edge features shared by every graph-construction pipeline (module map, metric learning).

GNN4ITk convention (acorn's ``handle_edge_features``): the features are differences *target minus
source* on the scaled node coordinates ``r / 1000``, ``phi / pi``, ``z / 1000`` and ``eta``.
"""

from __future__ import annotations

import math

import torch

EDGE_FEATURE_NAMES = ["dr", "dphi", "dz", "deta", "phislope", "rphislope"]
PHISLOPE_LIMIT = 100.0


def scaled_coordinates(r: torch.Tensor, phi: torch.Tensor, z: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """GNN4ITk scaled node coordinates.

    Args:
        r, phi, z, eta: float32 [N] in mm, rad, mm, and pseudorapidity.

    Returns:
        float32 [N, 4]: ``r / 1000, phi / pi, z / 1000, eta``.
    """
    return torch.stack([r / 1000.0, phi / math.pi, z / 1000.0, eta], dim=1)


def wrap_scaled_angle(dphi: torch.Tensor) -> torch.Tensor:
    """Wrap an angle difference in units of pi into [-1, 1] (acorn: ``reset_angle(dphi * pi) / pi``)."""
    angle = dphi * math.pi
    angle = torch.where(angle > math.pi, angle - 2 * math.pi, angle)
    angle = torch.where(angle < -math.pi, angle + 2 * math.pi, angle)
    return angle / math.pi


def edge_features(nodes: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """The six GNN4ITk edge features (scriptable, CPU and CUDA).

    Args:
        nodes: float32 [N, 4], scaled coordinates ``r, phi, z, eta`` (:func:`scaled_coordinates`).
        edge_index: int64 [2, E], source row 0, target row 1.

    Returns:
        float32 [E, 6]: ``dr, dphi, dz, deta, phislope, rphislope`` with ``d* = target - source``,
        ``dphi`` wrapped, ``phislope = dphi / dr`` clamped to +-100 and 0 where ``dr = 0``, and
        ``rphislope = (r_source + r_target) / 2 * phislope``.
    """
    # Feature-major gathers ([4, N][:, idx]): on CUDA, gathering whole rows of a narrow [N, 4] table
    # takes a much slower kernel than gathering along the last dimension.
    coords = nodes.t()
    src = coords[:, edge_index[0]]
    dst = coords[:, edge_index[1]]
    delta = dst - src
    dr = delta[0]
    dphi = wrap_scaled_angle(delta[1])
    safe_dr = torch.where(dr != 0, dr, torch.ones_like(dr))
    phislope = torch.where(dr != 0, dphi / safe_dr, torch.zeros_like(dr))
    phislope = torch.clamp(phislope, -100.0, 100.0)  # PHISLOPE_LIMIT (TorchScript takes no float globals)
    rphislope = 0.5 * (src[0] + dst[0]) * phislope
    return torch.stack([dr, dphi, delta[2], delta[3], phislope, rphislope], dim=1)


def unique_edges(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Distinct edges, sorted by (source, target): ``torch.unique(edge_index, dim=1)``, fast.

    ``torch.unique(..., dim=1)`` sorts columns with a comparator (about 30 s for 12M edges on a CPU core);
    one int64 key per edge takes the radix-sort path of 1-d ``unique`` (about 0.5 s) with the same result.

    Args:
        edge_index (LongTensor [2, E]): edges with node indices in [0, num_nodes).
        num_nodes: N (keys ``source * N + target`` fit int64 for any N below 3e9).

    Returns:
        LongTensor [2, E']: the distinct edges in lexicographic order.
    """
    n = max(int(num_nodes), 1)
    keys = torch.unique(edge_index[0] * n + edge_index[1])
    return torch.stack([torch.div(keys, n, rounding_mode="floor"), keys % n])
