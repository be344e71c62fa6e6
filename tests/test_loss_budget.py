"""The loss budget: each unreconstructed target particle gets the first stage that leaves it no run of
``track_min_hits`` joined spacepoints."""

import numpy as np
import torch

from gnn4itk.metrics import evaluate_tracking
from gnn4itk.metrics.loss_budget import CAUSES, format_loss_budget, longest_runs, loss_budget
from tests.metrics_events import build_event, particle


def test_longest_runs():
    # particle 7: edges present, present, missing, present (5 hits: longest run 3 hits); 8: none present; 9: no edges
    particle_of_edge = np.array([7, 7, 7, 7, 8, 8])
    present = np.array([True, True, False, True, False, False])
    assert longest_runs(particle_of_edge, present, np.array([7, 8, 9])).tolist() == [3, 1, 0]
    # a run does not continue across particles
    assert longest_runs(np.array([1, 1, 2, 2]), np.ones(4, bool), np.array([1, 2])).tolist() == [3, 3]


def chain(rows):
    """Edges joining consecutive rows (LongTensor [2, len(rows) - 1])."""
    rows = torch.as_tensor(rows)
    return torch.stack([rows[:-1], rows[1:]])


def test_each_lost_particle_gets_the_first_stage_that_loses_it():
    # four target particles of 6 spacepoints (rows 0-5, 6-11, 12-17, 18-23) and one of 4 (24-27)
    event = build_event([particle(1, 6, pt=1.5), particle(2, 6, pt=3.0), particle(3, 6, pt=1.5),
                         particle(4, 6, pt=12.0), particle(5, 4, pt=1.5)])
    # particle 1: whole chain everywhere, reconstructed; 2: the graph misses its middle edge (runs of 3);
    # 3: the graph has it, the kept edges lose two edges; 4: kept whole but tracks split it in two
    graph = torch.cat([chain(range(0, 6)), chain([6, 7, 8]), chain([9, 10, 11]), chain(range(12, 18)),
                       chain(range(18, 24)), chain(range(24, 28))], dim=1)
    kept = torch.cat([chain(range(0, 6)), chain([6, 7, 8]), chain([9, 10, 11]), chain([12, 13, 14]),
                      chain([15, 16, 17]), chain(range(18, 24)), chain(range(24, 28))], dim=1)
    tracks = [list(range(0, 6)), [18, 19, 20], [21, 22, 23]]
    labels = np.concatenate([np.r_[t, -1] for t in tracks])
    result = evaluate_tracking(event, labels, trackml=False)
    budget = loss_budget(event, result, graph, kept)
    assert budget.target_particles == 5 and budget.reconstructed == 1
    assert budget.lost == {"too_few_spacepoints": 1, "graph": 1, "edge_classification": 1, "track_building": 1}
    assert sum(budget.lost.values()) + budget.reconstructed == budget.target_particles
    assert budget.by_pt[">= 10 GeV"] == {"targets": 1, "reconstructed": 0, "too_few_spacepoints": 0, "graph": 0,
                                         "edge_classification": 0, "track_building": 1}
    # 4 x 5 + 3 true edges; the graph misses one, the kept edges one more
    assert (budget.target_edges, budget.target_edges_in_graph, budget.target_edges_kept) == (23, 22, 21)
    # edges count in either direction
    reversed_budget = loss_budget(event, result, graph.flip(0), kept.flip(0))
    assert reversed_budget.lost == budget.lost
    total = budget + reversed_budget
    assert total.target_particles == 10 and total.lost["graph"] == 2 and total.by_pt["1-2 GeV"]["targets"] == 6
    figures = total.as_dict()
    assert figures["efficiency"] == 0.2 and set(figures["lost"]) == set(CAUSES)
    text = format_loss_budget(total)
    assert "graph" in text and "target-edge efficiency: graph 0.9565" in text


def test_fragment_budget_sorts_the_rejected_candidates():
    from gnn4itk.metrics.loss_budget import add_fragment_budgets, format_fragment_budget, fragment_budget

    # targets 1 (10 hits, 1.5 GeV) and 2 (10 hits, 12 GeV); 3 is soft (0.5 GeV, no target); 4 is a secondary
    event = build_event([particle(1, 10, pt=1.5), particle(2, 10, pt=12.0), particle(3, 10, pt=0.5),
                         particle(4, 10, pt=3.0, primary=False)])
    tracks = [
        list(range(0, 10)),                    # particle 1 whole: matched
        [10, 11, 12, 13, 14],                  # half of particle 2: pure, not complete -> target piece, >= 10 GeV
        [20, 21, 22, 23, 24],                  # half of the soft particle 3 -> non-target piece, < 1 GeV
        [30, 31, 32, 33, 34],                  # half of the secondary 4 -> non-target piece, 2-5 GeV
        [15, 16, 25, 26, 35, 36],              # two hits each of 2, 3, 4: no majority
        [17, 18, 19],                          # too short to be a candidate
    ]
    labels = np.concatenate([np.r_[t, -1] for t in tracks])
    result = evaluate_tracking(event, labels, trackml=False)
    fragments = fragment_budget(event, labels, result)
    assert fragments["candidates"] == 5 and fragments["rejected"] == 4
    assert fragments["rejected"] == result.matching["two_way"].n_fake_tracks
    assert fragments["by_kind"] == {"no_majority": 1, "non_target": 2, "target": 1}
    assert fragments["by_pt"]["< 1 GeV"] == {"non_target": 1, "target": 0}
    assert fragments["by_pt"]["2-5 GeV"] == {"non_target": 1, "target": 0}
    assert fragments["by_pt"][">= 10 GeV"] == {"non_target": 0, "target": 1}
    twice = add_fragment_budgets(fragments, fragments)
    assert twice["rejected"] == 8 and twice["by_kind"]["non_target"] == 4
    assert "of target particles 2" in format_fragment_budget(twice)


def test_edge_kinds_sorts_edges_by_what_they_join():
    from gnn4itk.metrics.loss_budget import EDGE_KINDS, edge_kinds

    # particle 1 (target) rows 0-3, particle 2 (soft, no target) rows 4-6, row 7 noise
    event = build_event([particle(1, 4, pt=1.5), particle(2, 3, pt=0.5)], n_noise=1)
    from gnn4itk.training.truth import truth_edges

    true_edges, particle_of_edge = truth_edges(event)
    on_target = particle_of_edge == 1
    pid = event.hits["particle_id"].to_numpy(np.int64)
    noise_row = int(np.flatnonzero(pid == 0)[0])
    edges = np.array([[0, 2, 4, 0, 2, 5, 3], [1, 1, 5, 2, 4, noise_row, 3]])
    # 0-1 target; 2-1 target reversed; 4-5 other particle; 0-2 skip; 2-4 two particles; 5-noise; 3-3 a self
    # loop: same particle, not a true edge (skip)
    kinds = edge_kinds(edges, true_edges, on_target, pid)
    assert kinds == {"target": 2, "other_particle": 1, "skip": 2, "two_particles": 1, "noise": 1}
    assert sum(kinds.values()) == edges.shape[1] and tuple(kinds) == EDGE_KINDS
    assert edge_kinds(np.zeros((2, 0), np.int64), true_edges, on_target, pid) == dict.fromkeys(EDGE_KINDS, 0)


def test_loss_budget_counts_edge_kinds_of_both_graphs():
    event = build_event([particle(1, 6, pt=1.5), particle(2, 6, pt=0.5)])
    graph = torch.cat([chain(range(0, 6)), chain(range(6, 12)), torch.tensor([[0], [6]])], dim=1)
    kept = chain(range(0, 6))
    labels = np.r_[np.arange(6), -1]
    budget = loss_budget(event, evaluate_tracking(event, labels, trackml=False), graph, kept)
    assert budget.graph_edge_kinds == {"target": 5, "other_particle": 5, "skip": 0, "two_particles": 1, "noise": 0}
    assert budget.kept_edge_kinds["target"] == 5 and sum(budget.kept_edge_kinds.values()) == 5
    total = budget + budget
    assert total.as_dict()["edge_kinds"]["graph"]["two_particles"] == 2
    assert "two_particles" in format_loss_budget(total)
