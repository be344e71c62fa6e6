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


# ------------------------------------------------------------------------------------------------
# An event where acorn's three matching styles disagree (docs/metrics.md, "Matching styles")


def styles_event() -> Event:
    """Targets A (id 1, 12 spacepoints), B (2, 6), C (3, 7), D (4, 10), E (5, 8); F (6, 6 spacepoints) is
    no target (pT 0.5 GeV); 5 noise spacepoints. Tracks: :func:`styles_tracks`."""
    return build_event(
        [particle(1, 12), particle(2, 6), particle(3, 7), particle(4, 10), particle(5, 8), particle(6, 6, pt=0.5)],
        n_noise=5,
    )


def styles_tracks(event: Event) -> list[np.ndarray]:
    """Eight tracks, seven of them candidates (>= 5 spacepoints); majority = strictly more than half.

    ====  ========================  ====  ========================================  ==========================
    track spacepoints               len   purity / completeness of the pairs        matched (fake rate) /
                                                                                     reconstructs (efficiency)
    ====  ========================  ====  ========================================  ==========================
    T1    A[0:6]                    6     A 6/6 / 6/12 (= 1/2, not more)            ATLAS, one_way / ATLAS
    T2    A[6:12]                   6     A 6/6 / 6/12                              ATLAS, one_way / ATLAS
    T3    B (all 6) + C (all 7)     13    B 6/13 / 6/6; C 7/13 / 7/7                all: C / ATLAS: C;
                                                                                     one_way: B and C; two_way: C
    T4    D[0:6]                    6     D 6/6 / 6/10                              all: D / all: D
    T5    D[4:10] (shares D[4:6])   6     D 6/6 / 6/10                              all: D / all: D
    T6    E[0:5] + 5 noise          10    E 5/10 (= 1/2, not more) / 5/8            none / one_way: E
    T7    F (all 6, no target)      6     F 6/6 / 6/6                               all: F / (F is no target)
    T8    E[5:8]                    3     no candidate (< 5 spacepoints)            ignored
    ====  ========================  ====  ========================================  ==========================

    Expected (targets A-E = 5, candidates T1-T7 = 7):

    * ATLAS: matched T1 T2 T3 T4 T5 T7 = 6, fake rate 1/7; reconstructed A (T1, T2), C (T3), D (T4, T5):
      efficiency 3/5, 5 pairs -> duplicate rate (5 - 3) / 3 = 2/3.
    * one_way: matched as ATLAS, fake rate 1/7; reconstructed B (T3), C (T3), D (T4, T5), E (T6):
      efficiency 4/5, 5 pairs -> duplicate rate (5 - 4) / 4 = 1/4.
    * two_way: matched T3 T4 T5 T7 = 4, fake rate 3/7; reconstructed C (T3), D (T4, T5): efficiency 2/5,
      3 pairs -> duplicate rate (3 - 2) / 2 = 1/2.
    """
    a, b, c, d, e, f = (rows_of(event, pid) for pid in range(1, 7))
    noise = np.flatnonzero(event.hits["particle_id"].to_numpy() == 0)
    return [
        a[:6],
        a[6:],
        np.concatenate([b, c]),
        d[:6],
        d[4:],
        np.concatenate([e[:5], noise]),
        f,
        e[5:],
    ]


STYLES_EXPECTED = {
    # style: (efficiency, fake rate, duplicate rate, reconstructed, matched tracks, duplicate tracks)
    "ATLAS": (3 / 5, 1 / 7, 2 / 3, 3, 6, 2),
    "one_way": (4 / 5, 1 / 7, 1 / 4, 4, 6, 1),
    "two_way": (2 / 5, 3 / 7, 1 / 2, 2, 4, 1),
}
"""What :func:`styles_tracks` gives on :func:`styles_event` in each style (5 targets, 7 candidates)."""
