"""How much of the truth a module-map graph keeps: coverage of true consecutive-hit edges."""

from __future__ import annotations

import numpy as np
import torch

from module_map.build import BuildOptions, ordered_track_hits, select_particles


def target_options(min_pt: float = 1.0) -> BuildOptions:
    """GNN4ITk target particles: pT >= ``min_pt`` GeV, primary, not electrons, |eta| <= 4, >= 3 hits."""
    return BuildOptions(min_pt=min_pt)


def true_edges(event, options: BuildOptions | None = None) -> np.ndarray:
    """True edges of the target particles: int64 [2, T] rows of ``event.hits``, inner -> outer.

    Hits are ordered and repeated modules skipped exactly as in map creation
    (:func:`module_map.build.ordered_track_hits`); consecutive hits form the edges.
    """
    options = options or target_options()
    rows, owner = ordered_track_hits(event, select_particles(event.particles, options))
    _, inverse, counts = np.unique(owner, return_inverse=True, return_counts=True)
    rows, owner = rows[counts[inverse] >= options.min_hits], owner[counts[inverse] >= options.min_hits]
    pair = np.flatnonzero(owner[1:] == owner[:-1])
    return np.stack([rows[pair], rows[pair + 1]]).astype(np.int64)


def edge_coverage(edge_index: torch.Tensor, truth: np.ndarray, num_hits: int) -> float:
    """Fraction of the directed true edges ``truth`` [2, T] present in ``edge_index`` [2, E] (nan if T = 0)."""
    if truth.shape[1] == 0:
        return float("nan")
    found = edge_index.cpu().numpy().astype(np.int64)
    graph_keys = np.unique(found[0] * num_hits + found[1])
    truth_keys = truth[0] * num_hits + truth[1]
    return float(np.isin(truth_keys, graph_keys).mean())
