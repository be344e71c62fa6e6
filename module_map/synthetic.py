"""Synthetic events with truth, without a full simulation: the package's one event generator.

Charged particles follow ideal helices in a 2 T solenoid through detector surfaces (:class:`Surface`:
cylinders and disks, each with a (phi, z) or (phi, r) grid of module ids); a crossing is a spacepoint on
the module of its grid cell. Two detectors and particle mixes, for two uses:

* :func:`synthetic_event` -- the Generic detector (``gnn4itk/data/generic_detector.parquet``): barrel
  layers as cylinders, endcap layers as disks, at the mean radius / z of their modules, each grid cell
  assigned to the module whose centre is nearest. Pions from a luminous region; ``mu`` sets the particle
  count at 70 charged particles per unit of pile-up (mu=200: ~140k spacepoints). No material, no noise,
  no smearing: a stand-in for ``gnn4itk simulate`` with the right module granularity and occupancy, for
  developing and benchmarking the module map and the pipeline, not physics.
* :func:`toy_event` -- a tiny toy detector (:func:`toy_surfaces`: ten barrel cylinders, TrackML-like
  radii) crossed by muons from the beam line, smeared, with noise spacepoints: tests and CPU smoke
  runs of training (``{toy: {count, n_particles, seed}}`` in a training configuration).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gnn4itk.event import Event, complete_particles, complete_spacepoints

GEOMETRY_FILE = Path(__file__).resolve().parents[1] / "gnn4itk" / "data" / "generic_detector.parquet"
B_FIELD = 2.0  # tesla
PARTICLES_PER_MU = 70


@dataclass
class Surface:
    barrel: bool
    position: float  # radius (barrel) or z (disk), mm
    low: float  # z range (barrel) or r range (disk)
    high: float
    grid: np.ndarray  # int32 [n_phi, n_other] module index of each grid cell
    volume_id: int
    layer_id: int


@functools.lru_cache(maxsize=2)
def detector_surfaces(path: str = str(GEOMETRY_FILE), n_phi: int = 512, n_other: int = 128) -> tuple:
    """The layers of the module table as cylinders / disks with nearest-module lookup grids."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of small cdist calls: threading only adds overhead
    try:
        return _build_surfaces(path, n_phi, n_other)
    finally:
        torch.set_num_threads(threads)


def _build_surfaces(path: str, n_phi: int, n_other: int) -> tuple:
    table = pd.read_parquet(path, columns=["module_index", "cx", "cy", "cz", "module_hv", "module_maxhu",
                                           "volume_id", "layer_id"])
    table["r"] = np.hypot(table.cx, table.cy)
    surfaces = []
    for (volume, layer), mods in table.groupby(["volume_id", "layer_id"]):
        size = float(max(mods.module_hv.max(), mods.module_maxhu.max()))
        barrel = mods.r.max() - mods.r.min() < 10
        if barrel:
            position, low, high = mods.r.mean(), mods.cz.min() - size, mods.cz.max() + size
        else:
            position, low, high = mods.cz.mean(), max(mods.r.min() - size, 0.0), mods.r.max() + size
        phi = (np.arange(n_phi) + 0.5) * (2 * math.pi / n_phi) - math.pi
        other = low + (np.arange(n_other) + 0.5) * ((high - low) / n_other)
        pp, oo = np.meshgrid(phi, other, indexing="ij")
        if barrel:
            cells = np.stack([position * np.cos(pp), position * np.sin(pp), oo], axis=-1)
        else:
            cells = np.stack([oo * np.cos(pp), oo * np.sin(pp), np.full_like(oo, position)], axis=-1)
        grid = _nearest_module_grid(mods, cells, phi, size / max(position if barrel else low, 1.0))
        surfaces.append(Surface(bool(barrel), float(position), float(low), float(high), grid, int(volume), int(layer)))
    return tuple(surfaces)


def _nearest_module_grid(mods, cells: np.ndarray, phi: np.ndarray, margin: float, sectors: int = 64) -> np.ndarray:
    """Nearest module centre of every grid cell, searching only modules within a phi sector + margin."""
    centres = mods[["cx", "cy", "cz"]].to_numpy()
    centre_phi = np.arctan2(centres[:, 1], centres[:, 0])
    n_phi = len(phi)
    per_sector = max(n_phi // sectors, 1)
    grid = np.empty(cells.shape[:2], dtype=np.int32)
    index = mods.module_index.to_numpy(np.int32)
    for start in range(0, n_phi, per_sector):
        middle = phi[start : start + per_sector].mean()
        half = (phi[1] - phi[0]) * per_sector / 2
        gap = np.abs(np.angle(np.exp(1j * (centre_phi - middle))))
        near = np.flatnonzero(gap <= half + 2 * margin + 1e-3)
        if len(near) == 0:
            near = np.arange(len(centres))
        block = torch.tensor(cells[start : start + per_sector].reshape(-1, 3), dtype=torch.float32)
        best = torch.cdist(block, torch.tensor(centres[near], dtype=torch.float32)).argmin(1).numpy()
        grid[start : start + per_sector] = index[near[best]].reshape(-1, cells.shape[1])
    return grid


def _module_of(surface: Surface, phi: np.ndarray, other: np.ndarray) -> np.ndarray:
    n_phi, n_other = surface.grid.shape
    i = np.clip(((phi + math.pi) / (2 * math.pi) * n_phi).astype(np.int64), 0, n_phi - 1)
    j = np.clip(((other - surface.low) / (surface.high - surface.low) * n_other).astype(np.int64), 0, n_other - 1)
    return surface.grid[i, j]


def generate_particles(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Pions with a falling pT spectrum (Pareto, pT >= 0.15 GeV, ~6% above 1 GeV), |eta| < 4."""
    pt = np.minimum(0.15 * rng.random(n) ** (-1 / 1.5), 100.0)
    eta = rng.uniform(-4, 4, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    charge = rng.choice([-1.0, 1.0], n)
    return pd.DataFrame({
        "particle_id": np.arange(1, n + 1, dtype=np.int64),
        "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
        "vx": rng.normal(0, 0.015, n), "vy": rng.normal(0, 0.015, n), "vz": rng.normal(0, 45.0, n),
        "pdgId": (211 * charge).astype(np.int32), "charge": charge, "primary": True,
    })


def propagate(particles: pd.DataFrame, surfaces) -> pd.DataFrame:
    """Crossings of every particle's outgoing half-turn with every surface: one hit per crossing."""
    px, py, pz = (particles[c].to_numpy() for c in ("px", "py", "pz"))
    vx, vy, vz = (particles[c].to_numpy() for c in ("vx", "vy", "vz"))
    q = particles["charge"].to_numpy()
    pt = np.hypot(px, py)
    rho = pt / (0.3 * B_FIELD) * 1000.0  # mm
    sense = -q  # positive charges turn clockwise in a +z field
    cx = vx + rho * sense * (-py / pt)
    cy = vy + rho * sense * (px / pt)
    u0_angle = np.arctan2(vy - cy, vx - cx)
    dz_dpsi = rho * pz / pt
    centre_dist = np.hypot(cx, cy)
    centre_angle = np.arctan2(cy, cx)
    found = []
    for surface in surfaces:
        if surface.barrel:
            k = (surface.position**2 - centre_dist**2 - rho**2) / (2 * centre_dist * rho)
            ok = np.abs(k) <= 1
            a = np.arccos(np.clip(k, -1, 1))
            theta0 = u0_angle - centre_angle
            psi = np.minimum(np.mod(sense * (a - theta0), 2 * math.pi), np.mod(sense * (-a - theta0), 2 * math.pi))
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                psi = (surface.position - vz) / dz_dpsi
            ok = np.isfinite(psi) & (psi > 0)
        ok &= psi <= math.pi
        angle = u0_angle + sense * psi
        x = cx + rho * np.cos(angle)
        y = cy + rho * np.sin(angle)
        z = vz + dz_dpsi * psi
        other = z if surface.barrel else np.hypot(x, y)
        ok &= (other >= surface.low) & (other <= surface.high)
        rows = np.flatnonzero(ok)
        module = _module_of(surface, np.arctan2(y[rows], x[rows]), other[rows])
        found.append(pd.DataFrame({
            "particle_id": particles["particle_id"].to_numpy()[rows], "x": x[rows], "y": y[rows], "z": z[rows],
            "module_id": module, "volume_id": surface.volume_id, "layer_id": surface.layer_id, "psi": psi[rows],
        }))
    hits = pd.concat(found, ignore_index=True).sort_values(["particle_id", "psi"], kind="stable")
    return hits.drop(columns="psi").reset_index(drop=True)


def synthetic_event(mu: float = 200, seed: int = 0, event_id: int = 0, n_particles: int | None = None) -> Event:
    """One synthetic event with truth (hit order is shuffled, as a real reader would give it)."""
    rng = np.random.default_rng(seed)
    n = int(n_particles if n_particles is not None else round(mu * PARTICLES_PER_MU))
    particles = generate_particles(n, rng)
    hits = propagate(particles, detector_surfaces())
    hits = hits.iloc[rng.permutation(len(hits))].reset_index(drop=True)
    hits.insert(0, "hit_id", np.arange(1, len(hits) + 1, dtype=np.int64))
    hits = complete_spacepoints(hits)
    particles = complete_particles(particles, hits)
    return Event(hits=hits, particles=particles, event_id=event_id,
                 meta={"generator": "module_map.synthetic", "mu": mu, "seed": seed})


def synthetic_events(count: int, mu: float = 200, seed: int = 0, n_particles: int | None = None):
    """A stream of ``count`` independent synthetic events (seeds ``seed .. seed+count-1``)."""
    for i in range(count):
        yield synthetic_event(mu=mu, seed=seed + i, event_id=seed + i, n_particles=n_particles)


# ------------------------------------------------------------------------------------------------
# The toy detector

TOY_LAYER_RADII = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0])
TOY_HALF_LENGTH = 1100.0
_FIELD_FACTOR = 0.3 * B_FIELD  # GeV per (T m): helix radius [m] = pT / (0.3 B)


@functools.lru_cache(maxsize=1)
def toy_surfaces() -> tuple:
    """The toy detector: ten barrel cylinders (``TOY_LAYER_RADII``, |z| < 1100 mm, volume 8, layers 0-9),
    each of 64 phi sectors x 10 z slices; the module of (layer, sector, slice) is
    ``layer * 640 + sector * 10 + slice``."""
    cells = np.arange(64)[:, None] * 10 + np.arange(10)[None, :]
    return tuple(
        Surface(True, float(radius), -TOY_HALF_LENGTH, TOY_HALF_LENGTH, (layer * 640 + cells).astype(np.int32), 8, layer)
        for layer, radius in enumerate(TOY_LAYER_RADII)
    )


def toy_event(
    n_particles: int = 50, seed: int = 0, event_id: int = 0, noise_fraction: float = 0.05, smear: float = 0.05
) -> Event:
    """One toy event with truth: the particles' crossings of the toy detector (:func:`toy_surfaces`)
    inside |z| < 1100 mm, smeared by ``smear`` mm, plus noise spacepoints.

    Args:
        n_particles: particles generated (muons, pT log-uniform in [0.5, 10] GeV, |eta| < 2, vz ~ N(0, 30 mm)).
        seed: random seed (the event is a pure function of its arguments).
        event_id: the event's id.
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

    # Crossings of a helix from the beam line: the smearing draws interleave with them, particle by
    # particle and layer by layer (the order fixes each seed's event).
    rows = []
    for i in range(n_particles):
        reach = TOY_LAYER_RADII < 2 * radius_mm[i]  # loopers do not reach the outer layers
        rho = TOY_LAYER_RADII[reach]
        half_angle = np.arcsin(rho / (2 * radius_mm[i]))
        phi = phi0[i] - charge[i] * half_angle
        z = vz[i] + 2 * radius_mm[i] * half_angle * pz[i] / pt[i]
        inside = np.abs(z) < TOY_HALF_LENGTH
        for layer, r_l, p, zz in zip(np.flatnonzero(reach)[inside], rho[inside], phi[inside], z[inside]):
            p = p + rng.normal(0.0, smear / r_l)
            zz = zz + rng.normal(0.0, smear)
            rows.append((i + 1, layer, r_l * np.cos(p), r_l * np.sin(p), zz))
    n_noise = int(noise_fraction * len(rows))
    for _ in range(n_noise):
        layer = int(rng.integers(len(TOY_LAYER_RADII)))
        p, zz = rng.uniform(-np.pi, np.pi), rng.uniform(-TOY_HALF_LENGTH, TOY_HALF_LENGTH)
        rows.append((0, layer, TOY_LAYER_RADII[layer] * np.cos(p), TOY_LAYER_RADII[layer] * np.sin(p), zz))
    table = pd.DataFrame(rows, columns=["particle_id", "layer_id", "x", "y", "z"])
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # no truth in the row order
    phi, z, layer = np.arctan2(table["y"], table["x"]).to_numpy(), table["z"].to_numpy(), table["layer_id"].to_numpy()
    module = np.zeros(len(table), dtype=np.int32)
    for surface in toy_surfaces():
        rows_on = np.flatnonzero(layer == surface.layer_id)
        module[rows_on] = _module_of(surface, phi[rows_on], z[rows_on])
    table["module_id"] = module
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
