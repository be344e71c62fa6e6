"""Model instances on several GPUs of one host, without GPUs: what the repository, ``gnn4itk serve`` and the
python-backend model do with ``--gpus`` / ``--instances-per-gpu``, and the client's per-GPU report.

Triton's ``instance_group { count: N, kind: KIND_GPU, gpus: [0, 1] }`` means N instances on EACH listed GPU;
a group without ``gpus`` means N on every GPU the server sees. Throughput on real GPUs is measured on a
multi-GPU machine (docs/serving.md, "Several GPUs on one host").
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")

from export.repository import (  # noqa: E402
    RepositoryError,
    parse_config,
    parse_gpus,
    resolve_gpus,
    validate_model_repository,
    write_model_repository,
)
from gnn4itk.serve import Installation, ServerError, TritonServer, _server_gpus, cuda_pool_sizes, write_instance_repository  # noqa: E402
from tests.test_python_backend_model import model_module  # noqa: E402,F401 -- the fake-pb_utils fixture
from tests.test_serving_repository import COLUMNS, reference_labels, toy_specs  # noqa: E402

CLIENT = Path(__file__).resolve().parents[1] / "client" / "gnn4itk_client.py"
FAKE_INSTALLATION = Installation(Path("/nonexistent/tritonserver"), None, {}, "test", pytorch_backend=True)


def gpu_groups(repository: Path, name: str = "config.pbtxt") -> dict[str, list[tuple[int, str, list[int]]]]:
    """{model: [(count, kind, gpus), ...]} of every config named ``name`` (ensembles: [])."""
    found = {}
    for path in sorted(Path(repository).glob(f"*/{name}")):
        config = parse_config(path.read_text(), str(path))
        found[config.name] = [(g.count, type(g).Kind.Name(g.kind), list(g.gpus)) for g in config.instance_group]
    return found


def placed(repository: Path) -> list[tuple[int, str, list[int]]]:
    """The one instance group every non-ensemble model of ``repository`` has (fails when they differ)."""
    groups = [g for g in gpu_groups(repository).values() if g]
    assert groups and all(g == groups[0] for g in groups), groups
    return groups[0]


# --------------------------------------------------------------------------------------------------
# --gpus words


def test_gpus_words_parse_and_resolve():
    assert parse_gpus("all") == parse_gpus(["all"]) == "all"
    assert parse_gpus("0,1") == parse_gpus(["0", "1"]) == parse_gpus(["1,0", "1"]) == [0, 1]
    for bad in ("", "all,0", "-1", "a", "0;1", []):
        with pytest.raises(RepositoryError, match="'all' or GPU indices"):
            parse_gpus(bad)
    assert resolve_gpus("all", device_count=4) == [0, 1, 2, 3]
    assert resolve_gpus("all", device_count=0) is None  # no GPU here: no list, Triton then uses every GPU
    assert resolve_gpus("2,0", device_count=0) == [0, 2] and resolve_gpus([3, 1]) == [1, 3] and resolve_gpus(None) is None
    with pytest.raises(RepositoryError, match="distinct and non-negative"):
        resolve_gpus([0, 0])


def test_export_cli_gpus_and_instances_per_gpu(capsys):
    import argparse

    from export.cli import add_arguments, export_gpus

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--gpus", "0,1", "--instances-per-gpu", "3"])
    assert args.count == 3 and export_gpus(args.gpus) == [0, 1]
    assert parser.parse_args(["--gpus", "0", "1", "--count", "2"]).gpus == ["0", "1"]  # the older spelling still works
    assert parser.parse_args([]).gpus is None and export_gpus(None) is None  # no --gpus: the repository as before
    assert export_gpus(["all"], device_count=2) == [0, 1]
    assert export_gpus(["all"], device_count=0) is None
    assert "this machine has none: no gpus list" in capsys.readouterr().out
    with pytest.raises(RepositoryError):
        export_gpus(["0,x"])


# --------------------------------------------------------------------------------------------------
# The written repository


@pytest.mark.parametrize("flavour", ["python", "libtorch"])
def test_instances_on_each_listed_gpu(tmp_path, flavour):
    write_model_repository(tmp_path / "models", toy_specs(tmp_path / "ts"), flavour=flavour, instance_kind="gpu", count=2, gpus=[1, 0])
    configs = validate_model_repository(tmp_path / "models")
    groups = gpu_groups(tmp_path / "models")
    ensembles = {name for name, config in configs.items() if config.platform == "ensemble"}
    assert ensembles >= {"ModuleMap"} and all(groups[name] == [] for name in ensembles)  # ensembles stay as they are
    runners = set(configs) - ensembles
    assert runners and all(groups[name] == [(2, "KIND_GPU", [0, 1])] for name in runners)
    assert all(g == [(2, "KIND_GPU", [0, 1])] for name, g in gpu_groups(tmp_path / "models", "configs/gpu.pbtxt").items())
    assert all(g == [(2, "KIND_CPU", [])] for g in gpu_groups(tmp_path / "models", "configs/cpu.pbtxt").values())
    text = (tmp_path / "models" / sorted(runners)[0] / "config.pbtxt").read_text()
    assert "instance_group {\n  count: 2\n  kind: KIND_GPU\n  gpus: [0, 1]\n}" in text


def test_without_gpus_the_repository_names_no_gpu(tmp_path):
    """No --gpus: the repository of before (one GPU or every GPU Triton finds), byte for byte the same as gpus=None."""
    write_model_repository(tmp_path / "a", toy_specs(tmp_path / "ts"), flavour="libtorch", instance_kind="gpu")
    write_model_repository(tmp_path / "b", toy_specs(tmp_path / "ts"), flavour="libtorch", instance_kind="gpu", gpus=None)
    for path in sorted((tmp_path / "a").rglob("*.pbtxt")):
        assert "gpus" not in path.read_text()
        assert path.read_text() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_text()
    assert all(g in ([], [(1, "KIND_GPU", [])]) for g in gpu_groups(tmp_path / "a").values())


def test_unresolved_or_repeated_gpus_are_refused(tmp_path):
    with pytest.raises(RepositoryError, match="resolve_gpus"):
        write_model_repository(tmp_path / "m", toy_specs(tmp_path / "ts"), gpus="all")
    with pytest.raises(RepositoryError, match="distinct"):
        write_model_repository(tmp_path / "m", toy_specs(tmp_path / "ts"), gpus=[1, 1])


def test_cuda_pool_only_on_the_listed_gpus(tmp_path):
    write_model_repository(tmp_path / "listed", toy_specs(tmp_path / "ts"), instance_kind="gpu", gpus=[1, 3])
    write_model_repository(tmp_path / "every", toy_specs(tmp_path / "ts"), instance_kind="gpu")
    assert sorted(cuda_pool_sizes(tmp_path / "listed", None, gpu_count=4)) == [1, 3]
    assert sorted(cuda_pool_sizes(tmp_path / "listed", None, gpu_count=2)) == [1]  # no pool option for a GPU the host lacks
    assert sorted(cuda_pool_sizes(tmp_path / "every", None, gpu_count=4)) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------------
# gnn4itk serve --gpus / --instances-per-gpu


@pytest.fixture
def repository(tmp_path):
    write_model_repository(tmp_path / "models", toy_specs(tmp_path / "ts"), flavour="python", instance_kind="cpu")
    return tmp_path / "models"


def test_instance_copy_changes_only_gpu_groups_and_links_the_rest(repository, tmp_path):
    before = {p: p.read_bytes() for p in repository.rglob("*") if p.is_file()}
    changed = write_instance_repository(repository, tmp_path / "copy", "gpu", gpus=[0, 1], count=3)
    assert {p: p.read_bytes() for p in repository.rglob("*") if p.is_file()} == before  # the repository is untouched
    validate_model_repository(tmp_path / "copy")
    groups = gpu_groups(tmp_path / "copy")
    assert sorted(changed) == sorted(name for name, g in groups.items() if g)
    assert changed and all(groups[name] == [(3, "KIND_GPU", [0, 1])] for name in changed)
    # ensembles keep their text; version folders and warm-up data are links to the repository's
    assert (tmp_path / "copy" / "ModuleMap" / "config.pbtxt").read_text() == (repository / "ModuleMap" / "config.pbtxt").read_text()
    version = tmp_path / "copy" / "MetricLearning_fused" / "1"
    assert version.is_symlink() and version.resolve() == (repository / "MetricLearning_fused" / "1").resolve()
    assert (tmp_path / "copy" / "MetricLearning_fused" / "warmup").is_symlink()
    # only the count, or only the GPUs; [] removes the list (every GPU)
    write_instance_repository(repository, tmp_path / "count", "gpu", count=2)
    write_instance_repository(repository, tmp_path / "every", "gpu", gpus=[])
    assert placed(tmp_path / "count") == [(2, "KIND_GPU", [])] and placed(tmp_path / "every") == [(1, "KIND_GPU", [])]
    assert write_instance_repository(repository, tmp_path / "cpu", "cpu", gpus=[0]) == []  # CPU configs: nothing to place


def test_server_gpus_words():
    assert _server_gpus(None, 2) is None
    assert _server_gpus("all", 2) == [0, 1] and _server_gpus("all", 0) == []
    assert _server_gpus("1,0", 2) == [0, 1] and _server_gpus([1], 0) == [1]
    with pytest.raises(ServerError, match=r"GPUs \[2\] do not exist: this host has 2"):
        _server_gpus("0,2", 2)
    with pytest.raises(ServerError, match="'all' or GPU indices"):
        _server_gpus("zero", 2)


def test_server_runs_on_the_copy_and_removes_it(repository):
    server = TritonServer(repository, 0, 0, 0, device="gpu", installation=FAKE_INSTALLATION, gpus=[0, 1], instances_per_gpu=2)
    copy = server.model_repository
    command = server.command()
    assert copy != repository.resolve() and f"--model-repository={copy}" in command
    assert not any(a.startswith("--model-config-name") for a in command)  # the copy's config.pbtxt is the gpu one
    assert placed(copy) == [(2, "KIND_GPU", [0, 1])]
    assert server.instances == ([0, 1], 2)
    server.stop()
    assert not copy.exists()
    assert server.model_repository.is_dir()  # written again for a new start
    server.stop()
    plain = TritonServer(repository, 0, 0, 0, device="gpu", installation=FAKE_INSTALLATION)
    assert plain.model_repository == repository.resolve() and "--model-config-name=gpu" in plain.command()
    with pytest.raises(ServerError, match="has GPU instances in configs/cpu.pbtxt"):
        TritonServer(repository, 0, 0, 0, device="cpu", installation=FAKE_INSTALLATION, instances_per_gpu=2)
    with pytest.raises(ServerError, match="at least 1"):
        TritonServer(repository, 0, 0, 0, device="gpu", installation=FAKE_INSTALLATION, instances_per_gpu=0)


def test_serve_command_passes_the_gpu_options(repository, monkeypatch, capsys):
    import gnn4itk.serve
    from gnn4itk.cli import main

    seen = {}

    class Recorder:
        """Stands in for TritonServer: records its arguments, 'serves' and ends at once."""

        url_grpc, url_http, url_metrics = "127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3/metrics"
        installation = FAKE_INSTALLATION

        def __init__(self, repository, **kwargs):
            seen.update(kwargs, repository=repository)
            self.instances = (_server_gpus(kwargs["gpus"], 4), kwargs["instances_per_gpu"])

        def start(self):
            return self

        def wait(self):
            return 0

        def stop(self):
            seen["stopped"] = True

    monkeypatch.setattr(gnn4itk.serve, "TritonServer", Recorder)
    code = main(["serve", "--repository", str(repository), "--device", "gpu", "--gpus", "0,1", "--instances-per-gpu", "2",
                 "--", "--log-info=true"])
    assert code == 0 and seen["gpus"] == "0,1" and seen["instances_per_gpu"] == 2 and seen["device"] == "gpu"
    assert seen["extra_args"] == ["--log-info=true"] and seen["stopped"]
    assert "GPU instances: 2 per GPU on GPUs [0, 1]" in capsys.readouterr().out
    seen.clear()
    assert main(["serve", "--repository", str(repository), "--gpus", "all"]) == 0
    assert seen["gpus"] == "all" and seen["instances_per_gpu"] is None
    assert "GPU instances: the repository count per GPU on GPUs [0, 1, 2, 3]" in capsys.readouterr().out
    seen.clear()
    assert main(["serve", "--repository", str(repository)]) == 0
    assert seen["gpus"] is None and seen["instances_per_gpu"] is None


@pytest.mark.slow
def test_tritonserver_serves_a_linked_copy(repository, tmp_path):
    """The copy `gnn4itk serve --gpus` runs on (links to version folders, warm-up data and model.py) is a
    repository tritonserver loads and serves; shown with the CPU configs, since this machine has no GPU."""
    import tritonclient.grpc as grpcclient

    write_instance_repository(repository, tmp_path / "copy", "cpu")
    features = np.random.default_rng(5).normal(size=(300, len(COLUMNS))).astype(np.float32)
    with TritonServer(tmp_path / "copy", 0, 0, 0) as server:
        client = grpcclient.InferenceServerClient(server.url_grpc)
        try:
            for model in ("ModuleMap", "MetricLearning_fused"):
                request = grpcclient.InferInput("FEATURES", list(features.shape), "FP32")
                request.set_data_from_numpy(features)
                np.testing.assert_array_equal(client.infer(model, [request]).as_numpy("LABELS"), reference_labels(features))
        finally:
            client.close()


# --------------------------------------------------------------------------------------------------
# The python-backend model runs on the GPU Triton gives its instance


class Identity(torch.nn.Module):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def test_python_model_instance_uses_the_gpu_triton_assigned(model_module, tmp_path, monkeypatch):  # noqa: F811
    (tmp_path / "1").mkdir()
    torch.jit.script(Identity()).save(str(tmp_path / "1" / "model.pt"))
    calls = {}
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.setdefault("set_device", device))
    real_load = torch.jit.load

    def load(path, map_location=None):
        calls["map_location"] = map_location
        return real_load(path, map_location="cpu")  # there is no GPU here: what matters is where it was asked for

    monkeypatch.setattr(torch.jit, "load", load)
    config = {"input": [{"name": "SCORE"}], "output": [{"name": "OUT"}], "parameters": {}}
    model = model_module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_name": "toy", "model_instance_kind": "GPU",
                      "model_instance_device_id": "1", "model_repository": str(tmp_path), "model_version": "1"})
    assert model.device == torch.device("cuda", 1)
    assert calls == {"set_device": torch.device("cuda", 1), "map_location": torch.device("cuda", 1)}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_python_model_answers_on_the_second_gpu(model_module, tmp_path):  # noqa: F811
    from tests.test_python_backend_model import FakeTensor

    (tmp_path / "1").mkdir()
    torch.jit.script(Identity()).save(str(tmp_path / "1" / "model.pt"))
    config = {"input": [{"name": "SCORE"}], "output": [{"name": "OUT"}], "parameters": {}}
    model = model_module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_name": "toy", "model_instance_kind": "GPU",
                      "model_instance_device_id": "1", "model_repository": str(tmp_path), "model_version": "1"})
    score = np.arange(10, dtype=np.float32)
    [answer] = model.execute([{"SCORE": FakeTensor("SCORE", score)}])
    assert answer.error is None and np.array_equal(answer.outputs["OUT"], score) and model.device == torch.device("cuda", 1)


# --------------------------------------------------------------------------------------------------
# The client's per-GPU and host CPU report

TWO_GPUS = """\
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-0000"} %(u0)s
nv_gpu_utilization{gpu_uuid="GPU-1111"} %(u1)s
nv_gpu_memory_used_bytes{gpu_uuid="GPU-0000"} %(m0)s
nv_gpu_memory_used_bytes{gpu_uuid="GPU-1111"} %(m1)s
nv_gpu_memory_total_bytes{gpu_uuid="GPU-0000"} 85899345920
nv_gpu_memory_total_bytes{gpu_uuid="GPU-1111"} 85899345920
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
nv_cpu_utilization %(cpu)s
nv_cpu_memory_used_bytes 8589934592
nv_cpu_memory_total_bytes 137438953472
nv_inference_request_success{model="ModuleMap",version="1"} %(ok)s
nv_inference_queue_duration_us{model="ModuleMap",version="1"} %(queue)s
"""


def load_client():
    spec = importlib.util.spec_from_file_location("gnn4itk_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scrape(client, u0, u1, m0, m1, cpu, ok=0, queue=0):
    return client.parse_metrics(TWO_GPUS % dict(u0=u0, u1=u1, m0=m0, m1=m1, cpu=cpu, ok=ok, queue=queue))


def test_client_reports_each_gpu_and_the_host_cpu():
    client = load_client()
    before = scrape(client, 0.0, 0.0, 1e9, 1e9, 0.05)
    during = [scrape(client, 0.9, 0.5, 21e9, 20e9, 0.4), scrape(client, 0.7, 0.3, 23e9, 19e9, 0.6)]
    after = scrape(client, 0.1, 0.0, 22e9, 19e9, 0.1, ok=100, queue=300000)
    figures = client.server_metrics(before, after, during)
    assert figures["gpus"] == {
        "GPU-0000": {"utilization": pytest.approx(0.8), "utilization_samples": 2, "memory_used_bytes": 22_000_000_000,
                     "memory_used_max_bytes": 23_000_000_000, "memory_total_bytes": 85899345920},
        "GPU-1111": {"utilization": pytest.approx(0.4), "utilization_samples": 2, "memory_used_bytes": 19_000_000_000,
                     "memory_used_max_bytes": 20_000_000_000, "memory_total_bytes": 85899345920},
    }
    assert figures["cpu"] == {"utilization": pytest.approx(0.5), "utilization_samples": 2,
                              "memory_used_bytes": 8589934592, "memory_total_bytes": 137438953472}
    assert figures["models"]["ModuleMap"] == {"success": 100, "failure": 0, "avg_queue_ms": pytest.approx(3.0)}
    lines = client.server_lines(figures)
    assert "server GPU GPU-0000: utilisation 80% (mean of 2 reads during the run); memory used 20.49 GiB of 80.00 GiB after the run, peak 21.42 GiB during the run" in lines
    assert "server GPUs: 2, mean utilisation 60%, lowest 40%, highest 80%" in lines
    assert "server host CPU (all cores, as Triton reports it): utilisation 50% (mean of 2 reads during the run); memory used 8.00 GiB of 128.00 GiB" in lines
    # without reads during the run: the read after it, no peak; without CPU gauges: no "cpu"
    alone = client.server_metrics(None, after)
    assert alone["gpus"]["GPU-1111"] == {"utilization": 0.0, "utilization_samples": 0, "memory_used_bytes": 19_000_000_000,
                                         "memory_total_bytes": 85899345920}
    assert alone["cpu"]["utilization"] == pytest.approx(0.1) and alone["cpu"]["utilization_samples"] == 0
    assert "cpu" not in client.server_metrics(None, client.parse_metrics('nv_gpu_utilization{gpu_uuid="G"} 0.5\n'))
    assert client.server_lines(client.server_metrics(None, None)) == []
