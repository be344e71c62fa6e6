"""Reading the shared TrackML event into the event model, cell features, and the CSV writer."""

import numpy as np
import pandas as pd
import pytest

from gnn4itk.event import CELL_FEATURE_COLUMNS, PARTICLE_COLUMNS, SPACEPOINT_COLUMNS
from gnn4itk.geometry import DetectorGeometry, generic_detector
from gnn4itk.io.trackml import (
    PRIMARY_MAX_RADIUS,
    cell_features,
    read_trackml_event,
    trackml_prefix,
    write_trackml_event,
)


@pytest.fixture(scope="module")
def raw(trackml_dir):
    prefix = trackml_dir / "event000000001"
    return {kind: pd.read_csv(f"{prefix}-{kind}.csv.gz") for kind in ("hits", "truth", "particles", "cells")}


@pytest.fixture(scope="module")
def event(trackml_dir):
    return read_trackml_event(trackml_dir / "event000000001")


def test_counts_columns_and_dtypes(event):
    assert len(event.hits) == 5527 and len(event.particles) == 548
    assert event.event_id == 1 and event.has_truth
    hits = event.hits
    assert list(hits.columns[: len(SPACEPOINT_COLUMNS)]) == SPACEPOINT_COLUMNS
    for col in CELL_FEATURE_COLUMNS + ["tx", "ty", "tz", "tpx", "tpy", "tpz", "weight"]:
        assert hits[col].dtype == np.float32, col
    assert hits["module_id"].dtype == np.int32 and hits["hit_id"].dtype == np.int64
    assert hits["particle_id"].dtype == np.int64
    assert not hits.isna().any().any()
    assert list(event.particles.columns[: len(PARTICLE_COLUMNS)]) == PARTICLE_COLUMNS
    assert not event.particles.isna().any().any()


def test_dense_module_index_reverse_lookup_gives_trackml_ids(event, raw):
    geometry = generic_detector()
    hits = event.hits.set_index("hit_id").loc[raw["hits"]["hit_id"]]
    assert (hits["module_id"] >= 0).all()
    volume, layer, module = geometry.trackml_from_module_index(hits["module_id"].to_numpy())
    assert np.array_equal(volume, raw["hits"]["volume_id"]) and np.array_equal(layer, raw["hits"]["layer_id"])
    assert np.array_equal(module, raw["hits"]["module_id"])
    # the hit lies on its module: within the half-thickness of the module plane
    centres = geometry.module_centers(hits["module_id"])
    normals = geometry.module_rotations(hits["module_id"])[:, :, 2]
    offset = np.einsum("ni,ni->n", hits[["x", "y", "z"]].to_numpy(np.float64) - centres, normals)
    assert np.abs(offset).max() < 0.5 * geometry.module_sizes(hits["module_id"])["module_t"].max() + 1e-3


def test_truth_and_particles(event, raw):
    hits = event.hits.set_index("hit_id")
    truth = raw["truth"].set_index("hit_id").loc[hits.index]
    assert np.array_equal(hits["particle_id"], truth["particle_id"])
    assert np.allclose(hits["weight"], truth["weight"], rtol=1e-6)
    assert np.allclose(hits["tz"], truth["tz"], atol=1e-3)
    particles = event.particles.set_index("particle_id").loc[raw["particles"]["particle_id"]]
    assert np.array_equal(particles["pdgId"], raw["particles"]["particle_type"])
    # nhits counts this (5%) subset, not the full event the particles file describes
    counts = raw["truth"].loc[raw["truth"]["particle_id"] != 0, "particle_id"].value_counts()
    assert np.array_equal(particles["nhits"], counts.reindex(particles.index).fillna(0))
    radius = np.hypot(raw["particles"]["vx"], raw["particles"]["vy"]).to_numpy()
    near_beam = (radius < PRIMARY_MAX_RADIUS) & (raw["particles"]["vz"].abs() < 300).to_numpy()
    assert np.array_equal(particles["primary"].to_numpy(), near_beam)
    assert 0 < particles["primary"].sum() < len(particles)


def test_cell_features_by_hand(event, raw):
    geometry = generic_detector()
    cells = raw["cells"]
    hit_id = cells["hit_id"].value_counts().idxmax()  # the largest cluster
    mine = cells[cells["hit_id"] == hit_id]
    row = event.hits.set_index("hit_id").loc[hit_id]
    size = geometry.module_sizes([row["module_id"]]).iloc[0]
    du = (mine["ch0"].max() - mine["ch0"].min() + 1) * size["pitch_u"]
    dv = (mine["ch1"].max() - mine["ch1"].min() + 1) * size["pitch_v"]
    t = size["module_t"]
    assert row["count"] == len(mine) and np.isclose(row["charge_count"], mine["value"].sum(), rtol=1e-5)
    assert np.allclose(row[["localDir0", "localDir1", "localDir2"]].to_numpy(float), [dv, du, t], rtol=1e-5)
    assert np.isclose(row["loc_phi"], np.arctan2(du, dv), rtol=1e-5)
    theta = np.arccos(t / np.sqrt(du**2 + dv**2 + t**2))
    assert np.isclose(row["loc_eta"], np.log(np.tan(theta / 2)), rtol=1e-5)
    g = geometry.module_rotations([row["module_id"]])[0] @ np.array([du, dv, t])
    assert np.isclose(row["glob_phi"], np.arctan2(g[1], g[0]), atol=1e-5)
    assert np.isclose(row["glob_eta"], np.log(np.tan(np.arccos(g[2] / np.linalg.norm(g)) / 2)), atol=1e-5)
    assert np.isclose(row["eta_angle"], np.arctan2(t, dv)) and np.isclose(row["phi_angle"], np.arctan2(t, du))


def test_cells_span_the_hit_along_u_and_v(event, raw):
    """ch0 counts cells along local u (pitch_u), ch1 along v (pitch_v), from the -maxhu / -hv edge.

    This pins the axis assignment behind localDir and the angles: every hit's local position lies inside
    the box of the cells that make it.
    """
    geometry = generic_detector()
    hits = event.hits.set_index("hit_id").loc[raw["hits"]["hit_id"]]
    module = hits["module_id"].to_numpy()
    offset = hits[["x", "y", "z"]].to_numpy(np.float64) - geometry.module_centers(module)
    local = np.einsum("nji,nj->ni", geometry.module_rotations(module), offset)
    sizes = geometry.module_sizes(module)
    span = raw["cells"].groupby("hit_id").agg(u0=("ch0", "min"), u1=("ch0", "max"), v0=("ch1", "min"), v1=("ch1", "max"))
    span = span.reindex(hits.index)
    u = (local[:, 0] + sizes["module_maxhu"].to_numpy()) / sizes["pitch_u"].to_numpy()
    v = (local[:, 1] + sizes["module_hv"].to_numpy()) / sizes["pitch_v"].to_numpy()
    assert ((u >= span["u0"]) & (u <= span["u1"] + 1)).all()
    assert ((v >= span["v0"]) & (v <= span["v1"] + 1)).all()


def test_lengthdir_only_on_strip_modules(event):
    hits = event.hits
    strip = hits["volume_id"] >= 12  # TrackML volumes 12-18 are strips
    length = np.linalg.norm(hits[["lengthDir0", "lengthDir1", "lengthDir2"]].to_numpy(np.float64), axis=1)
    assert (length[~strip] == 0).all()
    pitch_v = generic_detector().module_sizes(hits.loc[strip, "module_id"])["pitch_v"].to_numpy()
    assert np.allclose(length[strip], pitch_v, rtol=1e-5)


def test_hits_without_cells_get_zero_features():
    geometry = generic_detector()
    cells = pd.DataFrame({"hit_id": [1, 1], "ch0": [10, 11], "ch1": [5, 5], "value": [0.5, 0.25]})
    features = cell_features(np.array([1, 2]), np.array([0, 0], dtype=np.int32), cells, geometry)
    assert features.shape == (2, len(CELL_FEATURE_COLUMNS)) and not features.isna().any().any()
    assert features.loc[0, "count"] == 2 and features.loc[0, "charge_count"] == 0.75
    assert (features.loc[1] == 0).all()
    with pytest.raises(ValueError, match="lacks columns"):
        cell_features([1], [0], cells.drop(columns=["ch1"]), geometry)


def test_prefix_forms_and_missing_files(trackml_dir, tmp_path):
    prefix = trackml_dir / "event000000001"
    assert trackml_prefix(f"{prefix}-cells.csv.gz") == prefix
    assert len(read_trackml_event(f"{prefix}-truth.csv.gz", cells=False).hits) == 5527
    with pytest.raises(FileNotFoundError, match="no TrackML hits file"):
        read_trackml_event(tmp_path / "event000000007")


def test_unknown_module_is_an_error(raw, tmp_path):
    hits = raw["hits"].copy()
    hits.loc[3, "module_id"] = 99999
    hits.to_csv(tmp_path / "event000000002-hits.csv", index=False)
    with pytest.raises(ValueError, match="1 of 5527 TrackML module ids"):
        read_trackml_event(tmp_path / "event000000002")


def test_detectors_csv_geometry(trackml_dir):
    event = read_trackml_event(trackml_dir / "event000000001", geometry=trackml_dir / "detectors.csv.gz", cells=False)
    own = DetectorGeometry.from_trackml_detectors(trackml_dir / "detectors.csv.gz")
    volume, layer, module = own.trackml_from_module_index(event.hits["module_id"])
    default = read_trackml_event(trackml_dir / "event000000001", cells=False)
    generic = generic_detector().module_index_from_trackml(volume, layer, module)
    assert np.array_equal(generic, default.hits["module_id"])
    assert not np.array_equal(event.hits["module_id"], default.hits["module_id"])  # two numberings, same modules


def test_write_read_round_trip(event, tmp_path):
    prefix = write_trackml_event(event, tmp_path, compress=True)
    assert prefix.name == "event000000001"
    again = read_trackml_event(prefix)  # no cells written: cell columns are absent
    shared = [c for c in event.hits.columns if c not in CELL_FEATURE_COLUMNS]
    assert list(again.hits.columns) == shared
    pd.testing.assert_frame_equal(again.hits, event.hits[shared], check_exact=False, rtol=1e-6)
    pd.testing.assert_frame_equal(again.particles, event.particles, check_exact=False, rtol=1e-6)
