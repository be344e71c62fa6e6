"""TrackML CSV events: ``event<9 digits>-{hits,truth,particles,cells}.csv[.gz]`` to and from :class:`Event`.

Spacepoint ``module_id`` becomes the dense module index of a :class:`~gnn4itk.geometry.DetectorGeometry`
(by default the shipped Generic detector, which is the TrackML detector), so TrackML events and pyacts
simulations share module numbers. Truth columns ``particle_id`` (0 = noise), ``weight`` and the true
position/momentum ``tx, ty, tz, tpx, tpy, tpz`` are kept on the spacepoint table. The cells give
GNN4ITk's cluster-shape columns (:data:`~gnn4itk.event.CELL_FEATURE_COLUMNS`, see :func:`cell_features`).

TrackML has no primary flag: a particle is called *primary* when its production vertex lies within
:data:`PRIMARY_MAX_RADIUS` of the beam line and :data:`PRIMARY_MAX_ABS_Z` of the detector centre, i.e.
it comes from a collision vertex (or a decay too short to resolve) rather than a material interaction or
a long-lived decay.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from gnn4itk.event import CELL_FEATURE_COLUMNS, Event, complete_particles, complete_spacepoints
from gnn4itk.geometry import DetectorGeometry, generic_detector

PRIMARY_MAX_RADIUS = 1.0  # mm: beam spot and most c/b decays lie within, the first material at ~30 mm
PRIMARY_MAX_ABS_Z = 300.0  # mm: the luminous region (pile-up vertices) is about ±200 mm long
STRIP_PITCH_RATIO = 4.0  # a module whose cells are this much longer in v than in u is strip-like

FILE_KINDS = ("hits", "truth", "particles", "cells")
TRUTH_HIT_COLUMNS = ["particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz", "weight"]
_PREFIX_RE = re.compile(r"-(hits|truth|particles|cells)\.csv(\.gz)?$")
_EVENT_ID_RE = re.compile(r"event(\d+)$")


def trackml_prefix(path: str | Path) -> Path:
    """``.../event000000001`` from that prefix or from any of its ``-<kind>.csv[.gz]`` files."""
    return Path(_PREFIX_RE.sub("", str(path)))


def trackml_file(prefix: str | Path, kind: str) -> Path | None:
    """The existing ``{prefix}-{kind}.csv`` or ``.csv.gz``, or None."""
    for suffix in (".csv", ".csv.gz"):
        path = Path(f"{prefix}-{kind}{suffix}")
        if path.exists():
            return path
    return None


def is_trackml_event(path: str | Path) -> bool:
    """True when ``path`` is a TrackML event prefix or one of its files (a hits file exists)."""
    return trackml_file(trackml_prefix(path), "hits") is not None


def _resolve_geometry(geometry) -> DetectorGeometry:
    if geometry is None:
        return generic_detector()
    if isinstance(geometry, DetectorGeometry):
        return geometry
    return DetectorGeometry.from_trackml_detectors(geometry)


def _spherical_eta_phi(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles of vectors [N, 3] as Athena's DumpObjects writes them: ``log(tan(theta/2))`` and ``atan2(y, x)``.

    Note the sign: Athena's cluster ``*_eta`` is ``+log(tan(theta/2))``, minus the usual pseudorapidity.
    GNN4ITk models were trained on that convention, so it is kept.
    """
    norm = np.linalg.norm(vectors, axis=1)
    cos_theta = np.divide(vectors[:, 2], norm, out=np.ones_like(norm), where=norm > 0)
    theta = np.arccos(np.clip(cos_theta, -1.0, 1.0))
    with np.errstate(divide="ignore"):
        eta = np.log(np.tan(0.5 * theta))
    return np.where(np.isfinite(eta), eta, 0.0), np.arctan2(vectors[:, 1], vectors[:, 0])


def cell_features(hit_ids, module_index, cells: pd.DataFrame, geometry: DetectorGeometry) -> pd.DataFrame:
    """GNN4ITk cluster-shape features of TrackML hits from their cells.

    Follows Athena's ``InDetGNNTracking/DumpObjects``: the cluster is the box from the lower corner of its
    first cell on the module's back face to the upper corner of its last cell on the front face. With
    ``du = n_u * pitch_u``, ``dv = n_v * pitch_v`` (``n`` = cells spanned along each axis) and thickness
    ``t`` (v is TrackML's along-strip, eta-like axis, u the phi-like one):

    * ``count``: cells in the cluster; ``charge_count``: sum of the cells' ``value``.
    * ``localDir0, localDir1, localDir2`` = ``(dv, du, t)``, Athena's (eta, phi, normal) order [mm].
    * ``loc_eta, loc_phi``: ``log(tan(theta/2))`` and ``atan2(du, dv)`` of that local vector.
    * ``glob_eta, glob_phi``: the same angles of the vector turned to global coordinates,
      ``R @ (du, dv, t)``.
    * ``eta_angle = atan2(t, dv)``, ``phi_angle = atan2(t, du)``: the vector's incidence angles.
    * ``lengthDir0..2``: Athena's strip direction. For strip-like modules (``pitch_v`` over
      :data:`STRIP_PITCH_RATIO` times ``pitch_u``) it is the global vector along one cell's length,
      ``pitch_v`` times the global v axis; pixel modules have 0, as in Athena.

    Hits without cells get ``count = 0`` and 0 in every other column (no NaN).

    Args:
        hit_ids: int64 array [N], the hits to describe.
        module_index: int32 array [N], their dense module indices in ``geometry``.
        cells: DataFrame with ``hit_id, ch0, ch1, value`` (one row per cell).
        geometry: the detector, for pitches, thickness and rotations.

    Returns:
        DataFrame [N, 14] with :data:`~gnn4itk.event.CELL_FEATURE_COLUMNS`, float32, in ``hit_ids`` order.
    """
    missing = [c for c in ("hit_id", "ch0", "ch1", "value") if c not in cells.columns]
    if missing:
        raise ValueError(f"cells table lacks columns {missing}")
    hit_ids = np.asarray(hit_ids, dtype=np.int64)
    grouped = cells.groupby("hit_id").agg(
        count=("value", "size"),
        charge_count=("value", "sum"),
        u_min=("ch0", "min"),
        u_max=("ch0", "max"),
        v_min=("ch1", "min"),
        v_max=("ch1", "max"),
    )
    per_hit = grouped.reindex(hit_ids)
    has_cells = per_hit["count"].notna().to_numpy()
    per_hit = per_hit.fillna(0)

    sizes = geometry.module_sizes(module_index)
    pitch_u, pitch_v, thickness = (sizes[c].to_numpy(np.float64) for c in ("pitch_u", "pitch_v", "module_t"))
    du = (per_hit["u_max"].to_numpy() - per_hit["u_min"].to_numpy() + 1) * pitch_u
    dv = (per_hit["v_max"].to_numpy() - per_hit["v_min"].to_numpy() + 1) * pitch_v
    local_uvw = np.stack([du, dv, thickness], axis=1)
    rotations = geometry.module_rotations(module_index)
    global_dir = np.einsum("nij,nj->ni", rotations, local_uvw)
    local_dir = local_uvw[:, [1, 0, 2]]  # Athena order: eta (v), phi (u), normal (w)

    loc_eta, loc_phi = _spherical_eta_phi(local_dir)
    glob_eta, glob_phi = _spherical_eta_phi(global_dir)
    strip_like = pitch_v > STRIP_PITCH_RATIO * pitch_u
    length_dir = np.where(strip_like[:, None], rotations[:, :, 1] * pitch_v[:, None], 0.0)

    out = pd.DataFrame(
        {
            "count": per_hit["count"].to_numpy(),
            "charge_count": per_hit["charge_count"].to_numpy(),
            "loc_eta": loc_eta,
            "loc_phi": loc_phi,
            **{f"localDir{i}": local_dir[:, i] for i in range(3)},
            **{f"lengthDir{i}": length_dir[:, i] for i in range(3)},
            "glob_eta": glob_eta,
            "glob_phi": glob_phi,
            "eta_angle": np.arctan2(thickness, dv),
            "phi_angle": np.arctan2(thickness, du),
        }
    )
    out.loc[~has_cells, :] = 0.0  # documented default for hits the cells file does not describe
    return out[CELL_FEATURE_COLUMNS].astype(np.float32)


def _read_particles(path: Path, hits: pd.DataFrame) -> pd.DataFrame:
    particles = pd.read_csv(path)
    required = ("particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz", "q")
    missing = [c for c in required if c not in particles.columns]
    if missing:
        raise ValueError(f"{path} lacks particle columns {missing}")
    particles = particles.drop(columns=["nhits"], errors="ignore")  # recounted for this spacepoint table
    particles = particles.rename(columns={"particle_type": "pdgId", "q": "charge"})
    radius = np.hypot(particles["vx"].to_numpy(np.float64), particles["vy"].to_numpy(np.float64))
    particles["primary"] = (radius < PRIMARY_MAX_RADIUS) & (particles["vz"].abs().to_numpy() < PRIMARY_MAX_ABS_Z)
    return complete_particles(particles, hits)


def read_trackml_event(prefix: str | Path, geometry=None, cells: bool = True) -> Event:
    """Read one TrackML event into an :class:`Event`.

    Args:
        prefix: ``.../event000000001`` or any of its files; ``-hits`` is required, ``-truth``,
            ``-particles`` and ``-cells`` are read when present (``.csv`` or ``.csv.gz``).
        geometry: :class:`DetectorGeometry`, a path to a TrackML ``detectors.csv``, or None for the
            shipped Generic detector (the TrackML detector).
        cells: add the cluster-shape columns when a cells file exists.

    Returns:
        Event whose ``hits`` have the event-model columns, ``module_id`` = dense index, and when the files
        exist the cell-feature columns and ``particle_id, tx, ty, tz, tpx, tpy, tpz, weight``.

    Raises:
        FileNotFoundError: without a hits file. ValueError: for hits on modules the geometry lacks, or
        a truth file that does not describe every hit.
    """
    prefix = trackml_prefix(prefix)
    hits_path = trackml_file(prefix, "hits")
    if hits_path is None:
        raise FileNotFoundError(f"no TrackML hits file {prefix}-hits.csv[.gz]")
    geometry = _resolve_geometry(geometry)
    hits = pd.read_csv(hits_path)
    missing = [c for c in ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id") if c not in hits.columns]
    if missing:
        raise ValueError(f"{hits_path} lacks hit columns {missing}")
    try:
        dense = geometry.module_index_from_trackml(hits["volume_id"], hits["layer_id"], hits["module_id"], strict=True)
    except ValueError as error:
        raise ValueError(f"{hits_path}: {error} ({geometry!r})") from None
    hits = hits.drop(columns=["module_id"]).assign(module_id=dense)

    cells_path = trackml_file(prefix, "cells") if cells else None
    if cells_path is not None:
        features = cell_features(hits["hit_id"].to_numpy(), dense, pd.read_csv(cells_path), geometry)
        hits = pd.concat([hits.reset_index(drop=True), features], axis=1)

    truth_path = trackml_file(prefix, "truth")
    if truth_path is not None:
        truth = pd.read_csv(truth_path)
        missing = [c for c in ["hit_id", *TRUTH_HIT_COLUMNS] if c not in truth.columns]
        if missing:
            raise ValueError(f"{truth_path} lacks truth columns {missing}")
        hits = hits.merge(truth[["hit_id", *TRUTH_HIT_COLUMNS]], on="hit_id", how="left", validate="one_to_one")
        if hits["particle_id"].isna().any():
            raise ValueError(f"{truth_path} does not describe {int(hits['particle_id'].isna().sum())} hits")
        for col in TRUTH_HIT_COLUMNS[1:]:
            hits[col] = hits[col].astype(np.float32)
    hits = complete_spacepoints(hits)

    particles = None
    particles_path = trackml_file(prefix, "particles")
    if particles_path is not None and truth_path is not None:
        particles = _read_particles(particles_path, hits)
    match = _EVENT_ID_RE.search(prefix.name)
    meta = {"source": "trackml", "detector": geometry.name, "path": str(prefix)}
    return Event(hits=hits, particles=particles, event_id=int(match.group(1)) if match else 0, meta=meta)


def write_trackml_event(event: Event, directory: str | Path, geometry=None, compress: bool = False) -> Path:
    """Write ``event`` as TrackML CSV files (hits; truth and particles when it has truth).

    TrackML module ids come from the dense ``module_id`` through ``geometry`` (the reverse lookup), so
    the geometry must be the one the event was read or simulated with. Cells cannot be rebuilt from
    cluster features and are not written. Truth columns the table lacks are filled: ``tx, ty, tz`` with
    the spacepoint position, ``tpx, tpy, tpz`` with 0, ``weight`` with the challenge weights computed by
    :func:`gnn4itk.metrics.trackml_weights`.

    Returns:
        The event prefix ``{directory}/event{event_id:09d}``.
    """
    geometry = _resolve_geometry(geometry)
    prefix = Path(directory) / f"event{event.event_id:09d}"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if compress else ".csv"
    hits = event.hits
    volume, layer, module = geometry.trackml_from_module_index(hits["module_id"].to_numpy())
    out = hits[["hit_id", "x", "y", "z"]].assign(volume_id=volume, layer_id=layer, module_id=module)
    out.to_csv(f"{prefix}-hits{suffix}", index=False)
    if not event.has_truth:
        return prefix

    truth = pd.DataFrame({"hit_id": hits["hit_id"], "particle_id": hits["particle_id"]})
    defaults = {"tx": hits["x"], "ty": hits["y"], "tz": hits["z"], "tpx": 0.0, "tpy": 0.0, "tpz": 0.0}
    for col, default in defaults.items():
        truth[col] = hits[col] if col in hits.columns else default
    if "weight" in hits.columns:
        truth["weight"] = hits["weight"]
    else:
        from gnn4itk.metrics import trackml_weights

        truth["weight"] = trackml_weights(event)
    truth.to_csv(f"{prefix}-truth{suffix}", index=False)

    p = event.particles
    particles = pd.DataFrame(
        {
            "particle_id": p["particle_id"],
            "particle_type": p["pdgId"],
            **{c: p[c] for c in ("vx", "vy", "vz", "px", "py", "pz")},
            "q": np.rint(p["charge"].to_numpy()).astype(np.int64),
            "nhits": p["nhits"],
        }
    )
    particles.to_csv(f"{prefix}-particles{suffix}", index=False)
    return prefix
