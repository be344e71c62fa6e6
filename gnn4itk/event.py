"""The event data model: one table of spacepoints plus truth.

An :class:`Event` is what every reader produces and every stage consumes. Units are ACTS/TrackML
units: millimetres, GeV, radians. ``docs/data.md`` lists every column.

Spacepoint table (``Event.hits``), one row per spacepoint:

* ``hit_id`` int64 -- identifier unique within the event (TrackML ``hit_id``).
* ``x, y, z`` float32 [mm]; ``r`` = sqrt(x² + y²), ``phi`` = atan2(y, x), ``eta`` = pseudorapidity of
  the spacepoint seen from the origin.
* ``module_id`` int32 -- the *dense* module index of the detector geometry (exact in float32).
* ``volume_id, layer_id`` int32 -- TrackML-style volume and layer numbers (for reading and plots).
* ``cluster_{x,y,z,r,phi,eta}_{1,2}`` float32 -- the one or two clusters behind the spacepoint. Pixel
  spacepoints, and every spacepoint of the Generic detector, have cluster 1 = cluster 2 = spacepoint.
* optional cluster-shape columns where cells exist (``count``, ``charge_count``, ``loc_eta``, ...).
* ``particle_id`` int64 -- truth, 0 for noise (only when the event has truth).

Particle table (``Event.particles``), one row per simulated particle: see :data:`PARTICLE_COLUMNS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

POSITION_COLUMNS = ["x", "y", "z", "r", "phi", "eta"]
CLUSTER_COLUMNS = [f"cluster_{c}_{i}" for i in (1, 2) for c in POSITION_COLUMNS]
SPACEPOINT_COLUMNS = ["hit_id", *POSITION_COLUMNS, "module_id", "volume_id", "layer_id", *CLUSTER_COLUMNS]
"""Columns every spacepoint table has, in this order."""

CELL_FEATURE_COLUMNS = [
    "count",
    "charge_count",
    "loc_eta",
    "loc_phi",
    "localDir0",
    "localDir1",
    "localDir2",
    "lengthDir0",
    "lengthDir1",
    "lengthDir2",
    "glob_eta",
    "glob_phi",
    "eta_angle",
    "phi_angle",
]
"""GNN4ITk's cluster-shape columns; present only where cells exist."""

PARTICLE_COLUMNS = [
    "particle_id",  # int64, > 0
    "pt",  # GeV
    "eta",
    "phi",
    "vx",  # mm, production vertex
    "vy",
    "vz",
    "px",  # GeV
    "py",
    "pz",
    "pdgId",  # int32
    "charge",  # float32, units of e
    "primary",  # bool: produced at the primary interaction (not a secondary)
    "radius",  # mm, production radius sqrt(vx² + vy²)
    "nhits",  # int32, spacepoints in this event's table
]

INFERENCE_COLUMNS = [
    "x",
    "y",
    "z",
    "module_id",
    "hit_id",
    "r",
    "phi",
    "eta",
    "cluster_r_1",
    "cluster_phi_1",
    "cluster_z_1",
    "cluster_eta_1",
    "cluster_r_2",
    "cluster_phi_2",
    "cluster_z_2",
    "cluster_eta_2",
]
"""Columns of the GNN4ITk inference input, a float32 tensor [N, 16] (``node_features.pt``)."""

_FLOAT_LIMIT = 2**24  # integers above this are not exact in float32


def pseudorapidity(r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Pseudorapidity of points at transverse radius ``r`` and longitudinal ``z`` seen from the origin.

    Args:
        r: float array [N], transverse radius.
        z: float array [N].

    Returns:
        float array [N]: ``-ln(tan(theta / 2))`` with ``theta = atan2(r, z)``, written as ``asinh(z / r)``
        which is the same and finite for r > 0.
    """
    r = np.asarray(r, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / r)
    # r = 0 has no finite pseudorapidity; such points never occur in a tracker, but keep the column finite.
    return np.where(r > 0, eta, np.sign(z) * 1e3)


def add_cylindrical(table: pd.DataFrame, prefix: str = "", suffix: str = "") -> pd.DataFrame:
    """Fill ``r, phi, eta`` (with optional prefix/suffix, e.g. ``cluster_`` / ``_1``) from ``x, y, z``.

    Args:
        table: DataFrame with columns ``{prefix}x{suffix}``, ``{prefix}y{suffix}``, ``{prefix}z{suffix}``.

    Returns:
        The same DataFrame, modified in place, for chaining.
    """
    x = table[f"{prefix}x{suffix}"].to_numpy(np.float64)
    y = table[f"{prefix}y{suffix}"].to_numpy(np.float64)
    z = table[f"{prefix}z{suffix}"].to_numpy(np.float64)
    r = np.hypot(x, y)
    table[f"{prefix}r{suffix}"] = r.astype(np.float32)
    table[f"{prefix}phi{suffix}"] = np.arctan2(y, x).astype(np.float32)
    table[f"{prefix}eta{suffix}"] = pseudorapidity(r, z).astype(np.float32)
    return table


def complete_spacepoints(hits: pd.DataFrame) -> pd.DataFrame:
    """Bring a spacepoint table to the event model: derived columns, single-cluster defaults, dtypes.

    ``r, phi, eta`` are computed from ``x, y, z``. Where no ``cluster_x_1`` column exists the spacepoint
    is its own cluster (pixel convention): cluster 1 = cluster 2 = spacepoint. Missing ``cluster_*_2``
    columns copy cluster 1. Columns are reordered with :data:`SPACEPOINT_COLUMNS` first.

    Args:
        hits: DataFrame with at least ``hit_id, x, y, z, module_id``.

    Returns:
        A new DataFrame following the event model.
    """
    missing = [c for c in ("hit_id", "x", "y", "z", "module_id") if c not in hits.columns]
    if missing:
        raise ValueError(f"spacepoint table lacks required columns {missing}")
    hits = hits.copy()
    for col in ("x", "y", "z"):
        hits[col] = hits[col].astype(np.float32)
    add_cylindrical(hits)
    if "cluster_x_1" not in hits.columns:
        for c in POSITION_COLUMNS:
            hits[f"cluster_{c}_1"] = hits[c]
    else:
        add_cylindrical(hits, "cluster_", "_1")
    if "cluster_x_2" not in hits.columns:
        for c in POSITION_COLUMNS:
            hits[f"cluster_{c}_2"] = hits[f"cluster_{c}_1"]
    else:
        add_cylindrical(hits, "cluster_", "_2")
    for col in ("volume_id", "layer_id"):
        if col not in hits.columns:
            hits[col] = -1
    hits["hit_id"] = hits["hit_id"].astype(np.int64)
    for col in ("module_id", "volume_id", "layer_id"):
        hits[col] = hits[col].astype(np.int32)
    if (hits["module_id"] >= _FLOAT_LIMIT).any():
        raise ValueError("dense module_id must be < 2**24 so that it is exact in float32")
    if "particle_id" in hits.columns:
        hits["particle_id"] = hits["particle_id"].astype(np.int64)
    for c in CLUSTER_COLUMNS:
        hits[c] = hits[c].astype(np.float32)
    rest = [c for c in hits.columns if c not in SPACEPOINT_COLUMNS]
    return hits[SPACEPOINT_COLUMNS + rest].reset_index(drop=True)


def complete_particles(particles: pd.DataFrame, hits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Bring a particle table to :data:`PARTICLE_COLUMNS`, deriving what can be derived.

    ``pt, eta, phi`` come from ``px, py, pz``; ``radius`` from the vertex; ``nhits`` is counted from
    ``hits`` when given (it always describes the spacepoint table it travels with). ``primary`` must be
    provided by the reader, since only the generator knows it.

    Args:
        particles: DataFrame with at least ``particle_id, px, py, pz, vx, vy, vz``.
        hits: the event's spacepoint table with ``particle_id``, or None.
    """
    p = particles.copy()
    px, py, pz = (p[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    p["pt"] = pt.astype(np.float32)
    p["eta"] = pseudorapidity(pt, pz).astype(np.float32)
    p["phi"] = np.arctan2(py, px).astype(np.float32)
    p["radius"] = np.hypot(p["vx"].to_numpy(np.float64), p["vy"].to_numpy(np.float64)).astype(np.float32)
    if "pdgId" not in p.columns:
        p["pdgId"] = p.pop("particle_type") if "particle_type" in p.columns else 0
    if "charge" not in p.columns:
        p["charge"] = p.pop("q") if "q" in p.columns else 0
    if "primary" not in p.columns:
        raise ValueError("particle table needs a 'primary' column")
    if hits is not None and "particle_id" in hits.columns:
        counts = hits.loc[hits["particle_id"] != 0, "particle_id"].value_counts()
        p["nhits"] = p["particle_id"].map(counts).fillna(0).astype(np.int32)
    elif "nhits" not in p.columns:
        p["nhits"] = 0
    p["particle_id"] = p["particle_id"].astype(np.int64)
    p["pdgId"] = p["pdgId"].astype(np.int32)
    p["charge"] = p["charge"].astype(np.float32)
    p["primary"] = p["primary"].astype(bool)
    p["nhits"] = p["nhits"].astype(np.int32)
    for c in ("vx", "vy", "vz", "px", "py", "pz"):
        p[c] = p[c].astype(np.float32)
    rest = [c for c in p.columns if c not in PARTICLE_COLUMNS]
    return p[PARTICLE_COLUMNS + rest].reset_index(drop=True)


@dataclass
class Event:
    """One collision event: spacepoints, and truth where it is known.

    Attributes:
        hits: spacepoint table, :data:`SPACEPOINT_COLUMNS` first; ``particle_id`` when truth is known.
        particles: particle table with :data:`PARTICLE_COLUMNS`, or None without truth.
        event_id: event number.
        meta: free-form provenance (generator, pile-up, seed, detector ...), stored with the file.
    """

    hits: pd.DataFrame
    particles: pd.DataFrame | None = None
    event_id: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def has_truth(self) -> bool:
        return self.particles is not None and "particle_id" in self.hits.columns

    def __len__(self) -> int:
        return len(self.hits)

    def summary(self) -> dict:
        """Counts that describe the event: spacepoints, modules, particles, noise."""
        out = {
            "event_id": int(self.event_id),
            "spacepoints": int(len(self.hits)),
            "modules_hit": int(self.hits["module_id"].nunique()),
        }
        if self.has_truth:
            pid = self.hits["particle_id"].to_numpy()
            out["noise_spacepoints"] = int((pid == 0).sum())
            out["particles"] = int(len(self.particles))
            out["particles_with_hits"] = int((self.particles["nhits"] > 0).sum())
            out["primary_particles"] = int(self.particles["primary"].sum())
        out.update({k: v for k, v in self.meta.items() if isinstance(v, (int, float, str))})
        return out

    def features(self, columns: Sequence[str], scales: Sequence[float] | None = None) -> np.ndarray:
        """Select and scale spacepoint features, as GNN4ITk configs name them.

        Args:
            columns: column names, e.g. ``["r", "phi", "z", "eta"]``.
            scales: one divisor per column (e.g. ``[1000, 3.14159265359, 1000, 1]``), or None for 1.

        Returns:
            float32 array [N, len(columns)]: ``hits[columns] / scales``.
        """
        return select_features(self.hits, columns, scales)

    def inference_tensor(self):
        """The GNN4ITk service input: float32 torch tensor [N, 16] with :data:`INFERENCE_COLUMNS`."""
        import torch

        return torch.from_numpy(select_features(self.hits, INFERENCE_COLUMNS))

    @classmethod
    def from_inference_tensor(cls, tensor, event_id: int = 0) -> "Event":
        """Rebuild an event (no truth) from a GNN4ITk inference tensor [N, 16] float32.

        ``hit_id`` and ``module_id`` travel as float32 and are rounded back to integers; x/y/z of the
        clusters are recomputed from their r/phi/z.
        """
        array = np.asarray(tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor)
        if array.ndim != 2 or array.shape[1] != len(INFERENCE_COLUMNS):
            raise ValueError(
                f"inference tensor must have shape [N, {len(INFERENCE_COLUMNS)}], got {list(array.shape)}"
            )
        table = pd.DataFrame(array.astype(np.float32), columns=INFERENCE_COLUMNS)
        for i in (1, 2):
            r, phi = table[f"cluster_r_{i}"], table[f"cluster_phi_{i}"]
            table[f"cluster_x_{i}"] = (r * np.cos(phi)).astype(np.float32)
            table[f"cluster_y_{i}"] = (r * np.sin(phi)).astype(np.float32)
        table["hit_id"] = np.rint(table["hit_id"]).astype(np.int64)
        table["module_id"] = np.rint(table["module_id"]).astype(np.int32)
        hits = complete_spacepoints(table)
        # complete_spacepoints recomputes cluster r/phi/eta from x/y/z; keep the transmitted values.
        for c in INFERENCE_COLUMNS[8:]:
            hits[c] = table[c].to_numpy(np.float32)
        return cls(hits=hits, particles=None, event_id=event_id)


def select_features(table: pd.DataFrame, columns: Sequence[str], scales: Sequence[float] | None = None) -> np.ndarray:
    """Columns of ``table`` divided by ``scales``, as a C-contiguous float32 array [N, F].

    Raises:
        KeyError: naming every requested column the table lacks.
        ValueError: when ``scales`` has another length than ``columns``.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"feature columns not in the spacepoint table: {missing}")
    values = table[columns].to_numpy(np.float64)
    if scales is not None:
        scales = np.asarray(list(scales), dtype=np.float64)
        if scales.shape != (len(columns),):
            raise ValueError(f"{len(scales)} scales given for {len(columns)} feature columns")
        values = values / scales
    return np.ascontiguousarray(values, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# Parquet storage: one pair of files per event, ``event<9 digits>-hits.parquet`` and
# ``event<9 digits>-particles.parquet``, next to each other in a directory. Event metadata travels in the
# Parquet schema metadata of the hits file.

_EVENT_RE = re.compile(r"event(\d+)-hits\.parquet$")


def event_prefix(directory: str | Path, event_id: int) -> Path:
    return Path(directory) / f"event{event_id:09d}"


def write_event(event: Event, directory: str | Path) -> Path:
    """Write ``event`` as Parquet files in ``directory``; return the file prefix."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    prefix = event_prefix(directory, event.event_id)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(event.hits, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"gnn4itk"] = json.dumps({"event_id": int(event.event_id), **event.meta}, default=str).encode()
    pq.write_table(table.replace_schema_metadata(meta), f"{prefix}-hits.parquet")
    if event.particles is not None:
        pq.write_table(pa.Table.from_pandas(event.particles, preserve_index=False), f"{prefix}-particles.parquet")
    return prefix


def read_event(prefix: str | Path) -> Event:
    """Read an event written by :func:`write_event`; ``prefix`` is ``.../event000000001`` or its hits file."""
    import json

    import pyarrow.parquet as pq

    prefix = str(prefix)
    for suffix in ("-hits.parquet", "-particles.parquet"):
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    hits_path = Path(f"{prefix}-hits.parquet")
    if not hits_path.exists():
        raise FileNotFoundError(f"no event file {hits_path}")
    table = pq.read_table(hits_path)
    meta = json.loads((table.schema.metadata or {}).get(b"gnn4itk", b"{}"))
    event_id = int(meta.pop("event_id", 0))
    particles_path = Path(f"{prefix}-particles.parquet")
    particles = pq.read_table(particles_path).to_pandas() if particles_path.exists() else None
    return Event(hits=table.to_pandas(), particles=particles, event_id=event_id, meta=meta)


def list_events(directory: str | Path) -> list[Path]:
    """Event prefixes in ``directory``, sorted by event number."""
    found = []
    for path in Path(directory).glob("event*-hits.parquet"):
        match = _EVENT_RE.search(path.name)
        if match:
            found.append((int(match.group(1)), Path(str(path)[: -len("-hits.parquet")])))
    return [p for _, p in sorted(found)]


def iter_events(directory: str | Path, limit: int | None = None) -> Iterator[Event]:
    """Stream the events of a directory one at a time (memory stays bounded)."""
    for i, prefix in enumerate(list_events(directory)):
        if limit is not None and i >= limit:
            return
        yield read_event(prefix)

