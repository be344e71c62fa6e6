"""The shipped Generic-detector table and the id conversions of DetectorGeometry."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gnn4itk.geometry import (
    GENERIC_DETECTOR_FILE,
    DetectorGeometry,
    generic_detector,
    match_modules_by_centre,
)

TRACKML_DIR = Path(__file__).parents[2] / "shared" / "data" / "trackml"
DETECTORS = TRACKML_DIR / "detectors.csv.gz"
ENDCAP_VOLUMES = [7, 9, 12, 14, 16, 18]
ID_PAIRS = [("acts_volume", "volume_id"), ("acts_layer", "layer_id"), ("acts_sensitive", "module_id")]
TRIPLE = ["volume_id", "layer_id", "module_id"]


@pytest.fixture(scope="module")
def generic():
    return generic_detector()


@pytest.fixture(scope="module")
def trackml():
    return DetectorGeometry.from_trackml_detectors(DETECTORS)


def test_shipped_table_is_small_and_complete(generic):
    assert GENERIC_DETECTOR_FILE.stat().st_size < 2_000_000
    assert len(generic) == 18_728
    assert generic.has_geometry_ids
    table = generic.table
    assert table["module_index"].dtype == np.int32 and table["geometry_id"].dtype == np.uint64
    assert np.array_equal(table["module_index"], np.arange(len(table)))
    # dense index follows geometry-id order, so it is reproducible from the ACTS ids alone
    assert (np.diff(table["geometry_id"].to_numpy(np.uint64).astype(np.float64)) > 0).all()
    assert not table.isna().any().any()


def test_sizes_agree_with_trackml_detectors(generic, trackml):
    assert len(trackml) == len(generic) == 18_728
    joined = generic.table.merge(trackml.table, on=["volume_id", "layer_id", "module_id"], suffixes=("", "_tml"))
    assert len(joined) == len(generic), "every module's TrackML triple must exist in detectors.csv"
    for col in ("module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v"):
        assert np.allclose(joined[col], joined[f"{col}_tml"], atol=1e-4), col
    # TrackML rotations are written with 6 significant digits
    for col in [c for c in generic.table.columns if c.startswith("rot_")]:
        assert np.allclose(joined[col], joined[f"{col}_tml"], atol=1e-5), col


def test_centre_match_is_one_to_one_within_4um(generic, trackml):
    triples = generic.table[["volume_id", "layer_id", "module_id"]]
    assert not triples.duplicated().any()
    index = trackml.module_index_from_trackml(*(triples[c] for c in triples.columns), strict=True)
    distance = np.linalg.norm(generic.module_centers() - trackml.module_centers(index), axis=1)
    assert distance.max() < 0.004
    # the independent nearest-centre match reproduces the shipped TrackML ids
    nearest = match_modules_by_centre(generic.module_centers(), trackml.module_centers(), tolerance=0.01)
    assert np.array_equal(nearest, index)


def test_barrel_ids_equal_acts_ids_endcap_ids_differ(generic):
    table = generic.table
    barrel = ~table["volume_id"].isin(ENDCAP_VOLUMES)
    assert barrel.sum() == 14_000
    for acts_col, trackml_col in ID_PAIRS:
        assert (table.loc[barrel, acts_col] == table.loc[barrel, trackml_col]).all()
    # the reason for matching by centre: most endcap module numbers differ
    endcap = table[~barrel]
    assert (endcap["acts_sensitive"] != endcap["module_id"]).mean() > 0.9


def test_dense_index_exact_in_float32_and_round_trips(generic):
    index = np.arange(len(generic), dtype=np.int32)
    assert np.array_equal(index.astype(np.float32).astype(np.int32), index)
    ids = generic.geometry_id_from_module_index(index)
    assert np.array_equal(generic.module_index_from_geometry_id(ids, strict=True), index)
    vol, lay, mod = generic.trackml_from_module_index(index.astype(np.float32))  # as carried by the tensor
    assert np.array_equal(generic.module_index_from_trackml(vol, lay, mod, strict=True), index)


def test_unknown_ids_are_counted_not_merged(generic):
    good = generic.table["geometry_id"].to_numpy(np.uint64)[:3]
    ids = np.concatenate([good, np.array([1, 2**60 + 7], dtype=np.uint64)])
    with pytest.warns(UserWarning, match="2 of 5 geometry ids"):
        index = generic.module_index_from_geometry_id(ids)
    assert index.tolist() == [0, 1, 2, -1, -1]
    with pytest.raises(ValueError, match="2 of 5 geometry ids"):
        generic.module_index_from_geometry_id(ids, strict=True)
    with pytest.warns(UserWarning, match="2 of 3 TrackML module ids"):
        index = generic.module_index_from_trackml([8, 8, 99], [2, 2, 2], [1, 99999, 1])
    assert index[0] >= 0 and index[1:].tolist() == [-1, -1]
    with pytest.raises(ValueError, match="outside"):
        generic.trackml_from_module_index([len(generic)])


def test_trackml_geometry_has_no_acts_ids_and_round_trips(trackml, tmp_path):
    assert not trackml.has_geometry_ids
    with pytest.raises(ValueError, match="no ACTS geometry ids"):
        trackml.module_index_from_geometry_id(np.array([1], dtype=np.uint64))
    path = trackml.to_trackml_detectors(tmp_path / "detectors.csv")
    again = DetectorGeometry.from_trackml_detectors(path)
    pd.testing.assert_frame_equal(again.table, trackml.table, check_exact=False)


def test_bad_tables_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a TrackML detectors file"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        DetectorGeometry.from_trackml_detectors(tmp_path / "x.csv")
    table = generic_detector().table.copy()
    table.loc[1, TRIPLE] = table.loc[0, TRIPLE].to_numpy()
    with pytest.raises(ValueError, match="unique"):
        DetectorGeometry(table)


def test_match_by_centre_refuses_ambiguous_and_far():
    a = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    assert match_modules_by_centre(a, a[::-1] + 0.001).tolist() == [1, 0]
    with pytest.raises(ValueError, match="one-to-one"):
        match_modules_by_centre(a, np.array([[1.0, 0, 0], [50.0, 50, 50]]), tolerance=100)
    with pytest.raises(ValueError, match="no partner"):
        match_modules_by_centre(a, a + 1.0)


@pytest.mark.sim
@pytest.mark.slow
def test_generator_script_reproduces_shipped_table():
    pytest.importorskip("acts")
    import importlib.util

    script_path = Path(__file__).parents[1] / "scripts" / "make_generic_geometry.py"
    spec = importlib.util.spec_from_file_location("make_generic_geometry", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rebuilt = script.build_table(DETECTORS)
    pd.testing.assert_frame_equal(rebuilt, generic_detector().table)
