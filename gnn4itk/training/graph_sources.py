"""Graphs for the filter and GNN stages: anything that turns an Event into (edge_index, edge features).

A graph source is a callable ``source(event) -> (edge_index LongTensor [2, E], edge_attr FloatTensor
[E, 6])`` with the six GNN4ITk edge features of :mod:`gnn4itk.edge_features`. Configs name one with
:func:`build_graph_source`:

* ``{kind: truth_fakes, fake_ratio: 3, window: 20, seed: 0}`` -- every truth edge plus ``fake_ratio``
  times as many local fakes (same phi neighbourhood, pointing inner -> outer); the default, cheap, for tests.
* ``{kind: stages, graph_construction: {kind: ..., ...}, edge_classification: [{kind: ..., ...}], features,
  device}`` -- the inference stage modules (:mod:`gnn4itk.stages`), built by their registries from sections
  as in a pipeline configuration: any registered graph construction, then any edge classifiers (a filter).
  ``features``: the FEATURES columns they read (default :data:`gnn4itk.event.INFERENCE_COLUMNS`).
* ``{kind: module_map, path: map.root}`` -- the ``stages`` source with a ``module_map`` graph construction.
* ``{kind: metric_learning, embedding_checkpoint: ..., filter_checkpoint: ..., r_max, k_max,
  filter_cut, method, grid_dims}`` -- the ``stages`` source with a ``metric_learning`` graph construction
  (embedding + radius graph, edges oriented inner -> outer) and a ``filter`` (``filter_cut`` defaults to the
  filter's own), exactly the inference pipeline's graph.
* ``{kind: callable, target: "package.module:function", kwargs: {...}}`` -- a user function
  ``function(event, **kwargs)`` with the same return value.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from gnn4itk.defaults import MAX_SPACEPOINTS
from gnn4itk.edge_features import unique_edges
from gnn4itk.event import INFERENCE_COLUMNS, Event, select_features
from gnn4itk.stages import GNN_POSITION_COLUMNS, EdgeFeatures, InputGuard, orient_inner_to_outer

GRAPH_SOURCE_KINDS = ("truth_fakes", "stages", "module_map", "metric_learning", "callable")


class TruthFakesGraph:
    """Truth edges plus local random fakes (the test and smoke-run default).

    Args:
        fake_ratio: fakes per truth edge.
        window: a fake's target is one of the ``window`` spacepoints on either side of its source in
            phi order, so fakes are local like real graph edges rather than trivially separable.
        seed: random seed (mixed with the event id so each event gets its own fakes).
    """

    def __init__(self, fake_ratio: float = 3.0, window: int = 20, seed: int = 0):
        self.fake_ratio, self.window, self.seed = float(fake_ratio), int(window), int(seed)
        self.edge_features = EdgeFeatures(GNN_POSITION_COLUMNS)

    def __call__(self, event: Event) -> tuple[torch.Tensor, torch.Tensor]:
        from gnn4itk.training.truth import truth_edges

        true_edges, _ = truth_edges(event)
        n = len(event.hits)
        rng = np.random.default_rng([self.seed, int(event.event_id)])
        n_fakes = int(self.fake_ratio * true_edges.shape[1])
        # stable: numpy's default sort orders equal phi values differently on AVX-512 and AVX2 CPUs
        by_phi = np.argsort(event.hits["phi"].to_numpy(), kind="stable")
        position = rng.integers(0, n, n_fakes)
        step = rng.integers(1, self.window + 1, n_fakes) * rng.choice([-1, 1], n_fakes)
        fakes = np.stack([by_phi[position], by_phi[(position + step) % n]])
        # Truth edges already point outwards along the trajectory; orient the fakes as inference graphs,
        # and compute the edge features with the inference stage's module.
        positions = torch.from_numpy(select_features(event.hits, GNN_POSITION_COLUMNS))
        r2z2 = positions[:, 0] ** 2 + positions[:, 2] ** 2
        fakes = orient_inner_to_outer(torch.from_numpy(fakes), r2z2)
        edges = unique_edges(torch.cat([torch.from_numpy(true_edges), fakes], dim=1), n)
        return edges, self.edge_features(positions, edges)


class StageGraph:
    """Graphs from the inference stage modules: a graph construction, then edge classifiers (e.g. a filter).

    The stages are built by their registries (:mod:`gnn4itk.stages.registry`) from sections as in a
    pipeline configuration and run on the event's FEATURES after the pipeline's input guard, so a training
    graph is exactly the graph the inference pipeline gives the next stage.

    Args:
        graph_construction: a ``graph_construction`` section (``{kind: module_map, module_map: ...}``, ...).
        edge_classification: ``edge_classification`` sections applied in order (their scores are dropped).
        features: the FEATURES columns, in order (default :data:`gnn4itk.event.INFERENCE_COLUMNS`).
        base_dir: folder against which relative paths in the sections are resolved (default: here).
        device: where the stages run; the graphs come back on the CPU.
    """

    def __init__(
        self,
        graph_construction: dict,
        edge_classification: Sequence[dict] = (),
        features: Sequence[str] | None = None,
        base_dir: str = ".",
        device: str = "cpu",
    ):
        from gnn4itk.stages.registry import EDGE_CLASSIFICATION, GRAPH_CONSTRUCTION, BuildContext

        context = BuildContext(columns=list(features or INFERENCE_COLUMNS), base_dir=Path(base_dir))
        self.columns = list(context.columns)
        self.device = device
        self.input_guard = InputGuard(self.columns, MAX_SPACEPOINTS)
        self.graph = GRAPH_CONSTRUCTION.build(graph_construction, context).to(device).eval()
        self.classifiers = [EDGE_CLASSIFICATION.build(stage, context).to(device).eval() for stage in edge_classification]

    @torch.no_grad()
    def __call__(self, event: Event) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.input_guard(torch.from_numpy(select_features(event.hits, self.columns)).to(self.device))
        edge_index, edge_attr = self.graph(features)
        for classifier in self.classifiers:
            edge_index, edge_attr, _ = classifier(features, edge_index, edge_attr)
        return edge_index.cpu(), edge_attr.cpu()


def module_map_graph(path: str, device: str = "cpu") -> StageGraph:
    """Module-map graphs from the map file ``path`` (the ``module_map`` graph construction)."""
    return StageGraph({"kind": "module_map", "module_map": str(path)}, device=device)


def metric_learning_graph(
    embedding_checkpoint: str,
    filter_checkpoint: str | None = None,
    r_max: float | None = None,
    k_max: int | None = None,
    filter_cut: float | None = None,
    method: str | None = None,
    grid_dims: int | None = None,
    device: str = "cpu",
) -> StageGraph:
    """Embedding -> radius graph (-> filter) from acorn-layout checkpoints: the ``metric_learning`` graph
    construction and a ``filter`` stage. A setting left at None takes the stage's default
    (:mod:`gnn4itk.defaults`); ``filter_cut`` None keeps the filter's own cut."""
    settings = {"r_max": r_max, "k_max": k_max, "method": method, "grid_dims": grid_dims}
    graph = {"kind": "metric_learning", "checkpoint": str(embedding_checkpoint)}
    graph.update({k: v for k, v in settings.items() if v is not None})
    classifiers = []
    if filter_checkpoint:
        classifiers.append({"kind": "filter", "checkpoint": str(filter_checkpoint)})
        if filter_cut is not None:
            classifiers[0]["filter_cut"] = float(filter_cut)
    return StageGraph(graph, classifiers, device=device)


class CallableGraph:
    """A user function ``target(event, **kwargs) -> (edge_index, edge_attr)`` named ``module:function``."""

    def __init__(self, target: str, kwargs: dict | None = None):
        module_name, _, function_name = str(target).partition(":")
        if not function_name:
            raise ValueError(f"graph source target {target!r} must look like 'package.module:function'")
        self.function = getattr(importlib.import_module(module_name), function_name)
        self.kwargs = dict(kwargs or {})

    def __call__(self, event: Event) -> tuple[torch.Tensor, torch.Tensor]:
        edge_index, edge_attr = self.function(event, **self.kwargs)
        return torch.as_tensor(edge_index, dtype=torch.long), torch.as_tensor(edge_attr, dtype=torch.float32)


_GRAPH_SOURCES = {
    "truth_fakes": TruthFakesGraph,
    "stages": StageGraph,
    "module_map": module_map_graph,
    "metric_learning": metric_learning_graph,
    "callable": CallableGraph,
}


def build_graph_source(spec: dict | None):
    """The graph source a config's ``graph_source`` section describes (see the module doc)."""
    spec = dict(spec or {"kind": "truth_fakes"})
    kind = spec.pop("kind", "truth_fakes")
    if kind not in _GRAPH_SOURCES:
        raise ValueError(f"unknown graph source kind {kind!r}; choose one of {GRAPH_SOURCE_KINDS}")
    return _GRAPH_SOURCES[kind](**spec)
