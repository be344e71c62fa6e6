"""The ``Pipeline``: graph construction -> edge classification -> track building, as one module.

``Pipeline.forward(FEATURES [N, F] float32) -> LABELS [L] int64`` is the whole GNN4ITk inference of
one event. The CLI runs this module, ``torch.jit.script`` compiles it unchanged for export, and
Triton serves the exported file: there is no second inference path.

Which stages make up a pipeline is configuration (``configs/<Pipeline>.yaml``), read by
:func:`build_pipeline` through the stage registries of :mod:`gnn4itk.stages.registry`; the configuration
also names the pipeline (any Triton model name). :data:`PIPELINE_NAMES` are the shipped ones.
"""

import re
from pathlib import Path
from typing import List, Sequence

import torch
from torch import Tensor, nn

from gnn4itk.defaults import MAX_SPACEPOINTS, MODEL_NAME_PATTERN
from gnn4itk.stages.features import InputGuard
from gnn4itk.stages.interfaces import EdgeClassification, GraphConstruction, TrackBuilding, no_tracks, stage_settings, too_few_spacepoints

PIPELINE_NAMES = ("ModuleMap", "MetricLearning", "DoubleMetricLearning")
"""The shipped pipelines (``configs/<name>.yaml``): what the CLI and export offer by default."""


class Pipeline(nn.Module):
    """One event's spacepoints in, track candidates out.

    Args:
        graph_construction: a :class:`~gnn4itk.stages.interfaces.GraphConstruction` stage.
        edge_classifiers: :class:`~gnn4itk.stages.interfaces.EdgeClassification` stages, applied in order;
            the scores of the last one feed track building.
        track_building: a :class:`~gnn4itk.stages.interfaces.TrackBuilding` stage.
        columns: names of the F FEATURES columns.
        max_spacepoints: larger events are refused with an error rather than risking running out of memory.
        classifier_names: a name per edge classifier (its configuration ``kind``; numbered where a kind
            repeats): the ensemble's stage names at export and the CLI's timing rows. Default ``classifier<i>``.

    Forward:
        features (FloatTensor [N, F]): the spacepoints, columns as configured. NaN and +-inf are
        replaced by 0 (``input_guard.last_non_finite`` counts them).

    Returns:
        LongTensor [L]: LABELS (row indices, each track ended by -1), ``[-1]`` for too few spacepoints
        (:func:`~gnn4itk.stages.interfaces.too_few_spacepoints`).

    Raises:
        ValueError (``torch.jit.Error`` when scripted) for a wrong rank, width or dtype, or an event above
        ``max_spacepoints``. ``torch.jit.script`` refuses a stage whose forward does not match its interface.
    """

    # TorchScript checks the stages against these interfaces when the pipeline is scripted (evaluated
    # annotations: this module does not use ``from __future__ import annotations``).
    graph_construction: GraphConstruction
    track_building: TrackBuilding

    def __init__(
        self,
        graph_construction: nn.Module,
        edge_classifiers: Sequence[nn.Module],
        track_building: nn.Module,
        columns: Sequence[str],
        max_spacepoints: int = MAX_SPACEPOINTS,
        classifier_names: Sequence[str] | None = None,
    ):
        super().__init__()
        if len(edge_classifiers) == 0:
            raise ValueError("a pipeline needs at least one edge classifier (the GNN)")
        names = list(classifier_names) if classifier_names is not None else [f"classifier{i}" for i in range(len(edge_classifiers))]
        if len(names) != len(edge_classifiers):
            raise ValueError(f"{len(names)} classifier names for {len(edge_classifiers)} edge classifiers")
        self.columns: List[str] = list(columns)
        self.classifier_names: List[str] = unique_names(names)
        self.input_guard = InputGuard(self.columns, max_spacepoints)
        self.graph_construction = graph_construction
        self.edge_classifiers = nn.ModuleList(edge_classifiers)
        self.track_building = track_building

    def forward(self, features: Tensor) -> Tensor:
        features = self.input_guard(features)
        if too_few_spacepoints(features):
            return no_tracks(features)
        edge_index, edge_attr = self.graph_construction(features)
        scores = torch.ones(edge_index.shape[1], dtype=torch.float32, device=features.device)
        for i in range(len(self.edge_classifiers)):
            # the interface type makes TorchScript check every classifier's forward
            classifier: EdgeClassification = self.edge_classifiers[i]
            if torch.jit.is_scripting():
                edge_index, edge_attr, scores = classifier.forward(features, edge_index, edge_attr)
            else:  # through __call__: forward hooks (the CLI's timing and progress) see the stage
                edge_index, edge_attr, scores = classifier(features, edge_index, edge_attr)
        return self.track_building(features, edge_index, scores)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of every stage in the order forward runs them: ``graph``, the edge classifiers
        (:attr:`classifier_names`), ``tracks`` (the input guard not included)."""
        return [
            ("graph", self.graph_construction),
            *zip(self.classifier_names, self.edge_classifiers),
            ("tracks", self.track_building),
        ]

    def settings(self) -> dict:
        """The cuts and options of every stage (:meth:`gnn4itk.stages.interfaces.Stage.settings`), by key;
        what the exported ``config.pbtxt`` records."""
        settings: dict = {}
        for name, stage in self.stages():
            for key, value in stage_settings(stage).items():
                settings[key if key not in settings else f"{name}_{key}"] = value
        return settings


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with a repeated one numbered by its position (``gnn``, ``gnn_1``)."""
    unique: list[str] = []
    for i, name in enumerate(names):
        unique.append(name if name not in unique else f"{name}_{i}")
    return unique


# ---------------------------------------------------------------------------------------------------
# Building a pipeline from its configuration (configs/<Pipeline>.yaml)


def check_pipeline_name(name) -> str:
    """``name`` if it can name a served pipeline (a Triton model name: a letter, then ``[A-Za-z0-9_-]``).

    Raises:
        ValueError: otherwise.
    """
    if not isinstance(name, str) or not re.match(MODEL_NAME_PATTERN, name):
        raise ValueError(f"pipeline name {name!r} must start with a letter and use only [A-Za-z0-9_-]")
    return name


def load_pipeline_config(path_or_name: str) -> dict:
    """Read a pipeline configuration: a YAML path, or a name for ``configs/<name>.yaml``.

    The configuration names its pipeline (``pipeline``: any valid Triton model name). Relative paths
    inside it (checkpoints, module map) are resolved against the configuration file's folder.
    """
    import yaml

    path = Path(path_or_name)
    if not path.exists() and re.match(MODEL_NAME_PATTERN, str(path_or_name)):
        path = default_config_dir() / f"{path_or_name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no pipeline configuration {path_or_name}")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a pipeline configuration is a mapping")
    try:
        check_pipeline_name(config.get("pipeline"))
    except ValueError as error:
        raise ValueError(f"{path}: 'pipeline': {error}") from None
    config["_base_dir"] = str(path.resolve().parent)
    return config


def default_config_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs"


def build_pipeline(
    config: dict | str,
    module_map_path: str | None = None,
    gnn_checkpoint: str | None = None,
    auto_cast: bool | None = None,
    verbose: bool = False,
) -> Pipeline:
    """Assemble the :class:`Pipeline` a configuration describes, with its weights and module map.

    Every section is built by the registry of its stage kind (:mod:`gnn4itk.stages.registry`) from its
    ``kind``: ``graph_construction``, each entry of ``edge_classification``, ``track_building`` (kind
    ``gnn4itk`` when it names none). Modules listed under ``imports`` are imported first (stages of your own).

    Args:
        config: configuration dict or a path/pipeline name for :func:`load_pipeline_config`.
        module_map_path: overrides the module map of a ``module_map`` graph construction.
        gnn_checkpoint: overrides the ``gnn`` stage's ``checkpoint``.
        auto_cast: float16 autocast for the GNN on CUDA (with float32 fall-back): True or False overrides
            the ``gnn`` stage's ``auto_cast``; None (the default) keeps the configuration's.
        verbose: print what is loaded ("Use ChainedInteractionGNN2", the map summary).

    Returns:
        the pipeline on the CPU in eval mode (move it with ``.to(device)``).
    """
    from gnn4itk.stages.registry import EDGE_CLASSIFICATION, GRAPH_CONSTRUCTION, TRACK_BUILDING, BuildContext, import_stage_modules

    if not isinstance(config, dict):
        config = load_pipeline_config(config)
    import_stage_modules(config.get("imports", []))
    context = BuildContext(
        columns=list(config["features"]),
        base_dir=Path(config.get("_base_dir", ".")),
        module_map_path=module_map_path,
        gnn_checkpoint=gnn_checkpoint,
        auto_cast=auto_cast,
        verbose=verbose,
    )
    graph = GRAPH_CONSTRUCTION.build(config["graph_construction"], context)
    sections = [dict(stage) for stage in config["edge_classification"]]
    classifiers = [EDGE_CLASSIFICATION.build(stage, context) for stage in sections]
    tracks = TRACK_BUILDING.build(config.get("track_building", {}), context)
    pipeline = Pipeline(
        graph,
        classifiers,
        tracks,
        context.columns,
        int(config.get("max_spacepoints", MAX_SPACEPOINTS)),
        classifier_names=[str(stage.get("kind")) for stage in sections],
    )
    return pipeline.eval()
