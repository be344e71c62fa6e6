import numpy as np
import pandas as pd
import pytest
import torch

from gnn4itk.event import (
    INFERENCE_COLUMNS,
    SPACEPOINT_COLUMNS,
    Event,
    complete_particles,
    complete_spacepoints,
    iter_events,
    list_events,
    pseudorapidity,
    read_event,
    select_features,
    write_event,
)


def small_event(event_id: int = 3) -> Event:
    rng = np.random.default_rng(event_id)
    n = 50
    hits = pd.DataFrame(
        {
            "hit_id": np.arange(1, n + 1),
            "x": rng.uniform(-500, 500, n),
            "y": rng.uniform(-500, 500, n),
            "z": rng.uniform(-1000, 1000, n),
            "module_id": rng.integers(0, 100, n),
            "particle_id": rng.choice([0, 11, 12, 13], n),
        }
    )
    hits = complete_spacepoints(hits)
    particles = pd.DataFrame(
        {
            "particle_id": [11, 12, 13],
            "px": [1.0, 0.0, -2.0],
            "py": [0.0, 3.0, 0.5],
            "pz": [0.5, -1.0, 10.0],
            "vx": [0.01, 0.0, 5.0],
            "vy": [0.0, 0.02, 5.0],
            "vz": [1.0, -3.0, 20.0],
            "particle_type": [211, -13, 11],
            "q": [1, 1, -1],
            "primary": [True, True, False],
        }
    )
    return Event(hits=hits, particles=complete_particles(particles, hits), event_id=event_id, meta={"pileup": 2})


def test_complete_spacepoints_columns_and_single_cluster_convention():
    event = small_event()
    hits = event.hits
    assert list(hits.columns[: len(SPACEPOINT_COLUMNS)]) == SPACEPOINT_COLUMNS
    np.testing.assert_allclose(hits["r"], np.hypot(hits["x"], hits["y"]), rtol=1e-6)
    np.testing.assert_allclose(hits["phi"], np.arctan2(hits["y"], hits["x"]), rtol=1e-6)
    for c in ("x", "y", "z", "r", "phi", "eta"):
        np.testing.assert_array_equal(hits[f"cluster_{c}_1"], hits[c])
        np.testing.assert_array_equal(hits[f"cluster_{c}_2"], hits[c])
    assert hits["module_id"].dtype == np.int32
    assert hits["hit_id"].dtype == np.int64


def test_pseudorapidity_matches_theta_definition():
    r = np.array([10.0, 100.0, 1000.0, 100.0, 100.0])
    z = np.array([-50.0, 0.0, 3000.0, 1e-3, -1e-3])
    theta = np.arctan2(r, z)
    # The definition goes through tan and log, whose last bit depends on the CPU's numpy kernels: at
    # theta = pi/2 it gives 0 on some machines and 1.1e-16 on others (numpy's AVX2 tan(pi/4) is
    # 0.9999999999999999). A relative tolerance cannot accept any difference from 0, so the comparison
    # needs an absolute one too; 1e-12 is ~10^4 times that rounding and far below any use of eta.
    np.testing.assert_allclose(pseudorapidity(r, z), -np.log(np.tan(theta / 2)), rtol=1e-12, atol=1e-12)
    # z = 0 is exactly 0 (asinh(0)), and the sign follows z, whatever the CPU.
    assert pseudorapidity(np.array([100.0]), np.array([0.0]))[0] == 0.0
    assert np.array_equal(np.sign(pseudorapidity(r, z)), np.sign(z))


def test_complete_spacepoints_rejects_missing_and_inexact_module_ids():
    with pytest.raises(ValueError, match="module_id"):
        complete_spacepoints(pd.DataFrame({"hit_id": [1], "x": [1.0], "y": [1.0], "z": [1.0]}))
    with pytest.raises(ValueError, match="2\\*\\*24"):
        complete_spacepoints(pd.DataFrame({"hit_id": [1], "x": [1.0], "y": [1.0], "z": [1.0], "module_id": [2**24]}))


def test_particles_derived_quantities_and_hit_counts():
    event = small_event()
    p = event.particles.set_index("particle_id")
    assert p.loc[12, "pt"] == pytest.approx(3.0)
    assert p.loc[13, "radius"] == pytest.approx(np.hypot(5, 5), rel=1e-6)
    assert p.loc[12, "pdgId"] == -13
    counts = event.hits["particle_id"].value_counts()
    for pid in (11, 12, 13):
        assert p.loc[pid, "nhits"] == counts.get(pid, 0)


def test_parquet_round_trip(tmp_path):
    events = [small_event(i) for i in (7, 2, 11)]
    for e in events:
        write_event(e, tmp_path)
    assert [p.name for p in list_events(tmp_path)] == ["event000000002", "event000000007", "event000000011"]
    back = read_event(tmp_path / "event000000007-hits.parquet")
    pd.testing.assert_frame_equal(back.hits, events[0].hits)
    pd.testing.assert_frame_equal(back.particles, events[0].particles)
    assert back.event_id == 7 and back.meta == {"pileup": 2}
    assert [e.event_id for e in iter_events(tmp_path, limit=2)] == [2, 7]
    with pytest.raises(FileNotFoundError):
        read_event(tmp_path / "event000000099")


def test_feature_selection_and_scaling():
    event = small_event()
    feats = event.features(["r", "phi", "z"], [1000, np.pi, 1000])
    assert feats.dtype == np.float32 and feats.shape == (len(event), 3)
    np.testing.assert_allclose(feats[:, 0], event.hits["r"] / 1000, rtol=1e-6)
    with pytest.raises(KeyError, match="nonexistent"):
        select_features(event.hits, ["r", "nonexistent"])
    with pytest.raises(ValueError, match="scales"):
        select_features(event.hits, ["r", "z"], [1.0])


def test_inference_tensor_round_trip():
    event = small_event()
    tensor = event.inference_tensor()
    assert tensor.dtype == torch.float32 and tensor.shape == (len(event), len(INFERENCE_COLUMNS))
    back = Event.from_inference_tensor(tensor)
    np.testing.assert_array_equal(back.hits["hit_id"], event.hits["hit_id"])
    np.testing.assert_array_equal(back.hits["module_id"], event.hits["module_id"])
    np.testing.assert_allclose(back.hits["cluster_x_1"], event.hits["x"], atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        Event.from_inference_tensor(torch.zeros(4, 12))
