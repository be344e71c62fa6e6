"""Module map: cut quantities, creation from truth, native and ROOT formats, CLI, edge features."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from gnn4itk.cli import main
from gnn4itk.edge_features import edge_features, scaled_coordinates
from gnn4itk.event import Event, complete_particles, complete_spacepoints, write_event
from module_map.build import BuildOptions, build_module_map
from module_map.map import check_float32_exact, float32_bounds, load_map, load_native
from module_map.quantities import np_pair_quantities, np_triplet_quantities, pair_quantities, triplet_quantities
from module_map.root_io import read_root, write_root
from module_map.synthetic import synthetic_events

FLT_MAX = np.finfo(np.float32).max


def _points(rows):
    """float32 [N, 6] x, y, z, r, phi, eta from (x, y, z) rows."""
    xyz = np.asarray(rows, dtype=np.float64)
    r = np.hypot(xyz[:, 0], xyz[:, 1])
    out = np.column_stack([xyz, r, np.arctan2(xyz[:, 1], xyz[:, 0]), np.arcsinh(xyz[:, 2] / r)])
    return out.astype(np.float32)


def test_pair_and_triplet_quantities_by_hand():
    p1 = _points([[10, 0, 5], [-10, 1e-3, 0], [10, 0, 0], [10, 0, 0]])
    p2 = _points([[20, 0, 15], [-20, -1e-3, 0], [0, 10, 3], [0, 10, -3]])
    q = np_pair_quantities(p1, p2, deta_sign=1.0)
    assert q[0, 0] == pytest.approx(-5.0)  # z0 = z1 - r1 dz / dr
    assert q[0, 3] == pytest.approx(p1[0, 5] - p2[0, 5])  # deta = eta1 - eta2
    # phi crosses the -pi/pi line: the wrapped dphi is small and positive
    assert 0 < q[1, 1] < 1e-3 and q[1, 2] == pytest.approx(q[1, 1] / (p2[1, 3] - p1[1, 3]))
    # dr = 0: finite, signed by dz and dphi
    assert q[2, 0] == FLT_MAX and q[3, 0] == -FLT_MAX and q[2, 2] == FLT_MAX
    assert np.isfinite(q).all()
    assert np_pair_quantities(p1, p2, deta_sign=-1.0)[0, 3] == -q[0, 3]
    a, b, c = _points([[10, 1, 0]]), _points([[20, 4, 10]]), _points([[30, 9, 30]])
    diff = np_triplet_quantities(a, b, c, dydx_sign=1.0)[0]
    r = [float(p[0, 3]) for p in (a, b, c)]
    assert diff[0] == pytest.approx(3 / 10 - 5 / 10, rel=1e-6)
    assert diff[1] == pytest.approx(10 / (r[1] - r[0]) - 20 / (r[2] - r[1]), rel=1e-5)
    assert np_triplet_quantities(a, b, c, dydx_sign=-1.0)[0, 0] == pytest.approx(-3 / 10 - 5 / 10)
    same_x = _points([[10, 1, 0]]), _points([[10, 4, 10]]), _points([[30, 9, 30]])
    assert np_triplet_quantities(*same_x, dydx_sign=1.0)[0, 0] == -FLT_MAX  # only the 2nd slope, > 0


def test_numpy_and_torch_quantities_are_bit_identical():
    rng = np.random.default_rng(1)
    p = [_points(rng.normal(0, 300, (5000, 3))) for _ in range(3)]
    p[1][:200, 3] = p[0][:200, 3]  # dr = 0
    p[1][200:400, 0] = p[0][200:400, 0]  # dx = 0
    p[2][400:600] = p[1][400:600]
    for sign in (1.0, -1.0):
        want = np_pair_quantities(p[0], p[1], sign)
        got = torch.jit.script(pair_quantities)(torch.from_numpy(p[0]), torch.from_numpy(p[1]), sign).numpy()
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
        want = np_triplet_quantities(*p, sign)
        got = triplet_quantities(*(torch.from_numpy(x) for x in p), sign).numpy()
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def _tiny_event():
    """Two particles, hand-placed, one with a repeated module and one electron."""
    hits = pd.DataFrame({
        "hit_id": np.arange(1, 10),
        "x": [30, 70, 71, 110, 160, 30, 70, 110, 160], "y": [1, 2, 2, 4, 7, -1, -2, -3, -5],
        "z": [3, 7, 7.1, 11, 16, 1, 2, 3, 4],
        "module_id": [5, 9, 9, 12, 20, 5, 9, 12, 20],
        "particle_id": [1, 1, 1, 1, 1, 2, 2, 2, 2],
    }).sample(frac=1, random_state=0)
    hits = complete_spacepoints(hits)
    particles = pd.DataFrame({"particle_id": [1, 2], "px": [1.0, 2.0], "py": [0.0, 0.0], "pz": [0.1, 0.1],
                              "vx": 0.0, "vy": 0.0, "vz": 0.0, "pdgId": [211, 11], "charge": 1.0, "primary": True})
    return Event(hits, complete_particles(particles, hits), event_id=3)


def test_build_orders_hits_and_skips_repeats_and_electrons():
    event = _tiny_event()
    module_map, builder = build_module_map([event], progress=False)
    assert builder.particles_used == 1  # the electron is skipped
    doublets = set(zip(module_map.doublets["Module1"].tolist(), module_map.doublets["Module2"].tolist()))
    assert doublets == {(5, 9), (9, 12), (12, 20)}  # the second hit in module 9 is dropped
    t = module_map.triplets
    assert sorted(zip(t["Module1"].tolist(), t["Module2"].tolist(), t["Module3"].tolist())) == [(5, 9, 12), (9, 12, 20)]
    rows = event.hits.set_index("hit_id").loc[[1, 2, 4]][["x", "y", "z", "r", "phi", "eta"]].to_numpy(np.float32)
    q12 = np_pair_quantities(rows[:1], rows[1:2], 1.0)[0]
    first = int(np.flatnonzero(t["Module1"] == 5)[0])
    assert t["z0min_12"][first] == q12[0] == t["z0max_12"][first]
    assert t["Occurence"].tolist() == [1, 1]
    both, _ = build_module_map([event, event], BuildOptions(skip_electrons=False), progress=False)
    assert both.doublets["Occurence"].max() == 4  # two events x two particles through (5, 9)


def test_min_occurrence_and_tolerance():
    events = list(synthetic_events(2, n_particles=800, seed=3))
    plain, _ = build_module_map(events, progress=False)
    thr, _ = build_module_map(events, BuildOptions(min_occurrence=2), progress=False)
    assert 0 < thr.num_triplets < plain.num_triplets and thr.triplets["Occurence"].min() >= 2
    wide, _ = build_module_map(events, BuildOptions(tolerance=1e-3), progress=False)
    assert wide.num_triplets == plain.num_triplets
    assert np.all(wide.triplets["z0min_12"] <= plain.triplets["z0min_12"] - 1e-3 * 0.999)
    assert np.all(wide.triplets["diff_dydx_max"] >= plain.triplets["diff_dydx_max"] + 1e-3 * 0.999)
    with pytest.raises(ValueError):
        BuildOptions(deta_sign="sideways")


def test_float32_rounding_checks():
    check_float32_exact(np.arange(1000))
    with pytest.raises(ValueError, match="one-to-one in float32"):
        check_float32_exact(np.array([2**24, 2**24 + 1], dtype=np.int64))
    bounds = np.array([0.1, -1e-12, 3.0], dtype=np.float64)
    low, high = float32_bounds(bounds, upper=False), float32_bounds(bounds, upper=True)
    assert low.dtype == np.float32 and np.all(low.astype(np.float64) <= bounds)
    assert np.all(high.astype(np.float64) >= bounds) and high[2] == 3.0


@pytest.fixture(scope="module")
def small_map():
    module_map, _ = build_module_map(synthetic_events(2, n_particles=1000, seed=9), progress=False)
    return module_map


def test_native_and_root_round_trip(small_map, tmp_path, capsys):
    native = load_native(small_map.save(tmp_path / "map"))
    assert native.equals(small_map)
    assert "triplet entries" in capsys.readouterr().out
    write_root(native, tmp_path / "root" / "map")
    back = load_map(tmp_path / "root" / "map")
    assert back.equals(small_map)
    assert load_native(back.save(tmp_path / "again")).equals(small_map)


def test_reading_an_mmg_map_with_64_bit_ids(small_map, tmp_path):
    """A map as MMG writes it: uint64 ITk-like ids, double bounds, no gnn4itk extras."""
    import uproot

    ids = np.uint64(2**60) + small_map.module_index.astype(np.uint64) * np.uint64(2**33)
    ids_of = dict(zip(small_map.module_index.tolist(), ids.tolist()))
    for tree, table, name in (("TreeModuleTriplet", small_map.triplets, "triplets"),
                              ("TreeModuleDoublet", small_map.doublets, "doublets")):
        branches = {}
        for key, values in table.items():
            if key.startswith("Module"):
                branches[key] = np.array([ids_of[v] for v in values.tolist()], dtype=np.uint64)
            elif key != "Occurence" or name == "triplets":
                branches[key] = values.astype(np.float64) if values.dtype.kind == "f" else values
        with uproot.recreate(tmp_path / f"mmg.{name}.root") as handle:
            handle[tree] = branches
    loaded = read_root(tmp_path / "mmg")
    assert loaded.attributes["dydx_convention"] == "mmg" and loaded.attributes["precision"] == "float64"
    assert loaded.module_ids.tolist() == sorted(ids.tolist())
    assert loaded.module_index.tolist() == list(range(small_map.num_modules))  # dense = rank of the id
    assert loaded.num_triplets == small_map.num_triplets and loaded.doublets["Occurence"].max() == 0
    # with the detector's table, dense indices are the table positions
    table = np.zeros(int(small_map.module_index.max()) + 1, dtype=np.uint64)
    table[small_map.module_index] = ids
    placed = read_root(tmp_path / "mmg", dense_ids=table)
    np.testing.assert_array_equal(placed.triplets["Module2"], small_map.triplets["Module2"])
    np.testing.assert_array_equal(placed.triplets["z0min_23"], small_map.triplets["z0min_23"].astype(np.float64))
    with pytest.raises(ValueError, match="not in the module table"):
        read_root(tmp_path / "mmg", dense_ids=table[:10])


def test_cli_builds_a_map(tmp_path, capsys):
    for event in synthetic_events(2, n_particles=500, seed=21):
        write_event(event, tmp_path / "events")
    code = main(["build-module-map", "--events", str(tmp_path / "events"), "--output", str(tmp_path / "m"),
                 "--root", "--min-occurrence", "1", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "particles/minute" in out and "m.triplets.root" in out
    assert load_map(tmp_path / "m.npz").equals(load_map(tmp_path / "m"))
    assert main(["build-module-map", "--events", str(tmp_path / "none"), "--output", "x"]) == 2


def test_edge_features_conventions():
    r = torch.tensor([100.0, 200.0, 200.0, 300.0])
    phi = torch.tensor([3.0, -3.0, 0.5, 0.5])
    z = torch.tensor([10.0, 30.0, 0.0, 0.0])
    eta = torch.tensor([0.1, 0.3, 0.0, 0.0])
    nodes = scaled_coordinates(r, phi, z, eta)
    edges = torch.tensor([[0, 2, 2], [1, 1, 3]])
    f = torch.jit.script(edge_features)(nodes, edges)
    assert f.shape == (3, 6) and f.dtype == torch.float32
    dphi = (2 * math.pi - 6.0) / math.pi  # wrapped across -pi/pi, in units of pi
    assert f[0, 0].item() == pytest.approx(0.1) and f[0, 1].item() == pytest.approx(dphi, rel=1e-5)
    assert f[0, 2].item() == pytest.approx(0.02) and f[0, 3].item() == pytest.approx(0.2)
    assert f[0, 4].item() == pytest.approx(dphi / 0.1, rel=1e-5)
    assert f[0, 5].item() == pytest.approx(0.15 * dphi / 0.1, rel=1e-5)
    assert f[1, 4].item() == 0.0 and f[1, 5].item() == 0.0  # dr = 0
    assert f[2, 4].item() == 0.0  # dphi = 0
    steep = edge_features(scaled_coordinates(torch.tensor([100.0, 100.001]), torch.tensor([0.0, 1.0]),
                                             torch.zeros(2), torch.zeros(2)), torch.tensor([[0], [1]]))
    assert steep[0, 4].item() == 100.0
