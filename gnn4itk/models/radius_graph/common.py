"""What every radius-graph method shares: the deciding distance, the k_max cap, the principal axes."""

from typing import Tuple

import torch


def _no_edges(query: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The result of every method when there is no edge: (LongTensor [2, 0], [0] of ``query``'s dtype), on ``query``'s device."""
    return torch.zeros(2, 0, dtype=torch.long, device=query.device), torch.zeros(0, dtype=query.dtype, device=query.device)


def _exact_sq_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distances of row pairs (DoubleTensor [M]) for a, b (FloatTensor [M, D]).

    The deciding distance of every method. float64: the difference of two float32 values and its
    square are exact there, so the sum's rounding (~1e-16) is the only error and no realistic pair
    sits on it. A float32 sum would round at ~1e-7, and its rounding depends on the reduction order,
    which differs between CPU and CUDA (and between kernel shapes): a 140k-point event has about one
    pair within a float32 rounding step of r_max^2, enough for two devices to disagree on an edge."""
    difference = a.double() - b.double()
    return (difference * difference).sum(dim=1)


def _keep_nearest(src: torch.Tensor, dst: torch.Tensor, dist2: torch.Tensor, k_max: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep, for every ``src`` value, the ``k_max`` pairs of smallest ``dist2``.

    ``src`` must be grouped (equal values adjacent); the result stays grouped."""
    if src.numel() == 0:
        return src, dst, dist2
    # Callers pass edges grouped by source already; with no source over the cap nothing needs sorting
    # (the usual case for k_max = 1000).
    if int(torch.bincount(src).max().item()) <= k_max:
        return src, dst, dist2
    return _nearest_per_group(src, dst, dist2, k_max)


def _nearest_per_group(src: torch.Tensor, dst: torch.Tensor, dist2: torch.Tensor, k_max: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k_max`` pairs of smallest ``dist2`` of every ``src`` value, grouped by ``src`` (no check
    whether any group is over the cap)."""
    by_distance = torch.argsort(dist2)
    order = by_distance[torch.argsort(src[by_distance], stable=True)]
    src, dst, dist2 = src[order], dst[order], dist2[order]
    position = torch.arange(src.numel(), device=src.device)
    group_start = torch.ones_like(src, dtype=torch.bool)
    group_start[1:] = src[1:] != src[:-1]
    first = torch.cummax(torch.where(group_start, position, torch.zeros_like(position)), dim=0)[0]
    keep = (position - first) < k_max
    return src[keep], dst[keep], dist2[keep]


def _principal_rotation(points: torch.Tensor) -> torch.Tensor:
    """Orthogonal matrix (DoubleTensor [D, D]) whose columns are the principal axes of ``points``, largest first."""
    centred = points.double() - points.double().mean(dim=0, keepdim=True)
    # A D x D eigenproblem: solved on the host, where it takes microseconds. float64 throughout, so
    # a float32 matmul mode (tf32, bf16) cannot blur the axes.
    covariance = centred.t().mm(centred).cpu()
    _, vectors = torch.linalg.eigh(covariance)
    return vectors.flip(1).to(device=points.device)
