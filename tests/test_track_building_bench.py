"""`gnn4itk bench track-building` runs end to end on a small graph and reports what it promises."""

import json

import pytest
import torch

from gnn4itk.cli import main


def test_bench_track_building_runs_on_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--events", "1", "--particles", "300", "--warmup", "1", "--repeats", "2", "--threads", "1"]
    assert main(["bench", "track-building", "--device", "cpu", *args, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["agreement"][0]["identical_fraction"] == 1.0
    assert figures["events"][0]["hits"] > 1000
    assert {"scripted cc_and_walk", "eager cc_and_walk", "reference (Python, CPU)"} <= set(figures["median_ms"])
    assert figures["torch_ops_per_call"] > 10
    assert "speedup" in capsys.readouterr().out


def test_bench_track_building_dense_variant(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--events", "1", "--particles", "300", "--warmup", "1", "--repeats", "1", "--threads", "1"]
    assert main(["bench", "track-building", "--dense", "--check-particles", "400", *args, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["dense"] is True
    assert figures["agreement"][0]["identical_fraction"] == 1.0  # the smaller dense graph
    assert "scripted cc_and_walk" in figures["median_ms"]
    assert "reference (Python, CPU)" not in figures["median_ms"]  # too slow on dense graphs: not timed
    # Dense scoring: almost every edge passes cc_cut.
    assert figures["events"][0]["edges_after_cc_cut"] > 0.95 * figures["events"][0]["edges"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_bench_track_building_refuses_missing_cuda(capsys):
    assert main(["bench", "track-building", "--device", "cuda"]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_bench_track_building_compares_with_another_version(tmp_path):
    # A copy of the package under another name stands in for an older version.
    import re
    from pathlib import Path

    import gnn4itk.track_building as package

    copy = tmp_path / "older_track_building"
    copy.mkdir()
    for source in Path(package.__file__).parent.glob("*.py"):
        text = re.sub(r"gnn4itk\.track_building\.(\w+) import", r"older_track_building.\1 import", source.read_text())
        (copy / source.name).write_text(text)
    out = tmp_path / "bench.json"
    args = ["--events", "1", "--particles", "300", "--warmup", "1", "--repeats", "1", "--threads", "1"]
    assert main(["bench", "track-building", *args, "--compare-with", str(copy), "--json", str(out)]) == 0
    assert f"scripted cc_and_walk of {copy}" in json.loads(out.read_text())["median_ms"]
    assert main(["bench", "track-building", *args, "--compare-with", str(tmp_path / "missing")]) == 2
