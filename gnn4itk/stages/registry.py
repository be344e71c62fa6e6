"""Registries from a configuration ``kind`` to the code that builds that stage.

One registry per stage kind: :data:`GRAPH_CONSTRUCTION`, :data:`EDGE_CLASSIFICATION`,
:data:`TRACK_BUILDING` (whose ``kind`` defaults to ``gnn4itk``). A builder is either a function
``builder(stage: dict, context: BuildContext) -> nn.Module`` or a class with a ``from_config`` classmethod
(:class:`gnn4itk.stages.interfaces.Stage`); registering it is one decorator in its own file::

    @register_edge_classification("constant")
    class ConstantScores(Stage):
        @classmethod
        def from_config(cls, stage, context):
            return cls(float(stage.get("score", 0.5)))

        def forward(self, features, edge_index, edge_attr):
            ...

and a pipeline configuration selects it with ``kind: constant``. Modules of the ``gnn4itk.stages`` package
are imported when a kind is first not found, so a new file there needs no other line; stages of another
package are registered by importing it (a pipeline configuration lists such modules under ``imports``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from torch import nn

from gnn4itk.registry import Registry

Builder = Callable[[dict, "BuildContext"], nn.Module]


@dataclass
class BuildContext:
    """What a stage builder gets besides its own configuration section.

    Attributes:
        columns: the FEATURES column names, in order.
        base_dir: folder against which relative paths of the configuration are resolved.
        module_map_path: a module map given by the user (relative to where they are), or None.
        gnn_checkpoint: a GNN checkpoint given by the user, or None.
        auto_cast: float16 autocast for the GNN on CUDA (with float32 fall-back): True or False overrides
            the configuration's ``auto_cast``, None keeps it.
        verbose: print what is loaded.
    """

    columns: Sequence[str]
    base_dir: Path = Path(".")
    module_map_path: str | None = None
    gnn_checkpoint: str | None = None
    auto_cast: bool | None = None
    verbose: bool = False

    def path(self, value) -> Path:
        """A configuration path: absolute as given, relative against :attr:`base_dir`."""
        path = Path(str(value))
        return path if path.is_absolute() else Path(self.base_dir) / path

    def checkpoint(self, stage: dict, override: str | None = None) -> nn.Module:
        """The model of the stage's ``checkpoint`` (or of ``override``, given by the user: relative to where
        they are), loaded with :func:`gnn4itk.models.load_acorn_checkpoint`."""
        from gnn4itk.models import load_acorn_checkpoint

        if override is not None:
            path = Path(override)
        elif stage.get("checkpoint") is not None:
            path = self.path(stage["checkpoint"])
        else:
            raise ValueError(f"stage {stage.get('kind')} names no checkpoint")
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint {path}")
        return load_acorn_checkpoint(path)

    @staticmethod
    def node_inputs(model: nn.Module, stage: dict) -> tuple[list, list]:
        """The node feature names and scales of a stage: the configuration's, else the checkpoint's."""
        hparams = getattr(model, "hparams", {})
        names = stage.get("node_features", hparams.get("node_features"))
        scales = stage.get("node_scales", hparams.get("node_scales"))
        if names is None or scales is None:
            raise ValueError(f"stage {stage.get('kind')}: node_features/node_scales are in neither config nor checkpoint")
        return list(names), [float(s) for s in scales]


class StageRegistry(Registry):
    """``kind`` -> builder for one section of a pipeline configuration.

    Args:
        section: the configuration key (``graph_construction``, ``edge_classification``, ``track_building``).
        default: the kind of a section that names none (None: ``kind`` is required).
    """

    def __init__(self, section: str, default: str | None = None):
        super().__init__(f"{section} kind", __package__)
        self.section = section
        self.default = default

    def register(self, kind: str):
        """Decorator registering a builder function, or a class with ``from_config``, under ``kind``."""

        def decorate(target):
            builder = getattr(target, "from_config", None) if isinstance(target, type) else target
            if not callable(builder):
                raise TypeError(f"{target!r} is neither a builder function nor a class with from_config")
            self.add(kind, builder)
            return target

        return decorate

    def kinds(self) -> list[str]:
        """Every registered kind (the ``gnn4itk.stages`` package's modules imported first)."""
        return self.names()

    def build(self, stage: dict, context: BuildContext) -> nn.Module:
        """The stage that the configuration section ``stage`` describes.

        Raises:
            ValueError: for an unknown kind (naming the known ones).
        """
        stage = dict(stage or {})
        return self.get(stage.get("kind", self.default))(stage, context)


GRAPH_CONSTRUCTION = StageRegistry("graph_construction")
EDGE_CLASSIFICATION = StageRegistry("edge_classification")
TRACK_BUILDING = StageRegistry("track_building", default="gnn4itk")
register_graph_construction = GRAPH_CONSTRUCTION.register
register_edge_classification = EDGE_CLASSIFICATION.register
register_track_building = TRACK_BUILDING.register


def import_stage_modules(names: Sequence[str]) -> None:
    """Import the modules a configuration lists under ``imports`` (where stages of its own register)."""
    for name in names:
        importlib.import_module(str(name))
