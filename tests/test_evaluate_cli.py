"""``gnn4itk evaluate`` end to end: Parquet events, LABELS and table track files, plots, JSON, errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tests.metrics_events import STYLES_EXPECTED, build_event, particle, rows_of, styles_event, styles_tracks

from gnn4itk.cli import main
from gnn4itk.event import write_event
from gnn4itk.tracks import join_tracks


@pytest.fixture()
def event_prefix(tmp_path):
    event = build_event(
        [particle(1, 9), particle(2, 12, pt=3.0, eta=-2.0), particle(3, 6, pdg=11), particle(4, 7, pt=1.5)],
        n_noise=4,
        event_id=5,
    )
    return event, write_event(event, tmp_path / "events")


def run_json(tmp_path, *args) -> dict:
    out = tmp_path / "result.json"
    assert main(["evaluate", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_truth_tracks_are_perfect_with_plots(tmp_path, event_prefix, capsys):
    _, prefix = event_prefix
    plots = tmp_path / "plots"
    result = run_json(tmp_path, "--event", str(prefix), "--truth-tracks", "--plots", str(plots))
    assert result["efficiency"] == 1.0
    assert result["fake_rate"] == 0.0
    assert result["duplicate_rate"] == 0.0
    assert result["trackml_score"] == pytest.approx(1.0)
    assert result["n_target_particles"] == 3
    assert (plots / "efficiency_vs_pt.png").exists() and (plots / "efficiency_vs_eta.png").exists()
    printed = capsys.readouterr().out
    assert "efficiency" in printed and "TrackML score 1.0000" in printed


def test_labels_file_and_table_file_agree(tmp_path, event_prefix):
    event, prefix = event_prefix
    a, b, d = rows_of(event, 1), rows_of(event, 2), rows_of(event, 4)
    tracks = [a, b[:6], b[6:], d]  # particle 2 split in two halves: neither has a majority of it
    labels_path = tmp_path / "labels.pt"
    torch.save(torch.from_numpy(join_tracks(tracks)), labels_path)
    from_labels = run_json(tmp_path, "--event", str(prefix), "--tracks", str(labels_path))
    table = pd.DataFrame(
        {
            "hit_id": event.hits["hit_id"].to_numpy()[np.concatenate(tracks)],
            "track_id": np.repeat([10, 11, 12, 13], [len(t) for t in tracks]),
        }
    )
    table_path = tmp_path / "tracks.csv"
    table.to_csv(table_path, index=False)
    from_table = run_json(tmp_path, "--event", str(prefix), "--tracks", str(table_path))
    assert from_labels["efficiency"] == pytest.approx(2 / 3)
    assert from_labels["fake_rate"] == pytest.approx(2 / 4)
    for key in ("efficiency", "fake_rate", "duplicate_rate", "trackml_score", "n_candidate_tracks"):
        assert from_labels[key] == from_table[key]


def test_cut_options_reach_the_metrics(tmp_path, event_prefix):
    _, prefix = event_prefix
    result = run_json(
        tmp_path, "--event", str(prefix), "--truth-tracks", "--exclude-pdg", "--pt-min", "1.8", "--matching", "purity"
    )
    # The electron joins the targets; the 1.5 GeV particle leaves them.
    assert result["n_target_particles"] == 3
    assert result["cuts"]["excluded_abs_pdg"] == []
    assert result["cuts"]["pt_min"] == 1.8
    assert result["cuts"]["matching"] == "ATLAS"  # the old name is an alias of acorn's


def test_three_matching_styles_printed_and_in_json(tmp_path, capsys):
    event = styles_event()
    prefix = write_event(event, tmp_path / "events")
    labels_path = tmp_path / "labels.pt"
    torch.save(torch.from_numpy(join_tracks(styles_tracks(event))), labels_path)
    result = run_json(tmp_path, "--event", str(prefix), "--tracks", str(labels_path))
    printed = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(printed) if line.startswith("matching"))
    rows = [line.split() for line in printed[header + 1 : header + 4]]
    assert [row[0] for row in rows] == ["ATLAS", "one_way", "two_way"]
    assert rows[0][1:] == ["0.6000", "0.1429", "0.6667", "3/5", "6/7"]
    assert rows[1][1:] == ["0.8000", "0.1429", "0.2500", "4/5", "6/7"]
    assert rows[2][1:] == ["0.4000", "0.4286", "0.5000", "2/5", "4/7"]
    assert list(result["matching"]) == ["ATLAS", "one_way", "two_way"]
    for style, (eff, fake, dup, n_reco, n_matched, n_dup) in STYLES_EXPECTED.items():
        figures = result["matching"][style]
        assert (figures["efficiency"], figures["fake_rate"], figures["duplicate_rate"]) == pytest.approx((eff, fake, dup))
        assert (figures["n_reconstructed_particles"], figures["n_matched_tracks"], figures["n_duplicate_tracks"]) == (
            n_reco,
            n_matched,
            n_dup,
        )
    # The keys of before stay, double majority (two_way) unless --matching names another style.
    assert (result["efficiency"], result["fake_rate"], result["duplicate_rate"]) == pytest.approx((0.4, 3 / 7, 0.5))
    assert result["n_fake_tracks"] == 3 and result["cuts"]["matching"] == "two_way"
    atlas = run_json(tmp_path, "--event", str(prefix), "--tracks", str(labels_path), "--matching", "ATLAS")
    assert (atlas["efficiency"], atlas["fake_rate"]) == pytest.approx((0.6, 1 / 7))
    assert atlas["matching"] == result["matching"]


def test_user_errors_exit_with_code_two(tmp_path, event_prefix, capsys):
    event, prefix = event_prefix
    missing = tmp_path / "nope.pt"
    assert main(["evaluate", "--event", str(prefix), "--tracks", str(missing)]) == 2
    bad = tmp_path / "bad.pt"
    torch.save(torch.zeros(3, 2), bad)
    assert main(["evaluate", "--event", str(prefix), "--tracks", str(bad)]) == 2
    unknown = tmp_path / "tracks.parquet"
    pd.DataFrame({"hit_id": [123456], "track_id": [0]}).to_parquet(unknown)
    assert main(["evaluate", "--event", str(prefix), "--tracks", str(unknown)]) == 2
    assert main(["evaluate", "--event", str(prefix), "--truth-tracks", "--matching-fraction", "0.2"]) == 2
    event.particles = None
    bare = write_event(event, tmp_path / "bare")
    assert main(["evaluate", "--event", str(bare), "--truth-tracks"]) == 2
    errors = capsys.readouterr().err
    assert "no tracks file" in errors
    assert "LABELS" in errors
    assert "not in the event" in errors
    assert "matching_fraction" in errors
    assert "no truth" in errors


def test_real_trackml_event_truth_tracks_are_perfect(tmp_path, trackml_dir):
    result = run_json(tmp_path, "--event", str(trackml_dir / "event000000001"), "--truth-tracks")
    assert result["efficiency"] == 1.0
    assert result["fake_rate"] == 0.0
    assert result["trackml_score"] == pytest.approx(1.0, abs=1e-9)
    assert result["n_target_particles"] > 20
