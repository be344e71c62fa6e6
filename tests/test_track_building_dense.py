"""The walk's sequential finish (CPU, dense graphs) against the reference and the parallel rounds."""

import numpy as np
import pytest
import torch

from gnn4itk.track_building import TrackBuilder, build_tracks_reference
from gnn4itk.track_building.synthetic import synthetic_graph
from tests.test_track_building_agreement import random_graph

ROUNDS_ONLY, SEQUENTIAL_ONLY = 0, 10**9  # values of TrackBuilder's sequential_below


def dense_graph(num_particles, seed):
    """A synthetic event scored like an under-trained GNN: fake edges mostly above walk_max."""
    return synthetic_graph(num_particles=num_particles, seed=seed, fake_logit=(2.0, 2.0))


@pytest.mark.parametrize("sequential_below", [ROUNDS_ONLY, SEQUENTIAL_ONLY])
def test_random_graphs_match_the_reference_in_both_walks(sequential_below):
    builder = TrackBuilder(sequential_below=sequential_below)
    for seed in range(0, 150, 2):  # even seeds: directed acyclic graphs
        edge_index, scores, r2z2, _ = random_graph(seed)
        labels, track_ids = build_tracks_reference(edge_index, scores, r2z2)
        got_labels, got_ids = builder.build(*(torch.from_numpy(a) for a in (edge_index, scores, r2z2)))
        assert got_labels.tolist() == labels.tolist(), f"seed {seed}"
        assert got_ids.tolist() == track_ids.tolist(), f"seed {seed}"


def test_dense_graph_matches_the_reference():
    graph = dense_graph(num_particles=1500, seed=4)
    above_cut = (graph.scores > 0.6).mean()
    assert above_cut > 0.8, "the graph must be dense: most edges above walk_max"
    reference, track_ids = build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)
    inputs = tuple(torch.from_numpy(a) for a in (graph.edge_index, graph.scores, graph.hit_r2z2))
    results = {}
    for sequential_below in (ROUNDS_ONLY, 128, SEQUENTIAL_ONLY):
        builder = torch.jit.script(TrackBuilder(sequential_below=sequential_below))
        results[sequential_below] = builder.build(*inputs)
    for sequential_below, (labels, ids) in results.items():
        assert np.array_equal(labels.numpy(), reference), f"sequential_below={sequential_below}"
        assert np.array_equal(ids.numpy(), track_ids), f"sequential_below={sequential_below}"
    assert (reference == -1).sum() > 1000


def test_sequential_finish_takes_over_from_any_round():
    # Starting the sequential finish after 1, 2, ... rounds must not change the result: what the
    # rounds took is consistent with the sequential order.
    graph = dense_graph(num_particles=800, seed=9)
    inputs = tuple(torch.from_numpy(a) for a in (graph.edge_index, graph.scores, graph.hit_r2z2))
    want = TrackBuilder(sequential_below=ROUNDS_ONLY)(*inputs)
    for threshold in (2, 5, 20, 60):
        assert torch.equal(TrackBuilder(sequential_below=threshold)(*inputs), want), f"threshold {threshold}"


def test_sequential_below_must_not_be_negative():
    with pytest.raises(ValueError, match="sequential_below"):
        TrackBuilder(sequential_below=-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dense_graph_on_cuda_matches_the_reference():
    graph = dense_graph(num_particles=1500, seed=4)
    reference, track_ids = build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)
    inputs = tuple(torch.from_numpy(a).cuda() for a in (graph.edge_index, graph.scores, graph.hit_r2z2))
    for sequential_below in (-1, 128):  # CUDA default (rounds only), and the host's sequential finish
        labels, ids = torch.jit.script(TrackBuilder(sequential_below=sequential_below)).build(*inputs)
        assert labels.is_cuda and ids.is_cuda
        assert np.array_equal(labels.cpu().numpy(), reference), f"sequential_below={sequential_below}"
        assert np.array_equal(ids.cpu().numpy(), track_ids), f"sequential_below={sequential_below}"
