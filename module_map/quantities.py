"""The cut quantities of the module map, in numpy (map creation, reference) and torch (graph builder).

Both versions take float32 inputs and use the same operations in the same order, so that they give
bit-identical float32 results: only ``+ - * /``, comparisons and selections, which IEEE 754 rounds
identically everywhere. (On CUDA, a fusing JIT may contract ``a * b + c`` into one FMA; the eager and
scripted builder used here launch one kernel per operation, so the equality holds there too.)

Pair quantities, for hit 1 (inner, earlier on the track) and hit 2 (outer):

* ``dphi = phi2 - phi1`` wrapped to [-pi, pi] (one wrap: inputs are in [-pi, pi]).
* ``phi_slope = dphi / dr`` with ``dr = r2 - r1``.
* ``z0 = z1 - r1 * dz / dr`` with ``dz = z2 - z1`` (the z of the pair's line at r = 0).
* ``deta = eta1 - eta2`` (MMG's sign, map attribute ``deta_sign = "inner_minus_outer"``) or
  ``eta2 - eta1`` (``"outer_minus_inner"``).

``dr = 0`` (finite, as MMG but without its overflow): ``z0 = +FLT_MAX`` if ``dz >= 0`` else ``-FLT_MAX``;
``phi_slope = sign(dphi) * FLT_MAX`` (0 when ``dphi = 0``).

Triplet quantities, for hits 1, 2, 3:

* ``diff_dzdr = dz12 / dr12 - dz23 / dr23``.
* ``diff_dydx = dy12 / dx12 - dy23 / dx23`` (attribute ``dydx_convention = "difference"``, the
  definition of the issue), or MMG's code, where ``dx12 = x1 - x2`` flips the first slope:
  ``-dy12 / dx12 - dy23 / dx23`` (``"mmg"``, what real ITk ROOT maps were made with).

A zero denominator follows MMG: if only the first slope exists, ``+FLT_MAX`` when it is >= 0 else
``-FLT_MAX``; if only the second, ``+FLT_MAX`` when it is <= 0 else ``-FLT_MAX``; if neither, 0.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

FLT_MAX = float(np.finfo(np.float32).max)
PAIR_NAMES = ["z0", "dphi", "phiSlope", "deta"]
"""Pair cut quantities, in column order, named as the ROOT branches name them."""
TRIPLET_EXTRA_NAMES = ["diff_dydx", "diff_dzdr"]
DETA_SIGNS = {"inner_minus_outer": 1.0, "outer_minus_inner": -1.0}
DYDX_CONVENTIONS = {"difference": 1.0, "mmg": -1.0}

_PI = np.float32(math.pi)
_TWO_PI = np.float32(2 * math.pi)
_MAX = np.float32(FLT_MAX)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


def deta_factor(deta_sign: str) -> float:
    if deta_sign not in DETA_SIGNS:
        raise ValueError(f"deta_sign must be one of {list(DETA_SIGNS)}, got {deta_sign!r}")
    return DETA_SIGNS[deta_sign]


def dydx_factor(convention: str) -> float:
    if convention not in DYDX_CONVENTIONS:
        raise ValueError(f"dydx_convention must be one of {list(DYDX_CONVENTIONS)}, got {convention!r}")
    return DYDX_CONVENTIONS[convention]


# ---------------------------------------------------------------------------------------------- numpy


def np_pair_quantities(p1: np.ndarray, p2: np.ndarray, deta_sign: float = 1.0) -> np.ndarray:
    """Pair quantities of hits 1 -> 2.

    Args:
        p1, p2: float32 [P, 6], columns ``x, y, z, r, phi, eta`` of the inner and outer hits.
        deta_sign: +1 for ``eta1 - eta2``, -1 for ``eta2 - eta1``.

    Returns:
        float32 [P, 4]: ``z0, dphi, phi_slope, deta``.
    """
    z1, r1, phi1, eta1 = p1[:, 2], p1[:, 3], p1[:, 4], p1[:, 5]
    z2, r2, phi2, eta2 = p2[:, 2], p2[:, 3], p2[:, 4], p2[:, 5]
    dphi = phi2 - phi1
    dphi = np.where(dphi > _PI, dphi - _TWO_PI, np.where(dphi < -_PI, dphi + _TWO_PI, dphi))
    dr = r2 - r1
    dz = z2 - z1
    has_dr = dr != _ZERO
    safe_dr = np.where(has_dr, dr, _ONE)
    phi_slope = np.where(has_dr, dphi / safe_dr, np.sign(dphi) * _MAX)
    z0 = np.where(has_dr, z1 - r1 * dz / safe_dr, np.where(dz >= _ZERO, _MAX, -_MAX))
    deta = eta1 - eta2 if deta_sign > 0 else eta2 - eta1
    return np.stack([z0, dphi, phi_slope, deta], axis=1).astype(np.float32, copy=False)


def _np_slope_difference(num12, den12, num23, den23):
    has12 = den12 != _ZERO
    has23 = den23 != _ZERO
    q12 = num12 / np.where(has12, den12, _ONE)
    q23 = num23 / np.where(has23, den23, _ONE)
    only12 = np.where(q12 >= _ZERO, _MAX, -_MAX)
    only23 = np.where(q23 <= _ZERO, _MAX, -_MAX)
    return np.where(has12 & has23, q12 - q23, np.where(has12, only12, np.where(has23, only23, _ZERO)))


def np_triplet_quantities(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, dydx_sign: float = 1.0) -> np.ndarray:
    """Triplet quantities of hits 1 -> 2 -> 3.

    Args:
        p1, p2, p3: float32 [T, 6], columns ``x, y, z, r, phi, eta``.
        dydx_sign: +1 for ``"difference"``, -1 for MMG's convention.

    Returns:
        float32 [T, 2]: ``diff_dydx, diff_dzdr``.
    """
    x1, y1, z1, r1 = p1[:, 0], p1[:, 1], p1[:, 2], p1[:, 3]
    x2, y2, z2, r2 = p2[:, 0], p2[:, 1], p2[:, 2], p2[:, 3]
    x3, y3, z3, r3 = p3[:, 0], p3[:, 1], p3[:, 2], p3[:, 3]
    dx12 = x2 - x1 if dydx_sign > 0 else x1 - x2
    dydx = _np_slope_difference(y2 - y1, dx12, y3 - y2, x3 - x2)
    dzdr = _np_slope_difference(z2 - z1, r2 - r1, z3 - z2, r3 - r2)
    return np.stack([dydx, dzdr], axis=1).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- torch


def pair_quantities(p1: torch.Tensor, p2: torch.Tensor, deta_sign: float) -> torch.Tensor:
    """Torch twin of :func:`np_pair_quantities` (scriptable): float32 [P, 6] x2 -> float32 [P, 4]."""
    return pair_quantities_feature_major(p1[:, 2:6].t(), p2[:, 2:6].t(), deta_sign).t()


def quantity_constants(device: torch.device) -> torch.Tensor:
    """float32 [5]: ``pi, 2 pi, FLT_MAX, 1, 0`` rounded to float32, the constants of the torch
    quantities (the numpy versions use the same float32 values).

    Made by fills (``torch.tensor`` would copy from the host: a CUDA sync). The graph builder keeps one
    copy as a buffer and passes it in, so that its calls launch no fill kernels for them.
    """
    values = [math.pi, 2 * math.pi, 3.4028234663852886e38, 1.0, 0.0]
    return torch.stack([torch.full((), v, dtype=torch.float32, device=device) for v in values])


def pair_quantities_feature_major(p1: torch.Tensor, p2: torch.Tensor, deta_sign: float,
                                  constants: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`pair_quantities` on feature-major inputs (the GPU graph builder's layout).

    Args:
        p1, p2: float32 [4, P], rows ``z, r, phi, eta`` of the inner and outer hits.
        deta_sign: +1 for ``eta1 - eta2``, -1 for ``eta2 - eta1``.
        constants: :func:`quantity_constants` on the inputs' device (made here if not given).

    Returns:
        float32 [4, P]: rows ``z0, dphi, phi_slope, deta``.
    """
    c = quantity_constants(p1.device) if constants is None else constants
    pi, two_pi, big, one = c[0], c[1], c[2], c[3]
    z1, r1, phi1, eta1 = p1[0], p1[1], p1[2], p1[3]
    z2, r2, phi2, eta2 = p2[0], p2[1], p2[2], p2[3]
    dphi = phi2 - phi1
    dphi = torch.where(dphi > pi, dphi - two_pi, torch.where(dphi < -pi, dphi + two_pi, dphi))
    dr = r2 - r1
    dz = z2 - z1
    has_dr = dr != 0
    safe_dr = torch.where(has_dr, dr, one)
    phi_slope = torch.where(has_dr, dphi / safe_dr, torch.sign(dphi) * big)
    z0 = torch.where(has_dr, z1 - r1 * dz / safe_dr, torch.where(dz >= 0, big, -big))
    if deta_sign > 0:
        deta = eta1 - eta2
    else:
        deta = eta2 - eta1
    return torch.stack([z0, dphi, phi_slope, deta])


def slope(num: torch.Tensor, den: torch.Tensor, constants: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``num / den`` where ``den != 0`` (else ``num``, unused), and the mask ``den != 0``; ``constants``
    as in :func:`pair_quantities_feature_major`."""
    c = quantity_constants(num.device) if constants is None else constants
    has = den != 0
    return num / torch.where(has, den, c[3]), has


def slope_difference(q12: torch.Tensor, has12: torch.Tensor, q23: torch.Tensor, has23: torch.Tensor,
                     constants: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``q12 - q23``, with MMG's finite values where a slope does not exist (see the module docstring);
    ``constants`` as in :func:`pair_quantities_feature_major`."""
    c = quantity_constants(q12.device) if constants is None else constants
    big, zero = c[2], c[4]
    only12 = torch.where(q12 >= 0, big, -big)
    only23 = torch.where(q23 <= 0, big, -big)
    return torch.where(has12 & has23, q12 - q23, torch.where(has12, only12, torch.where(has23, only23, zero)))


def _slope_difference(num12: torch.Tensor, den12: torch.Tensor, num23: torch.Tensor, den23: torch.Tensor) -> torch.Tensor:
    q12, has12 = slope(num12, den12)
    q23, has23 = slope(num23, den23)
    return slope_difference(q12, has12, q23, has23)


def triplet_quantities(p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor, dydx_sign: float) -> torch.Tensor:
    """Torch twin of :func:`np_triplet_quantities` (scriptable): float32 [T, 6] x3 -> float32 [T, 2]."""
    x1, y1, z1, r1 = p1[:, 0], p1[:, 1], p1[:, 2], p1[:, 3]
    x2, y2, z2, r2 = p2[:, 0], p2[:, 1], p2[:, 2], p2[:, 3]
    x3, y3, z3, r3 = p3[:, 0], p3[:, 1], p3[:, 2], p3[:, 3]
    if dydx_sign > 0:
        dx12 = x2 - x1
    else:
        dx12 = x1 - x2
    dydx = _slope_difference(y2 - y1, dx12, y3 - y2, x3 - x2)
    dzdr = _slope_difference(z2 - z1, r2 - r1, z3 - z2, r3 - r2)
    return torch.stack([dydx, dzdr], dim=1)
