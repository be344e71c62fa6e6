"""Track building: hand-made graphs with known tracks, tie-break rules, LABELS, modes, scripting."""

import numpy as np
import pytest
import torch

from gnn4itk.track_building import MODES, TrackBuilder, build_tracks_reference
from gnn4itk.tracks import labels_to_track_ids, split_labels


def build_both(edges, scores, r2z2=None, **options):
    """Run reference, eager and scripted builders; assert they agree; return the reference result."""
    edge_index = np.asarray(edges, dtype=np.int64).reshape(-1, 2).T
    scores = np.asarray(scores, dtype=np.float32)
    if r2z2 is None:
        r2z2 = np.arange(edge_index.max() + 1 if edge_index.size else 0, dtype=np.float32)
    r2z2 = np.asarray(r2z2, dtype=np.float32)
    labels, track_ids = build_tracks_reference(edge_index, scores, r2z2, **options)
    builder = TrackBuilder(**options)
    inputs = (torch.from_numpy(edge_index), torch.from_numpy(scores), torch.from_numpy(r2z2))
    for module in (builder, torch.jit.script(builder)):
        got_labels, got_ids = module.build(*inputs)
        assert got_labels.tolist() == labels.tolist()
        assert got_ids.tolist() == track_ids.tolist()
        assert module(*inputs).tolist() == labels.tolist()
    return labels.tolist(), track_ids.tolist()


def test_chain_is_one_track():
    labels, ids = build_both([(0, 1), (1, 2), (2, 3)], [0.9, 0.8, 0.7])
    assert labels == [0, 1, 2, 3, -1]
    assert ids == [0, 0, 0, 0]


def test_short_component_and_low_scores_are_dropped():
    # 0-1 is too short; 2-3-4 loses its 3-4 edge to cc_cut, leaving 2 hits.
    labels, ids = build_both([(0, 1), (2, 3), (3, 4)], [0.9, 0.9, 0.005])
    assert labels == [-1]
    assert ids == [-1] * 5


def test_cut_is_applied_in_float32():
    at_cut = float(np.float32(0.01))  # float32(0.01) < 0.01 in float64, equal in float32
    labels, _ = build_both([(0, 1), (1, 2)], [0.5, at_cut])
    assert labels == [-1]


def test_hits_sorted_by_r2z2_and_tracks_by_smallest_row():
    # Track A = rows {3, 4, 5} with r2z2 decreasing along the rows; track B = rows {0, 1, 2}.
    r2z2 = [0.0, 1.0, 2.0, 9.0, 8.0, 7.0]
    labels, ids = build_both([(0, 1), (1, 2), (5, 4), (4, 3)], [0.9] * 4, r2z2)
    assert labels == [0, 1, 2, -1, 5, 4, 3, -1]
    assert ids == [0, 0, 0, 1, 1, 1]
    assert labels_to_track_ids(labels, 6).tolist() == ids


def test_fork_takes_the_longest_branch():
    # 0-1-2 forks into 2-3-5 (longer) and 2-4 (higher score).
    labels, _ = build_both([(0, 1), (1, 2), (2, 3), (2, 4), (3, 5)], [0.9, 0.9, 0.7, 0.95, 0.9])
    assert [t.tolist() for t in split_labels(labels)] == [[0, 1, 2, 3, 5]]


def test_fork_of_equal_length_takes_the_higher_score_then_leftovers_become_tracks():
    edges = [(0, 1), (1, 2), (2, 3), (2, 4), (3, 5), (4, 6)]
    labels, _ = build_both(edges, [0.9, 0.9, 0.8, 0.9, 0.9, 0.9])
    assert [t.tolist() for t in split_labels(labels)] == [[0, 1, 2, 4, 6], [3, 5]]


def test_merge_keeps_the_best_incoming_edge_of_a_first_hit():
    # 0->2 and 1->2 start at hits without incoming edges: only the best incoming edge of 2 survives.
    labels, _ = build_both([(0, 2), (1, 2), (2, 3), (3, 4)], [0.9, 0.7, 0.9, 0.9])
    assert [t.tolist() for t in split_labels(labels)] == [[0, 2, 3, 4]]


def test_diamond_ambiguity_resolved_by_branching_score():
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]
    labels, _ = build_both(edges, [0.8, 0.9, 0.9, 0.9, 0.9])
    assert [t.tolist() for t in split_labels(labels)] == [[0, 2, 3, 4]]


@pytest.mark.parametrize("first_edge", [(0, 1), (0, 2)])
def test_equal_branching_scores_prefer_the_lower_row(first_edge):
    other = (0, 2) if first_edge == (0, 1) else (0, 1)
    edges = [first_edge, other, (1, 3), (2, 4), (3, 5), (4, 6)]
    labels, _ = build_both(edges, [0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert [t.tolist() for t in split_labels(labels)][0] == [0, 1, 3, 5]


def test_equal_outgoing_scores_in_pruning_prefer_the_lower_target_row():
    # 1 has two outgoing edges of equal score below walk_max: only 1->2 (lower row) survives pruning.
    edges = [(0, 1), (1, 3), (1, 2), (2, 4), (3, 5)]
    labels, _ = build_both(edges, [0.9, 0.5, 0.5, 0.9, 0.9])
    assert [t.tolist() for t in split_labels(labels)] == [[0, 1, 2, 4], [3, 5]]


@pytest.mark.parametrize("a, b", [(6, 7), (7, 6)])
def test_earlier_start_in_topological_order_takes_the_shared_hits(a, b):
    # Sources a and b (both depth 0) lead via 0 and 1 into hit 2: the lower row (6) starts first.
    edges = [(a, 0), (b, 1), (0, 2), (1, 2), (2, 3), (3, 4)]
    r2z2 = np.zeros(8, dtype=np.float32)
    r2z2[[a, b, 0, 1, 2, 3, 4]] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    labels, _ = build_both(edges, [0.9, 0.9, 0.9, 0.95, 0.9, 0.9], r2z2)
    via_six, via_seven = (0, 1) if a == 6 else (1, 0)
    tracks = {frozenset(t.tolist()) for t in split_labels(labels)}
    assert tracks == {frozenset({6, via_six, 2, 3, 4}), frozenset({7, via_seven})}


def test_empty_inputs():
    assert build_both([], [], np.zeros(0)) == ([-1], [])
    assert build_both([], [], np.zeros(2)) == ([-1], [-1, -1])


def test_modes_on_a_graph_with_a_junction():
    edges = [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5), (6, 7), (7, 8)]
    scores = [0.9, 0.9, 0.9, 0.7, 0.9, 0.9, 0.9]
    walk, _ = build_both(edges, scores, mode="cc_and_walk")
    cc, _ = build_both(edges, scores, mode="cc")
    junction, _ = build_both(edges, scores, mode="junction_removal")
    assert [t.tolist() for t in split_labels(cc)] == [[6, 7, 8]]
    assert [t.tolist() for t in split_labels(walk)] == [[0, 1, 2, 3], [4, 5], [6, 7, 8]]
    assert [t.tolist() for t in split_labels(junction)] == [[0, 1, 2, 3], [6, 7, 8]]


def test_orient_flips_and_merges_bidirectional_edges():
    one_way = [(0, 1), (1, 2), (2, 3)]
    both_ways = one_way + [(b, a) for a, b in one_way]
    labels, _ = build_both(both_ways, [0.9, 0.8, 0.7, 0.6, 0.95, 0.5], orient=True)
    assert labels == [0, 1, 2, 3, -1]
    # Without orientation the same edges form cycles, which the walk cannot order.
    with pytest.raises(RuntimeError, match="cycle"):
        TrackBuilder().build(torch.tensor(both_ways).T, torch.full((6,), 0.9), torch.arange(4.0))
    with pytest.raises(ValueError, match="cycle"):
        build_tracks_reference(np.array(both_ways).T, np.full(6, 0.9), np.arange(4.0))


def test_bad_inputs_raise_clear_errors():
    builder = TrackBuilder()
    with pytest.raises(ValueError, match="shape"):
        builder(torch.zeros(3, 2, dtype=torch.long), torch.zeros(2), torch.zeros(4))
    with pytest.raises(ValueError, match="scores"):
        builder(torch.zeros(2, 2, dtype=torch.long), torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="outside"):
        builder(torch.tensor([[0], [4]]), torch.ones(1), torch.zeros(4))
    with pytest.raises(torch.jit.Error, match="ValueError: edge_index has row indices outside"):
        torch.jit.script(builder)(torch.tensor([[0], [4]]), torch.ones(1), torch.zeros(4))
    # Also on the GPU's path (the check waits for the walk's first host sync), in every mode, and
    # for an edge that the score cut drops.
    for mode in MODES:
        gpu_path = TrackBuilder(mode=mode, sequential_below=0)
        gpu_path.compact_walk = 0
        for edges, scores in (([[0, 1, 2], [1, 2, 4]], [0.9, 0.9, 0.9]), ([[0, 1, -1], [1, 2, 3]], [0.9, 0.9, 0.0])):
            with pytest.raises(ValueError, match="outside"):
                gpu_path(torch.tensor(edges), torch.tensor(scores), torch.zeros(4))
    with pytest.raises(ValueError, match="outside"):
        build_tracks_reference(np.array([[0, 1, -1], [1, 2, 3]]), np.array([0.9, 0.9, 0.0]), np.zeros(4))
    with pytest.raises(ValueError, match="mode"):
        TrackBuilder(mode="walk")
    with pytest.raises(ValueError, match="walk_min"):
        TrackBuilder(walk_min=0.7, walk_max=0.6)


def test_modes_constant_lists_every_mode():
    assert set(MODES) == {"cc_and_walk", "cc", "junction_removal"}


def test_two_hits_joined_by_parallel_edges_are_dropped():
    # Parallel edges make 0-1 branching, but a component of two hits is never a track.
    labels, _ = build_both([(0, 1), (0, 1), (2, 3), (3, 4)], [0.9, 0.8, 0.9, 0.9])
    assert labels == [2, 3, 4, -1]


@pytest.mark.parametrize("mode", ["cc", "junction_removal"])
def test_a_directed_cycle_of_simple_links_is_an_error(mode):
    edges = torch.tensor([[0, 1, 2], [1, 2, 0]])
    with pytest.raises(RuntimeError, match="cycle"):
        TrackBuilder(mode=mode).build(edges, torch.full((3,), 0.9), torch.arange(3.0))
    # A cycle whose length is a power of two: pointer jumping returns to the start node itself.
    four = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    with pytest.raises(RuntimeError, match="cycle"):
        TrackBuilder(mode=mode).build(four, torch.full((4,), 0.9), torch.arange(4.0))
    with pytest.raises(ValueError, match="cycle"):
        build_tracks_reference(edges.numpy(), np.full(3, 0.9), np.arange(3.0), mode=mode)


@pytest.mark.parametrize("compact_walk", [0, 1])
def test_a_directed_cycle_in_the_walk_graph_is_an_error(compact_walk):
    # 0 -> 1 -> 2 -> 0 with a branch 0 -> 4: the walk's segment 1-2-0 has an edge back to itself.
    edges = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 4]])
    builder = TrackBuilder(sequential_below=0)
    builder.compact_walk = compact_walk  # the GPU's path (0) and the CPU's (1)
    # (TorchScript re-raises it as torch.jit.Error, which keeps the message.)
    for module, error in ((builder, RuntimeError), (torch.jit.script(builder), torch.jit.Error)):
        with pytest.raises(error, match="cycle"):
            module.build(edges, torch.full((4,), 0.9), torch.arange(5.0))
    with pytest.raises(ValueError, match="cycle"):
        build_tracks_reference(edges.numpy(), np.full(4, 0.9), np.arange(5.0))


@pytest.mark.parametrize("compact_walk", [0, 1])
def test_segments_longer_than_the_unchecked_pointer_jumping(compact_walk):
    # A 100-hit chain with a branch: the walk's pointer jumping needs more than its five unchecked
    # rounds (32 hits), so the builder notices at the walk's first sync and runs again, checked.
    edges = [(i, i + 1) for i in range(100)] + [(50, 101), (101, 102)]
    scores = [0.9] * 100 + [0.95, 0.9]
    builder = TrackBuilder(sequential_below=0)
    builder.compact_walk = compact_walk
    edge_index = np.array(edges, dtype=np.int64).T
    want = build_tracks_reference(edge_index, np.array(scores, dtype=np.float32), np.arange(103.0))
    inputs = (torch.from_numpy(edge_index), torch.tensor(scores), torch.arange(103.0))
    for module in (builder, torch.jit.script(builder)):
        labels, track_ids = module.build(*inputs)
        assert labels.tolist() == want[0].tolist() and track_ids.tolist() == want[1].tolist()
    assert len(split_labels(want[0])) == 2


def test_labels_from_arbitrary_track_keys():
    # Key 5 is the row of a hit without a track; key 0 is the row of a hit of the other track.
    from gnn4itk.track_building import labels_from_track_of

    track_of = torch.tensor([5, -1, 5, 0, 0, -1])
    r2z2 = torch.tensor([3.0, 0.0, 1.0, 2.0, 1.0, 0.0])
    labels, track_ids = labels_from_track_of(track_of, r2z2)
    assert labels.tolist() == [2, 0, -1, 4, 3, -1]
    assert track_ids.tolist() == [0, -1, 0, 1, 1, -1]
    scripted = torch.jit.script(labels_from_track_of)
    assert scripted(torch.full((4,), -1), torch.zeros(4))[0].tolist() == [-1]
