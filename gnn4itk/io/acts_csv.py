"""Read events written by ACTS's CSV writers (pyacts 48) into :class:`~gnn4itk.event.Event`.

Files of one event in a directory, as ``CsvParticleWriter``, ``CsvSimHitWriter`` and
``CsvMeasurementWriter`` name them (``N`` = event number, 9 digits):

* ``eventN-particles_simulated.csv`` (``acts.examples.simulation.addFatras``) or ``eventN-particles.csv``:
  ``particle_id_{pv,sv,part,gen,subpart}, particle_type, process, vx, vy, vz, vt, px, py, pz, m, q``;
* ``eventN-hits.csv``: the simhits, ``particle_id_*, geometry_id, tx, ty, tz, tt, tpx, tpy, tpz, te,
  deltapx, deltapy, deltapz, deltae, index``;
* ``eventN-measurements.csv``: ``measurement_id, geometry_id, local_key, local0, local1, ...``;
* ``eventN-measurement-simhit-map.csv``: ``measurement_id, hit_id`` (``hit_id`` = row in the hits file).

Measurements hold local module coordinates; they are placed in space with the Generic detector's module
frames (pyacts), exactly as :mod:`gnn4itk.simulation.convert` does for an in-memory simulation, so both
give the same event.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from gnn4itk.event import Event

PARTICLE_STEMS = ("particles_simulated", "particles")
"""Particle files tried in this order: Fatras's output (with secondaries) before the generator's."""

_REQUIRED = {
    "particles": ["particle_id_pv", "particle_id_sv", "particle_id_part", "particle_id_gen",
                  "particle_id_subpart", "particle_type", "vx", "vy", "vz", "vt", "px", "py", "pz", "m", "q"],
    "simhits": ["particle_id_pv", "particle_id_sv", "particle_id_part", "particle_id_gen",
                "particle_id_subpart", "geometry_id", "tx", "ty", "tz", "tt", "tpx", "tpy", "tpz", "index"],
    "measurements": ["measurement_id", "geometry_id", "local0", "local1"],
    "measurement_simhit_map": ["measurement_id", "hit_id"],
}
_EVENT_RE = re.compile(r"^event(\d+)-hits\.csv$")


def _read(path: Path, kind: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"ACTS CSV event file {path} is missing")
    table = pd.read_csv(path)
    missing = [c for c in _REQUIRED[kind] if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing} of an ACTS {kind} file")
    if "geometry_id" in table.columns:
        table["geometry_id"] = table["geometry_id"].astype(np.uint64)
    return table


def acts_csv_event_ids(directory: str | Path) -> list[int]:
    """Event numbers that have an ``eventN-hits.csv`` file in ``directory``, sorted."""
    ids = []
    for path in Path(directory).glob("event*-hits.csv"):
        match = _EVENT_RE.match(path.name)
        if match:
            ids.append(int(match.group(1)))
    return sorted(ids)


def read_acts_csv_tables(directory: str | Path, event_id: int) -> dict[str, pd.DataFrame]:
    """The four ACTS tables of one event (``particles, simhits, measurements, measurement_simhit_map``)."""
    directory = Path(directory)
    prefix = f"event{int(event_id):09d}-"
    for stem in PARTICLE_STEMS:
        particles_path = directory / f"{prefix}{stem}.csv"
        if particles_path.exists():
            break
    else:
        raise FileNotFoundError(
            f"no particle file for event {event_id} in {directory} (tried {[s + '.csv' for s in PARTICLE_STEMS]})"
        )
    return {
        "particles": _read(particles_path, "particles"),
        "simhits": _read(directory / f"{prefix}hits.csv", "simhits"),
        "measurements": _read(directory / f"{prefix}measurements.csv", "measurements"),
        "measurement_simhit_map": _read(directory / f"{prefix}measurement-simhit-map.csv", "measurement_simhit_map"),
    }


def read_acts_csv_event(directory: str | Path, event_id: int = 0) -> Event:
    """Read one event of an ACTS CSV directory (Generic detector) into an Event with full truth.

    Args:
        directory: folder with the ACTS CSV files.
        event_id: event number N of the ``eventN-*.csv`` files.

    Returns:
        Event with spacepoints (one per measurement, at its global position), per-spacepoint truth
        (``particle_id``, ``tx..tpz``, ``hit_order``, ``geometry_id``) and the particle table; columns as
        documented in :mod:`gnn4itk.simulation.convert`.

    Raises:
        FileNotFoundError: a file of the event is missing.
        ValueError: a file lacks required columns, or the tables are inconsistent.
    """
    from gnn4itk.simulation.convert import event_from_acts

    tables = read_acts_csv_tables(directory, event_id)
    meta = {"source": "ACTS CSV", "path": str(directory), "detector": "ACTS Generic detector"}
    return event_from_acts(tables, event_id=event_id, meta=meta)
