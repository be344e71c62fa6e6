"""The graph builder's search keys: the (module, phi) search around phi = +-pi (windows that cross the
boundary, windows at least pi wide, hits exactly at +-pi) against the brute-force reference. (The exact
integer order of float32 dphi used by the (doublet, dphi) search: tests/test_ordering.py.)"""

import math

import numpy as np
import pytest
import torch

from module_map.graph_builder import ModuleMapGraphBuilder
from module_map.map import DOUBLET_BOUND_BRANCHES, TRIPLET_BOUND_BRANCHES, ModuleMap, bound_columns
from tests.module_map_reference import reference_edges

PI32 = float(np.float32(math.pi))
# dphi windows of the chain of doublets (m, m + 1): crossing +pi, crossing -pi, narrow (crosses for
# hits near the boundary), pi wide or more (searched whole), not crossing, just under pi wide
DPHI_WINDOWS = [(2.8, PI32), (-PI32, -2.8), (-0.4, 0.4), (-1.6, 1.6), (1.0, 2.5), (-1.5, 1.5), (-3.0, 3.0)]
WIDE = {"z0": 1e6, "phiSlope": 1e3, "deta": 20.0, "diff_dydx": 3e38, "diff_dzdr": 3e38}


def _bounds(table: dict, branches: list[str], dphi_low: np.ndarray, dphi_high: np.ndarray) -> None:
    """Wide windows for every quantity but dphi, so that the dphi search decides the edges."""
    lows, highs = bound_columns(branches)
    for low, high in zip(lows, highs):
        name = low.split("min")[0]
        if name == "dphi":
            table[low], table[high] = dphi_low.astype(np.float32), dphi_high.astype(np.float32)
        else:
            width = WIDE[name.rstrip("_")]
            table[low] = np.full(len(dphi_low), -width, np.float32)
            table[high] = np.full(len(dphi_low), width, np.float32)


def _wrap_map() -> ModuleMap:
    modules = len(DPHI_WINDOWS) + 1
    low = np.array([w[0] for w in DPHI_WINDOWS])
    high = np.array([w[1] for w in DPHI_WINDOWS])
    first = np.arange(modules - 1, dtype=np.int32)
    doublets = {"Module1": first, "Module2": first + 1, "Occurence": np.ones(len(first), np.uint32)}
    _bounds(doublets, DOUBLET_BOUND_BRANCHES, low, high)
    middle = first[:-1]
    triplets = {"Module1": middle, "Module2": middle + 1, "Module3": middle + 2,
                "Occurence": np.ones(len(middle), np.uint32)}
    _bounds(triplets, TRIPLET_BOUND_BRANCHES, low[:-1], high[:-1])
    # the second pair's dphi window is its doublet's (the chain's next window)
    triplets["dphimin_23"], triplets["dphimax_23"] = low[1:].astype(np.float32), high[1:].astype(np.float32)
    return ModuleMap(module_index=np.arange(modules, dtype=np.int32),
                     module_ids=np.arange(modules, dtype=np.uint64) + 1000, doublets=doublets, triplets=triplets)


def _hits(modules: int, per_module: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 [N, 6] ``x, y, z, r, phi, eta`` and module ids: phi crowded near +-pi, some exactly there."""
    rng = np.random.default_rng(seed)
    module = np.repeat(np.arange(modules), per_module)
    n = len(module)
    phi = np.where(rng.random(n) < 0.5, rng.uniform(-math.pi, math.pi, n),
                   np.sign(rng.random(n) - 0.5) * (math.pi - rng.exponential(0.2, n)))
    phi[::13] = PI32
    phi[5::13] = -PI32
    phi = np.clip(phi, -PI32, PI32).astype(np.float32)
    r = (100.0 * (module + 1) + rng.uniform(0, 20, n)).astype(np.float32)
    z = rng.uniform(-500, 500, n).astype(np.float32)
    eta = np.arcsinh(z / r).astype(np.float32)
    positions = np.stack([r * np.cos(phi), r * np.sin(phi), z, r, phi, eta], axis=1).astype(np.float32)
    return positions, module.astype(np.int64)


@pytest.mark.parametrize("script,chunks,phi_from_zero", [(False, (0, 0), False), (True, (0, 0), False),
                                                      (True, (37, 29), False), (True, (0, 0), True)])
def test_phi_windows_across_pi_equal_reference(script, chunks, phi_from_zero, device):
    """``phi_from_zero``: phi in [0, 2 pi) instead of [-pi, pi] (one wrap of dphi still suffices)."""
    module_map = _wrap_map()
    positions, module = _hits(module_map.num_modules, 60, seed=1)
    if phi_from_zero:
        positions[:, 4] = np.where(positions[:, 4] < 0, positions[:, 4] + np.float32(2 * math.pi), positions[:, 4])
    builder = ModuleMapGraphBuilder(module_map, *chunks).to(device)
    builder.host_compaction = not script  # both join paths
    if script:
        builder = torch.jit.script(builder)
    edge_index, _ = builder(torch.from_numpy(positions).to(device), torch.from_numpy(module).to(device))
    got = set(zip(edge_index[0].tolist(), edge_index[1].tolist()))
    assert len(got) == edge_index.shape[1], "duplicate edges"
    want = reference_edges(module_map, positions, module)
    assert got == want
    # the case under test happens: many edges whose raw phi difference wraps around
    raw = np.abs(positions[[b for _, b in want], 4] - positions[[a for a, _ in want], 4])
    assert (raw > math.pi).sum() > 20
