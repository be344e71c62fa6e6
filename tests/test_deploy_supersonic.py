"""deploy/supersonic/values.yaml: SuperSONIC Helm values that serve the repository ``python -m export --flavour
libtorch`` writes, with a stock NGC tritonserver, Envoy (ROUND_ROBIN), Prometheus and KEDA.

Offline: what the test needs of the chart (value paths and the JSON types its values schema requires, the
paths its templates read, the names it insists on) is in deploy/supersonic/chart_keys.json, with the upstream
commit it was read from.
"""

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VALUES_FILE = REPO / "deploy" / "supersonic" / "values.yaml"
CHART = json.loads((REPO / "deploy" / "supersonic" / "chart_keys.json").read_text())
TRITONSERVER = "/opt/tritonserver/bin/tritonserver"
JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES_FILE.read_text())


def release_name() -> str:
    """The release name of the ``helm install`` line at the top of the values file."""
    [name] = re.findall(r"helm install (\S+) fastml/supersonic", VALUES_FILE.read_text())
    return name


def chart_problems(values: dict, chart: dict = CHART) -> list[str]:
    """What Helm's schema check (types, required keys of list items) or the chart's templates would not take.

    Helm merges the values over the chart's defaults before it validates them, and the defaults hold every key
    the schema requires of a map; a list replaces the default list, so its items are checked for theirs.
    Unknown keys would pass Helm silently (the schema does not forbid them) and then do nothing: every key must
    be one the schema types, one a template reads, or lie inside a map the templates hand to Kubernetes whole.
    """
    types, free = chart["types"], chart["free_form"]
    # a path a template reads, and the maps above it (triton.modelRepository.pvc for ...pvc.claimName)
    known = {".".join(path.split(".")[:n]) for path in chart["template_values"] for n in range(1, path.count(".") + 2)}
    problems = []

    def check(value, path: str) -> None:
        inside_free = any(path.startswith(f + ".") or path.startswith(f + "[]") for f in free)
        if path not in types and path not in known and not inside_free:
            problems.append(f"{path}: not a value of the chart")
        expected = types.get(path)
        if expected and not JSON_TYPES[expected](value):
            problems.append(f"{path}: the chart's schema wants {expected}, got {type(value).__name__} {value!r}")
        if isinstance(value, dict):
            if missing := set(chart["required_in_list_items"].get(path, [])) - set(value):
                problems.append(f"{path}: a list item lacks {sorted(missing)}")
            for key, item in value.items():
                check(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for item in value:
                check(item, path + "[]")

    for key, item in values.items():
        check(item, key)
    return problems


def triton_script(values: dict) -> str:
    command, args = values["triton"]["command"], values["triton"]["args"]
    assert command == ["/bin/sh", "-c"] and len(args) == 1
    return args[0]


def server_argv(values: dict, tmp_path: Path) -> list[str]:
    """The tritonserver command line the pod's shell script runs, got by running it with a stand-in server."""
    fake = tmp_path / "tritonserver"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    script = triton_script(values)
    assert script.count(TRITONSERVER) == 1
    out = subprocess.run(["/bin/sh", "-c", script.replace(TRITONSERVER, shlex.quote(str(fake)))],
                         capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def options(argv: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]


def test_every_value_is_the_charts_and_of_the_type_its_schema_wants(values):
    assert chart_problems(values) == []
    # the check itself sees the mistakes it is there for
    broken = yaml.safe_load(VALUES_FILE.read_text())
    broken["triton"]["replicas"] = "2"
    broken["triton"]["imag"] = "typo"
    broken["envoy"]["service"] = {"ports": [{"name": "grpc", "port": 8001}]}
    broken["keda"]["enabled"] = "yes"
    assert sorted(chart_problems(broken)) == [
        "envoy.service.ports[]: a list item lacks ['targetPort']",
        "keda.enabled: the chart's schema wants boolean, got str 'yes'",
        "triton.imag: not a value of the chart",
        "triton.replicas: the chart's schema wants integer, got str '2'",
    ]


def test_the_chart_parts_are_wired_as_the_issue_asks(values):
    name = release_name()
    # a stock NGC tritonserver with the PyTorch backend (the "-min" images have no backends), on a GPU
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", values["triton"]["image"])
    assert values["triton"]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    # Envoy round robin; reached through the ingress (443, TLS) or a LoadBalancer
    envoy = values["envoy"]
    assert envoy["enabled"] and envoy["loadBalancerPolicy"] == "ROUND_ROBIN" in CHART["envoy"]["load_balancer_policies"]
    assert envoy["ingress"]["hostName"] if envoy["ingress"]["enabled"] else envoy.get("service", {}).get("type") == "LoadBalancer"
    # the chart's own Prometheus, with the names the chart insists on for this release
    prometheus = values["prometheus"]
    assert prometheus["enabled"] and not prometheus.get("external", {}).get("enabled", False)
    for path, pattern in CHART["prometheus_names"].items():
        node = values
        for key in path.split("."):
            node = node[key]
        assert node == pattern.format(name=name), path
    # KEDA on Triton's average queue time of this release's GPU models, ms per execution, against the threshold
    assert values["keda"]["enabled"] and 1 <= values["keda"]["minReplicaCount"] <= values["keda"]["maxReplicaCount"]
    metric = values["serverLoadMetric"]
    assert metric.count(f'release="{name}"') == 2 and "nv_inference_queue_duration_us" in metric and "nv_inference_exec_count" in metric
    assert metric.count('model=~".+_libtorch"') == 2 and "* 1000" in metric
    assert isinstance(values["serverLoadThreshold"], int) and values["serverLoadThreshold"] > 0


def test_the_repository_is_mounted_from_a_pvc_or_cvmfs(values):
    repository = values["triton"]["modelRepository"]
    assert repository["enabled"] and repository["storageType"] == "pvc" and repository["pvc"]["claimName"]
    # the CVMFS variant is there, commented, with a storage type the chart mounts
    commented = dict(re.findall(r"^\s*#\s*(storageType|mountPath):\s*(\S+)\s*$", VALUES_FILE.read_text(), re.M))
    assert commented == {"storageType": "cvmfs-pvc", "mountPath": "/cvmfs"}
    assert {repository["storageType"], commented["storageType"]} <= set(CHART["storage_types"])
    script = triton_script(values)
    assert re.search(r"^repository=/gnn4itk/models$", script, re.M) and repository["mountPath"] == "/gnn4itk"
    [cvmfs] = re.findall(r"^#\s*repository=(\S+)$", script, re.M)
    assert cvmfs.startswith(commented["mountPath"] + "/") and cvmfs.endswith("/models")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``python -m export --flavour libtorch --device gpu`` of a tiny ModuleMap pipeline: (repository, names, parser)."""
    import argparse

    from export.cli import add_arguments, export
    from module_map.synthetic import synthetic_events
    from tests.pipeline_fixtures import write_tiny_module_map_pipeline

    pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")
    root = tmp_path_factory.mktemp("supersonic")
    config = write_tiny_module_map_pipeline(root / "mm", synthetic_events(1, n_particles=200, seed=3))
    (root / "mm.yaml").write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--pipelines", "ModuleMap", "--config", f"ModuleMap={root / 'mm.yaml'}", "--flavour", "libtorch",
                              "--device", "gpu", "--output", str(root / "models")])
    names = export(args)
    return root / "models", names, parser


def test_the_server_loads_the_models_export_writes(values, exported, tmp_path):
    from export.repository import validate_model_repository
    from gnn4itk.serve import cuda_pool_sizes

    repository, names, parser = exported
    argv = server_argv(values, tmp_path)
    [path] = options(argv, "model-repository")
    # the folder `python -m export` writes by default (--output models), under the volume's mount
    assert Path(path).name == Path(parser.get_default("output")).name == "models"
    assert path.startswith(values["triton"]["modelRepository"]["mountPath"] + "/")
    configs = validate_model_repository(repository)
    loaded = options(argv, "load-model")
    assert options(argv, "model-control-mode") == ["explicit"] and loaded == ["ModuleMap", "ModuleMap_fused"]
    assert set(loaded) <= set(names)
    [config_name] = options(argv, "model-config-name")
    for model in loaded:
        # public names are ensembles over pytorch_libtorch models: what the PyTorch backend of the image runs
        assert configs[model].platform == "ensemble"
        for step in configs[model].ensemble_scheduling.step:
            assert configs[step.model_name].platform == "pytorch_libtorch"
            gpu = (repository / step.model_name / "configs" / f"{config_name}.pbtxt").read_text()
            assert "kind: KIND_GPU" in gpu and "gpus" not in gpu  # on whichever GPU the pod gets
    # the CUDA pool gnn4itk serve would give this repository on a one-GPU host
    assert options(argv, "cuda-memory-pool-byte-size") == [f"{gpu}:{size}" for gpu, size in cuda_pool_sizes(repository, config_name, gpu_count=1).items()]
    assert {"--disable-auto-complete-config", "--strict-readiness=true", "--exit-on-error=true"} <= set(argv)
