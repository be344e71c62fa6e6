"""A real tritonserver (from the nvidia-pytriton wheel, or PATH) serving toy pipelines on CPU.

One server per module; every test talks to it over gRPC or HTTP on free ports, so parallel workers
(``pytest -n 2``) do not collide.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")
httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient (the 'serve' extra) is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

from export.repository import write_model_repository  # noqa: E402
from gnn4itk.serve import ServerError, TritonServer  # noqa: E402
from tests.test_serving_repository import POISON, reference_labels, toy_specs  # noqa: E402

pytestmark = pytest.mark.slow
MAX_SPACEPOINTS = 5000


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    write_model_repository(root / "models", toy_specs(root / "ts"), instance_kind="cpu", max_spacepoints=MAX_SPACEPOINTS)
    return root / "models"


@pytest.fixture(scope="module")
def small_repository(tmp_path_factory):
    """MetricLearning only (one python model): quick to start for the TLS and process tests."""
    root = tmp_path_factory.mktemp("serving-small")
    write_model_repository(root / "models", toy_specs(root / "ts")[1:], instance_kind="cpu")
    return root / "models"


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, 0, 0, 0, device="cpu") as running:
        yield running


def grpc_infer(url, model, features, datatype="FP32", **client_options):
    client = grpcclient.InferenceServerClient(url, **client_options)
    try:
        tensor = grpcclient.InferInput("FEATURES", list(features.shape), datatype)
        tensor.set_data_from_numpy(features)
        return client.infer(model, [tensor]).as_numpy("LABELS")
    finally:
        client.close()


def http_infer(url, model, features):
    client = httpclient.InferenceServerClient(url)
    try:
        tensor = httpclient.InferInput("FEATURES", list(features.shape), "FP32")
        tensor.set_data_from_numpy(features, binary_data=True)
        return client.infer(model, [tensor]).as_numpy("LABELS")
    finally:
        client.close()


def event(rows, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, 4)).astype(np.float32)


def test_server_from_the_wheel_answers_ready(server):
    if shutil.which("tritonserver") is None:
        assert server.installation.source.startswith("nvidia-pytriton")
    assert server.is_ready()
    with urllib.request.urlopen(f"http://{server.url_http}/v2/models/ModuleMap/ready") as response:
        assert response.status == 200
    client = grpcclient.InferenceServerClient(server.url_grpc)
    assert client.is_server_ready() and client.is_model_ready("DoubleMetricLearning") is False
    assert all(client.is_model_ready(m) for m in ("ModuleMap", "ModuleMap_fused", "MetricLearning", "MetricLearning_fused"))
    client.close()


@pytest.mark.parametrize("model", ["ModuleMap", "ModuleMap_fused", "MetricLearning"])
def test_labels_over_grpc_and_http_equal_in_process(server, model):
    features = event(2000, seed=3)
    expected = reference_labels(features)
    assert (expected == -1).sum() > 100  # the toy finds many tracks in this event
    labels = grpc_infer(server.url_grpc, model, features)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(http_infer(server.url_http, model, features), expected)


def wait_for_log(server, pattern, timeout=30.0):
    """Whether ``pattern`` shows up in the server log within ``timeout`` s (the stubs' lines arrive late)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, server.log_text()):
            return True
        time.sleep(0.1)
    return False


def assert_still_serving(server):
    features = event(100, seed=9)
    np.testing.assert_array_equal(grpc_infer(server.url_grpc, "ModuleMap", features), reference_labels(features))


@pytest.mark.parametrize(
    "features, datatype, message",
    [
        (np.zeros((12,), np.float32), "FP32", r"unexpected shape for input 'FEATURES'.*Expected \[-1,4\], got \[12\]"),
        (np.zeros((5, 3), np.float32), "FP32", r"unexpected shape for input 'FEATURES'.*Expected \[-1,4\], got \[5,3\]"),
        (np.zeros((5, 4, 1), np.float32), "FP32", r"unexpected shape for input 'FEATURES'"),
        (np.zeros((5, 4), np.float64), "FP64", r"'FEATURES' data-type is 'FP64', but model 'ModuleMap' expects 'FP32'"),
        (np.zeros((MAX_SPACEPOINTS + 1, 4), np.float32), "FP32", rf"FEATURES has {MAX_SPACEPOINTS + 1} rows, more than max_spacepoints = {MAX_SPACEPOINTS}"),
    ],
    ids=["rank1", "wrong-F", "rank3", "fp64", "too-many-spacepoints"],
)
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(server, features, datatype, message):
    with pytest.raises(InferenceServerException, match=message):
        grpc_infer(server.url_grpc, "ModuleMap", features, datatype)
    assert_still_serving(server)
    if "max_spacepoints" in message:  # refused by the model, not by Triton: it says so in the log
        assert wait_for_log(server, re.escape(f"ModuleMap_score: refused a request: FEATURES has {MAX_SPACEPOINTS + 1} rows"))


def test_a_failing_module_fails_only_its_request(server):
    features = event(20)
    features[0, 1] = POISON
    with pytest.raises(InferenceServerException, match="MetricLearning_fused: .*RuntimeError: poisoned event"):
        grpc_infer(server.url_grpc, "MetricLearning_fused", features)
    assert_still_serving(server)


@pytest.mark.parametrize("rows", [0, 1, 2])
def test_fewer_than_three_spacepoints_give_no_track(server, rows):
    # The toy would make a track of 1 or 2 positive rows: the python model answers [-1] without running it.
    for model in ("ModuleMap_fused", "MetricLearning"):
        assert grpc_infer(server.url_grpc, model, np.ones((rows, 4), np.float32)).tolist() == [-1]
    # A chained ensemble: the first stage does not give LABELS, so the stages see the tiny event themselves.
    expected = reference_labels(np.ones((rows, 4), np.float32)).tolist()
    assert grpc_infer(server.url_grpc, "ModuleMap", np.ones((rows, 4), np.float32)).tolist() == expected


def test_non_finite_features_are_zeroed_and_counted_in_the_log(server):
    features = np.ones((6, 4), np.float32)
    features[1, 0] = np.nan  # row 1 becomes 0 -> not positive: the run of positive rows breaks there
    features[3, 2] = np.inf
    features[4, 1] = -np.inf
    labels = grpc_infer(server.url_grpc, "MetricLearning_fused", features)
    assert labels.tolist() == [0, -1, 2, 3, 4, 5, -1]
    assert wait_for_log(server, r"MetricLearning_fused: replaced 3 non-finite FEATURES values with 0")


def test_metrics_endpoint_counts_requests(server):
    grpc_infer(server.url_grpc, "MetricLearning", event(50))
    with urllib.request.urlopen(server.url_metrics) as response:
        text = response.read().decode()
    assert re.search(r'nv_inference_request_success\{model="MetricLearning",version="1"\} [1-9]', text)


def test_concurrent_clients_mixing_good_and_bad_requests(server):
    """8 clients x 50 requests, every 5th one bad: good ones all correct, memory flat after warm-up."""
    good = [event(300 + 50 * i, seed=i) for i in range(4)]
    expected = [reference_labels(f) for f in good]
    poisoned = event(30)
    poisoned[0, 1] = POISON
    # Bad requests refused by Triton (shape), by the python model's check (size) and by the module (raises).
    bad = [
        ("ModuleMap", np.zeros((10, 3), np.float32), "unexpected shape"),
        ("ModuleMap_fused", np.zeros((MAX_SPACEPOINTS + 1, 4), np.float32), "more than max_spacepoints"),
        ("MetricLearning_fused", poisoned, "poisoned event"),
    ]

    def pick(worker, i):
        if i % 5 == 4:
            bad_model, features, reason = bad[(worker + i) % len(bad)]
            return bad_model, features, None, reason
        k = (worker + i) % len(good)
        return ("ModuleMap", "ModuleMap_fused")[i % 2], good[k], expected[k], None

    def load(clients=8):
        return run_mixed_clients(server.url_grpc, clients, 50, pick)

    assert load(clients=2) == []  # warm-up: the python backend's shared memory reaches its working size
    after_warmup = server.resident_memory()
    assert load() == []
    after_run = server.resident_memory()
    assert after_warmup > 0
    assert abs(after_run - after_warmup) <= 0.10 * after_warmup, (after_warmup, after_run)


def run_mixed_clients(url, clients, requests, pick):
    """``clients`` gRPC clients in threads, ``requests`` each; ``pick(worker, i)`` gives (model, FEATURES,
    expected LABELS or None, reason): a bad request (expected None) must be refused with ``reason`` in its
    error, a good one answered with exactly ``expected``. Returns the problems found."""
    failures = []

    def client_run(worker):
        client = grpcclient.InferenceServerClient(url)
        for i in range(requests):
            model, features, expected, reason = pick(worker, i)
            tensor = grpcclient.InferInput("FEATURES", list(features.shape), "FP32")
            tensor.set_data_from_numpy(features)
            try:
                labels = client.infer(model, [tensor]).as_numpy("LABELS")
            except InferenceServerException as error:
                if expected is not None or reason not in str(error):
                    failures.append(f"worker {worker}: request {i} to {model}: {error}")
                continue
            except Exception as error:  # noqa: BLE001 -- collected and returned
                failures.append(f"worker {worker}: request {i} to {model}: {error!r}")
                continue
            if expected is None:
                failures.append(f"worker {worker}: bad request {i} to {model} was answered")
            elif not np.array_equal(labels, expected):
                failures.append(f"worker {worker}: request {i} to {model} got wrong LABELS")
        client.close()

    threads = [threading.Thread(target=client_run, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI."""
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed")
def test_grpc_over_tls(small_repository, tmp_path):
    cert, key = make_certificate(tmp_path)
    features = event(200, seed=5)
    with TritonServer(small_repository, 0, 0, 0, device="cpu", tls_cert=cert, tls_key=key) as server:
        labels = grpc_infer(server.url_grpc, "MetricLearning_fused", features, ssl=True, root_certificates=str(cert))
        np.testing.assert_array_equal(labels, reference_labels(features))
        with pytest.raises(InferenceServerException):
            grpc_infer(server.url_grpc, "MetricLearning_fused", features)  # plain text to the TLS port
        pids = server.processes()
        assert len(pids) >= 2  # the server and at least one python backend stub
    # Leaving the context stops the whole process group: nothing of it may be left running.
    assert not [pid for pid in pids if _running(pid)]


def _running(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read()
    except FileNotFoundError:
        return False


def test_cli_serve_dies_with_its_parent_and_leaves_nothing(small_repository, tmp_path):
    """Kill -9 the ``gnn4itk serve`` process: the server and its stubs must exit too (PDEATHSIG + group)."""
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "gnn4itk", "serve", "--repository", str(small_repository), "--device", "cpu",
               "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--log-file", str(log)]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while "ready:" not in line:
            line = parent.stdout.readline()
            assert line, f"gnn4itk serve ended before ready:\n{log.read_text() if log.exists() else ''}"
        server_pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()]
        assert len(server_pids) == 1
        group = os.getpgid(server_pids[0])
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _group_alive(group):
        time.sleep(0.2)
    assert not _group_alive(group), "tritonserver or a stub outlived its killed parent"


def _group_alive(group):
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def test_cli_check_validates_the_repository(repository, tmp_path):
    from gnn4itk.cli import main

    assert main(["serve", "--repository", str(repository), "--check"]) == 0
    assert main(["serve", "--repository", str(tmp_path / "nothing"), "--check"]) == 2


def test_bench_serving_smoke(tmp_path):
    """``gnn4itk bench serving`` on a tiny event: runs every variant and finds served == in-process LABELS."""
    from gnn4itk.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "serving", "--spacepoints", "300", "--repeats", "2", "--concurrency", "2", "--requests", "4", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["labels_equal"] is True and figures["throughput"]["failures"] == 0
    assert set(figures["median_ms"]) == {
        "in-process (torch, to device and back)", "served fused, gRPC", "served fused, HTTP", "served ensemble, gRPC"
    }


def test_unpacked_tritonserver_tree_serves(small_repository, tmp_path, monkeypatch):
    """The wheel's files copied elsewhere (as carried to a machine without pip) and named by $GNN4ITK_TRITONSERVER."""
    pytriton = pytest.importorskip("pytriton", reason="nvidia-pytriton (the 'serve' extra) is not installed")
    from gnn4itk.serve import find_tritonserver

    wheel = Path(pytriton.__file__).parent / "tritonserver"
    tree = tmp_path / "unpacked" / "pytriton" / "tritonserver"
    for part in ("bin", "backends", "caches"):
        shutil.copytree(wheel / part, tree / part)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copytree(wheel / "python_backend_stubs" / python, tree / "python_backend_stubs" / python)
    (tmp_path / "unpacked" / "nvidia_pytriton.libs").symlink_to(wheel.parent.parent / "nvidia_pytriton.libs")
    monkeypatch.setenv("GNN4ITK_TRITONSERVER", str(tree))
    installation = find_tritonserver(cache_dir=tmp_path / "cache")
    assert installation.binary == tree / "bin" / "tritonserver"
    features = event(300, seed=9)
    log = tmp_path / "server.log"
    with TritonServer(small_repository, 0, 0, 0, device="cpu", installation=installation, log_file=log) as server:
        labels = grpc_infer(server.url_grpc, "MetricLearning_fused", features)
    np.testing.assert_array_equal(labels, reference_labels(features))
    # at unload every python model logs where its inputs arrived: 2 warm-up requests + this one, on the host
    assert re.search(r"MetricLearning_fused: unloaded; .*inputs received: FEATURES@cpu x3", log.read_text())


def test_unknown_jit_fuser_parameter_stops_the_model_with_its_name(tmp_path):
    from gnn4itk.serve import ServerError

    specs = toy_specs(tmp_path / "ts")[1:]
    specs[0].parameters["jit_fuser"] = "bogus"
    write_model_repository(tmp_path / "models", specs, instance_kind="cpu")
    with pytest.raises(ServerError, match="jit_fuser must be one of"):
        with TritonServer(tmp_path / "models", 0, 0, 0, device="cpu", ready_timeout=120):
            pass


def test_readiness_answered_by_another_server_does_not_count(small_repository):
    """A port picked as free can be taken before tritonserver binds it (parallel tests): an HTTP server that
    answers /v2/health/ready on our port must not make ours count as ready."""
    import http.server

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    impostor = http.server.HTTPServer(("0.0.0.0", 0), Ready)
    thread = threading.Thread(target=impostor.serve_forever, daemon=True)
    thread.start()
    try:
        server = TritonServer(small_repository, impostor.server_port, 0, 0, device="cpu", ready_timeout=120)
        with pytest.raises(ServerError, match="(?i)exited|address already in use|not ready"):
            server.start()
        assert server.process.poll() is not None
    finally:
        impostor.shutdown()
