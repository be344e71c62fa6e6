"""client/gnn4itk_client.py against a real tritonserver serving the toy pipeline.

The client runs as a subprocess in which ``torch`` and ``gnn4itk`` cannot be imported, proving that it needs
only numpy and tritonclient; the event-file and evaluation paths run with both available.
"""

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


def test_throughput_mode_reports_rate_and_latency_percentiles(server, tmp_path):
    np.save(tmp_path / "f.npy", features(300))
    out = run_client(
        "-u", server.url_grpc, "-m", "MetricLearning", "-i", str(tmp_path / "f.npy"),
        "--concurrency", "4", "--requests", "40", "--json", str(tmp_path / "t.json"),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["requests"] == 40 and result["failures"] == 0 and result["concurrency"] == 4
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and result["requests_per_s"] > 0
    assert "req/s" in out.stdout and json.loads(out.stdout.strip().splitlines()[-1]) == result


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
    sys.path.insert(0, str(CLIENT.parent))
    try:
        from gnn4itk_client import split_labels
    finally:
        sys.path.remove(str(CLIENT.parent))
    from gnn4itk.tracks import split_labels as package_split

    for labels in ([-1], [0, 1, -1, 4, -1], [3, -1, -1, 5, 6, -1], [2, 3]):
        assert [t.tolist() for t in split_labels(np.array(labels))] == [t.tolist() for t in package_split(labels)]
