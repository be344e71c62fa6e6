"""Tiny helix-track events for tests and CPU smoke runs (no simulator needed).

Charged particles from the beam line cross ten barrel cylinders (TrackML-like radii) in a 2 T field;
every crossing inside |z| < 1100 mm is a spacepoint, smeared by ``smear`` mm. Modules are 64 phi
sectors x 10 z slices per layer. A fraction of random noise spacepoints can be added.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gnn4itk.event import Event, complete_particles, complete_spacepoints

LAYER_RADII = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0])
HALF_LENGTH = 1100.0
_FIELD_FACTOR = 0.3 * 2.0  # GeV per (T m): helix radius [m] = pT / (0.3 B)


def toy_event(n_particles: int = 50, seed: int = 0, event_id: int = 0, noise_fraction: float = 0.05, smear: float = 0.05) -> Event:
    """One toy event with truth.

    Args:
        n_particles: particles generated (pT log-uniform in [0.5, 10] GeV, |eta| < 2, vz ~ N(0, 30 mm)).
        seed: random seed (the event is a pure function of its arguments).
        noise_fraction: noise spacepoints added, as a fraction of the particle spacepoints.
        smear: Gaussian position smearing [mm] along phi and z.
    """
    rng = np.random.default_rng(seed)
    pt = np.exp(rng.uniform(np.log(0.5), np.log(10.0), n_particles))
    eta = rng.uniform(-2.0, 2.0, n_particles)
    phi0 = rng.uniform(-np.pi, np.pi, n_particles)
    charge = rng.choice([-1.0, 1.0], n_particles)
    vz = rng.normal(0.0, 30.0, n_particles)
    radius_mm = pt / _FIELD_FACTOR * 1000.0
    pz = pt * np.sinh(eta)

    rows = []
    for i in range(n_particles):
        reach = LAYER_RADII < 2 * radius_mm[i]  # loopers do not reach the outer layers
        rho = LAYER_RADII[reach]
        half_angle = np.arcsin(rho / (2 * radius_mm[i]))
        phi = phi0[i] - charge[i] * half_angle
        z = vz[i] + 2 * radius_mm[i] * half_angle * pz[i] / pt[i]
        inside = np.abs(z) < HALF_LENGTH
        for layer, r_l, p, zz in zip(np.flatnonzero(reach)[inside], rho[inside], phi[inside], z[inside]):
            p = p + rng.normal(0.0, smear / r_l)
            zz = zz + rng.normal(0.0, smear)
            rows.append((i + 1, layer, r_l * np.cos(p), r_l * np.sin(p), zz))
    n_noise = int(noise_fraction * len(rows))
    for _ in range(n_noise):
        layer = int(rng.integers(len(LAYER_RADII)))
        p, zz = rng.uniform(-np.pi, np.pi), rng.uniform(-HALF_LENGTH, HALF_LENGTH)
        rows.append((0, layer, LAYER_RADII[layer] * np.cos(p), LAYER_RADII[layer] * np.sin(p), zz))
    table = pd.DataFrame(rows, columns=["particle_id", "layer_id", "x", "y", "z"])
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # no truth in the row order
    sector = np.floor((np.arctan2(table["y"], table["x"]) + np.pi) / (2 * np.pi) * 64).clip(0, 63).astype(int)
    z_slice = np.floor((table["z"] + HALF_LENGTH) / (2 * HALF_LENGTH) * 10).clip(0, 9).astype(int)
    table["module_id"] = (table["layer_id"] * 640 + sector * 10 + z_slice).astype(np.int32)
    table["volume_id"] = 8
    table["hit_id"] = np.arange(1, len(table) + 1)
    hits = complete_spacepoints(table)

    particles = pd.DataFrame(
        {
            "particle_id": np.arange(1, n_particles + 1),
            "px": pt * np.cos(phi0),
            "py": pt * np.sin(phi0),
            "pz": pz,
            "vx": 0.0,
            "vy": 0.0,
            "vz": vz,
            "pdgId": (-13 * charge).astype(int),
            "charge": charge,
            "primary": True,
        }
    )
    return Event(hits=hits, particles=complete_particles(particles, hits), event_id=event_id, meta={"generator": "toy"})


def toy_events(count: int, n_particles: int = 50, seed: int = 0, **kwargs) -> list[Event]:
    """``count`` toy events with seeds ``seed, seed + 1, ...`` and event ids ``0 .. count - 1``."""
    return [toy_event(n_particles, seed + i, event_id=i, **kwargs) for i in range(count)]
