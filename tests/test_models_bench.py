"""Smoke test of ``gnn4itk bench radius-graph`` on a small CPU problem (no timing assertions)."""

import json

from gnn4itk.cli import main


def test_radius_graph_bench_runs_and_reports(tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", "radius-graph", "--points", "3000", "--dim", "8", "--r-max", "0.2", "--repeats", "1",
                 "--warmup", "0", "--json", str(out)])
    assert code == 0
    figures = json.loads(out.read_text())
    assert set(figures["results"]) == {"tree16", "tree32", "tree64", "tree16s1", "tree32s1", "tree16s4", "tree32s4", "grid3", "pca3", "pca4", "pca5", "brute"}
    per_node = {r["edges_per_node"] for r in figures["results"].values()}
    assert len(per_node) == 1 and per_node.pop() > 1  # the same (checked) graph for every variant


def test_radius_graph_bench_refuses_unknown_variant(capsys):
    assert main(["bench", "radius-graph", "--variants", "kd-tree"]) == 2
    assert "unknown variants ['kd-tree']" in capsys.readouterr().err
