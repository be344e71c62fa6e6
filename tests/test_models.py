"""Learned stages: TorchScript equality, the radius graph against brute force, filter chunks."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from gnn4itk.models import (
    DoubleMetricLearning,
    Filter,
    InteractionGNN2,
    MetricLearning,
    RadiusGraph,
    double_from_single,
    radius_graph,
)

FEATURES = ["r", "phi", "z", "eta"]
EDGE_FEATURES = ["dr", "dphi", "dz", "deta", "phislope", "rphislope"]


def gnn_hparams(**changes):
    hparams = dict(
        node_features=FEATURES,
        edge_features=EDGE_FEATURES,
        hidden=16,
        n_graph_iters=3,
        n_node_net_layers=2,
        n_edge_net_layers=2,
        n_edge_decoder_layers=2,
        batchnorm=True,
        output_activation="ReLU",
    )
    hparams.update(changes)
    return hparams


def random_graph(n=40, e=150, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, n, (2, e), generator=g), torch.randn(e, 6, generator=g)


@pytest.mark.parametrize("node_rec,edge_rec", list(itertools.product([True, False], repeat=2)))
@pytest.mark.parametrize("with_edge_features", [True, False])
def test_interaction_gnn_scripted_equals_eager(node_rec, edge_rec, with_edge_features):
    hp = gnn_hparams(
        node_net_recurrent=node_rec,
        edge_net_recurrent=edge_rec,
        edge_features=EDGE_FEATURES if with_edge_features else [],
        concat=node_rec,  # vary the remaining switches across the grid as well
        in_out_diff_agg=edge_rec,
    )
    model = InteractionGNN2(hp).eval()
    scripted = torch.jit.script(model)
    x, edge_index, edge_attr = random_graph()
    attr = edge_attr if with_edge_features else None
    expected = model(x, edge_index, attr)
    assert expected.shape == (edge_index.shape[1],)
    torch.testing.assert_close(scripted(x, edge_index, attr), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("node_rec,edge_rec", list(itertools.product([True, False], repeat=2)))
@pytest.mark.parametrize("with_edge_features", [True, False])
@pytest.mark.parametrize("norm", ["batchnorm", "layernorm", "none"])
@pytest.mark.parametrize("n,e", [(40, 150), (200, 60)])  # more edges than nodes; isolated nodes
def test_interaction_gnn_optimized_equals_plain(node_rec, edge_rec, with_edge_features, norm, n, e):
    hp = gnn_hparams(
        node_net_recurrent=node_rec,
        edge_net_recurrent=edge_rec,
        edge_features=EDGE_FEATURES if with_edge_features else [],
        batchnorm=norm == "batchnorm",
        layernorm=norm == "layernorm",
        concat=node_rec,
        in_out_diff_agg=edge_rec,
    )
    model = InteractionGNN2(hp).eval()
    # batch statistics over nodes make isolated nodes part of the function; per-row norms do not
    assert model.isolated_nodes_matter == (norm == "batchnorm")
    x, edge_index, edge_attr = random_graph(n, e, seed=3)
    attr = edge_attr if with_edge_features else None
    model.optimized = False
    plain = model(x, edge_index, attr)
    model.optimized = True
    optimized = model(x, edge_index, attr)
    torch.testing.assert_close(optimized, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.jit.script(model)(x, edge_index, attr), plain, rtol=1e-5, atol=1e-5)
    # the switch matters: with batch norm, dropping the isolated nodes would change the scores
    if norm == "batchnorm" and n > e:
        from gnn4itk.models.interaction_gnn import drop_isolated_nodes

        kept_x, src, dst = drop_isolated_nodes(x, edge_index[0], edge_index[1])
        assert kept_x.shape[0] < n
        changed = model(kept_x, torch.stack([src, dst]), attr)
        assert not torch.allclose(changed, plain, rtol=1e-3, atol=1e-3)


def test_drop_isolated_nodes_renumbers_in_order():
    from gnn4itk.models.interaction_gnn import drop_isolated_nodes

    x = torch.arange(6, dtype=torch.float32).unsqueeze(1)
    src, dst = torch.tensor([4, 1, 4]), torch.tensor([1, 5, 5])
    kept, new_src, new_dst = drop_isolated_nodes(x, src, dst)
    assert kept.squeeze(1).tolist() == [1.0, 4.0, 5.0]
    assert new_src.tolist() == [1, 0, 1] and new_dst.tolist() == [0, 2, 2]
    same = drop_isolated_nodes(x[:2], torch.tensor([0]), torch.tensor([1]))
    assert same[0] is x[:2] or torch.equal(same[0], x[:2])
    empty = drop_isolated_nodes(x, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert empty[0].shape == (0, 1)


def test_mlp_forward_gathered_equals_concatenated_input():
    from gnn4itk.models import make_mlp

    g = torch.Generator().manual_seed(1)
    mlp = make_mlp(3 * 5, [8, 8, 4], batch_norm=True).eval()
    rows, nodes = torch.randn(30, 5, generator=g), torch.randn(12, 5, generator=g)
    src, dst = torch.randint(0, 12, (30,), generator=g), torch.randint(0, 12, (30,), generator=g)
    expected = mlp(torch.cat([rows, nodes[src], nodes[dst]], dim=-1))
    torch.testing.assert_close(mlp.forward_gathered(rows, nodes, src, dst), expected, rtol=1e-5, atol=1e-5)
    no_rows = make_mlp(2 * 5, [8, 4]).eval()
    expected = no_rows(torch.cat([nodes[src], nodes[dst]], dim=-1))
    torch.testing.assert_close(no_rows.forward_gathered(None, nodes, src, dst), expected, rtol=1e-5, atol=1e-5)


def test_interaction_gnn_sums_messages_in_float32():
    """Under float16 autocast the messages are float16; they are summed into float32 tensors (float16
    atomics on the GPU round at every addition, in an order that changes between runs) and rounded once."""
    from torch.overrides import TorchFunctionMode

    class SumDtypes(TorchFunctionMode):
        """Records the dtype of every tensor that index_add_ sums into."""

        def __init__(self):
            super().__init__()
            self.dtypes = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.Tensor.index_add_:
                self.dtypes.append(args[0].dtype)
            return func(*args, **(kwargs or {}))

    model = InteractionGNN2(gnn_hparams(hidden=8)).eval()
    n, e = 50, 400
    g = torch.Generator().manual_seed(1)
    src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
    messages = (torch.rand(e, 8, generator=g) * 10).half()
    with SumDtypes() as mode:
        inputs = model._node_inputs(torch.zeros(n, 8, dtype=torch.float16), messages, src, dst)
    assert mode.dtypes == [torch.float32, torch.float32] and inputs.dtype == torch.float16
    exact = torch.zeros(n, 8, dtype=torch.float64).index_add_(0, dst, messages.double())
    assert torch.equal(inputs[:, :8], exact.float().half())  # the float32 sum, rounded once
    # float32 messages: the plain sums, as before
    as_float = model._node_inputs(torch.zeros(n, 8), messages.float(), src, dst)
    assert torch.equal(as_float[:, :8], torch.zeros(n, 8).index_add_(0, dst, messages.float()))


@pytest.mark.parametrize("recurrent", [True, False])
def test_interaction_gnn_checkpointed_forward_equals_forward(recurrent):
    hp = gnn_hparams(node_net_recurrent=recurrent, edge_net_recurrent=not recurrent)
    model = InteractionGNN2(hp).train()
    x, edge_index, edge_attr = random_graph()
    plain = model(x, edge_index, edge_attr)
    plain.square().sum().backward()
    # The last node network does not reach the output (as in acorn), so its gradient stays None.
    plain_grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    checkpointed = model.forward_checkpointed(x, edge_index, edge_attr)
    checkpointed.square().sum().backward()
    torch.testing.assert_close(checkpointed, plain)
    for expected, p in zip(plain_grads, model.parameters()):
        if expected is None:
            assert p.grad is None or not p.grad.any()
        else:
            torch.testing.assert_close(p.grad, expected)
    torch.jit.script(model.eval())  # the checkpointed path stays out of TorchScript


def test_interaction_gnn_layout_per_iteration():
    chained = InteractionGNN2(gnn_hparams(node_net_recurrent=False, edge_net_recurrent=False)).state_dict()
    shared = InteractionGNN2(gnn_hparams()).state_dict()
    assert "node_network.2.0.weight" in chained and "edge_network.0.3.weight" in chained
    assert "node_network.0.weight" in shared and "node_network.2.0.weight" not in shared
    # Linear, BatchNorm, ReLU per hidden layer: the second Linear sits at index 3, as in acorn.
    assert "node_encoder.3.weight" in shared and "node_encoder.1.weight" in shared
    assert shared["edge_output_transform.3.weight"].shape == (1, 16)


def test_interaction_gnn_requires_edge_features():
    model = InteractionGNN2(gnn_hparams())
    x, edge_index, _ = random_graph()
    with pytest.raises(ValueError, match="edge_attr"):
        model(x, edge_index, None)


def test_interaction_gnn_names_missing_hparams():
    with pytest.raises(ValueError, match="n_graph_iters"):
        InteractionGNN2({"node_features": FEATURES, "hidden": 8})


def test_metric_learning_scripted_and_normalised():
    hp = dict(node_features=FEATURES * 3, emb_hidden=32, nb_layer=3, emb_dim=12, activation="Tanh")
    x = torch.randn(64, 12)
    single = MetricLearning(hp).eval()
    out = single(x)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(64))
    torch.testing.assert_close(torch.jit.script(single)(x), out, rtol=0, atol=0)
    double = DoubleMetricLearning(hp).eval()
    src, tgt = double(x)
    scripted_src, scripted_tgt = torch.jit.script(double)(x)
    torch.testing.assert_close(scripted_src, src, rtol=0, atol=0)
    torch.testing.assert_close(scripted_tgt, tgt, rtol=0, atol=0)
    assert not torch.allclose(src, tgt)
    assert set(double.state_dict()) >= {"network.0.weight", "src_decoder.0.weight", "tgt_decoder.0.weight"}


def test_double_embedding_from_a_single_one_reproduces_it_on_both_heads():
    hp = dict(node_features=FEATURES * 3, emb_hidden=32, nb_layer=3, emb_dim=12, activation="Tanh")
    x = torch.randn(64, 12)
    single = MetricLearning(hp).eval()
    double = double_from_single(single)
    src, tgt = double(x)
    torch.testing.assert_close(src, single(x), rtol=0, atol=0)
    torch.testing.assert_close(tgt, single(x), rtol=0, atol=0)
    assert double.hparams["model"] == "DoubleMetricLearning"
    # a copy, not shared parameters: training the double form leaves the single one alone
    with torch.no_grad():
        double.src_decoder[0].weight.add_(1.0)
    torch.testing.assert_close(double(x)[1], single(x), rtol=0, atol=0)
    with pytest.raises(TypeError, match="MetricLearning"):
        double_from_single(double)
    with pytest.raises(ValueError, match="batch norm"):
        double_from_single(MetricLearning({**hp, "batchnorm": True}))


def test_filter_scripted_chunks_and_cut():
    hp = dict(node_features=FEATURES, hidden=32, nb_layer=3, layernorm=True, hidden_activation="SiLU", filter_batches=4, filter_cut=0.5)
    model = Filter(hp).eval()
    x, edge_index, _ = random_graph(e=101)
    logits = model(x, edge_index)
    # Without BatchNorm the chunking cannot change the scores.
    whole = Filter({**hp, "filter_batches": 1}).eval()
    whole.load_state_dict(model.state_dict())
    torch.testing.assert_close(whole(x, edge_index), logits)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x, edge_index), logits, rtol=0, atol=0)
    kept, scores = scripted.select(x, edge_index)
    assert torch.equal(kept, edge_index[:, torch.sigmoid(logits) > 0.5])
    assert (scores > 0.5).all()
    assert [k for k in model.state_dict() if k.endswith("weight")] == ["net.0.weight", "net.3.weight", "net.6.weight", "net.9.weight"]


# --------------------------------------------------------------------------------------------------
# Radius graph


def reference_radius_graph(query, database, r, k):
    """Plain-python definition: pairs i != j closer than r, the k nearest per i."""
    d = ((query[:, None, :].double() - database[None].double()) ** 2).sum(-1)
    edges = []
    for i in range(query.shape[0]):
        near = [j for j in torch.nonzero(d[i] < r * r).flatten().tolist() if j != i]
        near.sort(key=lambda j: d[i, j].item())
        edges += [(i, j) for j in near[:k]]
    return sorted(edges)


def as_pairs(edge_index):
    return sorted(map(tuple, edge_index.t().tolist()))


def sphere(n, dim, seed):
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("method,rotate,grid_dims", [("tree", True, 3), ("tree", False, 3), ("grid", False, 3), ("grid", True, 3), ("grid", False, 1), ("grid", True, 4), ("brute", False, 3)])
@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("n,dim,r,k", [(300, 3, 0.3, 4), (250, 8, 0.6, 1000), (200, 12, 0.8, 7)])
def test_radius_graph_matches_brute_force(method, rotate, grid_dims, double, n, dim, r, k):
    query = sphere(n, dim, seed=n + dim)
    database = sphere(n, dim, seed=n + dim + 1) if double else None
    expected = reference_radius_graph(query, query if database is None else database, r, k)
    assert expected, "the case must contain edges"
    # A small candidate budget forces many query chunks in the grid path.
    edges = radius_graph(query, database, r, k, method=method, rotate=rotate, grid_dims=grid_dims, max_candidates=2000, block_rows=64)
    assert as_pairs(edges) == expected
    # Each query's edges adjacent, as documented.
    runs = torch.unique_consecutive(edges[0])
    assert runs.numel() == torch.unique(edges[0]).numel()


@pytest.mark.parametrize("double", [False, True])
def test_radius_graph_tree_bounded_on_a_collapsed_embedding(double):
    # Every point within r of every other (an untrained embedding): the tree keeps only each query's k_max
    # nearest whenever its pending candidates pass max_candidates, and still equals the definition.
    query = sphere(500, 4, seed=11) * 0.05
    database = sphere(500, 4, seed=12) * 0.05 if double else None
    module = RadiusGraph(0.2, 6, method="tree", leaf_size=8, max_candidates=3000)
    edges = module(query, database)
    assert as_pairs(edges) == reference_radius_graph(query, query if database is None else database, 0.2, 6)
    assert torch.equal(torch.jit.script(module)(query, database), edges)


def test_radius_graph_k_max_keeps_nearest():
    query = sphere(400, 3, seed=3)
    full = radius_graph(query, None, 0.5, 10_000)
    capped = radius_graph(query, None, 0.5, 3)
    assert torch.bincount(capped[0], minlength=400).max() == 3
    assert torch.bincount(full[0], minlength=400).max() > 3
    assert as_pairs(capped) == reference_radius_graph(query, query, 0.5, 3)


def test_radius_graph_module_scripts_and_validates():
    query = sphere(200, 6, seed=5)
    for method in ("tree", "grid", "brute"):
        module = RadiusGraph(0.5, 20, method=method, rotate=True, leaf_size=8)
        scripted = torch.jit.script(module)
        assert torch.equal(scripted(query), module(query))
        assert torch.equal(scripted(query, query.flip(0)), module(query, query.flip(0)))
    with pytest.raises(ValueError, match="method"):
        RadiusGraph(method="kdtree")
    with pytest.raises(ValueError, match="leaf_size"):
        RadiusGraph(leaf_size=0)
    with pytest.raises(ValueError, match="same D"):
        radius_graph(query, query[:, :3], 0.1, 5)


def test_radius_graph_empty_inputs():
    empty = torch.zeros(0, 4)
    assert radius_graph(empty, None, 0.1, 5).shape == (2, 0)
    far = torch.eye(4)  # pairwise distance sqrt(2)
    for method in ("tree", "grid", "brute"):
        assert radius_graph(far, None, 0.5, 5, method=method).shape == (2, 0)
        assert radius_graph(far, empty, 0.5, 5, method=method).shape == (2, 0)


def test_radius_graph_tree_many_leaves_and_coarse_matmul_mode():
    """Leaves of ~4 points (deep trees, padding leaves) and bf16-allowed float32 matmuls: still exact."""
    query, database = sphere(500, 6, seed=11), sphere(470, 6, seed=12)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        for db in (None, database):
            expected = reference_radius_graph(query, query if db is None else db, 0.5, 6)
            edges = radius_graph(query, db, 0.5, 6, method="tree", leaf_size=4, max_candidates=64)
            assert as_pairs(edges) == expected
    finally:
        torch.set_float32_matmul_precision(previous)


def test_gnn_cost_counts_the_matmuls_it_runs():
    from gnn4itk.models.cost import gnn_floor_seconds, gnn_flops, gnn_min_bytes, measured_rates

    hp = gnn_hparams(hidden=8, n_graph_iters=2, node_net_recurrent=False, edge_net_recurrent=False)
    model = InteractionGNN2(hp)
    h, n, e = 8, 10, 30
    # by hand: encoders (2 layers each), per iteration an edge MLP on 6h and a node MLP on 4h inputs
    # (concat, in/out aggregation), then the decoder (2 layers) and the output transform (h -> h -> 1)
    node_enc, edge_enc = n * (4 * h + h * h), e * (6 * h + h * h)
    edge_net, node_net = e * (6 * h * h + h * h), n * (4 * h * h + h * h)
    tail = e * (2 * h * h) + e * (h * h + h)
    model.optimized = False
    assert gnn_flops(model, n, e) == 2 * (node_enc + edge_enc + 2 * (edge_net + node_net) + tail)
    model.optimized = True  # E > N: the first edge layer's node blocks are projected per node
    split_edge_net = e * (2 * h * h + h * h) + 2 * n * 2 * h * h
    assert gnn_flops(model, n, e) == 2 * (node_enc + edge_enc + 2 * (split_edge_net + node_net) + tail)
    optimized_few_edges = gnn_flops(model, e, n)  # E < N: the plain order either way
    model.optimized = False
    assert optimized_few_edges == gnn_flops(model, e, n)
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert gnn_min_bytes(model, n, e, 6) == n * 4 * 4 + e * 6 * 4 + e * 16 + e * 4 + weights
    # without edge features the encoder reads [x_src, x_dst], split as well when E > N
    no_features = InteractionGNN2({**hp, "edge_features": []})
    encoder_split = 2 * n * h * h + e * h * h  # two node projections, then the second layer per edge
    assert gnn_flops(no_features, n, e) == 2 * (node_enc + encoder_split + 2 * (split_edge_net + node_net) + tail)
    rates = measured_rates("cpu", size=64, repeats=2)
    assert rates["matmul_flops_per_s"] > 0 and rates["copy_bytes_per_s"] > 0
    assert gnn_floor_seconds(10**9, 0, rates) == 10**9 / rates["matmul_flops_per_s"]
