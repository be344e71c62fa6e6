"""Simulation: generators, digitisation config, particle ids, tiny pyacts events through API and CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from gnn4itk.cli import main
from gnn4itk.event import PARTICLE_COLUMNS, SPACEPOINT_COLUMNS, list_events, read_event
from gnn4itk.simulation.convert import decode_particle_id, encode_particle_id
from gnn4itk.simulation.detector import digitization_config_json, split_geometry_id, volume_resolutions
from gnn4itk.simulation.generators import (
    BEAM_SIGMA_XY_MM,
    BEAM_SIGMA_Z_MM,
    CrossingGenerator,
    GeneratorConfig,
    beam_spot_vertices,
    event_rng,
    pythia8_available,
)

PIXEL_VOLUMES, SHORT_STRIP_VOLUMES, LONG_STRIP_VOLUMES = (7, 8, 9), (12, 13, 14), (16, 17, 18)
TRUTH_COLUMNS = ["geometry_id", "particle_id", "tx", "ty", "tz", "tt", "tpx", "tpy", "tpz", "hit_order"]


def test_particle_id_packing_round_trips_and_rejects_overflow():
    parts = {"pv": [1, 200, 4095], "sv": [0, 3, 4095], "part": [1, 65535, 7], "gen": [0, 2, 255], "sub": [0, 9, 16383]}
    ids = encode_particle_id(parts["pv"], parts["sv"], parts["part"], parts["gen"], parts["sub"])
    assert ids.dtype == np.int64 and (ids > 0).all() and len(np.unique(ids)) == 3
    back = decode_particle_id(ids)
    assert back["particle_id_pv"].tolist() == parts["pv"]
    assert back["particle_id_subpart"].tolist() == parts["sub"]
    with pytest.raises(ValueError, match="particle_id_pv"):
        encode_particle_id([4096], [0], [1], [0], [0])


def test_digitization_config_is_fine_in_pixels_and_coarse_along_strips():
    sigmas = volume_resolutions()
    for v in PIXEL_VOLUMES:
        assert sigmas[v] == pytest.approx((0.05 / math.sqrt(12),) * 2)
    for v in SHORT_STRIP_VOLUMES + LONG_STRIP_VOLUMES:
        fine, coarse = sigmas[v]
        assert fine < 0.05 and coarse > 10 * fine
    assert sigmas[16][1] > sigmas[12][1]  # long strips are longer than short strips
    config = digitization_config_json()
    assert {e["volume"] for e in config["entries"]} == set(PIXEL_VOLUMES + SHORT_STRIP_VOLUMES + LONG_STRIP_VOLUMES)
    assert config["acts-geometry-hierarchy-map"]["value-identifier"] == "digitization-configuration"


def test_geometry_id_split_matches_acts_layout():
    # vol=17|lay=4|sen=865, as pyacts prints this Generic-detector module id
    parts = split_geometry_id(np.array([1224979373522903296], dtype=np.uint64))
    assert (parts["volume"][0], parts["layer"][0], parts["sensitive"][0]) == (17, 4, 865)


def test_beam_spot_widths():
    vertices = beam_spot_vertices(np.random.default_rng(0), 20000)
    assert vertices[:, 2].std() == pytest.approx(BEAM_SIGMA_Z_MM, rel=0.03)
    assert vertices[:, 0].std() == pytest.approx(BEAM_SIGMA_XY_MM, rel=0.03)
    assert (vertices[:, 3] == 0).all()


def test_particle_gun_density_and_determinism():
    config = GeneratorConfig(pileup=40, generator="gun", seed=5)
    particles, info = CrossingGenerator(config)(3)
    again, _ = CrossingGenerator(config)(3)
    pd.testing.assert_frame_equal(particles, again)
    assert info["generator"] == "particle gun"
    pt = np.hypot(particles["px"], particles["py"])
    eta = np.arcsinh(particles["pz"] / pt)
    per_unit_eta = (np.abs(eta) < 4).sum() / info["pileup_vertices"] / 8.0
    assert 5.0 < per_unit_eta < 7.0
    assert 0.3 < pt.mean() < 0.8 and np.median(pt) < pt.mean()  # soft, falling spectrum
    assert (particles["q"] != 0).all()
    keys = particles[["particle_id_pv", "particle_id_part"]]
    assert not keys.duplicated().any()


def test_gun_crossing_is_its_vertices_tables_in_order():
    """A gun crossing builds one table from all its vertices: equal to their own tables concatenated."""
    from gnn4itk.simulation.generators import _table, beam_spot_vertices, event_rng, gun_vertex_columns

    config = GeneratorConfig(pileup=12, generator="gun", seed=8, gun_pt_min=0.9)
    particles, info = CrossingGenerator(config)(2)
    rng = event_rng(8, 2)
    n = int(rng.poisson(12))
    vertices = beam_spot_vertices(rng, n)
    expected = pd.concat([_table(gun_vertex_columns(rng, vertices[k], k + 1, 0.9)) for k in range(n)], ignore_index=True)
    assert info["pileup_vertices"] == n
    pd.testing.assert_frame_equal(particles, expected)


def test_acts_containers_become_tables_column_by_column():
    """The copies out of ACTS's containers (stand-in objects here) put every value in its column."""
    from types import SimpleNamespace as Obj

    from gnn4itk.simulation.fatras import (
        SIMHIT_TABLE_COLUMNS,
        measurements_to_table,
        particles_to_table,
        simhits_to_table,
    )
    from gnn4itk.simulation.generators import PARTICLE_TABLE_COLUMNS

    def barcode(k):
        return Obj(vertexPrimary=k, vertexSecondary=10 + k, particle=20 + k, generation=30 + k, subParticle=40 + k)

    hits = [Obj(particleId=barcode(k), fourPosition=np.array([1.0, 2.0, 3.0, 4.0]) + k,
                momentum4Before=np.array([5.0, 6.0, 7.0, 8.0]) + k, geometryId=Obj(value=2**60 + k), index=7 * k)
            for k in range(3)]
    table = simhits_to_table(hits)
    assert list(table.columns) == SIMHIT_TABLE_COLUMNS
    assert table.loc[2, ["particle_id_pv", "particle_id_sv", "particle_id_part", "particle_id_gen",
                         "particle_id_subpart"]].tolist() == [2, 12, 22, 32, 42]
    assert table.loc[1, ["tx", "ty", "tz", "tt", "tpx", "tpy", "tpz", "te"]].tolist() == [2, 3, 4, 5, 6, 7, 8, 9]
    assert table["geometry_id"].dtype == np.uint64 and table.loc[1, "geometry_id"] == 2**60 + 1
    assert table["index"].tolist() == [0, 7, 14] and table["particle_id_pv"].dtype == np.int64

    particles = [Obj(initialState=Obj(particleId=barcode(k), fourPosition=np.array([1.0, 2.0, 3.0, 4.0]) * k,
                                      fourMomentum=np.array([0.5, 0.6, 0.7, 9.0]), pdg=-211, charge=-1.0,
                                      mass=0.1396)) for k in range(2)]
    table = particles_to_table(particles)
    assert list(table.columns) == PARTICLE_TABLE_COLUMNS
    assert table.loc[1, ["particle_type", "q", "m", "vx", "vy", "vz", "vt", "px", "py", "pz"]].tolist() == [
        -211, -1.0, 0.1396, 1.0, 2.0, 3.0, 4.0, 0.5, 0.6, 0.7]
    assert table["particle_type"].dtype == np.int64 and table.loc[1, "particle_id_subpart"] == 41

    measurements = [Obj(index=k, geometryId=Obj(value=99), fullParameters=np.array([0.1 * k, 0.2]),
                        fullCovariance=np.array([[0.01, 0.5], [0.5, 0.04]])) for k in range(2)]
    table, links = measurements_to_table(measurements, [(0, 3), (1, 4)])
    assert table.loc[1].tolist() == [1, 99, 0.1, 0.2, 0.01, 0.04]
    assert links.to_numpy().tolist() == [[0, 3], [1, 4]]


def test_hard_particle_gun_spectrum():
    """--gun-pt-min: every particle above the minimum, a falling spectrum with a high-pT tail."""
    config = GeneratorConfig(pileup=40, generator="gun", seed=5, gun_pt_min=0.9)
    particles, info = CrossingGenerator(config)(3)
    assert info["generator"] == "particle gun, pT >= 0.9 GeV"
    pt = np.hypot(particles["px"], particles["py"]).to_numpy()
    assert pt.min() >= 0.9
    assert 1.1 < np.median(pt) < 1.8  # 0.9 * 2**(1/1.5) = 1.43 for the Pareto(1.5) median
    assert (pt > 9.0).mean() > 0.01  # P(pT > 10 pt_min) = 10**-1.5 = 3 %


def test_generator_config_rejects_bad_input():
    with pytest.raises(ValueError, match="needs the particle gun"):
        GeneratorConfig(generator="pythia8", gun_pt_min=1.0).validate()
    with pytest.raises(ValueError, match="gun pT minimum"):
        GeneratorConfig(generator="gun", gun_pt_min=0.0).validate()
    with pytest.raises(ValueError, match="pileup"):
        GeneratorConfig(pileup=-1).validate()
    with pytest.raises(ValueError, match="hard scatter"):
        GeneratorConfig(hard_scatter="zz").validate()
    with pytest.raises(ValueError, match="nothing to simulate"):
        GeneratorConfig(pileup=0, hard_scatter="none").validate()
    with pytest.raises(ValueError, match="unknown generator"):
        GeneratorConfig(generator="herwig").validate()
    assert event_rng(1, 2).integers(1 << 30) == event_rng(1, 2).integers(1 << 30)
    assert event_rng(1, 2).integers(1 << 30) != event_rng(1, 3).integers(1 << 30)


def test_cli_rejects_bad_options(capsys, tmp_path):
    assert main(["simulate", "--pileup", "-3", "--output", str(tmp_path)]) == 2
    assert "pileup" in capsys.readouterr().err
    assert main(["simulate", "--events", "0", "--output", str(tmp_path)]) == 2
    assert "--events" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["simulate", "--output", str(a_file)]) == 2
    assert "not a directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# pyacts events

sim = pytest.mark.sim


@pytest.fixture(scope="module")
def tiny_event():
    pytest.importorskip("acts.examples")
    from gnn4itk.simulation import SimulationConfig, simulate_event

    config = SimulationConfig(generator=GeneratorConfig(pileup=3, generator="gun", seed=11), noise_fraction=0.05)
    return simulate_event(config, event_id=2)


@sim
def test_tiny_event_columns_and_dtypes(tiny_event):
    hits, particles = tiny_event.hits, tiny_event.particles
    assert list(hits.columns[: len(SPACEPOINT_COLUMNS)]) == SPACEPOINT_COLUMNS
    assert set(TRUTH_COLUMNS) <= set(hits.columns)
    assert list(particles.columns[: len(PARTICLE_COLUMNS)]) == PARTICLE_COLUMNS
    assert hits["geometry_id"].dtype == np.uint64 and hits["module_id"].dtype == np.int32
    assert hits["hit_id"].tolist() == list(range(1, len(hits) + 1))
    assert hits["geometry_id"].is_monotonic_increasing
    assert len(hits) > 300 and hits["module_id"].between(0, 18727).all()
    assert set(hits["volume_id"]) <= set(PIXEL_VOLUMES + SHORT_STRIP_VOLUMES + LONG_STRIP_VOLUMES)
    for c in ("x", "y", "z"):
        assert (hits[f"cluster_{c}_1"] == hits[c]).all() and (hits[f"cluster_{c}_2"] == hits[c]).all()
    assert tiny_event.meta["generator"] == "particle gun" and tiny_event.event_id == 2


@sim
def test_tiny_event_truth_is_consistent(tiny_event):
    hits, particles = tiny_event.hits, tiny_event.particles
    real = hits["particle_id"] != 0
    assert set(hits.loc[real, "particle_id"]) <= set(particles["particle_id"])
    assert not particles["particle_id"].duplicated().any()
    counts = hits.loc[real, "particle_id"].value_counts()
    assert (particles.set_index("particle_id").loc[counts.index, "nhits"] == counts).all()
    assert particles["primary"].any()
    primary = particles["primary"].to_numpy()
    expected = (particles["particle_id_sv"] == 0) & (particles["particle_id_gen"] == 0)
    assert expected.to_numpy().tolist() == primary.tolist()
    # noise: 5% extra, no truth
    noise = hits[~real]
    assert len(noise) == round(0.05 * real.sum())
    assert noise["tx"].isna().all() and (noise["hit_order"] == -1).all()
    # the hit order along a particle is strictly increasing with the time of flight
    track = hits[real].sort_values(["particle_id", "hit_order"])
    same = track["particle_id"].to_numpy()[1:] == track["particle_id"].to_numpy()[:-1]
    assert (np.diff(track["tt"].to_numpy())[same] > 0).all()


@sim
def test_measurements_scatter_around_truth_by_the_pitch(tiny_event):
    hits = tiny_event.hits[tiny_event.hits["particle_id"] != 0]
    distance = np.sqrt((hits["x"] - hits["tx"]) ** 2 + (hits["y"] - hits["ty"]) ** 2 + (hits["z"] - hits["tz"]) ** 2)
    pixels = hits["volume_id"].isin(PIXEL_VOLUMES)
    long_strips = hits["volume_id"].isin(LONG_STRIP_VOLUMES)
    # 2D Gaussian of sigma 14.4 um: median distance ~17 um; long strips are smeared by 3.1 mm along the strip
    assert 0.010 < distance[pixels].median() < 0.025 and distance[pixels].max() < 0.1
    assert 1.0 < distance[long_strips].median() < 5.0


@sim
def test_cli_output_is_independent_of_jobs(tmp_path):
    pytest.importorskip("acts.examples")
    common = ["simulate", "--pileup", "2", "--events", "2", "--seed", "4", "--generator", "gun", "--no-progress"]
    assert main([*common, "--jobs", "1", "--output", str(tmp_path / "one"), "--json", str(tmp_path / "s.json")]) == 0
    assert main([*common, "--jobs", "2", "--output", str(tmp_path / "two")]) == 0
    one, two = list_events(tmp_path / "one"), list_events(tmp_path / "two")
    assert [p.name for p in one] == ["event000000000", "event000000001"] == [p.name for p in two]
    for a, b in zip(one, two):
        ea, eb = read_event(a), read_event(b)
        pd.testing.assert_frame_equal(ea.hits, eb.hits)
        pd.testing.assert_frame_equal(ea.particles, eb.particles)
        assert ea.meta == eb.meta
    first, second = read_event(one[0]), read_event(one[1])
    assert len(first.hits) != len(second.hits) or not np.array_equal(first.hits["x"], second.hits["x"])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["events"] == 2 and summary["mean_spacepoints"] > 0 and summary["generator"] == "particle gun"
    assert summary["fatras_failed_particles"] == sum(summary["fatras_failures"].values())
    assert summary["fatras_failed_particles"] == sum(row["fatras_failed_particles"] for row in summary["per_event"])


# ------------------------------------------------------------------------------------------------
# particles Fatras fails to simulate

FAILED_STEPS = "PropagatorError:2: Propagation reached the configured maximum number of steps"
# The particle of the demo's mu=200 event (seed 900000) that Fatras failed on, as a primary: a 62 MeV
# positron of pT 11 MeV spiralling along z from r = 26 mm. It fails whatever the seed, and so do
# copies moved by 1e-6 (relative) in every coordinate: a stable case, not a rounding accident.
LOOPER = {"vx": 25.727774423, "vy": -4.543527687, "vz": 383.504534820, "vt": 0.0,
          "px": 0.0043093099, "py": -0.0104987264, "pz": 0.0615050722}


def test_fatras_failure_lines_are_counted_by_reason():
    from gnn4itk.simulation.fatras import UNPARSED_FAILURE, parse_fatras_failures

    printed = [
        "01:56:21    FatrasSimula   ERROR     event 0 particle id=2934788380928054521(vp=129|vs=0|p=48|g=1|sp=1)"
        f"|pdg=e+|q=1|m=0.000510999|p=0.0644569 failed to simulate with error {FAILED_STEPS}",
        "01:56:22    Sequencer      INFO      something else",
        "01:56:24    FatrasSimula   ERROR     1 particles failed to simulate",
        "01:56:24    FatrasSimula   ERROR       Propagation reached the configured maximum number of steps (code 2): 1 times",
    ]
    assert parse_fatras_failures(printed) == ({FAILED_STEPS: 1}, ["01:56:22    Sequencer      INFO      something else"])
    # a total with fewer per-particle lines than it counts (an unknown format): counted, never lost
    failures, others = parse_fatras_failures(["FatrasSimula ERROR 3 particles failed to simulate", *printed[:1]])
    assert failures == {FAILED_STEPS: 1, UNPARSED_FAILURE: 2} and others == []


def test_native_output_is_captured_while_python_output_goes_through(tmp_path):
    """C-level writes to file descriptor 1 are collected; Python's print still reaches the real output."""
    import subprocess
    import sys

    code = (
        "import ctypes, os, sys\n"
        "from gnn4itk.simulation.fatras import native_stdout_captured\n"
        "print('before', flush=True)\n"
        "with native_stdout_captured() as lines:\n"
        "    os.write(1, b'native 1\\n')\n"
        "    ctypes.CDLL(None).printf(b'native 2 (C stdio, buffered)\\n')\n"
        "    print('python inside')\n"
        "print('after', lines, flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "before", "python inside", "after ['native 1', 'native 2 (C stdio, buffered)']"
    ]


def test_fatras_failure_warning_threshold():
    import warnings

    from gnn4itk.simulation.run import (
        FATRAS_FAILURE_WARN_FRACTION,
        SimulationWarning,
        format_fatras_failures,
        warn_about_fatras_failures,
    )

    assert FATRAS_FAILURE_WARN_FRACTION == 1e-3  # the value docs/simulation.md states
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_about_fatras_failures(1, 34326, "event 0")  # the demo event: 3e-5, no warning
        warn_about_fatras_failures(0, 0, "nothing")
        warn_about_fatras_failures(1, 999, "one in 1000: not more than the threshold")
    with pytest.warns(SimulationWarning, match=r"Fatras failed to simulate 2 of 1,000 particles in 3 event\(s\)"):
        warn_about_fatras_failures(2, 998, "3 event(s)")
    summary = {"events": 1, "fatras_failed_particles": 1, "fatras_failed_fraction": 1 / 34327,
               "fatras_failures": {FAILED_STEPS: 1}}
    lines = format_fatras_failures(summary)
    assert lines[0] == ("  Fatras failures  1 particle(s) not simulated in 1 event(s) (2.9e-05 of all; a warning "
                        "above 0.001), dropped with their hits:")
    assert lines[1] == f"        1 x {FAILED_STEPS}"
    assert "ERROR" not in "\n".join(lines)
    assert format_fatras_failures({**summary, "fatras_failed_particles": 0}) == ["  Fatras failures  none"]


@sim
def test_fatras_failures_are_counted_not_printed(capfd):
    pytest.importorskip("acts.examples")
    from gnn4itk.simulation.fatras import run_acts
    from gnn4itk.simulation.generators import PARTICLE_TABLE_COLUMNS
    from gnn4itk.simulation.run import SimulationConfig, simulate_particles

    generator = GeneratorConfig(pileup=3, generator="gun", seed=11)
    particles, info = CrossingGenerator(generator)(0)
    assert len(particles) > 20
    looper = {"particle_id_pv": 4000, "particle_id_sv": 0, "particle_id_part": 1, "particle_id_gen": 0,
              "particle_id_subpart": 0, "particle_type": -11, "q": 1.0, "m": 0.000511, **LOOPER}
    particles = pd.concat([particles, pd.DataFrame([looper])[PARTICLE_TABLE_COLUMNS]], ignore_index=True)
    tables = run_acts(particles, seed=1, event_id=0)
    out, err = capfd.readouterr()
    assert "ERROR" not in out and "ERROR" not in err and "failed to simulate" not in out
    assert tables["fatras_failures"] == {FAILED_STEPS: 1}
    simulated = tables["particles"]
    assert 4000 not in set(simulated["particle_id_pv"])  # dropped, with its hits
    assert (simulated["particle_id_gen"] == 0).sum() > 20  # the others are simulated
    event = simulate_particles(particles, info, SimulationConfig(generator=generator), 0)
    assert event.meta["fatras_failed_particles"] == 1 and event.meta["fatras_failures"] == {FAILED_STEPS: 1}
    assert "ERROR" not in capfd.readouterr().out


@pytest.fixture(scope="module")
def pythia_cache(tmp_path_factory):
    if not pythia8_available():
        pytest.skip("pythia8mc not installed")
    return tmp_path_factory.mktemp("pythia-cache")


@sim
@pytest.mark.slow
def test_pythia8_events_depend_on_neither_init_cache_nor_earlier_events(pythia_cache, monkeypatch):
    monkeypatch.setenv("GNN4ITK_CACHE_DIR", str(pythia_cache))
    config = GeneratorConfig(pileup=3, generator="pythia8", seed=8)
    fresh = CrossingGenerator(config)  # writes the cache, then initialises from it
    assert list((pythia_cache / "pythia8").glob("mpi-init-*.dat"))
    in_order = [fresh(event_id)[0] for event_id in range(3)]
    cached = CrossingGenerator(config)
    pd.testing.assert_frame_equal(in_order[2], cached(2)[0])  # without events 0 and 1 before it
    pd.testing.assert_frame_equal(in_order[0], cached(0)[0])  # after event 2
    assert fresh(1)[1]["generator"] == "pythia8 SoftQCD:inelastic" and len(in_order[1]) > 0


@sim
@pytest.mark.slow
def test_pythia8_ttbar_event(pythia_cache, monkeypatch):
    from gnn4itk.simulation import SimulationConfig, simulate_event

    monkeypatch.setenv("GNN4ITK_CACHE_DIR", str(pythia_cache))
    config = SimulationConfig(generator=GeneratorConfig(pileup=0, hard_scatter="ttbar", generator="pythia8", seed=3))
    event = simulate_event(config, event_id=0)
    particles = event.particles
    assert event.meta["hard_scatter"] == "ttbar" and event.meta["primary_vertices"] == 1
    assert set(particles["particle_id_pv"]) == {1}
    assert (~particles["primary"]).any()  # decays (K0s, b/c hadrons) and Fatras secondaries
    ttbar_tracks = particles[(particles["particle_id_pv"] == 1) & (particles["nhits"] >= 3)]
    assert len(ttbar_tracks) > 50
    real = event.hits["particle_id"] != 0
    assert set(event.hits.loc[real, "particle_id"]) <= set(particles["particle_id"])
