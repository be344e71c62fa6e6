"""Export of real pipelines: TorchScript files that run alone, a valid model repository, and a real
tritonserver (CPU) whose LABELS equal the in-process pipeline for every pipeline, ensemble and fused."""

import numpy as np
from pathlib import Path

import pytest
import torch

from export.repository import validate_model_repository, write_model_repository
from export.torchscript import export_pipeline, run_isolated
from gnn4itk.pipeline import build_pipeline
from module_map.synthetic import synthetic_event, synthetic_events
from tests.pipeline_fixtures import write_tiny_metric_learning_pipeline, write_tiny_module_map_pipeline


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    configs = {
        "ModuleMap": write_tiny_module_map_pipeline(root / "mm", synthetic_events(2, n_particles=300, seed=21)),
        "MetricLearning": write_tiny_metric_learning_pipeline(root / "ml", double=False),
        "DoubleMetricLearning": write_tiny_metric_learning_pipeline(root / "dml", double=True),
    }
    return root, {name: build_pipeline(config) for name, config in configs.items()}


@pytest.fixture(scope="module")
def features():
    return synthetic_event(n_particles=300, seed=99).inference_tensor()


@pytest.fixture(scope="module")
def specs(pipelines, features):
    root, built = pipelines
    out = {}
    for name, pipeline in built.items():
        spec = export_pipeline(pipeline, name, root / "torchscript", parameters={"cc_cut": 0.01})
        spec.warmup_features = features[:400].numpy()
        out[name] = spec
    return out


def test_exported_files_run_without_gnn4itk_and_equal_eager(pipelines, specs, features, tmp_path):
    _, built = pipelines
    for name, spec in specs.items():
        expected = built[name](features)
        result = run_isolated(spec, features, tmp_path / name)
        torch.testing.assert_close(result["fused"], expected, rtol=0, atol=0)
        torch.testing.assert_close(result["chained"], expected, rtol=0, atol=0)
        assert [s.name for s in spec.stages][:2] == ["input", "graph"] and spec.stages[-1].name == "tracks"


def test_exported_files_hold_no_custom_ops(specs):
    for spec in specs.values():
        for path in [spec.fused] + [s.torchscript for s in spec.stages]:
            graph = str(torch.jit.load(str(path)).inlined_graph)
            assert "torch_scatter" not in graph and "torch_cluster" not in graph


def test_isolated_run_reports_a_broken_file(specs, features, tmp_path):
    spec = specs["ModuleMap"]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not torchscript")
    bad = type(spec)(spec.name, spec.feature_columns, broken, spec.stages, spec.parameters)
    with pytest.raises(RuntimeError, match="does not run on its own"):
        run_isolated(bad, features, tmp_path / "run")


@pytest.mark.parametrize("flavour", ["python", "libtorch"])
def test_model_repository_configs_parse(specs, tmp_path, flavour):
    pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")
    names = write_model_repository(tmp_path / "models", list(specs.values()), flavour=flavour, instance_kind="cpu")
    for public in ("ModuleMap", "MetricLearning", "DoubleMetricLearning", "ModuleMap_fused"):
        assert public in names
    configs = validate_model_repository(tmp_path / "models")
    assert configs["ModuleMap"].platform == "ensemble"
    steps = [step.model_name for step in configs["ModuleMap"].ensemble_scheduling.step]
    assert len(steps) == 4  # input, graph, gnn, tracks


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["python", "libtorch"])
def test_served_labels_equal_in_process_for_every_pipeline(pipelines, specs, features, tmp_path, flavour):
    grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")
    httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient (the 'serve' extra) is not installed")
    from gnn4itk.serve import TritonServer

    _, built = pipelines
    write_model_repository(tmp_path / "models", list(specs.values()), flavour=flavour, instance_kind="cpu")
    array = features.numpy()
    with TritonServer(tmp_path / "models", 0, 0, 0, device="cpu") as server:
        grpc = grpcclient.InferenceServerClient(server.url_grpc)
        http = httpclient.InferenceServerClient(server.url_http)
        try:
            for name, pipeline in built.items():
                expected = pipeline(features).numpy()
                for model in (name, f"{name}_fused"):
                    g_in = grpcclient.InferInput("FEATURES", list(array.shape), "FP32")
                    g_in.set_data_from_numpy(array)
                    np.testing.assert_array_equal(grpc.infer(model, [g_in]).as_numpy("LABELS"), expected)
                    h_in = httpclient.InferInput("FEATURES", list(array.shape), "FP32")
                    h_in.set_data_from_numpy(array, binary_data=True)
                    np.testing.assert_array_equal(http.infer(model, [h_in]).as_numpy("LABELS"), expected)
                # fewer than 3 spacepoints through the chained ensemble too
                tiny = grpcclient.InferInput("FEATURES", [2, array.shape[1]], "FP32")
                tiny.set_data_from_numpy(array[:2].copy())
                assert grpc.infer(name, [tiny]).as_numpy("LABELS").tolist() == [-1]
        finally:
            grpc.close()
            http.close()


def test_export_command_writes_a_checked_repository(tmp_path):
    """`python -m export` end to end: a configured pipeline, the torch-only check, a valid repository;
    a pipeline without weights is skipped loudly with --skip-missing and is an error without it."""
    import subprocess
    import sys

    import yaml

    pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")
    config = write_tiny_module_map_pipeline(tmp_path / "mm", synthetic_events(1, n_particles=200, seed=3))
    (tmp_path / "mm.yaml").write_text(yaml.safe_dump(config))
    # a MetricLearning configuration whose embedding weights do not exist
    missing = yaml.safe_load((Path(__file__).parents[1] / "configs" / "MetricLearning.yaml").read_text())
    missing["graph_construction"]["checkpoint"] = str(tmp_path / "no_such_embedding.ckpt")
    (tmp_path / "ml.yaml").write_text(yaml.safe_dump(missing))
    base = [sys.executable, "-m", "export", "--config", f"ModuleMap={tmp_path / 'mm.yaml'}",
            "--config", f"MetricLearning={tmp_path / 'ml.yaml'}", "--device", "cpu"]
    result = subprocess.run(
        base + ["--pipelines", "ModuleMap", "MetricLearning", "--skip-missing", "--check", "--output", str(tmp_path / "models")],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "skipping MetricLearning" in result.stdout
    assert "ModuleMap: exported files run in a torch-only process and equal the eager pipeline" in result.stdout
    assert {"ModuleMap", "ModuleMap_fused"} <= set(validate_model_repository(tmp_path / "models"))
    result = subprocess.run(base + ["--pipelines", "MetricLearning", "--output", str(tmp_path / "m2")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "error:" in result.stderr and "checkpoint" in result.stderr
    # --auto-cast: the GNN under float16 autocast, recorded in every config of the pipeline
    result = subprocess.run(base + ["--pipelines", "ModuleMap", "--auto-cast", "--output", str(tmp_path / "m3")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    configs = validate_model_repository(tmp_path / "m3")
    assert all(c.parameters["auto_cast"].string_value == "True" for n, c in configs.items() if n.startswith("ModuleMap"))
    assert "auto_cast" not in validate_model_repository(tmp_path / "models")["ModuleMap"].parameters
