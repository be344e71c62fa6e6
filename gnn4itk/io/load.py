"""``load_event(path)``: one entry point for every event file gnn4itk reads.

What ``path`` may be:

* a Parquet event: its prefix ``.../event000000001`` or its ``-hits.parquet`` file (:func:`gnn4itk.event.read_event`);
* a TrackML CSV event: its prefix or any ``-{hits,truth,particles,cells}.csv[.gz]`` file
  (:func:`gnn4itk.io.trackml.read_trackml_event`);
* a ``.pt`` file holding the GNN4ITk inference input, a float32 tensor [N, 16] with
  :data:`gnn4itk.event.INFERENCE_COLUMNS`; or a dict holding such a tensor; or a PyG ``Data`` whose ``x``
  is that tensor or which has the 16 columns as node attributes (plain or ``hit_``-prefixed, as acorn
  writes them). PyG files are read only when ``torch_geometric`` is importable.

``.pt`` files are read with ``torch.load(weights_only=True)``: they may hold tensors, containers and the PyG
data classes, never arbitrary pickled objects, which are refused with a ``ValueError``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from gnn4itk.event import INFERENCE_COLUMNS, Event, read_event
from gnn4itk.io.trackml import is_trackml_event, read_trackml_event

TENSOR_KEYS = ("node_features", "x", "features", "input", "inference_input")
"""Dict keys searched, in this order, for the inference tensor."""


def _pyg_safe_globals() -> list:
    """PyG classes a ``Data`` pickle refers to, or [] without torch_geometric."""
    try:
        from torch_geometric.data import Data
        from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
        from torch_geometric.data.storage import GlobalStorage
    except ImportError:
        return []
    return [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]


def _torch_load(path: Path):
    import torch

    safe = _pyg_safe_globals()
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        hint = "" if safe else " (torch_geometric is not installed, so PyG Data cannot be read)"
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        raise ValueError(
            f"{path} holds objects other than tensors, dicts or PyG Data; refusing to unpickle them{hint}. {first_line}"
        ) from None


def _check_tensor(tensor, where: str, columns=INFERENCE_COLUMNS):
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{where} is a {type(tensor).__name__}, not a tensor")
    if tensor.ndim != 2 or tensor.shape[1] != len(columns):
        raise ValueError(
            f"{where} has shape {list(tensor.shape)}; the expected input is [N, {len(columns)}] "
            f"with columns {list(columns)}"
        )
    if not tensor.is_floating_point():
        raise ValueError(f"{where} has dtype {tensor.dtype}; expected float32")
    return tensor.float()


def _tensor_from_dict(content: dict, where: str, columns=INFERENCE_COLUMNS):
    for key in TENSOR_KEYS:
        if key in content:
            return _check_tensor(content[key], f"{where}[{key!r}]", columns)
    import torch

    tensors = {k: v for k, v in content.items() if isinstance(v, torch.Tensor) and v.ndim == 2}
    if len(tensors) == 1:
        key, value = next(iter(tensors.items()))
        return _check_tensor(value, f"{where}[{key!r}]", columns)
    raise ValueError(
        f"{where} is a dict with keys {list(content)}; expected one of {list(TENSOR_KEYS)} "
        f"holding a [N, {len(columns)}] tensor"
    )


def _is_pyg_data(content) -> bool:
    """Whether ``content`` is a PyG ``Data``, without importing the optional torch_geometric: a loaded
    ``Data`` means its module is imported already."""
    import sys

    data_module = sys.modules.get("torch_geometric.data")
    return data_module is not None and isinstance(content, data_module.Data)


def _tensor_from_pyg(data, where: str, wanted=INFERENCE_COLUMNS):
    import torch

    x = getattr(data, "x", None)
    if x is not None:
        return _check_tensor(x, f"{where}.x", wanted)
    columns = []
    for name in wanted:
        value = next((getattr(data, n) for n in (name, f"hit_{name}") if getattr(data, n, None) is not None), None)
        if value is None:
            raise ValueError(f"{where} (PyG Data) has neither x nor a node attribute {name!r} / 'hit_{name}'")
        columns.append(torch.as_tensor(value).reshape(-1).double())
    return torch.stack(columns, dim=1).float()


def load_features(path: str | Path, columns=INFERENCE_COLUMNS):
    """The FEATURES tensor stored in a ``.pt`` file, exactly as stored (no recomputed columns).

    Args:
        path: ``.pt`` file with a float tensor [N, F], a dict holding one, or a PyG ``Data``.
        columns: the F column names expected (default the 16 GNN4ITk inference columns).

    Returns:
        (FloatTensor [N, F] float32, the dict's ``event_id`` or None).

    Raises:
        FileNotFoundError, or ValueError naming the problem (width, dtype, disallowed content).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file {path}")
    content = _torch_load(path)
    event_id = None
    if isinstance(content, dict):
        tensor = _tensor_from_dict(content, str(path), columns)
        if "event_id" in content:
            event_id = int(content["event_id"])
    elif _is_pyg_data(content):
        tensor = _tensor_from_pyg(content, str(path), columns)
    else:
        tensor = _check_tensor(content, str(path), columns)
    return tensor, event_id


def load_event(path: str | Path, geometry=None, event_id: int | None = None) -> Event:
    """Load one event from whatever file holds it.

    Args:
        path: event prefix or file (see the module docstring for the forms).
        geometry: for TrackML files: a :class:`~gnn4itk.geometry.DetectorGeometry` or a ``detectors.csv``
            path; default the shipped Generic detector.
        event_id: event number for tensor files; default the dict's ``event_id`` entry if any, else 0.

    Returns:
        :class:`Event`. Tensor inputs give an event without truth, its ``hit_id`` / ``module_id`` rounded
        back to integers.

    Raises:
        FileNotFoundError: nothing exists at ``path``. ValueError: unknown file type, wrong tensor shape,
        or a ``.pt`` file with content that is not allowed.
    """
    path = Path(path)
    text = str(path)
    if text.endswith("-hits.parquet") or text.endswith("-particles.parquet") or Path(f"{text}-hits.parquet").exists():
        return read_event(path)
    if is_trackml_event(path):
        return read_trackml_event(path, geometry=geometry)
    if path.suffix == ".pt":
        tensor, stored_id = load_features(path)
        event = Event.from_inference_tensor(tensor, event_id=event_id if event_id is not None else stored_id or 0)
        event.meta.update({"source": "tensor", "path": str(path)})
        return event
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give one event (prefix or file), or use gnn4itk.event.iter_events")
    if not path.exists():
        raise FileNotFoundError(
            f"no event at {path} (looked for {path}-hits.parquet, {path}-hits.csv[.gz] and a .pt file)"
        )
    raise ValueError(f"{path}: unknown event file type; expected a Parquet or TrackML CSV event, or a .pt tensor file")


__all__ = ["load_event", "TENSOR_KEYS"]
