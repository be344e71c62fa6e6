"""The CKF baseline (gnn4itk.baseline): ACTS seeding + CKF on a tiny simulated event, tracks in our format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gnn4itk.cli import main
from gnn4itk.event import write_event
from gnn4itk.simulation.generators import GeneratorConfig

sim = pytest.mark.sim
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def gun_event():
    pytest.importorskip("acts.examples")
    from gnn4itk.simulation import SimulationConfig, simulate_event

    # a few gun vertices with the hard spectrum: enough targets above 1 GeV, over the whole |eta| < 4
    config = SimulationConfig(generator=GeneratorConfig(pileup=4, generator="gun", seed=21, gun_pt_min=1.0))
    return simulate_event(config, event_id=0)


@sim
def test_measurements_invert_the_simulated_placement(gun_event):
    from gnn4itk.baseline.ckf import measurement_table
    from gnn4itk.simulation.detector import module_frames

    table = measurement_table(gun_event)
    assert len(table) == len(gun_event.hits)
    xyz = module_frames().local_to_global(table["geometry_id"], table["local0"], table["local1"])
    np.testing.assert_allclose(xyz, gun_event.hits[["x", "y", "z"]].to_numpy(), atol=1e-3)  # float32 storage
    assert (table["var_local0"] > 0).all() and (table["var_local1"] > 0).all()


@sim
@slow
def test_ckf_tracks_are_in_our_format_and_find_the_particles(gun_event, tmp_path, capsys):
    from gnn4itk.baseline.ckf import CkfSettings, run_ckf
    from gnn4itk.metrics import TrackingCuts, evaluate_tracking

    result = run_ckf([gun_event], CkfSettings())
    tracks = result.tracks[0]
    assert tracks, "the CKF found no track"
    n = len(gun_event.hits)
    for track in tracks:
        assert track.dtype == np.int64 and len(track) >= CkfSettings().min_measurements
        assert track.min() >= 0 and track.max() < n and len(np.unique(track)) == len(track)
    assert result.wall_s > 0 and result.reconstruction_s() > 0
    scores = evaluate_tracking(gun_event, tracks, TrackingCuts(matching="ATLAS"), form="list").matching
    assert scores["ATLAS"].n_target_particles >= 10
    assert scores["ATLAS"].efficiency > 0.8
    assert scores["ATLAS"].fake_rate < 0.1

    # the command line writes hit_id/track_id tables that `gnn4itk evaluate --tracks` scores identically
    events = tmp_path / "events"
    write_event(gun_event, events)
    out = tmp_path / "ckf"
    assert main(["baseline", "ckf", "--events", str(events), "--output", str(out)]) == 0
    table = pd.read_parquet(out / "event000000000-tracks.parquet")
    assert list(table.columns) == ["hit_id", "track_id"]
    assert table["track_id"].nunique() == len(tracks)
    capsys.readouterr()
    assert main(["evaluate", "--event", str(events / "event000000000"), "--tracks", str(out / "event000000000-tracks.parquet")]) == 0
    printed = capsys.readouterr().out
    assert f"{scores['ATLAS'].efficiency:.4f}" in printed

    # and `baseline compare` gives the same figures for the folder
    assert main(["baseline", "compare", "--events", str(events), "--source", f"CKF={out}"]) == 0
    assert f"| CKF | 1 | ATLAS | {100 * scores['ATLAS'].efficiency:.1f} %" in capsys.readouterr().out


@sim
@slow
def test_ckf_runs_on_the_real_trackml_event(trackml_dir):
    """TrackML hits carry no ACTS geometry id: it comes from the dense module index (same detector)."""
    from gnn4itk.baseline.ckf import measurement_table, run_ckf
    from gnn4itk.io.load import load_event
    from gnn4itk.metrics import TrackingCuts, evaluate_tracking

    event = load_event(str(trackml_dir / "event000000001"))
    table = measurement_table(event)
    assert np.isfinite(table[["local0", "local1"]].to_numpy()).all()
    tracks = run_ckf([event]).tracks[0]
    scores = evaluate_tracking(event, tracks, TrackingCuts(matching="ATLAS"), form="list", trackml=False).matching
    assert scores["ATLAS"].efficiency > 0.7


@sim
@slow
def test_plot_draws_every_source(gun_event, tmp_path):
    from gnn4itk.baseline.ckf import run_ckf, tracks_table

    events = tmp_path / "gun"
    write_event(gun_event, events)
    for name in ("CKF", "copy"):
        folder = tmp_path / name / "gun"
        folder.mkdir(parents=True)
        tracks_table(gun_event, run_ckf([gun_event]).tracks[0]).to_parquet(folder / "event000000000-tracks.parquet")
    png = tmp_path / "eff.png"
    argv = ["baseline", "plot", "--sample", f"gun={events}", "--source", f"CKF={tmp_path}/CKF/{{sample}}",
            f"copy={tmp_path}/copy/{{sample}}", "--output", str(png)]
    assert main(argv) == 0
    assert png.exists() and 0 < png.stat().st_size < 200_000
