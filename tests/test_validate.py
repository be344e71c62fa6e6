"""``gnn4itk validate``: counts summed over events, all three matching styles reported (ATLAS first)."""

import json
import math

import pytest
import yaml
from tests.metrics_events import STYLES_EXPECTED, styles_event, styles_tracks

from gnn4itk.commands.validate import aggregate, event_line
from gnn4itk.metrics import evaluate_tracking, truth_tracks


def test_aggregate_sums_every_style_over_events():
    event = styles_event()
    results = [evaluate_tracking(event, styles_tracks(event)), evaluate_tracking(event, truth_tracks(event))]
    summary = aggregate(results)
    # Perfect tracks add 5 reconstructed targets, 6 matched candidates and no duplicate in every style.
    assert list(summary["matching"]) == ["ATLAS", "one_way", "two_way"]
    for style, (_, _, _, n_reco, n_matched, n_dup) in STYLES_EXPECTED.items():
        figures = summary["matching"][style]
        assert figures["efficiency"] == pytest.approx((n_reco + 5) / 10), style
        assert figures["fake_rate"] == pytest.approx(1 - (n_matched + 6) / 13), style
        assert figures["duplicate_rate"] == pytest.approx(n_dup / (n_reco + 5)), style
    # The keys of before: double majority (two_way).
    assert summary["efficiency"] == pytest.approx(7 / 10)
    assert summary["fake_rate"] == pytest.approx(3 / 13)
    assert summary["counts"]["n_candidate_tracks"] == 13
    line = event_line(1, len(event.hits), results[0], 0.0123)
    assert line == (
        "event 1: 54 spacepoints, efficiency/fake rate ATLAS 0.6000/0.1429, one_way 0.8000/0.1429, "
        "two_way 0.4000/0.4286, 12.3 ms"
    )
    empty = aggregate([])
    assert math.isnan(empty["efficiency"]) and empty["matching"]["ATLAS"]["efficiency"] is None


def test_validate_command_prints_the_three_styles(tmp_path, capsys):
    from module_map.synthetic import synthetic_event
    from tests.pipeline_fixtures import write_tiny_module_map_pipeline

    from gnn4itk.cli import main
    from gnn4itk.event import write_event

    event = synthetic_event(n_particles=100, seed=3)
    config_path = tmp_path / "ModuleMap.yaml"
    config_path.write_text(yaml.safe_dump(write_tiny_module_map_pipeline(tmp_path, [event])))
    write_event(event, tmp_path / "events")
    out = tmp_path / "validate.json"
    assert main(["validate", "--pipeline", str(config_path), "--events", str(tmp_path / "events"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("event ") and "efficiency/fake rate ATLAS " in line for line in printed)
    header = max(i for i, line in enumerate(printed) if line.startswith("matching  efficiency"))
    assert [line.split()[0] for line in printed[header + 1 : header + 4]] == ["ATLAS", "one_way", "two_way"]
    summary = json.loads(out.read_text())
    assert list(summary["matching"]) == ["ATLAS", "one_way", "two_way"]
    assert summary["efficiency"] == summary["matching"]["two_way"]["efficiency"]
    assert summary["counts"]["n_target_particles"] == summary["matching"]["ATLAS"]["n_target_particles"] > 0
    assert "loss_budget" not in summary  # only when asked for


def test_validate_loss_budget_accounts_for_every_target(tmp_path, capsys):
    """``--loss-budget``: every target particle is reconstructed or lost at exactly one stage; the map here
    is built from the event itself, so the graph holds every target particle's chain."""
    from module_map.synthetic import synthetic_event
    from tests.pipeline_fixtures import write_tiny_module_map_pipeline

    from gnn4itk.cli import main
    from gnn4itk.event import write_event

    event = synthetic_event(n_particles=100, seed=3)
    config_path = tmp_path / "ModuleMap.yaml"
    config_path.write_text(yaml.safe_dump(write_tiny_module_map_pipeline(tmp_path, [event])))
    write_event(event, tmp_path / "events")
    out = tmp_path / "validate.json"
    assert main(["validate", "--pipeline", str(config_path), "--events", str(tmp_path / "events"), "--json", str(out),
                 "--loss-budget"]) == 0
    assert "by the first stage that loses them" in capsys.readouterr().out
    summary = json.loads(out.read_text())
    budget = summary["loss_budget"]
    assert budget["style"] == "ATLAS"
    assert budget["target_particles"] == summary["matching"]["ATLAS"]["n_target_particles"] > 0
    assert budget["reconstructed"] == summary["matching"]["ATLAS"]["n_reconstructed_particles"]
    assert budget["reconstructed"] + sum(budget["lost"].values()) == budget["target_particles"]
    assert sum(row["targets"] for row in budget["by_pt"].values()) == budget["target_particles"]
    assert budget["target_edge_efficiency"]["graph"] > 0.9  # the map was built from this event
    assert budget["target_edge_efficiency"]["kept_for_track_building"] <= budget["target_edge_efficiency"]["graph"]
    fragments = summary["fragments"]
    assert fragments["candidates"] == summary["matching"]["two_way"]["n_candidate_tracks"]
    assert fragments["rejected"] == summary["matching"]["two_way"]["n_fake_tracks"] == sum(fragments["by_kind"].values())
