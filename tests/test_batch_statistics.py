"""Frozen batch statistics: recorded per event, averaged, written as running statistics; isolated nodes skipped."""

import pytest
import torch

from gnn4itk.models import (
    ChainedInteractionGNN2,
    RecurrentInteractionGNN2,
    chained_from_recurrent,
    load_acorn_checkpoint,
    save_acorn_checkpoint,
)
from gnn4itk.models.batch_statistics import batch_norm_layers, frozen_copy, record_batch_statistics, uses_batch_statistics
from gnn4itk.models.interaction_gnn import InteractionGNN2, drop_isolated_nodes
from tests.test_models import gnn_hparams, random_graph


def chained(**changes):
    torch.manual_seed(7)
    return ChainedInteractionGNN2(gnn_hparams(**changes)).eval()


def run_on(model, graphs):
    """``run_events`` for :func:`record_batch_statistics`: one model call per graph."""
    return lambda: (model(x, edge_index, attr) for x, edge_index, attr in graphs)


def test_frozen_on_one_event_reproduces_that_event():
    model = chained()
    graph = random_graph(300, 200, seed=1)  # more nodes than edges: some isolated
    statistics = record_batch_statistics(model, run_on(model, [graph]))
    assert set(statistics) == set(batch_norm_layers(model))
    frozen = frozen_copy(model, statistics)
    assert uses_batch_statistics(model) and not uses_batch_statistics(frozen)
    assert frozen.hparams["track_running_stats"] is True
    # the running statistics are exactly this event's, so the scores are the batch-statistics scores
    torch.testing.assert_close(frozen(*graph), model(*graph), rtol=1e-4, atol=1e-4)


def test_frozen_statistics_are_averages_over_events():
    model = chained()
    graphs = [random_graph(120, 150, seed=s) for s in (1, 2, 3)]
    statistics = record_batch_statistics(model, run_on(model, graphs))
    frozen = frozen_copy(model, statistics)
    name = "node_encoder.1"
    per_event = []
    for x, _, _ in graphs:  # the first BatchNorm of the node encoder sees the first Linear's output
        rows = model.node_encoder[0](x)
        per_event.append((rows.mean(0), rows.var(0, unbiased=False)))
    layer = dict(frozen.named_modules())[name]
    torch.testing.assert_close(layer.running_mean, torch.stack([m for m, _ in per_event]).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.running_var, torch.stack([v for _, v in per_event]).mean(0), rtol=1e-5, atol=1e-6)
    assert int(layer.num_batches_tracked) == 3
    assert statistics[name].rows == [120, 120, 120]
    assert statistics[name].spread() > 0


def test_frozen_model_skips_isolated_nodes_and_ignores_them():
    model = chained()
    x, edge_index, attr = random_graph(400, 150, seed=4)
    frozen = frozen_copy(model, record_batch_statistics(model, run_on(model, [(x, edge_index, attr)])))
    assert not frozen.isolated_nodes_matter and model.isolated_nodes_matter
    scores = frozen(x, edge_index, attr)
    frozen.optimized = False
    torch.testing.assert_close(frozen(x, edge_index, attr), scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.jit.script(frozen)(x, edge_index, attr), frozen(x, edge_index, attr), rtol=1e-5, atol=1e-5)
    # a frozen edge score does not depend on the spacepoints without an edge; a batch-statistics one does
    kept_x, src, dst = drop_isolated_nodes(x, edge_index[0], edge_index[1])
    assert kept_x.shape[0] < x.shape[0]
    torch.testing.assert_close(frozen(kept_x, torch.stack([src, dst]), attr), scores, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model(kept_x, torch.stack([src, dst]), attr), model(x, edge_index, attr), rtol=1e-3, atol=1e-3)


def test_training_mode_keeps_isolated_nodes():
    """In training every BatchNorm normalises with batch statistics, so no node may be dropped."""
    model = chained()
    graph = random_graph(400, 150, seed=5)
    frozen = frozen_copy(model, record_batch_statistics(model, run_on(model, [graph]))).train()
    optimized = frozen(*graph)
    frozen.optimized = False
    torch.testing.assert_close(frozen(*graph), optimized, rtol=1e-5, atol=1e-5)


def test_frozen_checkpoint_round_trip(tmp_path):
    model = chained()
    graph = random_graph(200, 180, seed=6)
    frozen = frozen_copy(model, record_batch_statistics(model, run_on(model, [graph, random_graph(150, 160, seed=8)])))
    path = save_acorn_checkpoint(frozen, tmp_path / "frozen.ckpt")
    loaded = load_acorn_checkpoint(path)
    assert type(loaded) is type(frozen) and loaded.hparams["track_running_stats"] is True
    assert "node_encoder.1.running_mean" in torch.load(path, weights_only=True)["state_dict"]
    torch.testing.assert_close(loaded(*graph), frozen(*graph), rtol=0, atol=0)


def test_shared_batch_norm_cannot_be_frozen():
    torch.manual_seed(7)
    model = RecurrentInteractionGNN2(gnn_hparams()).eval()
    with pytest.raises(ValueError, match="shared by the graph iterations"):
        record_batch_statistics(model, run_on(model, [random_graph()]))


@pytest.mark.parametrize("recurrent", [{}, {"node_net_recurrent": False}, {"edge_net_recurrent": False}])
def test_unrolled_recurrent_gnn_computes_the_same_and_can_be_frozen(recurrent):
    torch.manual_seed(7)
    model = InteractionGNN2(gnn_hparams(**{"node_net_recurrent": True, "edge_net_recurrent": True, **recurrent})).eval()
    unrolled = chained_from_recurrent(model)
    assert type(unrolled) is ChainedInteractionGNN2 and not unrolled.training
    assert unrolled.hparams["model"] == "ChainedInteractionGNN2"
    for graph in (random_graph(300, 200, seed=1), random_graph(80, 400, seed=2)):  # batch statistics differ
        torch.testing.assert_close(unrolled(*graph), model(*graph), rtol=0, atol=0)
    shared = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] in ("edge_network", "node_network")
                 and getattr(model, name.split(".")[0].replace("network", "net_recurrent")))
    extra = shared * (model.n_graph_iters - 1)
    assert sum(p.numel() for p in unrolled.parameters()) == sum(p.numel() for p in model.parameters()) + extra
    # each iteration's BatchNorms run once per event now: recorded and frozen without complaint
    frozen = frozen_copy(unrolled, record_batch_statistics(unrolled, run_on(unrolled, [random_graph(300, 200, seed=1)])))
    torch.testing.assert_close(frozen(*random_graph(300, 200, seed=1)), model(*random_graph(300, 200, seed=1)), rtol=1e-4, atol=1e-4)


def test_nothing_to_record():
    model = chained()
    with pytest.raises(ValueError, match="no event"):
        record_batch_statistics(model, lambda: iter([]))
    plain = chained(batchnorm=False)
    with pytest.raises(ValueError, match="no BatchNorm"):
        record_batch_statistics(plain, run_on(plain, [random_graph()]))


def test_freeze_batch_norm_command(tmp_path, capsys):
    """``gnn4itk freeze-batch-norm`` on a tiny ModuleMap pipeline: a frozen acorn checkpoint; a second freeze,
    a model without batch statistics, and an empty event folder are refused with a message."""
    import yaml

    from gnn4itk.cli import main
    from gnn4itk.event import write_event
    from gnn4itk.models import save_acorn_checkpoint
    from module_map.synthetic import synthetic_events
    from tests.pipeline_fixtures import tiny_gnn_hparams, write_tiny_module_map_pipeline

    events = list(synthetic_events(2, n_particles=150, seed=11))
    config = write_tiny_module_map_pipeline(tmp_path / "mm", events)
    torch.manual_seed(3)
    batch_norm_gnn = save_acorn_checkpoint(ChainedInteractionGNN2({**tiny_gnn_hparams(), "batchnorm": True}), tmp_path / "bn.ckpt")
    (tmp_path / "mm.yaml").write_text(yaml.safe_dump(config))
    for event in events:
        write_event(event, tmp_path / "events")
    (tmp_path / "empty").mkdir()
    base = ["freeze-batch-norm", "--pipeline", str(tmp_path / "mm.yaml"), "--events", str(tmp_path / "events")]

    assert main(base + ["--checkpoint", str(batch_norm_gnn), "--output", str(tmp_path / "frozen.ckpt")]) == 0
    assert "BatchNorms frozen over 2 events" in capsys.readouterr().out
    frozen = load_acorn_checkpoint(tmp_path / "frozen.ckpt")
    assert frozen.hparams["track_running_stats"] is True and not frozen.isolated_nodes_matter
    assert all(int(m.num_batches_tracked) == 2 for m in batch_norm_layers(frozen).values())

    assert main(base + ["--checkpoint", str(tmp_path / "frozen.ckpt"), "--output", str(tmp_path / "again.ckpt")]) == 2
    assert "nothing to freeze" in capsys.readouterr().err
    assert main(base + ["--checkpoint", config["edge_classification"][0]["checkpoint"], "--output", str(tmp_path / "x.ckpt")]) == 2
    assert "nothing to freeze" in capsys.readouterr().err
    # a recurrent GNN: refused as it is, frozen as its chained equivalent with --unroll-recurrent
    recurrent = save_acorn_checkpoint(RecurrentInteractionGNN2({**tiny_gnn_hparams(), "batchnorm": True}), tmp_path / "rec.ckpt")
    assert main(base + ["--checkpoint", str(recurrent), "--output", str(tmp_path / "r.ckpt")]) == 2
    assert "--unroll-recurrent" in capsys.readouterr().err and not (tmp_path / "r.ckpt").exists()
    assert main(base + ["--checkpoint", str(recurrent), "--output", str(tmp_path / "r.ckpt"), "--unroll-recurrent"]) == 0
    unrolled = load_acorn_checkpoint(tmp_path / "r.ckpt")
    assert type(unrolled) is ChainedInteractionGNN2 and unrolled.hparams["track_running_stats"] is True
    assert "BatchNorms frozen over 2 events" in capsys.readouterr().out
    empty = ["freeze-batch-norm", "--pipeline", str(tmp_path / "mm.yaml"), "--events", str(tmp_path / "empty")]
    assert main(empty + ["--checkpoint", str(batch_norm_gnn), "--output", str(tmp_path / "y.ckpt")]) == 2
    assert "no events" in capsys.readouterr().err
