"""ACTS simulation output (particles, simhits, measurements, measurement->simhit map) -> :class:`Event`.

The input tables use the column names of ACTS's CSV writers, so this one conversion serves both a
simulation run in memory (:mod:`gnn4itk.simulation.fatras`) and files read by :mod:`gnn4itk.io.acts_csv`.

Spacepoints: one per measurement, at the measurement's global position (local smeared coordinates placed
on the module); for the Generic detector cluster 1 = cluster 2 = the spacepoint. Extra columns:
``geometry_id`` (uint64, ACTS), truth ``tx, ty, tz, tt`` [mm] and ``tpx, tpy, tpz`` [GeV] of the simhit
behind the measurement, and ``hit_order`` (int32, the simhit's index along its particle's trajectory,
0 = first; -1 for noise). Noise spacepoints have ``particle_id`` 0 and NaN truth.

Particle ids: the ACTS barcode (vertex primary, vertex secondary, particle, generation, sub-particle)
packed into one positive int64, see :func:`encode_particle_id`; the barcode parts are kept as columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gnn4itk.event import Event, complete_particles, complete_spacepoints

BARCODE_COLUMNS = [f"particle_id_{f}" for f in ("pv", "sv", "part", "gen", "subpart")]
# Bit widths of the packed particle id, most significant first: 12 + 12 + 16 + 8 + 14 = 62 bits.
_BARCODE_BITS = (12, 12, 16, 8, 14)


def encode_particle_id(pv, sv, part, gen, subpart) -> np.ndarray:
    """Pack ACTS barcode parts (int arrays [N]) into positive int64 particle ids [N].

    Layout from the most significant bit: 12 bits vertex primary, 12 vertex secondary, 16 particle,
    8 generation, 14 sub-particle.

    Raises:
        ValueError: if a part is negative or does not fit its bit field.
    """
    packed = np.zeros(len(np.atleast_1d(pv)), dtype=np.int64)
    for name, values, bits in zip(BARCODE_COLUMNS, (pv, sv, part, gen, subpart), _BARCODE_BITS):
        values = np.atleast_1d(np.asarray(values, dtype=np.int64))
        if (values < 0).any() or (values >= (1 << bits)).any():
            raise ValueError(f"barcode part {name} outside [0, 2**{bits}): cannot pack the particle id")
        packed = (packed << bits) | values
    return packed


def decode_particle_id(particle_id) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_particle_id`: barcode parts (int64 [N] each) keyed by column name."""
    packed = np.atleast_1d(np.asarray(particle_id, dtype=np.int64))
    parts = {}
    for name, bits in zip(reversed(BARCODE_COLUMNS), reversed(_BARCODE_BITS)):
        parts[name] = packed & ((1 << bits) - 1)
        packed = packed >> bits
    return {name: parts[name] for name in BARCODE_COLUMNS}


def _particle_ids(table: pd.DataFrame) -> np.ndarray:
    return encode_particle_id(*(table[c].to_numpy() for c in BARCODE_COLUMNS))


def particles_from_acts(particles: pd.DataFrame) -> pd.DataFrame:
    """ACTS particle table -> event-model particle table (before ``nhits`` is counted).

    ``primary`` is true for particles from a collision point that the generator made (vertex secondary 0,
    generation 0); decay products (displaced generator vertices) and Fatras secondaries are not primary.
    """
    table = pd.DataFrame(
        {
            "particle_id": _particle_ids(particles),
            "vx": particles["vx"],
            "vy": particles["vy"],
            "vz": particles["vz"],
            "px": particles["px"],
            "py": particles["py"],
            "pz": particles["pz"],
            "pdgId": particles["particle_type"].astype(np.int32),
            "charge": particles["q"],
            "primary": (particles["particle_id_sv"] == 0) & (particles["particle_id_gen"] == 0),
            "vt": particles["vt"],
            "m": particles["m"],
        }
    )
    for column in BARCODE_COLUMNS:
        table[column] = particles[column].astype(np.int32)
    if table["particle_id"].duplicated().any():
        raise ValueError("the particle table has two particles with the same barcode")
    return table


def spacepoints_from_acts(
    measurements: pd.DataFrame, links: pd.DataFrame, simhits: pd.DataFrame, frames
) -> pd.DataFrame:
    """One spacepoint row per measurement, with its truth from the first simhit linked to it.

    Args:
        measurements: ``measurement_id, geometry_id, local0, local1``.
        links: ``measurement_id, hit_id`` (``hit_id`` = row of ``simhits``).
        simhits: ACTS simhit table (barcode columns, ``tx..te``, ``index``).
        frames: :class:`~gnn4itk.simulation.detector.ModuleFrames` of the detector.
    """
    first = links.sort_values(["measurement_id", "hit_id"], kind="stable").drop_duplicates("measurement_id")
    simhit_row = pd.Series(first["hit_id"].to_numpy(), index=first["measurement_id"].to_numpy())
    rows = simhit_row.reindex(measurements["measurement_id"].to_numpy())
    if rows.isna().any():
        missing = int(measurements["measurement_id"].to_numpy()[rows.isna().to_numpy()][0])
        raise ValueError(f"measurement {missing} has no simhit in the measurement-simhit map")
    truth = simhits.iloc[rows.to_numpy(np.int64)].reset_index(drop=True)
    geometry_id = measurements["geometry_id"].to_numpy(np.uint64)
    if not np.array_equal(geometry_id, truth["geometry_id"].to_numpy(np.uint64)):
        raise ValueError("a measurement and its simhit are on different modules")
    xyz = frames.local_to_global(geometry_id, measurements["local0"], measurements["local1"])
    table = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "geometry_id": geometry_id})
    table["particle_id"] = _particle_ids(truth)
    for column in ("tx", "ty", "tz", "tt", "tpx", "tpy", "tpz"):
        table[column] = truth[column].to_numpy(np.float32)
    table["hit_order"] = truth["index"].to_numpy(np.int32)
    return table


def noise_spacepoints(rng: np.random.Generator, count: int, frames) -> pd.DataFrame:
    """``count`` noise spacepoints, each on a uniformly chosen module at a uniform point of its surface."""
    rows = rng.integers(0, len(frames.geometry_id), size=count)
    local0, local1 = frames.sample_local(rng, rows)
    geometry_id = frames.geometry_id[rows]
    xyz = frames.local_to_global(geometry_id, local0, local1)
    table = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "geometry_id": geometry_id})
    table["particle_id"] = np.zeros(count, dtype=np.int64)
    for column in ("tx", "ty", "tz", "tt", "tpx", "tpy", "tpz"):
        table[column] = np.full(count, np.nan, dtype=np.float32)
    table["hit_order"] = np.full(count, -1, dtype=np.int32)
    return table


def event_from_acts(
    tables: dict,
    event_id: int = 0,
    meta: dict | None = None,
    noise_fraction: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Event:
    """Build an :class:`Event` from ACTS output tables.

    Args:
        tables: dict with DataFrames ``particles``, ``simhits``, ``measurements`` and
            ``measurement_simhit_map`` (ACTS CSV column names).
        event_id: event number.
        meta: provenance stored with the event.
        noise_fraction: add ``round(noise_fraction * measurements)`` noise spacepoints.
        rng: random generator for the noise (required when ``noise_fraction > 0``).

    Returns:
        Event whose spacepoints are sorted by module (geometry id), ``hit_id`` = row + 1, dense
        ``module_id`` from :func:`gnn4itk.geometry.generic_detector`.
    """
    from gnn4itk.geometry import generic_detector as detector_geometry
    from gnn4itk.simulation.detector import module_frames, split_geometry_id

    frames = module_frames()
    spacepoints = spacepoints_from_acts(
        tables["measurements"], tables["measurement_simhit_map"], tables["simhits"], frames
    )
    if noise_fraction < 0 or not np.isfinite(noise_fraction):
        raise ValueError(f"noise fraction must be a finite number >= 0, got {noise_fraction}")
    n_noise = int(round(noise_fraction * len(spacepoints)))
    if n_noise:
        if rng is None:
            raise ValueError("noise spacepoints need a random generator")
        spacepoints = pd.concat([spacepoints, noise_spacepoints(rng, n_noise, frames)], ignore_index=True)
    # Module order, as a detector reads out, then position within the module: row order reveals no truth
    # (noise and secondaries are mixed in).
    order = ["geometry_id", "x", "y", "z"]
    spacepoints = spacepoints.sort_values(order, kind="stable").reset_index(drop=True)
    spacepoints.insert(0, "hit_id", np.arange(1, len(spacepoints) + 1, dtype=np.int64))
    parts = split_geometry_id(spacepoints["geometry_id"].to_numpy())
    spacepoints["volume_id"] = parts["volume"]
    spacepoints["layer_id"] = parts["layer"]
    spacepoints["module_id"] = detector_geometry().module_index_from_geometry_id(
        spacepoints["geometry_id"].to_numpy(np.uint64), strict=True
    )
    hits = complete_spacepoints(spacepoints)
    particles = complete_particles(particles_from_acts(tables["particles"]), hits)
    unknown = ~np.isin(hits["particle_id"].to_numpy(), np.append(particles["particle_id"].to_numpy(), 0))
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} spacepoints belong to particles missing from the particle table")
    meta = dict(meta or {})
    linked = tables["measurement_simhit_map"]["hit_id"].nunique()
    meta["simhits"] = int(len(tables["simhits"]))
    meta["simhits_without_measurement"] = int(len(tables["simhits"]) - linked)  # smeared off the module
    return Event(hits=hits, particles=particles, event_id=int(event_id), meta=meta)
