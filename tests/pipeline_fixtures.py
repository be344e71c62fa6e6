"""Small, fast pipelines for tests: a module map from synthetic events and untrained (random) weights.

The weights are random, so the tracks mean nothing physically; what the tests check is that every
path (eager, scripted, CLI, served) gives the same LABELS for the same module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gnn4itk.event import INFERENCE_COLUMNS
from gnn4itk.models import ChainedInteractionGNN2, DoubleMetricLearning, Filter, MetricLearning, save_acorn_checkpoint

GNN_FEATURES = ["r", "phi", "z", "eta", "cluster_r_1", "cluster_phi_1", "cluster_z_1", "cluster_eta_1"]
GNN_SCALES = [1000.0, 3.14159265359, 1000.0, 1.0] * 2
ML_FEATURES = ["r", "phi", "z", "eta"]
ML_SCALES = [1000.0, 3.14159265359, 1000.0, 1.0]


def tiny_gnn_hparams() -> dict:
    return {
        "node_features": GNN_FEATURES,
        "node_scales": GNN_SCALES,
        "edge_features": ["dr", "dphi", "dz", "deta", "phislope", "rphislope"],
        "hidden": 16,
        "n_graph_iters": 2,
        "n_node_net_layers": 2,
        "n_edge_net_layers": 2,
        "n_edge_decoder_layers": 2,
        "layernorm": False,
        "batchnorm": False,
        "hidden_activation": "ReLU",
        "output_activation": "ReLU",
        "concat": True,
        "in_out_diff_agg": True,
        "node_net_recurrent": False,
        "edge_net_recurrent": False,
    }


def write_tiny_module_map_pipeline(directory: Path, events, seed: int = 0) -> dict:
    """Module map from ``events`` + random GNN -> a ModuleMap pipeline configuration dict."""
    from module_map.build import BuildOptions, build_module_map

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    module_map, _ = build_module_map(events, BuildOptions(tolerance=1e-3), progress=False)
    map_path = module_map.save(directory / "tiny_map.npz")
    gnn_path = save_acorn_checkpoint(ChainedInteractionGNN2(tiny_gnn_hparams()), directory / "gnn.ckpt")
    return {
        "pipeline": "ModuleMap",
        "features": list(INFERENCE_COLUMNS),
        "graph_construction": {"kind": "module_map", "module_map": str(map_path)},
        "edge_classification": [{"kind": "gnn", "checkpoint": str(gnn_path)}],
        "track_building": {"cc_cut": 0.01, "walk_min": 0.1, "walk_max": 0.6},
    }


def write_tiny_metric_learning_pipeline(directory: Path, double: bool, seed: int = 0) -> dict:
    """Random embedding + filter + GNN -> a (Double)MetricLearning pipeline configuration dict."""
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    emb_hparams = {
        "node_features": ML_FEATURES,
        "node_scales": ML_SCALES,
        "emb_hidden": 16,
        "nb_layer": 2,
        "emb_dim": 4,
        "activation": "Tanh",
        "r_max": 0.12,
        "k_max": 1000,
    }
    embedding = DoubleMetricLearning(emb_hparams) if double else MetricLearning(emb_hparams)
    emb_path = save_acorn_checkpoint(embedding, directory / "embedding.ckpt")
    filt = Filter({"node_features": ML_FEATURES, "node_scales": ML_SCALES, "hidden": 16, "nb_layer": 2})
    filter_path = save_acorn_checkpoint(filt, directory / "filter.ckpt")
    gnn_path = save_acorn_checkpoint(ChainedInteractionGNN2(tiny_gnn_hparams()), directory / "gnn.ckpt")
    return {
        "pipeline": "DoubleMetricLearning" if double else "MetricLearning",
        "features": list(INFERENCE_COLUMNS),
        # an untrained embedding is nearly constant: a large radius still gives a small, real graph
        "graph_construction": {"kind": "metric_learning", "checkpoint": str(emb_path), "r_max": 0.05, "k_max": 8},
        "edge_classification": [
            {"kind": "filter", "checkpoint": str(filter_path), "filter_cut": 0.05},
            {"kind": "gnn", "checkpoint": str(gnn_path)},
        ],
        "track_building": {"cc_cut": 0.01, "walk_min": 0.1, "walk_max": 0.6},
    }
