"""load_event: dispatch on Parquet, TrackML CSV and .pt inputs, and clear refusals."""

import numpy as np
import pytest
import torch

from gnn4itk.event import INFERENCE_COLUMNS, write_event
from gnn4itk.io.load import load_event
from gnn4itk.io.trackml import read_trackml_event


@pytest.fixture(scope="module")
def event(trackml_dir):
    return read_trackml_event(trackml_dir / "event000000001")


def _assert_same_inference_input(loaded, event):
    assert not loaded.has_truth
    assert torch.equal(loaded.inference_tensor(), event.inference_tensor())
    assert np.array_equal(loaded.hits["module_id"], event.hits["module_id"])
    assert np.array_equal(loaded.hits["hit_id"], event.hits["hit_id"])


def test_trackml_prefix_and_file(trackml_dir, event):
    for path in (trackml_dir / "event000000001", trackml_dir / "event000000001-hits.csv.gz"):
        loaded = load_event(path)
        assert loaded.event_id == 1 and loaded.meta["source"] == "trackml"
        assert loaded.hits.equals(event.hits)


def test_parquet_prefix_and_hits_file(event, tmp_path):
    prefix = write_event(event, tmp_path)
    for path in (prefix, f"{prefix}-hits.parquet"):
        loaded = load_event(path)
        assert loaded.event_id == 1 and loaded.has_truth
        assert loaded.hits.equals(event.hits) and loaded.particles.equals(event.particles)


def test_pt_tensor_and_dict(event, tmp_path):
    tensor = event.inference_tensor()
    torch.save(tensor, tmp_path / "node_features.pt")
    _assert_same_inference_input(load_event(tmp_path / "node_features.pt", event_id=1), event)
    torch.save({"x": tensor, "event_id": torch.tensor(7)}, tmp_path / "dict.pt")
    loaded = load_event(tmp_path / "dict.pt")
    _assert_same_inference_input(loaded, event)
    assert loaded.event_id == 7
    torch.save({"whatever": tensor}, tmp_path / "one.pt")  # a single 2-D tensor is unambiguous
    _assert_same_inference_input(load_event(tmp_path / "one.pt"), event)


def test_pt_wrong_shapes_and_contents(tmp_path):
    torch.save(torch.zeros(10, 15), tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match=r"shape \[10, 15\].*\[N, 16\]"):
        load_event(tmp_path / "narrow.pt")
    torch.save(torch.zeros(10, 16, dtype=torch.int64), tmp_path / "ints.pt")
    with pytest.raises(ValueError, match="dtype torch.int64"):
        load_event(tmp_path / "ints.pt")
    torch.save({"a": torch.zeros(3, 16), "b": torch.zeros(3, 16)}, tmp_path / "two.pt")
    with pytest.raises(ValueError, match="dict with keys"):
        load_event(tmp_path / "two.pt")
    torch.save([torch.zeros(3, 16)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a tensor"):
        load_event(tmp_path / "list.pt")


class Arbitrary:
    """A class torch.load(weights_only=True) must not instantiate."""

    def __init__(self):
        self.payload = torch.zeros(3, 16)


def test_pt_with_arbitrary_objects_is_refused(tmp_path):
    torch.save({"x": Arbitrary()}, tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_event(tmp_path / "pickle.pt")


def test_pyg_data(event, tmp_path):
    pyg = pytest.importorskip("torch_geometric")
    tensor = event.inference_tensor()
    torch.save(pyg.data.Data(x=tensor, edge_index=torch.zeros(2, 0, dtype=torch.long)), tmp_path / "data.pt")
    _assert_same_inference_input(load_event(tmp_path / "data.pt"), event)
    # acorn-style graphs keep one node attribute per column, prefixed hit_
    attributes = {f"hit_{name}": tensor[:, i].clone() for i, name in enumerate(INFERENCE_COLUMNS)}
    torch.save(pyg.data.Data(**attributes), tmp_path / "acorn.pt")
    _assert_same_inference_input(load_event(tmp_path / "acorn.pt"), event)
    torch.save(pyg.data.Data(hit_x=tensor[:, 0]), tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="'y'"):
        load_event(tmp_path / "partial.pt")


def test_unknown_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown event file type"):
        load_event(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="is a directory"):
        load_event(tmp_path)
    with pytest.raises(FileNotFoundError, match="no event at"):
        load_event(tmp_path / "event000000009")
    with pytest.raises(FileNotFoundError):
        load_event(tmp_path / "missing.pt")
