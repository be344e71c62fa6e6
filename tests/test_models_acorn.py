"""acorn checkpoint compatibility.

acorn is not installable here, so this file re-creates, literally and minimally, acorn's ``make_mlp``
and the forward passes of its InteractionGNN2 (chained and recurrent), Filter and MetricLearning
(layouts read from GNN4ITkTeam/CommonFramework). Random acorn-layout weights are saved as a Lightning
checkpoint, loaded with :func:`gnn4itk.models.load_acorn_checkpoint`, and the outputs are compared.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gnn4itk.models import ChainedInteractionGNN2, RecurrentInteractionGNN2, load_acorn_checkpoint, save_acorn_checkpoint

CTD_FEATURES = ["r", "phi", "z", "eta"] + [f"cluster_{c}_{i}" for i in (1, 2) for c in ("r", "phi", "z", "eta")]
EDGE_FEATURES = ["dr", "dphi", "dz", "deta", "phislope", "rphislope"]


def acorn_make_mlp(input_size, sizes, hidden_activation="ReLU", output_activation=None, layer_norm=False,
                   output_layer_norm=False, batch_norm=False, output_batch_norm=False, track_running_stats=False,
                   bn_affine=True, bn_eps=6e-05):
    hidden_activation = getattr(nn, hidden_activation)
    if output_activation is not None:
        output_activation = getattr(nn, output_activation)
    layers = []
    n_layers = len(sizes)
    sizes = [input_size] + sizes
    for i in range(n_layers - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if layer_norm:
            layers.append(nn.LayerNorm(sizes[i + 1], elementwise_affine=False))
        if batch_norm:
            layers.append(nn.BatchNorm1d(sizes[i + 1], eps=bn_eps, track_running_stats=track_running_stats, affine=bn_affine))
        layers.append(hidden_activation())
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    if output_activation is not None:
        if output_layer_norm:
            layers.append(nn.LayerNorm(sizes[-1], elementwise_affine=False))
        if output_batch_norm:
            layers.append(nn.BatchNorm1d(sizes[-1], eps=bn_eps, track_running_stats=track_running_stats, affine=bn_affine))
        layers.append(output_activation())
    return nn.Sequential(*layers)


class AcornInteractionGNN2(nn.Module):
    """acorn's InteractionGNN2 network and forward, without Lightning and torch_scatter."""

    def __init__(self, hparams):
        super().__init__()
        self.hparams = hparams
        h = hparams["hidden"]
        if hparams["concat"]:
            in_node_net = h * 4 if hparams["in_out_diff_agg"] else h * 3
            in_edge_net = h * 6
        else:
            in_node_net = h * 3 if hparams["in_out_diff_agg"] else h * 2
            in_edge_net = h * 3
        common = dict(output_activation=hparams["output_activation"], hidden_activation=hparams["hidden_activation"],
                      layer_norm=hparams["layernorm"], batch_norm=hparams["batchnorm"],
                      output_batch_norm=hparams["output_batch_norm"], track_running_stats=hparams["track_running_stats"])
        self.node_encoder = acorn_make_mlp(len(hparams["node_features"]), [h] * hparams["n_node_net_layers"], **common)
        self.edge_encoder = acorn_make_mlp(len(hparams["edge_features"]), [h] * hparams["n_edge_net_layers"], **common)

        def edge_net():
            return acorn_make_mlp(in_edge_net, [h] * hparams["n_edge_net_layers"], **common)

        def node_net():
            return acorn_make_mlp(in_node_net, [h] * hparams["n_node_net_layers"], **common)

        n = hparams["n_graph_iters"]
        self.edge_network = edge_net() if hparams["edge_net_recurrent"] else nn.ModuleList([edge_net() for _ in range(n)])
        self.node_network = node_net() if hparams["node_net_recurrent"] else nn.ModuleList([node_net() for _ in range(n)])
        self.edge_decoder = acorn_make_mlp(h, [h] * hparams["n_edge_decoder_layers"], **common)
        self.edge_output_transform = acorn_make_mlp(
            h, [h, 1], output_activation=hparams["edge_output_transform_final_activation"],
            hidden_activation=hparams["hidden_activation"], layer_norm=hparams["layernorm"],
            batch_norm=hparams["batchnorm"], output_batch_norm=hparams["edge_output_transform_final_batch_norm"],
            track_running_stats=hparams["track_running_stats"])
        self.dropout = nn.Dropout(p=0.1)

    def forward(self, x, edge_index, edge_attr):
        src, dst = edge_index
        x = self.node_encoder(x)
        e = self.edge_encoder(edge_attr)
        input_x, input_e = x, e
        outputs = []
        for i in range(self.hparams["n_graph_iters"]):
            if self.hparams["concat"]:
                x = torch.cat([x, input_x], dim=-1)
                e = torch.cat([e, input_e], dim=-1)
            x, e, out = self.message_step(x, e, src, dst, i)
            outputs.append(out)
        return outputs[-1].squeeze(-1)

    def message_step(self, x, e, src, dst, i):
        edge_inputs = torch.cat([e, x[src], x[dst]], dim=-1)
        e_updated = self.edge_network(edge_inputs) if self.hparams["edge_net_recurrent"] else self.edge_network[i](edge_inputs)
        # torch_scatter.scatter_add(e, index, dim=0, dim_size=N), written with Tensor.scatter_add.
        size = (x.shape[0], e_updated.shape[1])
        from_src = torch.zeros(size).scatter_add(0, dst.unsqueeze(1).expand_as(e_updated), e_updated)
        from_dst = torch.zeros(size).scatter_add(0, src.unsqueeze(1).expand_as(e_updated), e_updated)
        if self.hparams["in_out_diff_agg"]:
            node_inputs = torch.cat([from_src, from_dst, x], dim=-1)
        else:
            node_inputs = torch.cat([from_src + from_dst, x], dim=-1)
        x_updated = self.node_network(node_inputs) if self.hparams["node_net_recurrent"] else self.node_network[i](node_inputs)
        return x_updated, e_updated, self.edge_output_transform(self.edge_decoder(e_updated))


def ctd_hparams(**changes):
    hparams = dict(
        model="InteractionGNN2", node_features=CTD_FEATURES, node_scales=[1000.0, 3.14159265359, 1000.0, 1.0] * 3,
        edge_features=EDGE_FEATURES, hidden=128, n_graph_iters=8, n_node_net_layers=3, n_edge_net_layers=3,
        n_edge_decoder_layers=3, layernorm=False, batchnorm=True, output_batch_norm=False,
        edge_output_transform_final_batch_norm=False, track_running_stats=False, hidden_activation="ReLU",
        output_activation="ReLU", edge_output_transform_final_activation=None, concat=True,
        node_net_recurrent=False, edge_net_recurrent=False, in_out_diff_agg=True, checkpointing=True,
        lr=0.0005, weighting=[{"weight": 0.1, "conditions": {"y": False}}],
    )
    hparams.update(changes)
    return hparams


def randomise(module):
    """Random weights everywhere, BatchNorm affine parameters included (default init is 1 / 0)."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return module


def lightning_checkpoint(path, hparams, state_dict):
    """What a Lightning ModelCheckpoint of an acorn module holds (hyper_parameters as AttributeDict)."""
    from lightning.fabric.utilities.data import AttributeDict

    torch.save({
        "epoch": 3, "global_step": 300, "pytorch-lightning_version": "2.1.0",
        "state_dict": state_dict, "hyper_parameters": AttributeDict(hparams), "hparams_name": "hparams",
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]}],
        "lr_schedulers": [{"step_size": 15, "gamma": 0.9}], "loops": {}, "callbacks": {},
    }, path)


def event_graph(n=300, e=1200, features=12):
    g = torch.Generator().manual_seed(11)
    return torch.randn(n, features, generator=g), torch.randint(0, n, (2, e), generator=g), torch.randn(e, 6, generator=g)


@pytest.mark.parametrize(
    "changes,expected_class",
    [
        ({}, ChainedInteractionGNN2),  # the CTD2023 configuration
        ({"node_net_recurrent": True, "edge_net_recurrent": True, "hidden": 32, "n_graph_iters": 4}, RecurrentInteractionGNN2),
        ({"concat": False, "in_out_diff_agg": False, "hidden": 32, "layernorm": True, "batchnorm": False,
          "node_net_recurrent": True, "edge_net_recurrent": True, "output_activation": "Tanh"}, RecurrentInteractionGNN2),
        ({"hidden": 32, "edge_net_recurrent": True, "output_batch_norm": True, "track_running_stats": True}, None),
    ],
)
def test_acorn_interaction_gnn_checkpoint(tmp_path, changes, expected_class):
    hparams = ctd_hparams(**changes)
    acorn = randomise(AcornInteractionGNN2(hparams)).eval()
    path = tmp_path / "gnn.ckpt"
    lightning_checkpoint(path, hparams, acorn.state_dict())
    model = load_acorn_checkpoint(path)
    if expected_class is not None:
        assert type(model) is expected_class
    assert set(model.state_dict()) == set(acorn.state_dict())
    x, edge_index, edge_attr = event_graph()
    with torch.no_grad():
        expected = acorn(x, edge_index, edge_attr)
        # the optimized order (split first edge layer) rounds differently; batch norm over a random
        # model's small variances magnifies that to ~1e-4 at most
        torch.testing.assert_close(model(x, edge_index, edge_attr), expected, rtol=1e-3, atol=1e-3)
        model.optimized = False  # acorn's order of operations: equal to rounding
        torch.testing.assert_close(model(x, edge_index, edge_attr), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.jit.script(model)(x, edge_index, edge_attr), expected, rtol=1e-5, atol=1e-5)

    # Round trip through gnn4itk's own checkpoint writer: plain hparams, same keys, same outputs.
    again = load_acorn_checkpoint(save_acorn_checkpoint(model, tmp_path / "again.ckpt"))
    assert type(again) is type(model)
    again.optimized = False
    with torch.no_grad():
        torch.testing.assert_close(again(x, edge_index, edge_attr), expected, rtol=1e-5, atol=1e-5)
    saved = torch.load(tmp_path / "again.ckpt", weights_only=True)
    assert set(saved["state_dict"]) == set(acorn.state_dict())


def test_acorn_filter_and_metric_learning_checkpoints(tmp_path):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 12, generator=g)
    edge_index = torch.randint(0, 200, (2, 500), generator=g)

    filter_hp = dict(model="Filter", node_features=CTD_FEATURES, hidden=64, nb_layer=4, layernorm=True,
                     batchnorm=False, hidden_activation="SiLU", track_running_stats=False)
    net = randomise(acorn_make_mlp(24, [64 // 2**i for i in range(4)] + [1], hidden_activation="SiLU", layer_norm=True))
    lightning_checkpoint(tmp_path / "filter.ckpt", filter_hp, {f"net.{k}": v for k, v in net.state_dict().items()})
    model = load_acorn_checkpoint(tmp_path / "filter.ckpt")
    expected = net(torch.cat([x[edge_index[0]], x[edge_index[1]]], dim=-1)).squeeze(-1)
    torch.testing.assert_close(model(x, edge_index), expected)

    # acorn's graph-construction make_mlp: LayerNorm on every hidden layer, and after the output when
    # there is an output activation (double metric learning's trunk).
    ml_hp = dict(model="MetricLearning", node_features=CTD_FEATURES, emb_hidden=64, nb_layer=3, emb_dim=12, activation="Tanh")
    network = randomise(acorn_make_mlp(12, [64] * 3 + [12], hidden_activation="Tanh", layer_norm=True))
    lightning_checkpoint(tmp_path / "ml.ckpt", ml_hp, {f"network.{k}": v for k, v in network.state_dict().items()})
    torch.testing.assert_close(load_acorn_checkpoint(tmp_path / "ml.ckpt")(x), F.normalize(network(x)))

    dml_hp = {**ml_hp, "model": "DoubleMetricLearning"}
    trunk = randomise(acorn_make_mlp(12, [64] * 3, hidden_activation="Tanh", output_activation="Tanh", layer_norm=True, output_layer_norm=True))
    heads = [randomise(acorn_make_mlp(64, [12])) for _ in range(2)]
    state = {f"network.{k}": v for k, v in trunk.state_dict().items()}
    for name, head in zip(("src_decoder", "tgt_decoder"), heads):
        state.update({f"{name}.{k}": v for k, v in head.state_dict().items()})
    lightning_checkpoint(tmp_path / "dml.ckpt", dml_hp, state)
    src, tgt = load_acorn_checkpoint(tmp_path / "dml.ckpt")(x)
    torch.testing.assert_close(src, F.normalize(heads[0](trunk(x))))
    torch.testing.assert_close(tgt, F.normalize(heads[1](trunk(x))))


def test_checkpoint_errors(tmp_path):
    hparams = ctd_hparams(hidden=8, n_graph_iters=2)
    acorn = AcornInteractionGNN2(hparams)
    state = acorn.state_dict()
    lightning_checkpoint(tmp_path / "missing.ckpt", hparams, {k: v for k, v in state.items() if not k.startswith("edge_decoder")})
    with pytest.raises(ValueError, match="missing keys"):
        load_acorn_checkpoint(tmp_path / "missing.ckpt")
    lightning_checkpoint(tmp_path / "extra.ckpt", hparams, {**state, "spare.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys"):
        load_acorn_checkpoint(tmp_path / "extra.ckpt")
    lightning_checkpoint(tmp_path / "unknown.ckpt", {**hparams, "model": "GravNet"}, state)
    with pytest.raises(ValueError, match="unsupported model 'GravNet'"):
        load_acorn_checkpoint(tmp_path / "unknown.ckpt")
    torch.save({"hyper_parameters": {"model": "Filter", "hook": torch.nn.Identity()}, "state_dict": {}}, tmp_path / "code.ckpt")
    with pytest.raises(ValueError, match="weights_only"):
        load_acorn_checkpoint(tmp_path / "code.ckpt")
    torch.save({"weights": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="hyper_parameters"):
        load_acorn_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(FileNotFoundError):
        load_acorn_checkpoint(tmp_path / "absent.ckpt")
