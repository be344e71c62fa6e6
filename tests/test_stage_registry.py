"""The stage model of issue #18: behaviour of the shipped pipelines unchanged.

``tests/data/shipped_pipeline_labels.npz`` holds the LABELS of the three shipped pipelines (their
configurations and weights; ModuleMap with a tiny map built from the event's truth, as the CLI tests do)
on one small synthetic event, recorded from the eager pipeline, the scripted pipeline and the CLI before
the stage registry replaced the hand-written factories. Re-record (only for an intended change) with
``python -m tests.test_stage_registry --record``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gnn4itk.pipeline import build_pipeline

REPO = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).parent / "data" / "shipped_pipeline_labels.npz"
SHIPPED = ("ModuleMap", "MetricLearning", "DoubleMetricLearning")
RUNS = ("eager", "scripted", "cli")


def _event():
    from module_map.synthetic import synthetic_event

    return synthetic_event(n_particles=150, seed=2024)


def baseline_event() -> torch.Tensor:
    """FEATURES [N, 16] float32 of the recorded event (1372 spacepoints of 150 synthetic particles)."""
    return _event().inference_tensor()


def tiny_module_map(directory: Path) -> Path:
    """The module map of the recorded event's own truth (the map the recorded ModuleMap LABELS used)."""
    from module_map.build import BuildOptions, build_module_map

    module_map, _ = build_module_map([_event()], BuildOptions(tolerance=1e-3), progress=False)
    return module_map.save(directory / "tiny_map.npz")


def shipped_labels(directory: Path, runs=RUNS) -> dict[str, np.ndarray]:
    """``{"<pipeline>_<run>": LABELS int64 [L]}`` of the shipped pipelines on :func:`baseline_event`."""
    directory.mkdir(parents=True, exist_ok=True)
    features = baseline_event()
    map_path = tiny_module_map(directory)
    features_path = directory / "features.pt"
    torch.save(features, features_path)
    out = {}
    for name in SHIPPED:
        map_override = str(map_path) if name == "ModuleMap" else None
        pipeline = build_pipeline(name, module_map_path=map_override)
        with torch.no_grad():
            if "eager" in runs:
                out[f"{name}_eager"] = pipeline(features).numpy()
            if "scripted" in runs:
                out[f"{name}_scripted"] = torch.jit.script(pipeline)(features).numpy()
        if "cli" in runs:
            labels_path = directory / f"{name}_cli.pt"
            command = [sys.executable, "-m", "gnn4itk.inference", "--pipeline", name, "-i", str(features_path),
                       "-d", "cpu", "--no-progress", "-o", str(labels_path)]
            command += ["-mmp", map_override] if map_override else []
            result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
            assert result.returncode == 0, result.stderr
            out[f"{name}_cli"] = torch.load(labels_path, weights_only=True).numpy()
    return out


def test_shipped_pipelines_give_the_recorded_labels(tmp_path):
    """Eager, scripted and CLI LABELS of the three shipped pipelines equal the ones recorded before."""
    recorded = np.load(BASELINE)
    assert float(recorded["features_sum"]) == float(baseline_event().double().sum()), "the synthetic event changed"
    now = shipped_labels(tmp_path)
    for key, labels in now.items():
        np.testing.assert_array_equal(labels, recorded[key].astype(np.int64), err_msg=key)
    for name in SHIPPED:
        assert (recorded[f"{name}_eager"] == -1).sum() > 10, f"{name}: the recorded event gives tracks"


def record(path: Path = BASELINE) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        labels = shipped_labels(Path(scratch))
    for name in SHIPPED:
        for run in RUNS[1:]:
            assert np.array_equal(labels[f"{name}_{run}"], labels[f"{name}_eager"]), f"{name}: {run} != eager"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.astype(np.int32) for k, v in labels.items()}
    np.savez_compressed(path, features_sum=np.float64(baseline_event().double().sum()), **arrays)
    print(f"{path}: {', '.join(f'{k} [{len(v)}]' for k, v in labels.items())}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        record()
    else:
        raise SystemExit("usage: python -m tests.test_stage_registry --record")
