"""client/gnn4itk_client.py against a real tritonserver serving the toy pipeline.

The client runs as a subprocess in which ``torch`` and ``gnn4itk`` cannot be imported, proving that it needs
only numpy and tritonclient; the event-file and evaluation paths run with both available.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient (the 'serve' extra) is not installed")

from export.repository import write_model_repository  # noqa: E402
from gnn4itk.serve import TritonServer  # noqa: E402
from tests.test_serving_repository import COLUMNS, reference_labels, toy_specs  # noqa: E402

pytestmark = pytest.mark.slow
CLIENT = Path(__file__).resolve().parents[1] / "client" / "gnn4itk_client.py"
BLOCK_TORCH = "import sys, runpy; sys.modules['torch'] = None; sys.modules['gnn4itk'] = None; sys.argv = sys.argv[1:]; "


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    write_model_repository(root / "models", toy_specs(root / "ts")[1:], instance_kind="cpu")
    with TritonServer(root / "models", 0, 0, 0, device="cpu") as running:
        yield running


def run_client(*args, block_torch=True):
    """Run the client script; returns the CompletedProcess (text)."""
    if block_torch:
        command = [sys.executable, "-c", BLOCK_TORCH + "runpy.run_path(sys.argv[0], run_name='__main__')", str(CLIENT), *args]
    else:
        command = [sys.executable, str(CLIENT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def load_client_module():
    """The client loaded by importlib with no sys.modules entry and client/ not on sys.path (the hardest case)."""
    spec = importlib.util.spec_from_file_location("gnn4itk_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def track_count(labels):
    return int((np.asarray(labels) == -1).sum()) if len(labels) > 1 else 0


def features(rows=500, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, len(COLUMNS))).astype(np.float32)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_npy_input_prints_tracks_and_writes_labels(server, tmp_path, protocol):
    x = features()
    np.save(tmp_path / "f.npy", x)
    url, flags = (server.url_http, ["--http"]) if protocol == "http" else (server.url_grpc, [])
    out = run_client("-u", url, *flags, "-m", "MetricLearning", "-i", str(tmp_path / "f.npy"), "-o", str(tmp_path / "labels.npy"))
    assert out.returncode == 0, out.stderr
    expected = reference_labels(x)
    assert f"MetricLearning: {track_count(expected)} tracks from 500 spacepoints in" in out.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), expected)


def test_csv_columns_are_picked_by_the_models_feature_columns(server, tmp_path):
    x = features(seed=1)
    # Extra and shuffled columns: the client must send x, y, z, r in the model's order.
    header = ["hit_id", "r", "z", "y", "x", "charge"]
    table = np.column_stack([np.arange(len(x)), x[:, 3], x[:, 2], x[:, 1], x[:, 0], np.ones(len(x))])
    np.savetxt(tmp_path / "f.csv", table, delimiter=",", header=",".join(header), comments="")
    out = run_client("-u", server.url_grpc, "-m", "MetricLearning_fused", "-i", str(tmp_path / "f.csv"), "-o", str(tmp_path / "l.npy"))
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), reference_labels(x))


def test_npz_input_and_wrong_width_is_a_clear_error(server, tmp_path):
    np.savez(tmp_path / "f.npz", features=features(seed=2))
    out = run_client("-u", server.url_grpc, "-m", "MetricLearning", "-i", str(tmp_path / "f.npz"))
    assert out.returncode == 0 and " tracks from 500 spacepoints" in out.stdout, out.stderr
    np.save(tmp_path / "narrow.npy", np.zeros((10, 3), np.float32))
    out = run_client("-u", server.url_grpc, "-m", "MetricLearning", "-i", str(tmp_path / "narrow.npy"))
    assert out.returncode == 2 and "has 3 feature columns, model MetricLearning expects 4" in out.stderr


def test_unknown_model_is_a_server_error(server, tmp_path):
    np.save(tmp_path / "f.npy", features(10))
    out = run_client("-u", server.url_grpc, "-m", "NoSuchModel", "-i", str(tmp_path / "f.npy"))
    assert out.returncode == 1 and "server error" in out.stderr and "NoSuchModel" in out.stderr


def test_throughput_mode_checks_every_answer_across_processes(server, tmp_path):
    x = features(300)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "expected.npy", reference_labels(x))
    out = run_client(
        "-u", server.url_grpc, "-m", "MetricLearning", "-i", str(tmp_path / "f.npy"), "--expect", str(tmp_path / "expected.npy"),
        "--concurrency", "3", "--processes", "2", "--requests", "40", "--metrics-url", server.url_metrics, "--json", str(tmp_path / "t.json"),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["processes"] == 2 and result["concurrency"] == 3 and result["requests"] == 40 and result["warmup"] == 1
    assert (result["correct"], result["wrong"], result["failures"], result["warmup_wrong"], result["warmup_failures"]) == (40, 0, 0, 0, 0)
    assert result["reference"] == "expected" and result["expected_labels"]["length"] == len(reference_labels(x))
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and result["events_per_s"] == result["requests_per_s"] > 0
    assert len(result["client_cpu_s"]) == 2 and result["client_cpu_fraction"] > 0
    # the server saw the 40 timed requests ("before" is read once every warm-up request is answered, but the
    # server may count a request just after it answered it: up to the 3 warm-up requests may be in the delta)
    models = result["server"]["models"]
    assert 40 <= models["MetricLearning"]["success"] <= 43 and models["MetricLearning"]["failure"] == 0
    assert models["MetricLearning_fused"]["avg_compute_infer_ms"] > 0 and result["server"]["gpus"] == {}
    assert "events/s" in out.stdout and "client_cpu_fraction" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1]) == result


def test_wrong_expected_labels_are_counted_and_fail_the_run(server, tmp_path):
    x = features(200, seed=3)
    expected = reference_labels(x).copy()
    expected[7] += 1
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "wrong.npy", expected)
    out = run_client(
        "-u", server.url_grpc, "-m", "MetricLearning", "-i", str(tmp_path / "f.npy"), "--expect", str(tmp_path / "wrong.npy"),
        "--concurrency", "2", "--requests", "12", "--warmup", "0",
    )
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["correct"], result["wrong"], result["failures"]) == (0, 12, 0) and result["events_per_s"] == 0
    [message] = result["messages"]["wrong"]  # every answer differs in the same way: one message, counted 12 times
    assert message["count"] == 12 and "first difference at index 7" in message["message"]
    # one request: the same check
    out = run_client("-u", server.url_grpc, "-m", "MetricLearning", "-i", str(tmp_path / "f.npy"), "--expect", str(tmp_path / "wrong.npy"))
    assert out.returncode == 1 and "LABELS differ" in out.stdout and "first difference at index 7" in out.stdout


def test_throughput_function_from_an_importlib_loaded_module(server):
    """Loaded by importlib without a sys.modules entry: a connect callable runs in this process, a
    ConnectionSpec in spawned processes; without expected LABELS the first answer is the reference."""
    client = load_client_module()
    x = features(100, seed=4)
    local = client.throughput(lambda: client.Connection(server.url_grpc), "MetricLearning", x, 2, 6)
    spawned = client.throughput(client.ConnectionSpec(server.url_grpc), "MetricLearning", x, 2, 6, processes=2, warmup=1)
    for result, processes in ((local, 1), (spawned, 2)):
        assert (result["correct"], result["wrong"], result["failures"], result["processes"]) == (6, 0, 0, processes)
        assert result["reference"] == "first answer" and client.throughput_passed(result)
    with pytest.raises(ValueError, match="ConnectionSpec"):
        client.throughput(lambda: client.Connection(server.url_grpc), "MetricLearning", x, 2, 6, processes=2)


SAMPLE_METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="ModuleMap",version="1"} 110
nv_inference_request_success{model="ModuleMap_fused",version="1"} 110
nv_inference_request_failure{model="ModuleMap",reason="OTHER",version="1"} 1
nv_inference_request_failure{model="ModuleMap",reason="BACKEND",version="1"} 2
nv_inference_queue_duration_us{model="ModuleMap",version="1"} 2500
nv_inference_compute_infer_duration_us{model="ModuleMap",version="1"} 400000
nv_inference_request_success{model="Idle",version="1"} 5
nv_gpu_utilization{gpu_uuid="GPU-aaaa"} 0.75
nv_gpu_utilization{gpu_uuid="GPU-bbbb"} NaN
nv_gpu_memory_used_bytes{gpu_uuid="GPU-aaaa"} 1.5e+09
nv_gpu_memory_total_bytes{gpu_uuid="GPU-aaaa"} 8.5e+10 1712345678000
odd_label{path="a\\"b\\\\c",le="+Inf"} +Inf
this line does not parse
nv_cpu_utilization 0.25
"""


def test_metrics_parser_and_server_figures():
    client = load_client_module()
    after = client.parse_metrics(SAMPLE_METRICS)
    assert after["nv_cpu_utilization"] == [({}, 0.25)]
    assert after["nv_gpu_memory_total_bytes"] == [({"gpu_uuid": "GPU-aaaa"}, 8.5e10)]  # the timestamp is dropped
    assert after["odd_label"] == [({"path": 'a"b\\c', "le": "+Inf"}, float("inf"))]
    assert len(after["nv_inference_request_failure"]) == 2 and "this" not in after
    before = client.parse_metrics(
        'nv_inference_request_success{model="ModuleMap",version="1"} 10\n'
        'nv_inference_request_success{model="Idle",version="1"} 5\n'
        'nv_inference_queue_duration_us{model="ModuleMap",version="1"} 500\n'
    )
    during = [client.parse_metrics('nv_gpu_utilization{gpu_uuid="GPU-aaaa"} %s' % u) for u in (0.5, 0.7)]
    figures = client.server_metrics(before, after, during)
    assert figures["gpus"]["GPU-aaaa"] == {
        "utilization": pytest.approx(0.6), "utilization_samples": 2, "memory_used_bytes": 1_500_000_000, "memory_total_bytes": 85_000_000_000
    }
    assert set(figures["gpus"]) == {"GPU-aaaa"}  # NaN samples are left out
    # 100 requests since "before": queue (2500 - 500) us and compute 400000 us over them; Idle had none
    assert figures["models"] == {
        "ModuleMap": {"success": 100, "failure": 3, "avg_queue_ms": pytest.approx(0.02), "avg_compute_infer_ms": pytest.approx(4.0)},
        "ModuleMap_fused": {"success": 110, "failure": 0},
    }
    assert client.server_metrics(None, after)["models"] == {}  # no "before": no deltas
    assert client.metrics_endpoint("gpu-node:8002") == "http://gpu-node:8002/metrics"


def test_trackml_event_input_is_evaluated_with_gnn4itk(server, trackml_dir, tmp_path):
    from gnn4itk.event import select_features
    from gnn4itk.io.load import load_event

    event = trackml_dir / "event000000001"
    out = run_client("-u", server.url_grpc, "-m", "MetricLearning", "-i", str(event), "-o", str(tmp_path / "l.npy"), block_torch=False)
    assert out.returncode == 0, out.stderr
    x = select_features(load_event(str(event)).hits, COLUMNS)
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), reference_labels(x))
    assert "efficiency" in out.stdout.lower()  # gnn4itk evaluate ran on the truth of the event


def test_split_labels_matches_athena(tmp_path):
    from gnn4itk.tracks import split_labels as package_split

    split_labels = load_client_module().split_labels
    for labels in ([-1], [0, 1, -1, 4, -1], [3, -1, -1, 5, 6, -1], [2, 3]):
        assert [t.tolist() for t in split_labels(np.array(labels))] == [t.tolist() for t in package_split(labels)]
