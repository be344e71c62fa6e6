import numpy as np
import pytest
import torch

from gnn4itk.pipeline import Pipeline, build_pipeline
from gnn4itk.tracks import labels_to_track_ids
from module_map.synthetic import synthetic_event, synthetic_events
from tests.pipeline_fixtures import write_tiny_metric_learning_pipeline, write_tiny_module_map_pipeline


@pytest.fixture(scope="module")
def module_map_pipeline(tmp_path_factory) -> Pipeline:
    config = write_tiny_module_map_pipeline(tmp_path_factory.mktemp("mm"), synthetic_events(3, n_particles=300, seed=5))
    return build_pipeline(config)


@pytest.fixture(scope="module")
def event_features() -> torch.Tensor:
    return synthetic_event(n_particles=300, seed=77).inference_tensor()


def check_labels(labels: torch.Tensor, num_hits: int) -> None:
    assert labels.dtype == torch.int64 and labels.dim() == 1
    assert int(labels[-1]) == -1
    labels_to_track_ids(labels.numpy(), num_hits)  # raises on out-of-range or reused spacepoints


def test_module_map_pipeline_scripted_equals_eager(module_map_pipeline, event_features, device):
    pipeline = module_map_pipeline.to(device)
    eager = pipeline(event_features.to(device)).cpu()
    check_labels(eager, len(event_features))
    assert (eager == -1).sum() > 1, "a module-map graph of 300 particles must give some tracks"
    scripted = torch.jit.script(pipeline)
    torch.testing.assert_close(scripted(event_features.to(device)).cpu(), eager, rtol=0, atol=0)
    module_map_pipeline.to("cpu")


@pytest.mark.parametrize("double", [False, True])
def test_metric_learning_pipelines_scripted_equal_eager(tmp_path, event_features, double):
    pipeline = build_pipeline(write_tiny_metric_learning_pipeline(tmp_path, double=double))
    eager = pipeline(event_features)
    check_labels(eager, len(event_features))
    scripted = torch.jit.script(pipeline)
    torch.testing.assert_close(scripted(event_features), eager, rtol=0, atol=0)


def test_small_events_give_minus_one(module_map_pipeline):
    for n in (0, 1, 2):
        out = module_map_pipeline(torch.zeros(n, 16))
        assert out.tolist() == [-1]


def test_bad_inputs_are_refused_with_clear_errors(module_map_pipeline, event_features):
    with pytest.raises(ValueError, match="2-d"):
        module_map_pipeline(torch.zeros(10))
    with pytest.raises(ValueError, match="expects 16"):
        module_map_pipeline(torch.zeros(10, 12))
    with pytest.raises(ValueError, match="float32"):
        module_map_pipeline(event_features.double())
    module_map_pipeline.input_guard.max_spacepoints = 100  # the same check as a configured limit, without a rebuild
    try:
        with pytest.raises(ValueError, match="max_spacepoints"):
            module_map_pipeline(event_features)
    finally:
        module_map_pipeline.input_guard.max_spacepoints = 1_000_000


def test_non_finite_features_are_zeroed_and_counted(module_map_pipeline, event_features):
    bad = event_features.clone()
    bad[0, 0] = float("nan")
    bad[1, 2] = float("inf")
    bad[2, 5] = -float("inf")
    out = module_map_pipeline(bad)
    assert module_map_pipeline.input_guard.last_non_finite == 3
    zeroed = bad.clone()
    zeroed[~torch.isfinite(zeroed)] = 0
    torch.testing.assert_close(out, module_map_pipeline(zeroed), rtol=0, atol=0)
    assert module_map_pipeline.input_guard.last_non_finite == 0


def test_unknown_stage_kinds_are_configuration_errors(tmp_path):
    config = write_tiny_metric_learning_pipeline(tmp_path, double=False)
    config["graph_construction"]["kind"] = "knn"
    with pytest.raises(ValueError, match="graph_construction kind"):
        build_pipeline(config)
    config = write_tiny_metric_learning_pipeline(tmp_path, double=False)
    config["features"] = ["x", "y", "z"]
    with pytest.raises(ValueError, match="columns"):
        build_pipeline(config)
    config = write_tiny_metric_learning_pipeline(tmp_path, double=False)
    config["edge_classification"][1]["checkpoint"] = str(tmp_path / "missing.ckpt")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        build_pipeline(config)


def test_tracks_follow_truth_on_a_perfect_graph(tmp_path):
    """With every edge scored 1 the module-map graph of isolated tracks is split into true tracks."""
    event = synthetic_event(n_particles=20, seed=3)
    config = write_tiny_module_map_pipeline(tmp_path, [event])
    pipeline = build_pipeline(config)
    pipeline.edge_classifiers = torch.nn.ModuleList([_AllOnes()])
    labels = pipeline(event.inference_tensor())
    track_ids = labels_to_track_ids(labels.numpy(), len(event.hits))
    pid = event.hits["particle_id"].to_numpy()
    for t in np.unique(track_ids[track_ids >= 0]):
        owners = np.unique(pid[track_ids == t])
        assert len(owners) == 1, "a track mixes particles on a graph of 20 well separated tracks"


class _AllOnes(torch.nn.Module):
    def forward(self, features, edge_index, edge_attr):
        return edge_index, edge_attr, torch.ones(edge_index.shape[1])


def test_autocast_runs_and_scripts(module_map_pipeline, event_features, device):
    """float16 autocast of the GNN (CUDA only; a no-op on the CPU) gives valid LABELS, eager == scripted."""
    gnn = module_map_pipeline.edge_classifiers[0]
    gnn.auto_cast = True
    try:
        pipeline = module_map_pipeline.to(device)
        eager = pipeline(event_features.to(device)).cpu()
        check_labels(eager, len(event_features))
        scripted = torch.jit.script(pipeline)
        torch.testing.assert_close(scripted(event_features.to(device)).cpu(), eager, rtol=0, atol=0)
    finally:
        gnn.auto_cast = False
        module_map_pipeline.to("cpu")
