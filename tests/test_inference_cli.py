"""End-to-end tests of ``python -m gnn4itk.inference`` on CPU (subprocesses, as a user runs it)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gnn4itk.event import INFERENCE_COLUMNS, write_event
from gnn4itk.io.trackml import read_trackml_event
from gnn4itk.pipeline import build_pipeline
from gnn4itk.tracks import labels_to_track_ids
from module_map.synthetic import synthetic_event
from tests.pipeline_fixtures import write_tiny_module_map_pipeline


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gnn4itk.inference", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.fixture(scope="module")
def synthetic_setup(tmp_path_factory):
    """A tiny ModuleMap pipeline (map built from the event's own truth) and the event as .pt and Parquet."""
    directory = tmp_path_factory.mktemp("cli")
    event = synthetic_event(n_particles=200, seed=11)
    config = write_tiny_module_map_pipeline(directory, [event])
    config_path = directory / "ModuleMap.yaml"
    config_path.write_text(yaml.safe_dump(config))
    tensor_path = directory / "node_features.pt"
    torch.save(event.inference_tensor(), tensor_path)
    prefix = write_event(event, directory / "events")
    return directory, config, config_path, tensor_path, prefix, event


def test_cli_labels_equal_in_process_pipeline(synthetic_setup):
    directory, config, config_path, tensor_path, _, event = synthetic_setup
    out = directory / "labels.pt"
    result = run_cli("--config", config_path, "-i", tensor_path, "-d", "cpu", "-o", out)
    assert result.returncode == 0, result.stderr
    progress = ("inference: 0/3 stages (0%)", "inference: 3/3 stages in ")  # plain lines: stdout is a pipe
    for line in ("configuration:", "Use ChainedInteractionGNN2", "start a warm-up run.", "triplet", "total tracks", *progress):
        assert line in result.stdout, f"{line!r} missing from the CLI output"
    cli_labels = torch.load(out, weights_only=True)
    expected = build_pipeline(config)(event.inference_tensor())
    torch.testing.assert_close(cli_labels, expected, rtol=0, atol=0)
    n_tracks = int((expected == -1).sum())
    assert f"total tracks {n_tracks}" in result.stdout


def test_cli_on_parquet_event_prints_truth_metrics_and_writes_parquet(synthetic_setup):
    directory, _, config_path, _, prefix, event = synthetic_setup
    out = directory / "tracks.parquet"
    result = run_cli("--config", config_path, "-i", prefix, "-d", "cuda", "-o", out, "-t", "--repeats", 2)
    assert result.returncode == 0, result.stderr
    if not torch.cuda.is_available():
        assert "CUDA is not available" in result.stdout
    assert "efficiency" in result.stdout and "TrackML score" in result.stdout
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("matching  efficiency"))
    assert [line.split()[0] for line in lines[header + 1 : header + 4]] == ["ATLAS", "one_way", "two_way"]
    assert "graph construction" in result.stdout and "track building" in result.stdout
    table = pd.read_parquet(out)
    assert set(table.columns) >= {"hit_id", "track_id"}
    assert table["hit_id"].isin(event.hits["hit_id"]).all()


def test_cli_scripted_run_and_debug_data(synthetic_setup, tmp_path):
    _, config, config_path, tensor_path, _, event = synthetic_setup
    result = run_cli("--config", config_path, "-i", tensor_path, "-d", "cpu", "-c", "-o", tmp_path / "l.pt")
    assert result.returncode == 0, result.stderr
    expected = build_pipeline(config)(event.inference_tensor())
    torch.testing.assert_close(torch.load(tmp_path / "l.pt", weights_only=True), expected, rtol=0, atol=0)
    result = run_cli("--config", config_path, "-i", tensor_path, "-d", "cpu", "-s", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    debug = torch.load(tmp_path / "debug_data.pt", weights_only=True)
    assert {"graph_edge_index", "stage0_scores", "track_candidates"} <= set(debug)
    torch.testing.assert_close(debug["track_candidates"], expected, rtol=0, atol=0)


def test_cli_robustness(synthetic_setup, tmp_path):
    _, _, config_path, tensor_path, _, event = synthetic_setup
    tiny = tmp_path / "tiny.pt"
    torch.save(event.inference_tensor()[:2], tiny)
    result = run_cli("--config", config_path, "-i", tiny, "-d", "cpu", "-o", tmp_path / "t.pt")
    assert result.returncode == 0, result.stderr
    assert "total tracks 0" in result.stdout
    assert torch.load(tmp_path / "t.pt", weights_only=True).tolist() == [-1]

    bad = event.inference_tensor().clone()
    bad[:5, 0] = float("nan")
    bad[5, 1] = float("inf")
    torch.save(bad, tmp_path / "nan.pt")
    result = run_cli("--config", config_path, "-i", tmp_path / "nan.pt", "-d", "cpu")
    assert result.returncode == 0, result.stderr
    assert "warning: 6 NaN or inf feature values replaced by 0" in result.stdout

    torch.save(torch.zeros(10, 12), tmp_path / "narrow.pt")
    for args, needle in [
        (["-i", tmp_path / "narrow.pt"], "[N, 16]"),
        (["-i", tmp_path / "x.unknown"], "x.unknown"),
        (["-i", tensor_path, "-m", tmp_path / "missing.ckpt"], "missing.ckpt"),
        (["-i", tensor_path, "-mmp", tmp_path / "missing_map.npz"], "missing_map.npz"),
    ]:
        if str(args[1]).endswith("x.unknown"):
            (tmp_path / "x.unknown").write_text("not an event")
        result = run_cli("--config", config_path, "-d", "cpu", *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1 and needle in error_lines[0], result.stderr
    verbose = run_cli("--config", config_path, "-d", "cpu", "-v", "-i", tmp_path / "narrow.pt")
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def test_cli_on_the_real_trackml_event(trackml_dir, tmp_path):
    """The shared real TrackML event, read from CSV, through a pipeline whose map comes from its truth."""
    prefix = trackml_dir / "event000000001"
    event = read_trackml_event(prefix)
    config = write_tiny_module_map_pipeline(tmp_path, [event])
    config_path = tmp_path / "ModuleMap.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = run_cli("--config", config_path, "-i", prefix, "-d", "cpu", "-o", tmp_path / "labels.pt")
    assert result.returncode == 0, result.stderr
    assert "efficiency" in result.stdout
    labels = torch.load(tmp_path / "labels.pt", weights_only=True)
    track_ids = labels_to_track_ids(labels.numpy(), len(event.hits))
    assert (track_ids >= 0).sum() > 0
    features = torch.from_numpy(event.hits[INFERENCE_COLUMNS].to_numpy(np.float32))
    torch.testing.assert_close(labels, build_pipeline(config)(features), rtol=0, atol=0)


@pytest.mark.sim
def test_cli_on_a_pyacts_simulated_event(tmp_path):
    """A small event from `gnn4itk simulate` (pyacts Fatras) through the CLI, with truth metrics."""
    pytest.importorskip("acts", reason="pyacts (the 'sim' extra) is not installed")
    from gnn4itk.event import read_event

    result = subprocess.run(
        [sys.executable, "-m", "gnn4itk", "simulate", "--pileup", "3", "--events", "1", "--seed", "4",
         "--generator", "gun", "--output", str(tmp_path / "events"), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    prefix = tmp_path / "events" / "event000000000"
    event = read_event(prefix)
    config = write_tiny_module_map_pipeline(tmp_path / "pipe", [event])
    config_path = tmp_path / "ModuleMap.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = run_cli("--config", config_path, "-i", prefix, "-d", "cpu", "-o", tmp_path / "labels.pt")
    assert result.returncode == 0, result.stderr
    assert "efficiency" in result.stdout and "total tracks" in result.stdout
    labels = torch.load(tmp_path / "labels.pt", weights_only=True)
    features = torch.from_numpy(event.hits[INFERENCE_COLUMNS].to_numpy(np.float32))
    torch.testing.assert_close(labels, build_pipeline(config)(features), rtol=0, atol=0)
    assert (labels == -1).sum() > 1
