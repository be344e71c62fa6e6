"""Training: truth edges, edge matching, losses, graph sources, short Lightning runs, checkpoints."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from gnn4itk.cli import main
from gnn4itk.metrics import TrackingCuts
from gnn4itk.models import load_acorn_checkpoint
from gnn4itk.training.config import load_config, run_training, tracking_cuts
from gnn4itk.training.data import SampleSpec, prepare_sample
from gnn4itk.training.graph_sources import TruthFakesGraph, build_graph_source
from gnn4itk.training.losses import hinge_loss, weighted_bce
from module_map.synthetic import toy_event
from gnn4itk.training.truth import match_edges, target_particle_ids, truth_edges

FEATURES = ["r", "phi", "z", "eta"]
SCALES = [1000.0, math.pi, 1000.0, 1.0]


@pytest.fixture(scope="module")
def event():
    return toy_event(n_particles=60, seed=4)


def test_truth_edges_join_consecutive_hits_outwards(event):
    edges, pid = truth_edges(event)
    hits = event.hits
    nhits = hits.loc[hits.particle_id > 0].groupby("particle_id").size()
    assert edges.shape[1] == int((nhits - 1).sum())
    assert np.array_equal(hits.particle_id.to_numpy()[edges[0]], pid)
    assert np.array_equal(hits.particle_id.to_numpy()[edges[1]], pid)
    # Toy particles come from the beam line, so outwards along the track means increasing radius.
    assert (hits.r.to_numpy()[edges[1]] > hits.r.to_numpy()[edges[0]]).all()
    # Each spacepoint starts at most one truth edge and ends at most one.
    assert len(np.unique(edges[0])) == edges.shape[1] and len(np.unique(edges[1])) == edges.shape[1]


def test_target_particles_follow_the_cuts(event):
    targets = target_particle_ids(event, TrackingCuts(pt_min=2.0))
    chosen = event.particles.set_index("particle_id").loc[targets]
    assert (chosen.pt >= 2.0).all() and (chosen.nhits >= 3).all()
    assert len(targets) < len(target_particle_ids(event, TrackingCuts(pt_min=0.5)))


def test_match_edges_directed_and_undirected():
    true_edges = torch.tensor([[0, 1, 5], [1, 2, 6]])
    edges = torch.tensor([[1, 2, 0, 6, 3], [2, 1, 1, 5, 4]])
    assert match_edges(edges, true_edges, 10, undirected=False).tolist() == [1, -1, 0, -1, -1]
    assert match_edges(edges, true_edges, 10, undirected=True).tolist() == [1, 1, 0, 2, -1]
    assert match_edges(edges, torch.zeros(2, 0, dtype=torch.long), 10, undirected=True).tolist() == [-1] * 5


def test_hinge_loss_values():
    dist2 = torch.tensor([0.04, 0.0025, 0.25, 0.01])
    truth = torch.tensor([True, False, False, True])
    weights = torch.tensor([1.0, 1.0, 1.0, 0.0])  # the last (true, weight 0) pair is ignored
    # positives: mean(0.04); negatives: mean(max(0, 0.01 - 0.0025), max(0, 0.01 - 0.25)) = 0.00375
    torch.testing.assert_close(hinge_loss(dist2, truth, weights, margin=0.1), torch.tensor(0.04 + 0.00375))


def test_weighted_bce_values():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    truth = torch.tensor([True, False, False, True])
    weights = torch.tensor([1.0, 0.5, -1.0, 0.0])  # a negative weight trains a true edge as fake
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    positive = bce(torch.tensor([2.0]), torch.tensor([1.0]))
    negative = (0.5 * bce(torch.tensor(-1.0), torch.tensor(0.0)) + bce(torch.tensor(0.5), torch.tensor(0.0))) / 2
    torch.testing.assert_close(weighted_bce(logits, truth, weights, "equal"), positive + negative)


def test_weighted_bce_proportional_divides_by_all_edges():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, 0.0])
    truth = torch.tensor([True, False, False, True, False])
    weights = torch.tensor([1.0, 0.5, -1.0, 0.0, 0.1])  # the true edge of weight 0 is left out of the count
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    summed = bce(torch.tensor(2.0), torch.tensor(1.0)) + 0.5 * bce(torch.tensor(-1.0), torch.tensor(0.0))
    summed = summed + bce(torch.tensor(0.5), torch.tensor(0.0)) + 0.1 * bce(torch.tensor(0.0), torch.tensor(0.0))
    torch.testing.assert_close(weighted_bce(logits, truth, weights, "proportional"), summed / 4)
    torch.testing.assert_close(weighted_bce(logits, truth, weights), summed / 4)  # the default
    assert not torch.isclose(weighted_bce(logits, truth, weights, "equal"), summed / 4)


def test_weighted_bce_proportional_calibrates_to_the_weighted_odds():
    # One constant logit fitted to 1 positive and 9 negatives of weight 1: proportional reaches the
    # class frequency (score 0.1), equal reaches 0.5 whatever the class sizes.
    truth = torch.tensor([True] + [False] * 9)
    weights = torch.ones(10)
    for balance, expected in (("proportional", 0.1), ("equal", 0.5)):
        logit = torch.zeros(1, requires_grad=True)
        optimiser = torch.optim.SGD([logit], lr=2.0)
        for _ in range(300):
            optimiser.zero_grad()
            weighted_bce(logit.expand(10), truth, weights, balance).backward()
            optimiser.step()
        assert abs(torch.sigmoid(logit).item() - expected) < 1e-3, balance


def test_weighted_bce_rejects_an_unknown_balance():
    with pytest.raises(ValueError, match="loss balance 'mean'"):
        weighted_bce(torch.zeros(2), torch.tensor([True, False]), torch.ones(2), "mean")


def test_truth_fakes_graph_and_labels(event):
    spec = SampleSpec(FEATURES, SCALES, graph_source=TruthFakesGraph(fake_ratio=3, seed=1))
    sample = prepare_sample(event, spec)
    true_edges = sample["true_edges"]
    assert sample["x"].shape == (len(event.hits), 4)
    assert (match_edges(true_edges, sample["edge_index"], len(event.hits), False) >= 0).all()  # every truth edge is in
    assert int(sample["y"].sum()) == true_edges.shape[1]
    assert sample["edge_index"].shape[1] > 2.5 * true_edges.shape[1]  # fakes (duplicates removed)
    assert sample["edge_attr"].shape == (sample["edge_index"].shape[1], 6)
    # weights: target true edges 1, non-target true edges 0, fakes fake_weight (1)
    target_edges = int(sample["true_target"].sum())
    assert int((sample["weights"][sample["y"]] == 1).sum()) == target_edges
    assert (sample["weights"][~sample["y"]] == 1).all()


def test_other_true_weight_trains_the_true_edges_of_non_target_particles(event):
    spec = SampleSpec(FEATURES, SCALES, graph_source=TruthFakesGraph(fake_ratio=3, seed=1), fake_weight=0.1,
                      other_true_weight=0.5)
    sample = prepare_sample(event, spec)
    weights, y = sample["weights"], sample["y"]
    targets = int(sample["true_target"].sum())
    assert 0 < targets < int(y.sum())  # the toy event has both kinds of true edges
    assert int((weights[y] == 1).sum()) == targets
    assert int((weights[y] == 0.5).sum()) == int(y.sum()) - targets
    assert torch.allclose(weights[~y], torch.tensor(0.1))
    # the training configuration's key reaches the sample
    from gnn4itk.training.config import build_datamodule

    config = load_config("configs/train_gnn_small.yaml")
    config["training"]["other_true_weight"] = 0.25
    assert build_datamodule("gnn", config).train_set.spec.other_true_weight == 0.25


def test_graph_source_specs():
    source = build_graph_source({"kind": "callable", "target": "gnn4itk.training.graph_sources:TruthFakesGraph"})
    assert source.function is TruthFakesGraph
    with pytest.raises(ValueError, match="unknown graph source kind 'knn'"):
        build_graph_source({"kind": "knn"})
    with pytest.raises(ValueError, match="package.module:function"):
        build_graph_source({"kind": "callable", "target": "no_colon"})


def test_tracking_cuts_from_config():
    assert tracking_cuts({"pt_min": 0.5, "excluded_abs_pdg": [11, 13]}).excluded_abs_pdg == (11, 13)
    with pytest.raises(ValueError, match="pt_max"):
        tracking_cuts({"pt_max": 3})


def small_config(stage):
    toy = {"train": {"toy": {"count": 3, "n_particles": 40, "seed": 0}}, "val": {"toy": {"count": 1, "n_particles": 40, "seed": 99}}}
    training = {"lr": 0.005, "accelerator": "cpu", "progress_bar": False, "seed": 0}
    if stage == "gnn":
        model = {"model": "ChainedInteractionGNN2", "node_features": FEATURES, "node_scales": SCALES,
                 "edge_features": ["dr", "dphi", "dz", "deta", "phislope", "rphislope"], "hidden": 16,
                 "n_graph_iters": 2, "n_node_net_layers": 2, "n_edge_net_layers": 2, "n_edge_decoder_layers": 2,
                 "batchnorm": True, "output_activation": "ReLU", "node_net_recurrent": False, "edge_net_recurrent": False,
                 "checkpointing": True}
    elif stage == "filter":
        model = {"node_features": FEATURES, "node_scales": SCALES, "hidden": 64, "nb_layer": 2, "layernorm": True}
        training["lr"] = 0.02
    else:
        model = {"node_features": FEATURES, "node_scales": SCALES, "emb_hidden": 32, "nb_layer": 2, "emb_dim": 6}
        training.update(r_train=0.1, margin=0.1, knn=20, randomisation=2)
    return {"stage": stage, "model": model, "data": toy, "graph_source": {"kind": "truth_fakes", "fake_ratio": 3}, "training": training}


def epoch_losses(log_dir):
    metrics = pd.read_csv(f"{log_dir}/metrics.csv")
    return metrics["train_loss"].dropna().to_numpy(), metrics.dropna(subset=["val_eff"]).iloc[-1]


@pytest.mark.parametrize("stage", ["gnn", "filter", "metric_learning", "double_metric_learning"])
def test_short_training_lowers_the_loss(tmp_path, stage):
    result = run_training(stage, small_config(stage), output_dir=tmp_path, max_epochs=6)
    losses, last_validation = epoch_losses(result["log_dir"])
    assert len(losses) == 6
    assert losses[-1] < 0.85 * losses[0], losses
    assert 0.0 <= last_validation["val_eff"] <= 1.0 and 0.0 <= last_validation["val_pur"] <= 1.0

    # The Lightning checkpoints and the bare model file keep acorn's layout and reload as the model.
    module_state = torch.load(result["last_checkpoint"], weights_only=True)
    assert not any(k.startswith("model.") for k in module_state["state_dict"])
    assert module_state["hyper_parameters"]["lr"] == small_config(stage)["training"]["lr"]
    bare = load_acorn_checkpoint(result["checkpoint"])
    lightning = load_acorn_checkpoint(result["last_checkpoint"])
    for name, tensor in bare.state_dict().items():
        assert torch.equal(tensor, lightning.state_dict()[name])


def test_train_command_reports_bad_configs(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("stage: filter\nmodel: {node_features: [r], hidden: 8, nb_layer: 1}\nextra: 1\n")
    assert main(["train", "filter", "--config", str(config)]) == 2
    assert "unknown config sections ['extra']" in capsys.readouterr().err
    config.write_text("stage: filter\nmodel: {node_features: [r], hidden: 8, nb_layer: 1}\n")
    assert main(["train", "gnn", "--config", str(config)]) == 2
    assert "not 'gnn'" in capsys.readouterr().err
    assert main(["train", "filter", "--config", str(tmp_path / "none.yaml")]) == 2


def test_loss_balance_reaches_the_loss_and_the_checkpoint(tmp_path, capsys, monkeypatch):
    import yaml

    from gnn4itk.training import modules

    seen = []
    original = modules.weighted_bce
    monkeypatch.setattr(modules, "weighted_bce", lambda *args: seen.append(args[3]) or original(*args))
    config = small_config("gnn")
    config["training"]["loss_balance"] = "equal"
    result = run_training("gnn", config, output_dir=tmp_path / "a", max_epochs=1)
    assert seen and set(seen) == {"equal"}
    assert torch.load(result["last_checkpoint"], weights_only=True)["hyper_parameters"]["loss_balance"] == "equal"

    config["training"]["loss_balance"] = "balanced"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "gnn", "--config", str(path), "--output", str(tmp_path / "b")]) == 2
    assert "training.loss_balance 'balanced'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_shipped_configs_are_valid():
    from pathlib import Path

    from gnn4itk.models import build_model

    configs = sorted((Path(__file__).parents[1] / "configs").glob("train_*.yaml"))
    assert len(configs) >= 8
    for path in configs:
        config = load_config(path)
        assert path.name.startswith(f"train_{config['stage']}_")
        build_model(config["model"])


def test_train_command_runs_a_config(tmp_path, capsys):
    import json

    import yaml

    config = small_config("filter")
    config["training"]["output_dir"] = str(tmp_path / "unused")
    path = tmp_path / "filter.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "filter", "--config", str(path), "--output", str(tmp_path / "out"), "--max-epochs", "1"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{\n") :])
    assert report["checkpoint"] == str(tmp_path / "out" / "filter.ckpt")
    assert (tmp_path / "out" / "filter.ckpt").exists() and not (tmp_path / "unused").exists()
    assert type(load_acorn_checkpoint(tmp_path / "out" / "filter.ckpt")).__name__ == "Filter"


def test_init_from_starts_at_the_given_weights(tmp_path, capsys):
    """--init-from loads a checkpoint's weights before training; a mismatched architecture is a clear error."""
    import yaml

    first = run_training("filter", small_config("filter"), output_dir=tmp_path / "a", max_epochs=1)
    start = load_acorn_checkpoint(first["checkpoint"])
    config = small_config("filter")
    config["training"]["lr"] = 0.0  # weights must stay where they started
    second = run_training("filter", config, output_dir=tmp_path / "b", max_epochs=1, init_from=first["checkpoint"])
    after = load_acorn_checkpoint(second["checkpoint"])
    for name, tensor in start.state_dict().items():
        assert torch.equal(tensor, after.state_dict()[name]), name

    other = small_config("filter")
    other["model"]["hidden"] = 32
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    assert main(["train", "filter", "--config", str(path), "--output", str(tmp_path / "c"),
                 "--init-from", first["checkpoint"]]) == 2
    assert "does not match the configured model" in capsys.readouterr().err
    assert main(["train", "filter", "--config", str(path), "--init-from", str(tmp_path / "none.ckpt")]) == 2
    assert "no checkpoint file" in capsys.readouterr().err


def test_filter_trains_on_a_random_edge_subset_when_asked(event):
    from gnn4itk.training.modules import EdgeClassifierModule

    config = small_config("filter")
    spec = SampleSpec(FEATURES, SCALES, graph_source=TruthFakesGraph(fake_ratio=3))
    sample = prepare_sample(event, spec)
    total = sample["edge_index"].shape[1]
    module = EdgeClassifierModule({"model": "Filter", **config["model"]}, {**config["training"], "edges_per_step": 50})
    subset = module._edge_subset(sample)
    assert subset["edge_index"].shape == (2, 50) and subset["y"].shape == (50,) and subset["weights"].shape == (50,)
    # the subset is made of the sample's own edges, labels and weights, row for row
    keys = sample["edge_index"][0] * sample["num_nodes"] + sample["edge_index"][1]
    position = {int(k): i for i, k in enumerate(keys)}
    rows = torch.tensor([position[int(k)] for k in subset["edge_index"][0] * sample["num_nodes"] + subset["edge_index"][1]])
    assert len(set(rows.tolist())) == 50
    assert torch.equal(subset["y"], sample["y"][rows]) and torch.equal(subset["weights"], sample["weights"][rows])
    assert torch.equal(subset["edge_attr"], sample["edge_attr"][rows])
    # without the setting (or for graphs below it) the whole graph trains
    whole = EdgeClassifierModule({"model": "Filter", **config["model"]}, config["training"])
    assert whole._edge_subset(sample) is sample
    assert total > 50


def test_double_embedding_training_can_start_from_a_single_embedding(tmp_path, event):
    single = run_training("metric_learning", small_config("metric_learning"), output_dir=tmp_path / "single", max_epochs=1)
    config = small_config("double_metric_learning")
    config["training"]["lr"] = 0.0  # the double embedding must stay where it started
    double = run_training("double_metric_learning", config, output_dir=tmp_path / "double", max_epochs=1,
                          init_from=single["checkpoint"])
    start = load_acorn_checkpoint(single["checkpoint"])
    after = load_acorn_checkpoint(double["checkpoint"])
    x = torch.from_numpy(prepare_sample(event, SampleSpec(FEATURES, SCALES))["x"].numpy())
    src, tgt = after(x)
    torch.testing.assert_close(src, start(x), rtol=0, atol=0)
    torch.testing.assert_close(tgt, start(x), rtol=0, atol=0)
