"""Model-repository writer: configs parse as Triton ModelConfig, ensembles chain, bad specs are refused.

The toy TorchScript pipelines defined here are also used by the server and client tests.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")

from export.repository import (  # noqa: E402
    FEATURES,
    LABELS,
    PipelineSpec,
    RepositoryError,
    StageSpec,
    TensorSpec,
    features_tensor,
    labels_tensor,
    parse_config,
    to_pbtxt,
    validate_model_repository,
    write_model_repository,
)

COLUMNS = ["x", "y", "z", "r"]
POISON = 1.0e30
"""A value of features[0, 1] that makes the toy pipeline raise, to test failures inside the module."""


class PositiveRows(torch.nn.Module):
    """Toy pipeline: every run of consecutive rows whose first feature is > 0 is one track (Athena LABELS)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features
        self.to_labels = ScoreToLabels()

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 2 or features.size(1) != self.num_features:
            raise ValueError("FEATURES must be [N, " + str(self.num_features) + "]")
        if features.size(0) > 0 and bool(features[0, 1] == 1.0e30):  # the POISON value
            raise RuntimeError("poisoned event: a pipeline failure for the tests")
        return self.to_labels(features[:, 0])


class FirstColumn(torch.nn.Module):
    """Toy stage 1: FEATURES float32 [N, F] -> SCORE float32 [N] (an intermediate tensor)."""

    def forward(self, features: Tensor) -> Tensor:
        return features[:, 0].contiguous()


class ScoreToLabels(torch.nn.Module):
    """Toy stage 2: SCORE float32 [N] -> LABELS int64: runs of consecutive positive rows, each ended by -1."""

    def forward(self, score: Tensor) -> Tensor:
        rows = torch.nonzero(score > 0).flatten()
        if rows.numel() == 0:
            return torch.full([1], -1, dtype=torch.long)
        # A track ends where the next positive row is not the next row; each end is followed by -1.
        is_end = torch.ones_like(rows, dtype=torch.bool)
        is_end[:-1] = rows[1:] - rows[:-1] > 1
        ends_before = torch.cumsum(is_end.long(), 0) - is_end.long()
        out = torch.full([rows.numel() + int(is_end.sum())], -1, dtype=torch.long)
        out[torch.arange(rows.numel()) + ends_before] = rows
        return out


def reference_labels(features: np.ndarray) -> np.ndarray:
    """What the toy pipeline gives in-process, to compare with the server's answers."""
    return PositiveRows(features.shape[1])(torch.from_numpy(features)).numpy()


def toy_specs(directory: Path) -> list[PipelineSpec]:
    """ModuleMap: fused + two chained stages through an intermediate SCORE; MetricLearning: fused only."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, module in {"fused": PositiveRows(len(COLUMNS)), "score": FirstColumn(), "labels": ScoreToLabels()}.items():
        files[name] = directory / f"{name}.pt"
        torch.jit.script(module).save(str(files[name]))
    score = TensorSpec("SCORE", "FP32", (-1,))
    stages = [
        StageSpec("score", files["score"], [features_tensor(len(COLUMNS))], [score]),
        StageSpec("labels", files["labels"], [score], [labels_tensor()]),
    ]
    rng = np.random.default_rng(1)
    return [
        PipelineSpec("ModuleMap", COLUMNS, fused=files["fused"], stages=stages, parameters={"r_max": 0.1}),
        PipelineSpec(
            "MetricLearning", COLUMNS, fused=files["fused"], warmup_features=rng.normal(size=(50, 4)).astype(np.float32)
        ),
    ]


@pytest.mark.parametrize("flavour", ["python", "libtorch"])
def test_ensemble_steps_are_warmed_with_what_the_step_before_gives(tmp_path, flavour):
    from export.repository import random_warmup_features

    write_model_repository(tmp_path / "models", toy_specs(tmp_path / "ts"), flavour=flavour, instance_kind="gpu")
    runner = "ModuleMap_labels" + ("_libtorch" if flavour == "libtorch" else "")
    warmup = tmp_path / "models" / runner / "warmup"
    features = random_warmup_features(1000, len(COLUMNS))  # the toy ModuleMap has no warm-up rows of its own
    expected = FirstColumn()(torch.from_numpy(features)).numpy()
    assert np.array_equal(np.frombuffer((warmup / "SCORE").read_bytes(), dtype="<f4"), expected)
    (entry,) = validate_model_repository(tmp_path / "models")[runner].model_warmup
    assert dict(entry.inputs)[("INPUT__0" if flavour == "libtorch" else "SCORE")].dims == [1000]
    if flavour == "python":  # the digest the score step would send with SCORE, as the labels step checks it
        from export.repository import _python_model_digest

        digest = np.frombuffer((warmup / "SCORE__DIGEST").read_bytes(), dtype="<i8")
        assert digest.tolist() == _python_model_digest(expected).tolist()
        assert dict(entry.inputs)["SCORE__DIGEST"].dims == [1]


@pytest.mark.parametrize("flavour", ["python", "libtorch"])
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_every_config_parses_as_model_config(tmp_path, flavour, kind):
    names = write_model_repository(tmp_path / "models", toy_specs(tmp_path / "ts"), flavour=flavour, instance_kind=kind, count=2, gpus=[0, 1])
    assert names[:3] == ["ModuleMap", "ModuleMap_fused", "MetricLearning"]
    configs = validate_model_repository(tmp_path / "models")
    files = list((tmp_path / "models").glob("*/config.pbtxt")) + list((tmp_path / "models").glob("*/configs/*.pbtxt"))
    assert len(files) >= len(configs)
    for path in files:
        folder = path.parent.parent if path.parent.name == "configs" else path.parent
        assert parse_config(path.read_text(), str(path)).name == folder.name
    for public in ("ModuleMap", "ModuleMap_fused", "MetricLearning", "MetricLearning_fused"):
        config = configs[public]
        assert [(i.name, list(i.dims)) for i in config.input] == [(FEATURES, [-1, 4])]
        assert [(o.name, list(o.dims)) for o in config.output] == [(LABELS, [-1])]
        params = {k: v.string_value for k, v in config.parameters.items()}
        assert params["feature_columns"] == "x,y,z,r" and params["num_features"] == "4"
        assert params["max_spacepoints"] == "1000000" and params["min_spacepoints"] == "3"
        assert "walk_max" not in params  # only the pipeline's own settings: no table of GNN4ITk cuts
    assert {k: v.string_value for k, v in configs["ModuleMap"].parameters.items()}["r_max"] == "0.1"
    runners = [c for c in configs.values() if c.platform != "ensemble"]
    assert len(runners) == 4  # two stages + a fused model for ModuleMap, a fused model for MetricLearning
    for config in runners:
        group = config.instance_group[0]
        assert group.count == 2 and group.kind == (group.KIND_GPU if kind == "gpu" else group.KIND_CPU)
        assert list(group.gpus) == ([0, 1] if kind == "gpu" else [])
        assert len(config.model_warmup) == 1  # the labels step too: with what the score step gives
    if flavour == "libtorch":
        assert all(c.platform == "pytorch_libtorch" and c.input[0].name == "INPUT__0" for c in runners)
        step = configs["ModuleMap_fused"].ensemble_scheduling.step[0]
        assert step.model_name == "ModuleMap_fused_libtorch"
        assert dict(step.input_map) == {"INPUT__0": FEATURES} and dict(step.output_map) == {"OUTPUT__0": LABELS}
    else:
        assert all(c.backend == "python" for c in runners)
        assert configs["ModuleMap_fused"].platform != "ensemble"
        steps = configs["ModuleMap"].ensemble_scheduling.step
        assert [s.model_name for s in steps] == ["ModuleMap_score", "ModuleMap_labels"]
        assert dict(steps[1].input_map) == {"SCORE": "SCORE", "SCORE__DIGEST": "SCORE__DIGEST"}


def test_both_instance_kinds_are_written_for_the_device_switch(tmp_path):
    write_model_repository(tmp_path / "m", toy_specs(tmp_path / "ts"), instance_kind="cpu")
    model = tmp_path / "m" / "ModuleMap_fused"
    assert (model / "config.pbtxt").read_text() == (model / "configs" / "cpu.pbtxt").read_text()
    gpu = parse_config((model / "configs" / "gpu.pbtxt").read_text())
    assert gpu.instance_group[0].kind == gpu.instance_group[0].KIND_GPU
    # Tensors cross the python stub's boundary on the host only: the python backend's GPU path returned
    # wrong LABELS without an error once Triton's CUDA memory pool ran dry (export/python_backend/model.py).
    assert "FORCE_CPU_ONLY_INPUT_TENSORS" not in gpu.parameters
    score = parse_config((tmp_path / "m" / "ModuleMap_score" / "configs" / "gpu.pbtxt").read_text())
    assert [o.name for o in score.output] == ["SCORE", "SCORE__DIGEST"]
    labels = parse_config((tmp_path / "m" / "ModuleMap_labels" / "configs" / "gpu.pbtxt").read_text())
    assert [i.name for i in labels.input] == ["SCORE", "SCORE__DIGEST"] and [o.name for o in labels.output] == ["LABELS"]


def test_warmup_files_hold_the_given_features(tmp_path):
    specs = toy_specs(tmp_path / "ts")
    write_model_repository(tmp_path / "m", specs, instance_kind="cpu", warmup_spacepoints=64)
    stored = np.fromfile(tmp_path / "m" / "MetricLearning_fused" / "warmup" / FEATURES, dtype="<f4").reshape(50, 4)
    np.testing.assert_array_equal(stored, specs[1].warmup_features)
    random = np.fromfile(tmp_path / "m" / "ModuleMap_fused" / "warmup" / FEATURES, dtype="<f4")
    assert random.size == 64 * 4 and np.isfinite(random).all()  # not Triton's random bytes, which hold NaNs


def test_broken_chains_are_refused_with_the_reason(tmp_path):
    specs = toy_specs(tmp_path / "ts")
    score_stage, labels_stage = specs[0].stages
    cases = {
        "neither FEATURES nor made by an earlier stage": [labels_stage, score_stage],
        "no stage produces LABELS": [score_stage],
        "stage names must be unique": [score_stage, score_stage],
        "already produced": [score_stage, StageSpec("again", score_stage.torchscript, score_stage.inputs, score_stage.outputs)],
    }
    for message, stages in cases.items():
        bad = PipelineSpec("ModuleMap", COLUMNS, stages=stages)
        with pytest.raises(RepositoryError, match=message):
            write_model_repository(tmp_path / "bad", [bad], overwrite=True)
    wrong_type = StageSpec("labels", labels_stage.torchscript, [TensorSpec("SCORE", "INT64", (-1,))], [labels_tensor()])
    with pytest.raises(RepositoryError, match="SCORE is INT64 but was produced as FP32"):
        write_model_repository(tmp_path / "bad", [PipelineSpec("M", COLUMNS, stages=[score_stage, wrong_type])], overwrite=True)


def test_bad_options_and_specs_are_refused(tmp_path):
    specs = toy_specs(tmp_path / "ts")
    with pytest.raises(RepositoryError, match="flavour"):
        write_model_repository(tmp_path / "a", specs, flavour="onnx")
    with pytest.raises(RepositoryError, match="instance_kind"):
        write_model_repository(tmp_path / "a", specs, instance_kind="tpu")
    with pytest.raises(RepositoryError, match="fused TorchScript file, stages, or both"):
        write_model_repository(tmp_path / "a", [PipelineSpec("M", COLUMNS)])
    with pytest.raises(RepositoryError, match="not found"):
        write_model_repository(tmp_path / "a", [PipelineSpec("M", COLUMNS, fused=tmp_path / "missing.pt")])
    with pytest.raises(RepositoryError, match=r"warmup_features must be \[n >= 1, 4\]"):
        write_model_repository(tmp_path / "a", [PipelineSpec("M", COLUMNS, fused=specs[1].fused, warmup_features=np.zeros((3, 5)))])
    with pytest.raises(RepositoryError, match="must start with a letter"):
        write_model_repository(tmp_path / "a", [PipelineSpec("bad name", COLUMNS, fused=specs[1].fused)])
    write_model_repository(tmp_path / "a", specs)
    with pytest.raises(RepositoryError, match="not empty"):
        write_model_repository(tmp_path / "a", specs)


def test_validation_names_the_broken_file(tmp_path):
    write_model_repository(tmp_path / "m", toy_specs(tmp_path / "ts"), instance_kind="cpu")
    config = tmp_path / "m" / "ModuleMap" / "config.pbtxt"
    config.write_text(config.read_text().replace("ModuleMap_labels", "ModuleMap_nothing"))
    with pytest.raises(RepositoryError, match="'ModuleMap_nothing' is not in the repository"):
        validate_model_repository(tmp_path / "m")
    config.write_text("name: ModuleMap\nplatform: [")
    with pytest.raises(RepositoryError, match="ModuleMap/config.pbtxt is not a valid Triton ModelConfig"):
        validate_model_repository(tmp_path / "m")


def test_pbtxt_strings_are_escaped():
    text = to_pbtxt({"name": 'a "quoted" \\ name', "parameters": [{"key": "k", "value": {"string_value": "x,y"}}]})
    config = parse_config(text)
    assert config.name == 'a "quoted" \\ name' and config.parameters["k"].string_value == "x,y"


def test_toy_pipeline_stages_match_the_fused_module():
    features = np.array([[1, 0, 0, 0], [2, 0, 0, 0], [-1, 0, 0, 0], [3, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(reference_labels(features), [0, 1, -1, 3, -1])
    chained = ScoreToLabels()(FirstColumn()(torch.from_numpy(features)))
    np.testing.assert_array_equal(chained.numpy(), reference_labels(features))
    assert reference_labels(-np.ones((5, 4), np.float32)).tolist() == [-1]


def test_tritonserver_on_path_is_preferred(tmp_path, monkeypatch):
    from gnn4itk.serve import find_tritonserver

    fake = tmp_path / "bin" / "tritonserver"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("GNN4ITK_TRITONSERVER", raising=False)
    found = find_tritonserver(cache_dir=tmp_path / "cache")
    assert found.source == "PATH" and found.binary == fake and found.backend_dir is None
    assert not (tmp_path / "cache").exists()  # the NGC install has its own backends


def test_wheel_backends_get_the_stub_of_this_python(tmp_path, monkeypatch):
    import shutil
    import sys

    pytest.importorskip("pytriton", reason="nvidia-pytriton (the 'serve' extra) is not installed")
    from gnn4itk.serve import find_tritonserver

    if shutil.which("tritonserver"):
        monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.delenv("GNN4ITK_TRITONSERVER", raising=False)
    found = find_tritonserver(cache_dir=tmp_path)
    stub = found.backend_dir / "python" / "triton_python_backend_stub"
    assert found.source.startswith("nvidia-pytriton") and stub.is_file()
    assert (found.backend_dir / "python" / "libtriton_python.so").is_file()
    assert f"py{sys.version_info.major}.{sys.version_info.minor}" in str(found.backend_dir)
    assert found.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert find_tritonserver(cache_dir=tmp_path).backend_dir == found.backend_dir  # assembled once, reused


def _fake_tree(root: Path, with_stub_in_backend: bool) -> Path:
    """A tritonserver folder laid out like the wheel's (stubs per Python) or the NGC one (stub in the backend)."""
    import sys

    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tritonserver").write_text("#!/bin/sh\n")
    (root / "backends" / "python").mkdir(parents=True)
    (root / "backends" / "python" / "libtriton_python.so").write_bytes(b"so")
    if with_stub_in_backend:
        (root / "backends" / "python" / "triton_python_backend_stub").write_bytes(b"stub")
    else:
        stubs = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
        stubs.mkdir(parents=True)
        (stubs / "triton_python_backend_stub").write_bytes(b"stub of this python")
    return root


def test_tritonserver_tree_from_the_environment_wins_over_path(tmp_path, monkeypatch):
    from gnn4itk.serve import find_tritonserver

    tree = _fake_tree(tmp_path / "unpacked" / "pytriton" / "tritonserver", with_stub_in_backend=False)
    (tmp_path / "unpacked" / "nvidia_pytriton.libs").mkdir()
    on_path = _fake_tree(tmp_path / "other", with_stub_in_backend=True)
    monkeypatch.setenv("PATH", f"{on_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("GNN4ITK_TRITONSERVER", str(tree))
    monkeypatch.delenv("GNN4ITK_TRITONSERVER_PYTHONPATH", raising=False)
    found = find_tritonserver(cache_dir=tmp_path / "cache")
    assert found.binary == tree / "bin" / "tritonserver"
    assert found.source == f"GNN4ITK_TRITONSERVER={tree}"
    # the stub of this Python is assembled into a cached copy of the tree's backends
    assert (found.backend_dir / "python" / "triton_python_backend_stub").read_bytes() == b"stub of this python"
    assert (found.backend_dir / "python" / "libtriton_python.so").is_file()
    assert str(tmp_path / "cache") in str(found.backend_dir)
    assert found.env["LD_LIBRARY_PATH"].split(":")[0] == str(tmp_path / "unpacked" / "nvidia_pytriton.libs")
    assert "PYTHONPATH" not in found.env


def test_tritonserver_tree_with_its_stub_is_used_in_place(tmp_path, monkeypatch):
    from gnn4itk.serve import find_tritonserver

    tree = _fake_tree(tmp_path / "opt" / "tritonserver", with_stub_in_backend=True)
    (tree / "lib").mkdir()
    monkeypatch.setenv("GNN4ITK_TRITONSERVER_PYTHONPATH", "/opt/numpy1")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    found = find_tritonserver(cache_dir=tmp_path / "cache", root=tree)
    assert found.backend_dir == tree / "backends" and not (tmp_path / "cache").exists()
    assert str(tree / "lib") in found.env["LD_LIBRARY_PATH"].split(":")
    assert found.env["PYTHONPATH"] == "/opt/numpy1:/somewhere"
    assert found.source.endswith("GNN4ITK_TRITONSERVER_PYTHONPATH=/opt/numpy1")


@pytest.mark.parametrize("remove", ["bin/tritonserver", "stub", "backends"])
def test_incomplete_tritonserver_tree_is_named(tmp_path, remove):
    import shutil

    from gnn4itk.serve import ServerError, find_tritonserver

    tree = _fake_tree(tmp_path / "tree", with_stub_in_backend=False)
    if remove == "stub":
        shutil.rmtree(tree / "python_backend_stubs")
        expected = "no python backend stub for Python"
    elif remove == "backends":
        shutil.rmtree(tree / "backends")
        expected = "no backends folder"
    else:
        (tree / remove).unlink()
        expected = "no tritonserver executable"
    with pytest.raises(ServerError, match=expected):
        find_tritonserver(cache_dir=tmp_path / "cache", root=tree)


def test_libtorch_models_run_without_the_tensor_fuser(tmp_path):
    write_model_repository(tmp_path / "m", toy_specs(tmp_path / "ts"), flavour="libtorch", instance_kind="gpu")
    config = parse_config((tmp_path / "m" / "ModuleMap_fused_libtorch" / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["ENABLE_TENSOR_FUSER"] == "false" and params["INFERENCE_MODE"] == "true"


def test_cuda_pool_is_sized_from_the_largest_event_and_the_instances(tmp_path):
    from gnn4itk.serve import MAX_CUDA_POOL_BYTES, MIN_CUDA_POOL_BYTES, cuda_pool_sizes

    specs = toy_specs(tmp_path / "ts")  # F = 4
    write_model_repository(tmp_path / "big", specs, instance_kind="gpu", count=4, max_spacepoints=1_000_000)
    assert cuda_pool_sizes(tmp_path / "big", "gpu", gpu_count=2) == {0: 8 * 1_000_000 * 4 * 4 * 4, 1: 8 * 1_000_000 * 4 * 4 * 4}
    assert cuda_pool_sizes(tmp_path / "big", "cpu", gpu_count=2) == {}
    assert cuda_pool_sizes(tmp_path / "big", "gpu", gpu_count=0) == {}
    write_model_repository(tmp_path / "small", specs, instance_kind="gpu", max_spacepoints=1000)
    assert cuda_pool_sizes(tmp_path / "small", None, gpu_count=1) == {0: MIN_CUDA_POOL_BYTES}
    write_model_repository(tmp_path / "huge", specs, instance_kind="gpu", count=8, max_spacepoints=10_000_000)
    assert cuda_pool_sizes(tmp_path / "huge", "gpu", gpu_count=1) == {0: MAX_CUDA_POOL_BYTES}
    write_model_repository(tmp_path / "cpu", specs, instance_kind="cpu")
    assert cuda_pool_sizes(tmp_path / "cpu", None, gpu_count=1) == {}
