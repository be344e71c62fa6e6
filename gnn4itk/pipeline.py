"""The ``Pipeline``: graph construction -> edge classification -> track building, as one module.

``Pipeline.forward(FEATURES [N, F] float32) -> LABELS [L] int64`` is the whole GNN4ITk inference of
one event. The CLI runs this module, ``torch.jit.script`` compiles it unchanged for export, and
Triton serves the exported file: there is no second inference path.

Which stages make up a pipeline is configuration (``configs/<Pipeline>.yaml``), read by
:func:`build_pipeline`.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor, nn

from gnn4itk.stages import InputGuard, TrackBuildingStage

PIPELINE_NAMES = ("ModuleMap", "MetricLearning", "DoubleMetricLearning")
DEFAULT_MAX_SPACEPOINTS = 1_000_000


class Pipeline(nn.Module):
    """One event's spacepoints in, track candidates out.

    Args:
        graph_construction: ``features [N, F] -> (edge_index [2, E], edge_attr [E, 6])``.
        edge_classifiers: applied in order; each ``(features, edge_index, edge_attr) -> (edge_index,
            edge_attr, scores)``. The scores of the last one feed the track builder.
        track_builder: :class:`gnn4itk.track_building.TrackBuilder`.
        columns: names of the F FEATURES columns (``r`` and ``z`` are required for track building).
        max_spacepoints: larger events are refused with an error rather than risking running out of memory.

    Forward:
        features (FloatTensor [N, F]): the spacepoints, columns as configured. NaN and +-inf are
        replaced by 0 (``input_guard.last_non_finite`` counts them).

    Returns:
        LongTensor [L]: LABELS (row indices, each track ended by -1), ``[-1]`` for < 3 spacepoints.

    Raises:
        ValueError (``torch.jit.Error`` when scripted) for a wrong rank, width or dtype, or an event above
        ``max_spacepoints``.
    """

    def __init__(
        self,
        graph_construction: nn.Module,
        edge_classifiers: Sequence[nn.Module],
        track_builder: nn.Module,
        columns: Sequence[str],
        max_spacepoints: int = DEFAULT_MAX_SPACEPOINTS,
    ):
        super().__init__()
        if len(edge_classifiers) == 0:
            raise ValueError("a pipeline needs at least one edge classifier (the GNN)")
        self.columns: List[str] = list(columns)
        self.input_guard = InputGuard(self.columns, max_spacepoints)
        self.graph_construction = graph_construction
        self.edge_classifiers = nn.ModuleList(edge_classifiers)
        self.track_building = TrackBuildingStage(track_builder, self.columns)

    def forward(self, features: Tensor) -> Tensor:
        features = self.input_guard(features)
        if features.shape[0] < 3:
            return torch.full((1,), -1, dtype=torch.long, device=features.device)
        edge_index, edge_attr = self.graph_construction(features)
        scores = torch.ones(edge_index.shape[1], dtype=torch.float32, device=features.device)
        for classifier in self.edge_classifiers:
            edge_index, edge_attr, scores = classifier(features, edge_index, edge_attr)
        return self.track_building(features, edge_index, scores)


# ---------------------------------------------------------------------------------------------------
# Building a pipeline from its configuration (configs/<Pipeline>.yaml)


def load_pipeline_config(path_or_name: str) -> dict:
    """Read a pipeline configuration: a YAML path, or a pipeline name for ``configs/<name>.yaml``.

    Relative paths inside the configuration (checkpoints, module map) are resolved against the
    configuration file's folder.
    """
    from pathlib import Path

    import yaml

    path = Path(path_or_name)
    if not path.exists() and path_or_name in PIPELINE_NAMES:
        path = default_config_dir() / f"{path_or_name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no pipeline configuration {path_or_name}")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or config.get("pipeline") not in PIPELINE_NAMES:
        raise ValueError(f"{path}: 'pipeline' must be one of {PIPELINE_NAMES}")
    config["_base_dir"] = str(path.resolve().parent)
    return config


def default_config_dir():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "configs"


def _resolve(config: dict, value: str):
    from pathlib import Path

    path = Path(value)
    return path if path.is_absolute() else Path(config.get("_base_dir", ".")) / path


def _node_inputs(model: nn.Module, stage: dict) -> tuple[list, list]:
    """The node feature names and scales of a stage: the configuration's, else the checkpoint's."""
    hparams = getattr(model, "hparams", {})
    names = stage.get("node_features", hparams.get("node_features"))
    scales = stage.get("node_scales", hparams.get("node_scales"))
    if names is None or scales is None:
        raise ValueError(f"stage {stage.get('kind')}: node_features/node_scales are in neither config nor checkpoint")
    return list(names), [float(s) for s in scales]


def _checkpoint(config: dict, stage: dict, override: str | None) -> nn.Module:
    from gnn4itk.models import load_acorn_checkpoint

    from pathlib import Path

    if override is not None:  # given by the user: relative to where they are
        path = Path(override)
    elif stage.get("checkpoint") is not None:
        path = _resolve(config, str(stage["checkpoint"]))
    else:
        raise ValueError(f"stage {stage.get('kind')} names no checkpoint")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint {path}")
    return load_acorn_checkpoint(path)


def build_pipeline(
    config: dict | str,
    module_map_path: str | None = None,
    gnn_checkpoint: str | None = None,
    auto_cast: bool = False,
    verbose: bool = False,
) -> Pipeline:
    """Assemble the :class:`Pipeline` a configuration describes, with its weights and module map.

    Args:
        config: configuration dict or a path/pipeline name for :func:`load_pipeline_config`.
        module_map_path: overrides ``graph_construction.module_map``.
        gnn_checkpoint: overrides the GNN stage's ``checkpoint``.
        auto_cast: float16 autocast for the GNN on CUDA (with float32 fall-back).
        verbose: print what is loaded ("Use ChainedInteractionGNN2", the map summary).

    Returns:
        the pipeline on the CPU in eval mode (move it with ``.to(device)``).
    """
    from pathlib import Path

    from gnn4itk.models import RadiusGraph
    from gnn4itk.stages import FilterStage, GNNStage, MetricLearningGraph, ModuleMapGraph
    from gnn4itk.track_building import TrackBuilder

    if not isinstance(config, dict):
        config = load_pipeline_config(config)
    columns = list(config["features"])
    graph_cfg = dict(config["graph_construction"])
    kind = graph_cfg.get("kind")
    if kind == "module_map":
        from module_map.graph_builder import ModuleMapGraphBuilder
        from module_map.map import load_map

        if module_map_path is not None:  # given by the user: relative to where they are
            map_path = module_map_path
        elif graph_cfg.get("module_map") is not None:
            map_path = _resolve(config, str(graph_cfg["module_map"]))
        else:
            raise ValueError("the module-map pipeline needs a module map (graph_construction.module_map or -mmp)")
        if str(map_path).endswith(".npz") and not Path(map_path).exists():
            hint = " (build the default map with `make default-map`)" if module_map_path is None else ""
            raise FileNotFoundError(f"no module map file {map_path}{hint}")
        module_map = load_map(map_path, verbose=verbose)
        builder = ModuleMapGraphBuilder(
            module_map,
            **{k: int(graph_cfg[k]) for k in ("pair_chunk", "triplet_chunk") if k in graph_cfg},
        )
        graph = ModuleMapGraph(builder, columns)
    elif kind == "metric_learning":
        embedding = _checkpoint(config, graph_cfg, None)
        names, scales = _node_inputs(embedding, graph_cfg)
        radius = RadiusGraph(
            r_max=float(graph_cfg.get("r_max", 0.12)),
            k_max=int(graph_cfg.get("k_max", 1000)),
            method=str(graph_cfg.get("method", "tree")),
            **{k: int(graph_cfg[k]) for k in ("max_candidates", "leaf_size", "levels_per_step") if k in graph_cfg},
        )
        double = type(embedding).__name__ == "DoubleMetricLearning"
        graph = MetricLearningGraph(embedding, radius, columns, names, scales, double=double)
        if verbose:
            print(f"Use {type(embedding).__name__} (r_max={radius.r_max}, k_max={radius.k_max})")
    else:
        raise ValueError(f"unknown graph_construction kind {kind!r}: expected 'module_map' or 'metric_learning'")

    classifiers: list[nn.Module] = []
    for stage in config["edge_classification"]:
        stage = dict(stage)
        if stage.get("kind") == "filter":
            model = _checkpoint(config, stage, None)
            if "filter_cut" in stage:
                model.filter_cut = float(stage["filter_cut"])
            if "filter_batches" in stage:
                model.filter_batches = max(1, int(stage["filter_batches"]))
            names, scales = _node_inputs(model, stage)
            classifiers.append(FilterStage(model, columns, names, scales))
        elif stage.get("kind") == "gnn":
            model = _checkpoint(config, stage, gnn_checkpoint)
            if verbose:
                print(f"Use {type(model).__name__}")
            names, scales = _node_inputs(model, stage)
            gnn = GNNStage(model, columns, names, scales)
            gnn.auto_cast = bool(auto_cast)
            classifiers.append(gnn)
        else:
            raise ValueError(f"unknown edge_classification kind {stage.get('kind')!r}: expected 'filter' or 'gnn'")

    tb = dict(config.get("track_building", {}))
    tracks = TrackBuilder(
        cc_cut=float(tb.get("cc_cut", 0.01)),
        walk_min=float(tb.get("walk_min", 0.1)),
        walk_max=float(tb.get("walk_max", 0.6)),
        mode=str(tb.get("mode", "cc_and_walk")),
    )
    pipeline = Pipeline(graph, classifiers, tracks, columns, int(config.get("max_spacepoints", DEFAULT_MAX_SPACEPOINTS)))
    return pipeline.eval()
