"""Export pipelines to TorchScript: one file per stage and one for the whole (fused) pipeline.

The files hold everything they need (weights, the module map as tensors, the cuts), use no custom ops,
and load with plain ``torch.jit.load`` in a process where gnn4itk is not importable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from export.repository import FEATURES, LABELS, PipelineSpec, StageSpec, TensorSpec
from gnn4itk.pipeline import Pipeline

CLEAN = "CLEAN_FEATURES"


def _save(module: nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def stage_modules(pipeline: Pipeline) -> list[tuple[str, nn.Module, list[str], list[str]]]:
    """(stage name, module, input tensor names, output tensor names) in the order the ensemble runs them.

    Names: ``input``, then :meth:`gnn4itk.pipeline.Pipeline.stages` (``graph``, each edge classifier by its
    configuration kind, ``tracks``); every stage reads the checked FEATURES and what the one before gave.
    """
    (graph_name, graph), *classifiers, (tracks_name, tracks) = pipeline.stages()
    stages = [
        ("input", pipeline.input_guard, [FEATURES], [CLEAN]),
        (graph_name, graph, [CLEAN], ["EDGE_INDEX_0", "EDGE_ATTR_0"]),
    ]
    for i, (name, classifier) in enumerate(classifiers):
        inputs = [CLEAN, f"EDGE_INDEX_{i}", f"EDGE_ATTR_{i}"]
        stages.append((name, classifier, inputs, [f"EDGE_INDEX_{i + 1}", f"EDGE_ATTR_{i + 1}", f"SCORES_{i + 1}"]))
    last = len(classifiers)
    stages.append((tracks_name, tracks, [CLEAN, f"EDGE_INDEX_{last}", f"SCORES_{last}"], [LABELS]))
    return stages


def _tensor(name: str, num_features: int) -> TensorSpec:
    if name in (FEATURES, CLEAN):
        return TensorSpec(name, "FP32", (-1, num_features))
    if name == LABELS:
        return TensorSpec(name, "INT64", (-1,))
    if name.startswith("EDGE_INDEX"):
        return TensorSpec(name, "INT64", (2, -1))
    if name.startswith("EDGE_ATTR"):
        return TensorSpec(name, "FP32", (-1, 6))
    return TensorSpec(name, "FP32", (-1,))  # SCORES


def export_pipeline(pipeline: Pipeline, name: str, out_dir: str | Path, parameters: dict | None = None) -> PipelineSpec:
    """Script and save every stage and the fused pipeline; describe them for the model repository.

    Args:
        pipeline: a :class:`gnn4itk.pipeline.Pipeline` (on the CPU; files are device-independent).
        name: the served name (the configuration's ``pipeline``, e.g. ``ModuleMap``).
        out_dir: folder for ``<name>/<stage>.pt`` and ``<name>/fused.pt``.
        parameters: further settings recorded in the Triton configs, beside (and over) the pipeline's own
            (:meth:`gnn4itk.pipeline.Pipeline.settings`: the cuts its stages run with, only those it has).

    Returns:
        the :class:`export.repository.PipelineSpec` for :func:`export.repository.write_model_repository`.
    """
    pipeline = pipeline.cpu().eval()
    folder = Path(out_dir) / name
    num_features = len(pipeline.columns)
    stages = []
    for stage, module, inputs, outputs in stage_modules(pipeline):
        path = _save(module, folder / f"{stage}.pt")
        stages.append(
            StageSpec(
                stage,
                path,
                [_tensor(t, num_features) for t in inputs],
                [_tensor(t, num_features) for t in outputs],
            )
        )
    fused = _save(pipeline, folder / "fused.pt")
    return PipelineSpec(
        name=name,
        feature_columns=list(pipeline.columns),
        fused=fused,
        stages=stages,
        parameters={**pipeline.settings(), **(parameters or {})},
    )


_ISOLATED_RUNNER = r"""
import json, sys
# The exported files must not need gnn4itk: make it (and its sister packages) unimportable here.
for blocked in ("gnn4itk", "module_map", "export"):
    sys.modules[blocked] = None
import torch
spec = json.loads(sys.argv[1])
features = torch.load(spec["features"], weights_only=True)
fused = torch.jit.load(spec["fused"])
labels = fused(features)
values = {"FEATURES": features, "CLEAN_FEATURES": features}
for stage in spec["stages"]:
    module = torch.jit.load(stage["path"])
    out = module(*[values[name] for name in stage["inputs"]])
    out = out if isinstance(out, tuple) else (out,)
    values.update(zip(stage["outputs"], out))
torch.save({"fused": labels, "chained": values["LABELS"]}, spec["result"])
"""


def run_isolated(spec: PipelineSpec, features: torch.Tensor, work_dir: str | Path) -> dict[str, torch.Tensor]:
    """Run the exported files in a fresh Python process with only torch: LABELS of fused and chained stages.

    Raises:
        RuntimeError: with the child's error output when the files do not run on their own.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save(features, work_dir / "features.pt")
    payload = {
        "features": str(work_dir / "features.pt"),
        "result": str(work_dir / "result.pt"),
        "fused": str(spec.fused),
        "stages": [
            {"path": str(s.torchscript), "inputs": [t.name for t in s.inputs], "outputs": [t.name for t in s.outputs]}
            for s in spec.stages
        ],
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", _ISOLATED_RUNNER, json.dumps(payload)],
        capture_output=True,
        text=True,
        cwd=work_dir,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"exported {spec.name} does not run on its own:\n{result.stderr[-3000:]}")
    return torch.load(work_dir / "result.pt", weights_only=True)
