"""The k-d tree radius graph's parts: the tree order, the multi-level descent, deep trees against brute force."""

import pytest
import torch
import torch.nn.functional as F

from gnn4itk.bench.radius_graph import synthetic_embedding
from gnn4itk.models.radius_graph import RadiusGraph, radius_graph
from gnn4itk.models.radius_graph.tree import _kd_order, _near_leaf_pairs, _node_boxes


def edge_keys(edge_index, n):
    return torch.sort(edge_index[0] * n + edge_index[1])[0]


def test_kd_order_is_a_balanced_median_split():
    points = torch.randn(1000, 5, generator=torch.Generator().manual_seed(0))
    levels = 4
    order, valid = _kd_order(points, levels)
    slots = 16 * 63  # 1000 points padded to 16 leaves of 63 slots
    assert order.shape == valid.shape == (slots,)
    assert torch.equal(torch.sort(order[valid])[0], torch.arange(1000))
    assert int(valid.sum()) == 1000 and not valid[:1000].logical_not().any(), "padding must sort last"
    # Every node's lower half lies below its upper half along some coordinate (its split axis).
    for level in range(levels):
        nodes = order.view(1 << level, -1)
        for node in nodes:
            lower, upper = node[: node.numel() // 2], node[node.numel() // 2 :]
            lower, upper = lower[lower < 1000], upper[upper < 1000]
            if lower.numel() and upper.numel():
                assert (points[lower].amax(0) <= points[upper].amin(0)).any()


@pytest.mark.parametrize("levels_per_step", [1, 2, 3])
def test_near_leaf_pairs_equal_all_pairs_box_test(levels_per_step):
    """The descent, whatever its step, finds exactly the leaf pairs whose boxes are near."""
    points = F.normalize(torch.randn(4000, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    order, valid = _kd_order(points, 11)
    leaves = points[torch.where(valid, order, torch.zeros_like(order))].view(2048, -1, 4)
    boxes = _node_boxes(leaves, valid.view(2048, -1))
    reach2 = torch.tensor(0.2**2)
    for symmetric in (True, False):
        a, b = _near_leaf_pairs(boxes, boxes, reach2, symmetric, 8, levels_per_step)
        lower, upper = boxes[-1]
        gap = torch.maximum(lower[None] - upper[:, None], lower[:, None] - upper[None]).clamp_min(0)
        near = (gap * gap).sum(2) < reach2
        if symmetric:
            near = near.triu()
        assert torch.equal(torch.sort(a * 2048 + b)[0], torch.sort(torch.nonzero(near.flatten()).squeeze(1))[0])


@pytest.mark.parametrize("levels_per_step", [1, 3])
def test_deep_tree_matches_brute_force(levels_per_step):
    """Trees deeper than the first 8-level jump (leaves of ~2 points), single and double, capped and not."""
    query = synthetic_embedding("tracks", 3000, 6, 0.3, seed=2)
    # Targets near the sources (a double embedding of the same hits), fewer of them.
    database = F.normalize(query[:2900] + 0.05 * torch.randn(2900, 6, generator=torch.Generator().manual_seed(3)), dim=1)
    for db in (None, database):
        for k_max in (1000, 5):
            expected = radius_graph(query, db, 0.3, k_max, method="brute")
            edges = radius_graph(query, db, 0.3, k_max, leaf_size=2, max_candidates=5000, levels_per_step=levels_per_step)
            assert expected.shape[1] > 3000
            assert torch.equal(edge_keys(edges, 3000), edge_keys(expected, 3000))
            assert torch.all(edges[0, 1:] >= edges[0, :-1]), "edges sorted by query row"


def test_levels_per_step_is_validated_and_scripts():
    with pytest.raises(ValueError, match="levels_per_step"):
        RadiusGraph(levels_per_step=0)
    with pytest.raises(ValueError, match="levels_per_step"):
        radius_graph(torch.zeros(3, 2), None, 0.1, 5, levels_per_step=0)
    points = synthetic_embedding("tracks", 600, 12, 0.12, seed=4)
    module = RadiusGraph(leaf_size=4, levels_per_step=3)
    assert torch.equal(torch.jit.script(module)(points), module(points))


def test_pairs_on_the_radius_are_decided_in_float64_by_every_method():
    """Pairs within a float32 rounding step of r_max: every method decides them like the float64 sum
    of the exact coordinate differences (a float32 sum would depend on the summation order)."""
    generator = torch.Generator().manual_seed(7)
    n, r = 3000, 0.12
    query = F.normalize(torch.randn(n, 12, generator=generator), dim=1)
    step = F.normalize(torch.randn(n, 12, generator=generator), dim=1)
    scale = 1 + (torch.rand(n, 1, generator=generator) - 0.5) * 4e-7
    database = torch.roll(query + r * step * scale, 1, dims=0)  # pair (i, i + 1) lies on the radius
    partner = torch.roll(torch.arange(n), -1)
    difference = query.double() - database[partner].double()
    exact = (difference * difference).sum(1) < r * r
    float32_sum = ((query - database[partner]) ** 2).sum(1) < r * r
    assert 0 < int(exact.sum()) < n and bool((exact != float32_sum).any()), "the case must hold float32-ambiguous pairs"
    expected = {(i, int(partner[i])) for i in torch.nonzero(exact).squeeze(1).tolist()}
    for method in ("tree", "grid", "brute"):
        edges = radius_graph(query, database, r, 1000, method=method)
        near_pairs = {pair for pair in map(tuple, edges.t().tolist()) if pair[1] == int(partner[pair[0]])}
        assert near_pairs == expected, method
