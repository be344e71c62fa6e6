"""Production TrackBuilder against the plain-Python reference: random DAGs and synthetic events."""

import numpy as np
import pytest
import torch

from gnn4itk.metrics import evaluate_tracking
from gnn4itk.track_building import MODES, TrackBuilder, build_tracks_reference
from gnn4itk.track_building.compare import track_agreement
from gnn4itk.track_building.synthetic import synthetic_graph


def random_graph(seed):
    """A small random graph: DAG by r2z2 (or arbitrary directions for orient=True), with score ties."""
    rng = np.random.default_rng(seed)
    num_hits = int(rng.integers(3, 50))
    a, b = rng.integers(0, num_hits, (2, int(rng.integers(0, 3 * num_hits))))
    r2z2 = rng.random(num_hits).astype(np.float32)
    if seed % 3 == 0:
        r2z2 = rng.integers(0, 5, num_hits).astype(np.float32)  # equal r2z2 values
    orient = bool(seed % 2)
    if not orient:
        keep = r2z2[a] != r2z2[b]
        a, b = a[keep], b[keep]
        a, b = np.where(r2z2[a] < r2z2[b], a, b), np.where(r2z2[a] < r2z2[b], b, a)
    scores = rng.random(len(a)).astype(np.float32)
    if seed % 5 == 0:
        scores = np.round(scores, 1).astype(np.float32)  # many equal scores
    return np.stack([a, b]).astype(np.int64), scores, r2z2, orient


@pytest.mark.parametrize("mode", MODES)
def test_random_graphs_match_the_reference(mode):
    for seed in range(150):
        edge_index, scores, r2z2, orient = random_graph(seed)
        labels, track_ids = build_tracks_reference(edge_index, scores, r2z2, mode=mode, orient=orient)
        got_labels, got_ids = TrackBuilder(mode=mode, orient=orient).build(
            torch.from_numpy(edge_index), torch.from_numpy(scores), torch.from_numpy(r2z2)
        )
        assert got_labels.tolist() == labels.tolist(), f"seed {seed}"
        assert got_ids.tolist() == track_ids.tolist(), f"seed {seed}"


def test_scripted_builder_matches_eager_on_random_graphs():
    eager = {orient: TrackBuilder(cc_cut=0.05, walk_min=0.2, walk_max=0.5, orient=orient) for orient in (False, True)}
    scripted = {orient: torch.jit.script(module) for orient, module in eager.items()}
    for seed in range(40):
        edge_index, scores, r2z2, orient = random_graph(seed)
        inputs = (torch.from_numpy(edge_index), torch.from_numpy(scores), torch.from_numpy(r2z2))
        for got, want in zip(scripted[orient].build(*inputs), eager[orient].build(*inputs)):
            assert torch.equal(got, want)


def test_walk_gives_the_same_tracks_with_and_without_compaction():
    # The GPU path (no compaction, masked edges as self-loops) must equal the CPU path; both run here.
    from gnn4itk.track_building.walk import walk_tracks

    walk = torch.jit.script(walk_tracks)
    graphs = [random_graph(seed)[:3] for seed in range(0, 60, 2)]
    big = synthetic_graph(num_particles=800, seed=7)
    graphs.append((big.edge_index, big.scores, big.hit_r2z2))
    for edge_index, scores, r2z2 in graphs:
        src, dst = torch.from_numpy(edge_index)
        num_nodes = len(r2z2)
        compacted = walk(src, dst, torch.from_numpy(scores), num_nodes, True)
        assert torch.equal(walk(src, dst, torch.from_numpy(scores), num_nodes, False), compacted)
    assert (compacted >= 0).sum() > 1000  # the synthetic event has walk tracks


def test_builder_gives_the_same_tracks_with_and_without_walk_compaction():
    # TrackBuilder picks the uncompacted walk (the GPU path) only for CUDA inputs; force both here,
    # also with the host's sequential finish on the uncompacted walk (CUDA with sequential_below).
    graphs = [random_graph(seed) for seed in range(60)]
    big = synthetic_graph(num_particles=800, seed=7)
    graphs.append((big.edge_index, big.scores, big.hit_r2z2, False))
    for number, (edge_index, scores, r2z2, orient) in enumerate(graphs):
        inputs = (torch.from_numpy(edge_index), torch.from_numpy(scores), torch.from_numpy(r2z2))
        want = build_tracks_reference(edge_index, scores, r2z2, orient=orient)
        # (compacted walk or not, sequential finish from the first round or never)
        for compact, sequential_below in ((0, 0), (1, 0), (0, 10**9)):
            builder = TrackBuilder(orient=orient, sequential_below=sequential_below)
            builder.compact_walk = compact
            module = torch.jit.script(builder) if number % 10 == 0 else builder
            labels, track_ids = module.build(*inputs)
            assert labels.tolist() == want[0].tolist(), f"graph {number}, compact {compact}"
            assert track_ids.tolist() == want[1].tolist(), f"graph {number}, compact {compact}"


def agreement_on(graph):
    inputs = (torch.from_numpy(graph.edge_index), torch.from_numpy(graph.scores), torch.from_numpy(graph.hit_r2z2))
    reference, _ = build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)
    labels, _ = torch.jit.script(TrackBuilder()).build(*inputs)
    event = graph.event()
    want = evaluate_tracking(event, reference, trackml=False)
    got = evaluate_tracking(event, labels.numpy(), trackml=False)
    return track_agreement(reference, labels.numpy()), want, got


def test_synthetic_event_matches_the_reference():
    graph = synthetic_graph(num_particles=1500, seed=3)
    agreement, want, got = agreement_on(graph)
    assert agreement["reference_tracks"] > 1000
    assert agreement["identical_fraction"] == 1.0
    assert (got.efficiency, got.fake_rate, got.duplicate_rate) == (want.efficiency, want.fake_rate, want.duplicate_rate)


@pytest.mark.slow
def test_mu200_synthetic_event_matches_the_reference():
    graph = synthetic_graph(seed=11)  # ~140k hits, ~1M edges
    assert graph.num_hits > 120_000 and graph.edge_index.shape[1] > 500_000
    agreement, want, got = agreement_on(graph)
    # The issue asks for >= 99.5% identical tracks and metrics within 0.1%; the implementations are
    # exact, so they must agree completely.
    assert agreement["identical_fraction"] == 1.0
    assert (got.efficiency, got.fake_rate, got.duplicate_rate) == (want.efficiency, want.fake_rate, want.duplicate_rate)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_reference():
    builder = torch.jit.script(TrackBuilder()).cuda()
    for seed in range(30):
        edge_index, scores, r2z2, orient = random_graph(seed)
        if orient:
            continue
        labels, track_ids = build_tracks_reference(edge_index, scores, r2z2)
        inputs = (torch.from_numpy(a).cuda() for a in (edge_index, scores, r2z2))
        got_labels, got_ids = builder.build(*inputs)
        assert got_labels.is_cuda and got_labels.tolist() == labels.tolist(), f"seed {seed}"
        assert got_ids.tolist() == track_ids.tolist(), f"seed {seed}"
    graph = synthetic_graph(num_particles=1500, seed=5)
    reference, _ = build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)
    inputs = (torch.from_numpy(a).cuda() for a in (graph.edge_index, graph.scores, graph.hit_r2z2))
    assert builder(*inputs).tolist() == reference.tolist()
    oriented = torch.jit.script(TrackBuilder(orient=True)).cuda()
    edge_index, scores, r2z2, _ = random_graph(1)
    want, _ = build_tracks_reference(edge_index, scores, r2z2, orient=True)
    got = oriented(*(torch.from_numpy(a).cuda() for a in (edge_index, scores, r2z2)))
    assert got.tolist() == want.tolist()
