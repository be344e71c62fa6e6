"""The stage interfaces: one per stage kind, checked by TorchScript when a pipeline is scripted.

A pipeline (:class:`gnn4itk.pipeline.Pipeline`) is FEATURES -> graph construction -> edge classification
(one or more, in order) -> track building -> LABELS. Every stage is an ``nn.Module`` that reads what it
needs from the raw FEATURES tensor [N, F] (float32, columns named by the pipeline configuration), so the
same module runs eagerly, under ``torch.jit.script``, and as its own model in a Triton ensemble.

The pipeline declares its stages with the interface types below; ``torch.jit.script(pipeline)`` refuses a
stage whose ``forward`` does not match its interface, naming both signatures.

* :class:`GraphConstruction` -- ``forward(features [N, F]) -> (edge_index [2, E], edge_attr [E, 6])``.
* :class:`EdgeClassification` -- ``forward(features, edge_index, edge_attr) -> (edge_index, edge_attr,
  scores [E'])``; it may drop edges.
* :class:`TrackBuilding` -- ``forward(features, edge_index, scores) -> LABELS [L]``.

:class:`Stage` is the optional base class of implementations: ``from_config`` (how a registry builds one,
:mod:`gnn4itk.stages.registry`) and ``settings`` (the cuts it runs with, recorded at export).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from gnn4itk.defaults import MIN_SPACEPOINTS


@torch.jit.interface
class GraphConstruction(nn.Module):
    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """FEATURES (FloatTensor [N, F]) -> edge_index (LongTensor [2, E], inner -> outer), edge_attr
        (FloatTensor [E, 6]: ``dr, dphi, dz, deta, phislope, rphislope``)."""
        pass


@torch.jit.interface
class EdgeClassification(nn.Module):
    def forward(self, features: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """FEATURES [N, F], edge_index (LongTensor [2, E]), edge_attr (FloatTensor [E, 6]) -> the kept
        edge_index [2, E'] and edge_attr [E', 6], and their scores (FloatTensor [E'], in [0, 1])."""
        pass


@torch.jit.interface
class TrackBuilding(nn.Module):
    def forward(self, features: Tensor, edge_index: Tensor, scores: Tensor) -> Tensor:
        """FEATURES [N, F], edge_index (LongTensor [2, E]), scores (FloatTensor [E]) -> LABELS (LongTensor
        [L]: spacepoint rows, each track ended by -1; ``[-1]`` for no track, see :func:`too_few_spacepoints`)."""
        pass


class Stage(nn.Module):
    """Optional base class of a stage implementation.

    A registered class (``@register_edge_classification("kind")`` on the class) is built by its
    :meth:`from_config`; :meth:`settings` is what the exported ``config.pbtxt`` records of it.
    """

    @classmethod
    def from_config(cls, stage: dict, context) -> "Stage":
        """Build the stage from its configuration section ``stage`` (a dict with ``kind``) and the
        :class:`gnn4itk.stages.registry.BuildContext` (FEATURES columns, paths, overrides)."""
        raise NotImplementedError(f"{cls.__qualname__} does not say how to build it from a configuration")

    def settings(self) -> dict:
        """The cuts and options this stage runs with, by configuration key (empty by default)."""
        return {}


def stage_settings(module: nn.Module) -> dict:
    """:meth:`Stage.settings` of ``module``; empty for a stage that does not derive from :class:`Stage`."""
    return module.settings() if isinstance(module, Stage) else {}


def too_few_spacepoints(features: Tensor, minimum: int = MIN_SPACEPOINTS) -> bool:
    """The LABELS rule for tiny events: fewer than ``minimum`` (:data:`gnn4itk.defaults.MIN_SPACEPOINTS`)
    FEATURES rows make no track. (The default argument carries the constant into TorchScript.)"""
    return features.shape[0] < minimum


def no_tracks(features: Tensor) -> Tensor:
    """LABELS of an event without tracks: LongTensor ``[-1]`` on ``features``' device."""
    return torch.full((1,), -1, dtype=torch.long, device=features.device)
