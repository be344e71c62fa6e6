"""Hand-made events with known tracking answers, shared by the metrics and evaluate-CLI tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gnn4itk.event import Event, complete_particles, complete_spacepoints


def particle(pid, nhits, pt=2.0, eta=0.5, pdg=13, primary=True, radius=0.0, phi=None):
    """One particle spec: ``nhits`` spacepoints on a straight line out of its vertex."""
    return dict(pid=pid, nhits=nhits, pt=pt, eta=eta, pdg=pdg, primary=primary, radius=radius, phi=phi)


def build_event(specs, n_noise: int = 0, weights: dict | None = None, event_id: int = 1) -> Event:
    """Event whose rows are the particles' spacepoints in spec order (inner to outer), then noise.

    Args:
        specs: list of :func:`particle` dicts.
        n_noise: noise spacepoints appended at the end (particle_id 0).
        weights: optional ``{particle_id: [w per spacepoint]}``; when given a ``weight`` column is added
            (noise gets 0).
    """
    hit_rows, particle_rows, weight_column = [], [], []
    for index, spec in enumerate(specs):
        phi = 0.7 * index if spec["phi"] is None else spec["phi"]
        for k in range(spec["nhits"]):
            r = 40.0 * (k + 1)
            hit_rows.append(
                dict(
                    x=spec["radius"] + r * np.cos(phi),
                    y=r * np.sin(phi),
                    z=r * np.sinh(spec["eta"]),
                    particle_id=spec["pid"],
                )
            )
        weight_column += list((weights or {}).get(spec["pid"], [0.0] * spec["nhits"]))
        particle_rows.append(
            dict(
                particle_id=spec["pid"],
                px=spec["pt"] * np.cos(phi),
                py=spec["pt"] * np.sin(phi),
                pz=spec["pt"] * np.sinh(spec["eta"]),
                vx=spec["radius"],
                vy=0.0,
                vz=0.0,
                pdgId=spec["pdg"],
                charge=-1.0,
                primary=spec["primary"],
            )
        )
    rng = np.random.default_rng(7)
    for _ in range(n_noise):
        hit_rows.append(dict(x=rng.uniform(50, 900), y=rng.uniform(50, 900), z=rng.uniform(-900, 900), particle_id=0))
        weight_column.append(0.0)
    hits = pd.DataFrame(hit_rows)
    hits["hit_id"] = np.arange(1, len(hits) + 1)
    hits["module_id"] = np.arange(len(hits)) % 97
    if weights is not None:
        hits["weight"] = weight_column
    hits = complete_spacepoints(hits)
    return Event(hits=hits, particles=complete_particles(pd.DataFrame(particle_rows), hits), event_id=event_id)


def rows_of(event: Event, pid: int) -> np.ndarray:
    """Row indices of a particle's spacepoints, inner to outer."""
    return np.flatnonzero(event.hits["particle_id"].to_numpy() == pid)
