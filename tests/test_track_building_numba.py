"""The numba CPU walkthrough (benchmark baseline) against the reference."""

import numpy as np
import pytest

from gnn4itk.track_building import build_tracks_reference
from gnn4itk.track_building.synthetic import synthetic_graph

pytest.importorskip("numba")
from gnn4itk.track_building.numba_walk import build_tracks_numba  # noqa: E402
from tests.test_track_building_agreement import random_graph  # noqa: E402


def test_numba_walkthrough_matches_the_reference():
    checked = 0
    for seed in range(200):
        edge_index, scores, r2z2, orient = random_graph(seed)
        if orient:  # the numba baseline takes inner -> outer graphs only
            continue
        want = build_tracks_reference(edge_index, scores, r2z2)
        got = build_tracks_numba(edge_index, scores, r2z2)
        assert got[0].tolist() == want[0].tolist(), f"seed {seed}"
        assert got[1].tolist() == want[1].tolist(), f"seed {seed}"
        checked += 1
    assert checked == 100
    graph = synthetic_graph(num_particles=1500, seed=4)
    want = build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)
    got = build_tracks_numba(graph.edge_index, graph.scores, graph.hit_r2z2)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
