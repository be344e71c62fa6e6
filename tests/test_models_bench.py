"""Smoke tests of ``gnn4itk bench radius-graph`` on a small CPU problem (no timing assertions), and of the
profiler tables it prints (:func:`gnn4itk.timing.profile_table`)."""

import json

import pytest
import torch

from gnn4itk.cli import main
from gnn4itk.timing import profile_table


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


def test_radius_graph_bench_profile_prints_operator_tables(capsys):
    assert main(["bench", "radius-graph", "--points", "500", "--dim", "8", "--variants", "brute", "--repeats", "1",
                 "--warmup", "0", "--profile"]) == 0
    out = capsys.readouterr().out
    assert out.count("Self CPU time total") == 2 and "Input Shapes" in out  # by operator, then by input shape


def test_profile_table_options_on_cpu():
    a, b = torch.randn(64, 32), torch.randn(32, 16)

    def function():
        return (a @ b).relu()

    plain = profile_table(function, "cpu", calls=2, rows=10)
    assert "aten::mm" in plain and "Input Shapes" not in plain and plain.count("Self CPU time total") == 1
    table = profile_table(function, "cpu", calls=1, rows=10, warmup=1, sort="total", by_shape=True)
    by_operator, by_shape = table.split("\n\n")  # the second table groups the same calls by input shape
    assert "aten::relu" in by_operator and "Input Shapes" not in by_operator
    assert "Input Shapes" in by_shape and "[[64, 32], [32, 16]]" in by_shape  # the matmul's operands
    # sort="total": aten::matmul's time includes that of aten::mm, which it calls, so it ranks above it.
    assert by_operator.index("aten::matmul") < by_operator.index("aten::mm")
    with pytest.raises(ValueError, match="sort"):
        profile_table(function, "cpu", sort="device")
