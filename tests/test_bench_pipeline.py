"""Smoke tests of ``gnn4itk bench pipeline`` on the CPU with a tiny pipeline (no timing assertions)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gnn4itk.bench.pipeline import AFTER_GRAPH, density_graph
from gnn4itk.cli import main
from module_map.synthetic import synthetic_event, synthetic_events
from tests.pipeline_fixtures import write_tiny_module_map_pipeline

FAST = ["--device", "cpu", "--repeats", "2", "--warmup", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config path, a .npy event of the map's own events, so that the graph has edges)."""
    directory = tmp_path_factory.mktemp("bench_pipeline")
    config = write_tiny_module_map_pipeline(directory, synthetic_events(3, n_particles=300, seed=5))
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    event = directory / "event.npy"
    np.save(event, synthetic_event(n_particles=300, seed=5).inference_tensor().numpy())
    return path, event


def _bench(tmp_path, *args) -> dict:
    out = tmp_path / "bench.json"
    assert main(["bench", "pipeline", *FAST, *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_bench_pipeline_npy_and_synthetic_events(tiny, tmp_path, capsys):
    config, event = tiny
    figures = _bench(tmp_path, "--config", str(config), "--event", str(event), "--synthetic-pileup", "2")
    assert {"date", "device", "torch", "command", "events", "variants", "skipped_variants"} <= set(figures)
    assert figures["command"].startswith("gnn4itk bench pipeline") and "--event" in figures["command"]
    assert "--rates" not in figures["command"]  # measured in the run, not an option
    assert list(figures["variants"]) == ["straightforward", "eager", "scripted"]
    assert {"scripted_autocast", "scripted_tf32"} <= set(figures["skipped_variants"])  # reduced precision: CUDA only
    assert [e["name"] for e in figures["events"]] == ["event.npy", "synthetic mu=2"]
    npy = figures["events"][0]
    assert npy["kind"] == "npy" and npy["spacepoints"] == len(np.load(event))
    assert npy["edges_graph"] > 100 and npy["edges_track_building"] == npy["edges_graph"]  # the GNN keeps every edge
    for result in figures["events"]:
        assert result["baseline"] == "straightforward"
        for name, variant in result["variants"].items():
            assert set(variant["median_ms"]) == {"whole", "input_guard", "graph_construction", "gnn", "track_building"}
            assert set(variant["p90_ms"]) == set(variant["median_ms"])
            assert variant["spacepoints"] == result["spacepoints"] and variant["edges_graph"] == result["edges_graph"]
            assert variant["staged_tracks_identical"] == 1.0  # the stages one by one give the whole's tracks
            assert variant["repeatable"] is True  # float32 on the CPU: a second call gives the same LABELS
            assert variant["peak_gpu_memory_MB"] is None
        eager, scripted = result["variants"]["eager"], result["variants"]["scripted"]
        assert eager["tracks"] == scripted["tracks"] and scripted["identical_tracks_vs"]["eager"] == 1.0
        assert result["variants"]["straightforward"]["ratio_to_baseline"]["whole"] == 1.0
    assert npy["variants"]["eager"]["tracks"] > 0
    synthetic = figures["events"][1]  # a synthetic event has truth: every variant's tracks are scored
    assert "metrics" not in npy["variants"]["eager"] and npy["truth"] is False and synthetic["truth"] is True
    for variant in synthetic["variants"].values():
        assert set(variant["metrics"]) == {"ATLAS", "one_way", "two_way"}
        assert 0 <= variant["metrics"]["ATLAS"]["efficiency"] <= 1
    assert synthetic["variants"]["scripted"]["metrics"] == synthetic["variants"]["eager"]["metrics"]
    out = capsys.readouterr().out
    assert "ATLAS eff / fake / dup" in out and "graph_construction" in out
    floor = npy["gnn_floor"]  # the GNN's time over its floor (FLOPs at the measured matmul rate)
    assert floor["edges"] == npy["edges_graph"] and floor["gflops"] > 0 and floor["floor_ms"] > 0
    assert set(floor["time_over_floor"]) == {"straightforward", "eager", "scripted"}


def test_metric_differences_hold_reduced_precision_to_the_tolerance():
    from gnn4itk.bench.pipeline import METRIC_TOLERANCE, metric_differences

    full = {"ATLAS": {"efficiency": 0.95, "fake_rate": 0.01, "duplicate_rate": 0.02}}
    close = {"ATLAS": {"efficiency": 0.9495, "fake_rate": 0.0105, "duplicate_rate": 0.02}}
    far = {"ATLAS": {"efficiency": 0.948, "fake_rate": 0.01, "duplicate_rate": 0.02}}
    assert metric_differences(full, close)["within_tolerance"] and METRIC_TOLERANCE == 1e-3
    undefined = {"ATLAS": {"efficiency": 0.95, "fake_rate": None, "duplicate_rate": 0.02}}  # as_dict: NaN -> None
    assert metric_differences(full, undefined)["by_style"]["ATLAS"]["fake_rate"] is None
    result = metric_differences(full, far)
    assert not result["within_tolerance"] and abs(result["largest"] - 0.002) < 1e-12
    assert abs(result["by_style"]["ATLAS"]["efficiency"] + 0.002) < 1e-12


def test_bench_pipeline_itk_density(tiny, tmp_path, capsys):
    config, _ = tiny
    figures = _bench(tmp_path, "--config", str(config), "--itk-density", "4", "--itk-spacepoints", "1500",
                     "--variants", "scripted,eager", "--profile", str(tmp_path / "profiles"))
    assert list(figures["variants"]) == ["eager", "scripted"] and figures["baseline"] == "eager"
    (result,) = figures["events"]
    assert result["synthetic_graph"] is True and result["spacepoints"] == 1500
    assert 0.9 * 6000 <= result["edges_graph"] <= 6000
    for variant in result["variants"].values():
        assert set(variant["median_ms"]) == {AFTER_GRAPH, "input_guard", "gnn", "track_building"}  # no graph construction
        assert variant["tracks"] > 0 and variant["staged_tracks_identical"] == 1.0
    assert result["variants"]["scripted"]["identical_tracks_vs"]["eager"] == 1.0
    assert "SYNTHETIC" in capsys.readouterr().out
    (profile,) = (tmp_path / "profiles").iterdir()  # operator tables of every variant, one file per event
    table = profile.read_text()
    assert profile.name.startswith("profile_") and table.count("== ") == 2 and ", eager, " in table and ", scripted, " in table
    assert "Self CPU" in table and "aten::" in table


def test_density_graph_points_outwards_between_layers():
    hits = synthetic_event(n_particles=150, seed=3).hits
    columns = {c: torch.from_numpy(hits[c].to_numpy(np.float32, copy=True)) for c in ("r", "z", "eta", "phi")}
    layer = torch.from_numpy(hits["volume_id"].to_numpy(np.int64) * 100 + hits["layer_id"].to_numpy(np.int64))
    edges = density_graph(**columns, layer=layer, edges_per_spacepoint=2.5)
    assert edges.shape == (2, round(2.5 * len(hits)))
    radius = torch.hypot(columns["r"], columns["z"])
    assert bool((radius[edges[0]] < radius[edges[1]]).all())
    assert bool((layer[edges[0]] != layer[edges[1]]).all())
    assert torch.unique(edges[0] * len(hits) + edges[1]).numel() == edges.shape[1]


def test_bench_pipeline_builds_a_synthetic_map_when_the_configured_one_is_missing(tiny, tmp_path):
    config = yaml.safe_load(tiny[0].read_text())
    config["graph_construction"]["module_map"] = str(tmp_path / "absent.npz")
    path = tmp_path / "no_map.yaml"
    path.write_text(yaml.safe_dump(config))
    figures = _bench(tmp_path, "--config", str(path), "--synthetic-pileup", "1", "--map-particles", "3000",
                     "--variants", "scripted")
    assert figures["module_map"].startswith("synthetic")
    assert figures["events"][0]["spacepoints"] > 0  # (a map this small gives few or no edges)


def test_bench_pipeline_peer_gnn_from_a_user_folder(tiny, tmp_path):
    # A stand-in for the service's file: it imports torch_scatter (which is not installed here) as the
    # real one does, and its class is ours under the service's name, so our weights must fit exactly.
    peer = tmp_path / "peer"
    peer.mkdir()
    (peer / "interaction_gnn.py").write_text(
        "from torch_scatter import scatter_add\n"
        "from gnn4itk.models.interaction_gnn import ChainedInteractionGNN2\n"
    )
    config, event = tiny
    figures = _bench(tmp_path, "--config", str(config), "--event", str(event), "--variants", "eager",
                     "--peer-gnn-source", str(peer))
    assert figures["peer_gnn"]["class"] == "ChainedInteractionGNN2"
    result = figures["events"][0]["peer_gnn"]
    assert result["max_abs_logit_difference"] == 0.0 and set(result["gnn_stage_over_peer"]) == {"eager"}
    if "torch_scatter" in figures["peer_gnn"]["stand_ins"]:
        assert "torch_scatter" not in sys.modules  # the stand-in is gone after the import


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / ".devin/peer/interaction_gnn.py").exists(),
                    reason="no local copy of the tracking-as-a-service interaction_gnn.py in .devin/peer")
def test_bench_pipeline_real_peer_gnn(tiny, tmp_path):
    config, event = tiny
    peer = Path(__file__).resolve().parents[1] / ".devin/peer"
    figures = _bench(tmp_path, "--config", str(config), "--event", str(event), "--variants", "eager",
                     "--peer-gnn-source", str(peer))
    assert figures["events"][0]["peer_gnn"]["max_abs_logit_difference"] < 1e-4


def test_bench_pipeline_refuses_unknown_variants(capsys):
    assert main(["bench", "pipeline", "--device", "cpu", "--variants", "compiled"]) == 2
    assert "unknown variants ['compiled']" in capsys.readouterr().err


def test_peak_memory_returns_the_result_and_no_bytes_off_cuda():
    from gnn4itk.timing import peak_memory

    assert peak_memory(lambda: 41 + 1, "cpu") == (42, None, None)
