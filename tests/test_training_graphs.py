"""Graph sources for filter and GNN training: module-map and metric-learning graphs."""

import math

import numpy as np
import pytest
import torch

from gnn4itk.models import Filter, MetricLearning, save_acorn_checkpoint
from gnn4itk.training.data import SampleSpec, prepare_sample
from gnn4itk.training.graph_sources import build_graph_source
from module_map.synthetic import toy_event, toy_events

FEATURES = ["r", "phi", "z", "eta"]
SCALES = [1000.0, math.pi, 1000.0, 1.0]


@pytest.mark.filterwarnings("ignore:module map graph")  # noise hits in modules the map never saw
def test_module_map_graph_source(tmp_path):
    from module_map.build import BuildOptions, build_module_map

    module_map, _ = build_module_map(toy_events(20, n_particles=100, seed=10), BuildOptions(min_pt=0.5), progress=False)
    path = module_map.save(tmp_path / "toy_map.npz")
    source = build_graph_source({"kind": "module_map", "path": str(path)})
    event = toy_event(n_particles=100, seed=10)  # an event the map was built from: its truth is covered
    sample = prepare_sample(event, SampleSpec(FEATURES, SCALES, graph_source=source))
    edge_index = sample["edge_index"]
    assert edge_index.shape[1] > 0 and sample["edge_attr"].shape == (edge_index.shape[1], 6)
    assert sample["y"].any() and (~sample["y"]).any()
    # edge features are target minus source: dr > 0 for the map's inner -> outer barrel doublets
    r = torch.tensor(event.hits["r"].to_numpy(np.float32))
    torch.testing.assert_close(sample["edge_attr"][:, 0], (r[edge_index[1]] - r[edge_index[0]]) / 1000.0)


def test_metric_learning_graph_source(tmp_path):
    torch.manual_seed(0)
    embedding = MetricLearning(dict(node_features=FEATURES, node_scales=SCALES, emb_hidden=16, nb_layer=2, emb_dim=4))
    edge_filter = Filter(dict(node_features=FEATURES, node_scales=SCALES, hidden=16, nb_layer=2, filter_cut=0.5))
    embedding_path = save_acorn_checkpoint(embedding, tmp_path / "embedding.ckpt")
    filter_path = save_acorn_checkpoint(edge_filter, tmp_path / "filter.ckpt")
    event = toy_event(n_particles=40, seed=3)
    spec = {"kind": "metric_learning", "embedding_checkpoint": str(embedding_path), "r_max": 0.3, "k_max": 50}
    unfiltered, features = build_graph_source(spec)(event)
    # The filter's own cut applies when the spec names none.
    default_cut, _ = build_graph_source({**spec, "filter_checkpoint": str(filter_path)})(event)
    edge_filter.eval()
    x = torch.from_numpy(event.features(FEATURES, SCALES))
    with torch.no_grad():
        median = torch.sigmoid(edge_filter(x, unfiltered)).median().item()
    filtered, _ = build_graph_source({**spec, "filter_checkpoint": str(filter_path), "filter_cut": median})(event)
    r2z2 = event.hits.eval("r**2 + z**2").to_numpy()
    assert unfiltered.shape[1] > 0 and features.shape == (unfiltered.shape[1], 6)
    assert (r2z2[unfiltered[0]] <= r2z2[unfiltered[1]]).all()  # oriented inner -> outer, each pair once
    assert torch.unique(unfiltered, dim=1).shape == unfiltered.shape
    assert 0 < filtered.shape[1] < unfiltered.shape[1]
    with torch.no_grad():
        kept_by_own_cut = (torch.sigmoid(edge_filter(x, unfiltered)) > 0.5).sum().item()
    assert default_cut.shape[1] == kept_by_own_cut
    assert set(map(tuple, filtered.t().tolist())) <= set(map(tuple, unfiltered.t().tolist()))


def test_training_graphs_are_the_inference_pipeline_graphs(tmp_path):
    """The metric-learning graph source runs the inference stage modules: its graph is the one the
    pipeline hands to the GNN (embedding, radius graph, orientation, filter), edge features included."""
    from gnn4itk.pipeline import build_pipeline
    from tests.pipeline_fixtures import write_tiny_metric_learning_pipeline

    config = write_tiny_metric_learning_pipeline(tmp_path, double=False)
    graph, edge_filter = config["graph_construction"], config["edge_classification"][0]
    source = build_graph_source({"kind": "stages", "graph_construction": graph, "edge_classification": [edge_filter]})
    legacy = build_graph_source({"kind": "metric_learning", "embedding_checkpoint": graph["checkpoint"],
                                 "filter_checkpoint": edge_filter["checkpoint"], "r_max": graph["r_max"],
                                 "k_max": graph["k_max"], "filter_cut": edge_filter["filter_cut"]})
    event = toy_event(n_particles=60, seed=4)
    pipeline = build_pipeline(config)
    features = event.inference_tensor()
    with torch.no_grad():
        expected = pipeline.edge_classifiers[0](features, *pipeline.graph_construction(features))[:2]
    for edge_index, edge_attr in (source(event), legacy(event)):
        assert edge_index.shape[1] > 0
        torch.testing.assert_close(edge_index, expected[0], rtol=0, atol=0)
        torch.testing.assert_close(edge_attr, expected[1], rtol=0, atol=0)
