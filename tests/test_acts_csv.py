"""ACTS CSV reader: files from ACTS's own CSV writers read back equal the in-memory conversion."""

import numpy as np
import pandas as pd
import pytest

from gnn4itk.io.acts_csv import acts_csv_event_ids, read_acts_csv_event

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    pytest.importorskip("acts.examples")
    from gnn4itk.simulation.convert import event_from_acts
    from gnn4itk.simulation.fatras import run_acts
    from gnn4itk.simulation.generators import CrossingGenerator, GeneratorConfig

    directory = tmp_path_factory.mktemp("acts_csv")
    event_id = 3
    particles, _ = CrossingGenerator(GeneratorConfig(pileup=2, generator="gun", seed=9))(event_id)
    tables = run_acts(particles, seed=9, event_id=event_id, csv_dir=directory)
    return directory, event_id, event_from_acts(tables, event_id=event_id)


def test_csv_event_matches_direct_conversion(written):
    directory, event_id, direct = written
    assert acts_csv_event_ids(directory) == [event_id]
    read = read_acts_csv_event(directory, event_id)
    assert read.event_id == event_id and read.meta["source"] == "ACTS CSV"
    assert len(read.hits) == len(direct.hits) > 100
    exact = ["hit_id", "module_id", "volume_id", "layer_id", "geometry_id", "particle_id", "hit_order"]
    pd.testing.assert_frame_equal(read.hits[exact], direct.hits[exact])
    for column in ("x", "y", "z", "tx", "ty", "tz", "cluster_r_1"):
        np.testing.assert_allclose(read.hits[column], direct.hits[column], atol=1e-3, err_msg=column)
    momentum = ["tpx", "tpy", "tpz"]
    np.testing.assert_allclose(read.hits[momentum], direct.hits[momentum], rtol=1e-5, atol=1e-7)
    p_read, p_direct = read.particles, direct.particles
    pd.testing.assert_frame_equal(
        p_read[["particle_id", "pdgId", "primary", "nhits"]], p_direct[["particle_id", "pdgId", "primary", "nhits"]]
    )
    kinematics = ["px", "py", "pz", "vz"]
    np.testing.assert_allclose(p_read[kinematics], p_direct[kinematics], rtol=1e-5, atol=1e-6)


def test_reader_names_missing_files_and_columns(written, tmp_path):
    directory, event_id, _ = written
    with pytest.raises(FileNotFoundError, match="particle file for event 7"):
        read_acts_csv_event(directory, 7)
    for name in ("particles", "hits", "measurements", "measurement-simhit-map"):
        source = directory / f"event{event_id:09d}-{name}.csv"
        (tmp_path / source.name).write_text(source.read_text())
    broken = tmp_path / f"event{event_id:09d}-measurements.csv"
    pd.read_csv(broken).drop(columns=["local1"]).to_csv(broken, index=False)
    with pytest.raises(ValueError, match="local1"):
        read_acts_csv_event(tmp_path, event_id)
    (tmp_path / f"event{event_id:09d}-hits.csv").unlink()
    with pytest.raises(FileNotFoundError, match="hits.csv"):
        read_acts_csv_event(tmp_path, event_id)
