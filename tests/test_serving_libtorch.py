"""The libtorch flavour (``pytorch_libtorch``, what the stock NGC tritonserver runs) served for real on CPU.

The pip tritonserver gets Triton's PyTorch backend from ``make pytorch-backend`` (``gnn4itk.serve`` adds it to
the backends folder). No python model stands in front of these models: the scripted ``Pipeline`` itself must
refuse or handle every bad request (its ``InputGuard``), with a clear error and the server still serving.
"""

import shutil

import numpy as np
import pytest
import torch

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

from export.repository import write_model_repository  # noqa: E402
from export.torchscript import export_pipeline  # noqa: E402
from gnn4itk.pipeline import build_pipeline  # noqa: E402
from gnn4itk.serve import ServerError, TritonServer, find_pytorch_backend, find_tritonserver  # noqa: E402
from module_map.synthetic import synthetic_event, synthetic_events  # noqa: E402
from tests.pipeline_fixtures import write_tiny_metric_learning_pipeline, write_tiny_module_map_pipeline  # noqa: E402
from tests.test_serving_server import _running, grpc_infer, make_certificate, run_mixed_clients  # noqa: E402

pytestmark = pytest.mark.slow
MAX_SPACEPOINTS = 5000

if find_pytorch_backend() is None and shutil.which("tritonserver") is None:
    pytest.fail("Triton's PyTorch backend is not built: `make pytorch-backend` (make test builds it)", pytrace=False)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("libtorch")
    configs = {
        "ModuleMap": write_tiny_module_map_pipeline(root / "mm", synthetic_events(2, n_particles=300, seed=21)),
        "MetricLearning": write_tiny_metric_learning_pipeline(root / "ml", double=False),
    }
    built = {}
    for name, config in configs.items():
        config["max_spacepoints"] = MAX_SPACEPOINTS  # the module's own limit: nothing else checks it here
        built[name] = build_pipeline(config)
    return root, built


@pytest.fixture(scope="module")
def features():
    return synthetic_event(n_particles=300, seed=99).inference_tensor().numpy()


@pytest.fixture(scope="module")
def repository(pipelines, features):
    root, built = pipelines
    specs = []
    for name, pipeline in built.items():
        spec = export_pipeline(pipeline, name, root / "torchscript")
        spec.warmup_features = features[:300]
        specs.append(spec)
    write_model_repository(root / "models", specs, flavour="libtorch", instance_kind="cpu", max_spacepoints=MAX_SPACEPOINTS)
    return root / "models"


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, 0, 0, 0, device="cpu") as running:
        yield running


def in_process(pipelines, name, array):
    return pipelines[1][name](torch.from_numpy(array)).numpy()


def assert_still_serving(server, pipelines, features):
    for model in ("ModuleMap", "ModuleMap_fused"):
        np.testing.assert_array_equal(grpc_infer(server.url_grpc, model, features), in_process(pipelines, "ModuleMap", features))


def test_the_server_has_the_pytorch_backend(server):
    assert server.installation.pytorch_backend is not False
    assert "pytorch_libtorch" in (server.repository / "ModuleMap_fused_libtorch" / "config.pbtxt").read_text()


@pytest.mark.parametrize(
    "array, datatype, message",
    [
        (np.zeros((12,), np.float32), "FP32", r"unexpected shape for input 'FEATURES'"),
        (np.zeros((5, 3), np.float32), "FP32", r"unexpected shape for input 'FEATURES'"),
        (np.zeros((5, 12, 1), np.float32), "FP32", r"unexpected shape for input 'FEATURES'"),
        (np.zeros((5, 12), np.float64), "FP64", r"data-type is 'FP64', but model '.*' expects 'FP32'"),
        (None, "FP32", rf"event has {MAX_SPACEPOINTS + 1} spacepoints, above max_spacepoints = {MAX_SPACEPOINTS}"),
    ],
    ids=["rank1", "wrong-F", "rank3", "fp64", "too-many-spacepoints"],
)
@pytest.mark.parametrize("model", ["ModuleMap", "ModuleMap_fused"])
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(server, pipelines, features, model, array, datatype, message):
    if array is None:
        array = np.resize(features, (MAX_SPACEPOINTS + 1, features.shape[1]))
    if array.ndim == 2 and array.shape[1] == 12:
        array = np.zeros((array.shape[0], features.shape[1]), array.dtype)
    elif array.ndim == 3:
        array = np.zeros((5, features.shape[1], 1), np.float32)
    with pytest.raises(InferenceServerException, match=message):
        grpc_infer(server.url_grpc, model, array, datatype)
    assert_still_serving(server, pipelines, features)


@pytest.mark.parametrize("rows", [0, 1, 2])
@pytest.mark.parametrize("model", ["ModuleMap", "ModuleMap_fused", "MetricLearning"])
def test_fewer_than_three_spacepoints_give_no_track(server, features, model, rows):
    assert grpc_infer(server.url_grpc, model, features[:rows].copy()).tolist() == [-1]


@pytest.mark.parametrize("model", ["ModuleMap", "MetricLearning_fused"])
def test_non_finite_features_give_the_labels_of_zeroed_ones(server, pipelines, features, model):
    dirty = features.copy()
    dirty[::7, 0] = np.nan
    dirty[3::11, 2] = np.inf
    dirty[5::13, 1] = -np.inf
    clean = np.nan_to_num(dirty, nan=0.0, posinf=0.0, neginf=0.0)
    expected = in_process(pipelines, model.removesuffix("_fused"), clean)
    np.testing.assert_array_equal(grpc_infer(server.url_grpc, model, dirty), expected)


def test_concurrent_clients_mixing_good_and_bad_requests(server, pipelines, features):
    """6 clients x 20 requests over ensembles and fused models, every 4th one bad: good answers all exact."""
    good = [features[: 400 + 300 * i].copy() for i in range(3)]
    expected = {name: [in_process(pipelines, name, f) for f in good] for name in ("ModuleMap", "MetricLearning")}
    too_many = np.resize(features, (MAX_SPACEPOINTS + 1, features.shape[1]))
    bad = [(np.zeros((10, 3), np.float32), "unexpected shape"), (too_many, "above max_spacepoints")]
    models = ["ModuleMap", "ModuleMap_fused", "MetricLearning", "MetricLearning_fused"]

    def pick(worker, i):
        model = models[(worker + i) % len(models)]
        if i % 4 == 3:
            array, reason = bad[(worker + i) % len(bad)]
            return model, array, None, reason
        k = (worker + i) % len(good)
        return model, good[k], expected[model.removesuffix("_fused")][k], None

    failures = run_mixed_clients(server.url_grpc, 6, 20, pick)
    assert failures == []
    assert_still_serving(server, pipelines, features)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed")
def test_grpc_over_tls(repository, pipelines, features, tmp_path):
    cert, key = make_certificate(tmp_path)
    with TritonServer(repository, 0, 0, 0, device="cpu", tls_cert=cert, tls_key=key) as server:
        labels = grpc_infer(server.url_grpc, "MetricLearning_fused", features, ssl=True, root_certificates=str(cert))
        np.testing.assert_array_equal(labels, in_process(pipelines, "MetricLearning", features))
        with pytest.raises(InferenceServerException):
            grpc_infer(server.url_grpc, "MetricLearning_fused", features)  # plain text to the TLS port
        pids = server.processes()
    assert pids and not [pid for pid in pids if _running(pid)]


def test_a_server_without_the_backend_says_what_to_build(repository, monkeypatch, tmp_path):
    import dataclasses

    installation = dataclasses.replace(find_tritonserver(cache_dir=tmp_path), pytorch_backend=False)
    with pytest.raises(ServerError, match=r"pytorch_libtorch.*has no PyTorch backend: build it with `make pytorch-backend`"):
        TritonServer(repository, 0, 0, 0, device="cpu", installation=installation)


def test_a_named_backend_folder_without_the_library_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GNN4ITK_PYTORCH_BACKEND", str(tmp_path))
    with pytest.raises(ServerError, match="no libtriton_pytorch.so there"):
        find_pytorch_backend()
