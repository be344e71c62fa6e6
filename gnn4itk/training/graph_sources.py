"""Graphs for the filter and GNN stages: anything that turns an Event into (edge_index, edge features).

A graph source is a callable ``source(event) -> (edge_index LongTensor [2, E], edge_attr FloatTensor
[E, 6])`` with the six GNN4ITk edge features of :mod:`gnn4itk.edge_features`. Configs name one with
:func:`build_graph_source`:

* ``{kind: truth_fakes, fake_ratio: 3, window: 20, seed: 0}`` -- every truth edge plus ``fake_ratio``
  times as many local fakes (same phi neighbourhood, pointing inner -> outer); the default, cheap, for tests.
* ``{kind: module_map, path: map.root}`` -- the module-map graph (:mod:`module_map`).
* ``{kind: metric_learning, embedding_checkpoint: ..., filter_checkpoint: ..., r_max, k_max,
  filter_cut, method, grid_dims}`` -- embedding + radius graph (+ filter; ``filter_cut`` defaults to the
  filter's own), edges oriented inner -> outer by r² + z² as at inference.
* ``{kind: callable, target: "package.module:function", kwargs: {...}}`` -- a user function
  ``function(event, **kwargs)`` with the same return value.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from gnn4itk.edge_features import edge_features, scaled_coordinates, unique_edges
from gnn4itk.event import Event, select_features
from gnn4itk.stages import orient_inner_to_outer

GRAPH_SOURCE_KINDS = ("truth_fakes", "module_map", "metric_learning", "callable")


def event_edge_features(event: Event, edge_index: torch.Tensor) -> torch.Tensor:
    """The six edge features (FloatTensor [E, 6]) of ``edge_index`` (LongTensor [2, E]) in ``event``."""
    hits = event.hits
    coordinates = [torch.tensor(hits[c].to_numpy(np.float32)) for c in ("r", "phi", "z", "eta")]
    nodes = scaled_coordinates(*coordinates).to(edge_index.device)
    return edge_features(nodes, edge_index)


def inner_to_outer(event: Event, edge_index: torch.Tensor) -> torch.Tensor:
    """Edges pointing from smaller to larger ``r² + z²``, without self-loops or duplicates, exactly as the
    inference pipeline orients metric-learning graphs (:func:`gnn4itk.stages.orient_inner_to_outer`).

    Args:
        event: the event whose spacepoints ``edge_index`` (LongTensor [2, E]) joins.

    Returns:
        LongTensor [2, E'].
    """
    r = torch.tensor(event.hits["r"].to_numpy(np.float32), device=edge_index.device)
    z = torch.tensor(event.hits["z"].to_numpy(np.float32), device=edge_index.device)
    return orient_inner_to_outer(edge_index, r * r + z * z)


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
        # Truth edges already point outwards along the trajectory; orient the fakes as inference graphs.
        fakes = inner_to_outer(event, torch.from_numpy(fakes))
        edges = unique_edges(torch.cat([torch.from_numpy(true_edges), fakes], dim=1), n)
        return edges, event_edge_features(event, edges)


class ModuleMapGraph:
    """Module-map graphs (:class:`module_map.graph_builder.ModuleMapGraphBuilder`) from a map file."""

    def __init__(self, path: str, device: str = "cpu"):
        from module_map.graph_builder import ModuleMapGraphBuilder
        from module_map.map import load_map

        self.device = device
        self.builder = ModuleMapGraphBuilder(load_map(path, verbose=False)).to(device)

    def __call__(self, event: Event) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.tensor(event.hits[["x", "y", "z", "r", "phi", "eta"]].to_numpy(np.float32)).to(self.device)
        module_id = torch.tensor(event.hits["module_id"].to_numpy()).to(self.device)
        with torch.no_grad():
            edge_index, features = self.builder(positions, module_id)
        return edge_index.cpu(), features.cpu()


class MetricLearningGraph:
    """Embedding -> radius graph -> (optional) filter, from acorn-layout checkpoints.

    Edges are then oriented inner -> outer by ``r² + z²`` and deduplicated, for both embedding forms,
    as the inference pipeline (:class:`gnn4itk.stages.MetricLearningGraph`) does.
    """

    def __init__(
        self,
        embedding_checkpoint: str,
        filter_checkpoint: str | None = None,
        r_max: float = 0.12,
        k_max: int = 1000,
        filter_cut: float | None = None,
        method: str = "tree",
        grid_dims: int = 4,
        device: str = "cpu",
    ):
        from gnn4itk.models import RadiusGraph, load_acorn_checkpoint

        self.device = device
        self.embedding = load_acorn_checkpoint(embedding_checkpoint, map_location=device)
        self.filter = load_acorn_checkpoint(filter_checkpoint, map_location=device) if filter_checkpoint else None
        # None: the cut stored with the filter (its hparam ``filter_cut``, default 0.05).
        self.filter_cut = float(filter_cut) if filter_cut is not None else getattr(self.filter, "filter_cut", 0.05)
        self.radius_graph = RadiusGraph(r_max, k_max, method=method, grid_dims=grid_dims)

    def _features(self, event: Event, model) -> torch.Tensor:
        hp = model.hparams
        return torch.from_numpy(select_features(event.hits, hp["node_features"], hp.get("node_scales"))).to(self.device)

    @torch.no_grad()
    def __call__(self, event: Event) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.embedding(self._features(event, self.embedding))
        if isinstance(embedded, tuple):
            edges = self.radius_graph(embedded[0], embedded[1])
        else:
            edges = self.radius_graph(embedded)
        edges = inner_to_outer(event, edges)
        if self.filter is not None:
            scores = torch.sigmoid(self.filter(self._features(event, self.filter), edges))
            edges = edges[:, scores > self.filter_cut]
        edges = edges.cpu()
        return edges, event_edge_features(event, edges)


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


def build_graph_source(spec: dict | None):
    """The graph source a config's ``graph_source`` section describes (see the module doc)."""
    spec = dict(spec or {"kind": "truth_fakes"})
    kind = spec.pop("kind", "truth_fakes")
    if kind == "truth_fakes":
        return TruthFakesGraph(**spec)
    if kind == "module_map":
        return ModuleMapGraph(**spec)
    if kind == "metric_learning":
        return MetricLearningGraph(**spec)
    if kind == "callable":
        return CallableGraph(**spec)
    raise ValueError(f"unknown graph source kind {kind!r}; choose one of {GRAPH_SOURCE_KINDS}")
