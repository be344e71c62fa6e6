"""Events to training tensors, and the Lightning data module (one event per step, as in acorn)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gnn4itk.event import Event, list_events, read_event, select_features
from gnn4itk.metrics import TrackingCuts
from gnn4itk.training.truth import match_edges, target_particle_ids, truth_edges


@dataclass
class SampleSpec:
    """What to extract from each event.

    Attributes:
        node_features, node_scales: model inputs, ``x = hits[node_features] / node_scales``.
        cuts: target-particle selection (GNN4ITk defaults).
        graph_source: callable event -> (edge_index, edge_attr) for the filter and GNN stages, or None
            for metric learning.
        undirected_truth: an edge also counts as true when it joins a true pair in reverse order.
        fake_weight: loss weight of fake edges; true target edges weigh 1 (acorn's weighting).
        other_true_weight: loss weight of the true edges of non-target particles (soft, secondary,
            electron...): 0 in acorn's weighting (ignored); above 0 they are trained as true edges.
    """

    node_features: Sequence[str]
    node_scales: Sequence[float] | None = None
    cuts: TrackingCuts = field(default_factory=TrackingCuts)
    graph_source: Callable | None = None
    undirected_truth: bool = False
    fake_weight: float = 1.0
    other_true_weight: float = 0.0


def prepare_sample(event: Event, spec: SampleSpec) -> dict:
    """Tensors of one event.

    Returns:
        dict with ``x`` (FloatTensor [N, F]), ``true_edges`` (LongTensor [2, T], outwards along each
        particle), ``true_target`` (BoolTensor [T], edge of a target particle), ``num_nodes``, and with a
        graph source also ``edge_index`` (LongTensor [2, E]), ``edge_attr`` (FloatTensor [E, 6]),
        ``y`` (BoolTensor [E], true edge) and ``weights`` (FloatTensor [E]).
    """
    if not event.has_truth:
        raise ValueError(f"event {event.event_id} has no truth; training needs particle_id and particles")
    x = torch.from_numpy(select_features(event.hits, spec.node_features, spec.node_scales))
    edges, pid = truth_edges(event)
    targets = target_particle_ids(event, spec.cuts)
    sample = {
        "x": x,
        "true_edges": torch.from_numpy(edges),
        "true_target": torch.from_numpy(np.isin(pid, targets)),
        "num_nodes": len(event.hits),
        "event_id": int(event.event_id),
    }
    if spec.graph_source is not None:
        edge_index, edge_attr = spec.graph_source(event)
        matched = match_edges(edge_index, sample["true_edges"], len(event.hits), spec.undirected_truth)
        y = matched >= 0
        target = torch.zeros_like(y)
        target[y] = sample["true_target"][matched[y]]
        true_weight = torch.where(target, 1.0, spec.other_true_weight)
        weights = torch.where(y, true_weight, torch.full_like(y, spec.fake_weight, dtype=torch.float32))
        sample.update(edge_index=edge_index, edge_attr=edge_attr, y=y, weights=weights)
    return sample


class EventDataset(Dataset):
    """Prepared samples of a list of events or event files (``event<9 digits>`` prefixes).

    Samples are built on first access and kept in memory when ``cache`` is set (graph building is the
    slow part, and small training sets are read many times).
    """

    def __init__(self, events: Sequence[Event | str | Path], spec: SampleSpec, cache: bool = True):
        self.events, self.spec, self.cache = list(events), spec, cache
        self._cached: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, index: int) -> dict:
        if index in self._cached:
            return self._cached[index]
        event = self.events[index]
        sample = prepare_sample(event if isinstance(event, Event) else read_event(event), self.spec)
        if self.cache:
            self._cached[index] = sample
        return sample


def _single(batch: list[dict]) -> dict:
    return batch[0]


class EventDataModule(L.LightningDataModule):
    """Training and validation events from Parquet event directories (``gnn4itk simulate``) or lists.

    Args:
        train, val: event directory or list of events / prefixes.
        spec: :class:`SampleSpec`.
        train_events, val_events: use at most this many events of each.
        num_workers: DataLoader workers (0 keeps the sample cache in the main process).
    """

    def __init__(self, train, val, spec: SampleSpec, train_events: int | None = None, val_events: int | None = None, num_workers: int = 0):
        super().__init__()
        self.train_set = EventDataset(self._events(train, train_events, "training"), spec)
        self.val_set = EventDataset(self._events(val, val_events, "validation"), spec)
        self.num_workers = num_workers

    @staticmethod
    def _events(source, limit: int | None, what: str) -> list:
        if isinstance(source, (str, Path)):
            if not Path(source).is_dir():
                raise FileNotFoundError(f"{what} event directory {source} does not exist")
            events = list_events(source)
        else:
            events = list(source)
        events = events[:limit] if limit is not None else events
        if not events:
            raise ValueError(f"no {what} events found in {source}")
        return events

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=1, shuffle=True, collate_fn=_single, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1, shuffle=False, collate_fn=_single, num_workers=self.num_workers)
