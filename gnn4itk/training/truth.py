"""Truth for training: true edges between consecutive spacepoints of a particle, and target particles."""

from __future__ import annotations

import numpy as np
import torch

from gnn4itk.event import Event
from gnn4itk.metrics import TrackingCuts, target_particle_mask, truth_tracks


def truth_edges(event: Event) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining consecutive spacepoints of every particle.

    Spacepoints of a particle are ordered by distance from its production vertex
    (:func:`gnn4itk.metrics.truth_tracks`), so edges point outwards along the trajectory.

    Returns:
        (edge_index int64 [2, T] of spacepoint rows, particle_id int64 [T]).
    """
    tracks = [t for t in truth_tracks(event) if len(t) > 1]
    if not tracks:
        return np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
    src = np.concatenate([t[:-1] for t in tracks])
    dst = np.concatenate([t[1:] for t in tracks])
    pid = event.hits["particle_id"].to_numpy(np.int64)[src]
    return np.stack([src, dst]).astype(np.int64), pid


def target_particle_ids(event: Event, cuts: TrackingCuts) -> np.ndarray:
    """``particle_id`` of the target particles (GNN4ITk defaults: pT >= 1 GeV, |eta| <= 4, primary,
    not an electron, production radius < 260 mm, >= 3 spacepoints), int64 [P_target]."""
    particles = event.particles
    return particles["particle_id"].to_numpy(np.int64)[target_particle_mask(particles, particles["nhits"].to_numpy(), cuts)]


def match_edges(edge_index: torch.Tensor, true_edges: torch.Tensor, num_nodes: int, undirected: bool) -> torch.Tensor:
    """For every edge, the index of the true edge it reproduces, or -1.

    Args:
        edge_index (LongTensor [2, E]): predicted edges.
        true_edges (LongTensor [2, T]): truth edges, each (src, dst) at most once.
        num_nodes: spacepoints in the event.
        undirected: also accept an edge that joins a true pair in the reverse direction.

    Returns:
        LongTensor [E]: true-edge index or -1.
    """
    result = torch.full((edge_index.shape[1],), -1, dtype=torch.long, device=edge_index.device)
    if true_edges.shape[1] == 0 or edge_index.shape[1] == 0:
        return result
    true_key = true_edges[0] * num_nodes + true_edges[1]
    sorted_key, order = torch.sort(true_key)
    directions = [edge_index, edge_index.flip(0)] if undirected else [edge_index]
    for edges in directions:
        key = edges[0] * num_nodes + edges[1]
        position = torch.searchsorted(sorted_key, key).clamp(max=sorted_key.numel() - 1)
        found = (sorted_key[position] == key) & (result < 0)
        result[found] = order[position[found]]
    return result
