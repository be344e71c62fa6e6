"""Synthetic mu=200-like scored graphs for track-building tests and benchmarks.

Helices from the beam line cross 10 barrel layers at TrackML-like radii in a 2 T field; some hits are
missing, some layers are hit twice (module overlaps: true junctions), and noise hits are added. Edges
are module-map-like candidates between neighbouring layers (and one-layer skips) inside phi/z windows,
plus every true consecutive pair. Scores imitate a GNN: true edges high, fake edges low with a tail.
With the defaults: ~140k hits and ~1M edges before ``cc_cut``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LAYER_RADII = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0])
"""Barrel layer radii [mm] (TrackML pixel, short-strip and long-strip barrels)."""


@dataclass
class SyntheticGraph:
    """A scored graph with truth.

    Attributes:
        edge_index: int64 [2, E], directed from lower to higher ``r2z2``.
        scores: float32 [E], GNN-like scores in (0, 1).
        truth: bool [E], edge joins consecutive hits of one particle.
        hit_r2z2: float32 [N], ``r**2 + z**2`` [mm^2].
        particle_id: int64 [N], 0 for noise.
        particles: DataFrame with ``particle_id, pt, eta, primary, pdgId, radius``.
    """

    edge_index: np.ndarray
    scores: np.ndarray
    truth: np.ndarray
    hit_r2z2: np.ndarray
    particle_id: np.ndarray
    particles: pd.DataFrame

    @property
    def num_hits(self) -> int:
        return len(self.hit_r2z2)

    def event(self):
        """The truth as an :class:`gnn4itk.event.Event` for :func:`gnn4itk.metrics.evaluate_tracking`."""
        from gnn4itk.event import Event

        hits = pd.DataFrame({"particle_id": self.particle_id})
        return Event(hits=hits, particles=self.particles, meta={"generator": "synthetic_graph"})


def synthetic_graph(
    num_particles: int = 12_500,
    noise_fraction: float = 0.1,
    overlap_probability: float = 0.08,
    hit_efficiency: float = 0.98,
    true_logit: tuple[float, float] = (6.0, 2.5),
    fake_logit: tuple[float, float] = (-9.0, 2.0),
    confusing_fraction: float = 0.003,
    confusing_logit: tuple[float, float] = (0.0, 3.0),
    seed: int = 0,
) -> SyntheticGraph:
    """Generate one event's scored graph (see the module docstring).

    Args:
        num_particles: charged particles (pT >= 0.4 GeV, |eta| < 1.5).
        noise_fraction: noise hits per particle hit.
        overlap_probability: chance that a particle leaves a second hit on a layer.
        hit_efficiency: chance that a particle leaves a hit on a layer it crosses.
        true_logit, fake_logit: mean and spread of the logits of true and fake edges.
        confusing_fraction, confusing_logit: fake edges that the GNN finds plausible (junctions).
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    hits, particles = _particle_hits(rng, num_particles, overlap_probability, hit_efficiency)
    hits = pd.concat([hits, _noise_hits(rng, int(noise_fraction * len(hits)))], ignore_index=True)
    hits = hits.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # no order to rely on
    src, dst = _candidate_edges(hits)
    true_src, true_dst = _true_edges(hits)
    pairs = np.unique(np.concatenate([src * len(hits) + dst, true_src * len(hits) + true_dst]))
    src, dst = pairs // len(hits), pairs % len(hits)
    truth = np.isin(pairs, true_src * len(hits) + true_dst)
    fake = np.where(
        rng.random(len(pairs)) < confusing_fraction,
        rng.normal(*confusing_logit, len(pairs)),
        rng.normal(*fake_logit, len(pairs)),
    )
    logits = np.where(truth, rng.normal(*true_logit, len(pairs)), fake)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    r2z2 = (hits["r"] ** 2 + hits["z"] ** 2).to_numpy(np.float32)
    return SyntheticGraph(
        edge_index=np.stack([src, dst]).astype(np.int64),
        scores=scores,
        truth=truth,
        hit_r2z2=r2z2,
        particle_id=hits["particle_id"].to_numpy(np.int64),
        particles=particles,
    )


def _particle_hits(rng, num_particles, overlap_probability, hit_efficiency) -> tuple[pd.DataFrame, pd.DataFrame]:
    pt = 0.4 + rng.exponential(0.8, num_particles)
    eta = rng.uniform(-1.5, 1.5, num_particles)
    phi0 = rng.uniform(-np.pi, np.pi, num_particles)
    charge = rng.choice([-1.0, 1.0], num_particles)
    z0 = rng.normal(0.0, 45.0, num_particles)
    rho = pt / (0.3 * 2.0) * 1000.0  # helix radius [mm] in 2 T
    particle = np.repeat(np.arange(num_particles), len(LAYER_RADII))
    layer = np.tile(np.arange(len(LAYER_RADII)), num_particles)
    radius = LAYER_RADII[layer]
    crosses = radius < 2.0 * rho[particle]
    crosses &= rng.random(len(particle)) < hit_efficiency
    doubled = crosses & (rng.random(len(particle)) < overlap_probability)
    particle = np.concatenate([particle[crosses], particle[doubled]])
    layer = np.concatenate([layer[crosses], layer[doubled]])
    radius = np.concatenate([radius[crosses], radius[doubled] + 3.0])  # overlapping module sits further out
    half_turn = np.arcsin(np.clip(radius / (2.0 * rho[particle]), -1.0, 1.0))
    phi = phi0[particle] - charge[particle] * half_turn + rng.normal(0.0, 2e-5, len(particle))
    z = z0[particle] + np.sinh(eta[particle]) * 2.0 * rho[particle] * half_turn + rng.normal(0.0, 0.05, len(particle))
    hits = pd.DataFrame(
        {"particle_id": particle + 1, "layer": layer, "r": radius, "phi": _wrap(phi), "z": z}
    )
    particles = pd.DataFrame(
        {
            "particle_id": np.arange(1, num_particles + 1),
            "pt": pt,
            "eta": eta,
            "primary": True,
            "pdgId": np.int32(13),
            "radius": 0.0,
        }
    )
    return hits, particles


def _noise_hits(rng, count) -> pd.DataFrame:
    layer = rng.integers(0, len(LAYER_RADII), count)
    radius = LAYER_RADII[layer]
    return pd.DataFrame(
        {
            "particle_id": 0,
            "layer": layer,
            "r": radius,
            "phi": rng.uniform(-np.pi, np.pi, count),
            "z": rng.uniform(-1.0, 1.0, count) * (radius * np.sinh(1.5) + 100.0),
        }
    )


def _wrap(phi):
    return (phi + np.pi) % (2.0 * np.pi) - np.pi


def _candidate_edges(hits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Module-map-like pairs: next layer and one-layer skips (and same layer for overlaps) inside
    windows in phi and in z extrapolated from the beam spot."""
    layer = hits["layer"].to_numpy()
    r, phi, z = (hits[c].to_numpy() for c in ("r", "phi", "z"))
    sources, targets = [], []
    for inner in range(len(LAYER_RADII)):
        for step, phi_window, z_window in ((0, 0.002, 3.0), (1, 0.0006, 4.0), (2, 0.0004, 3.0)):
            outer = inner + step
            if outer >= len(LAYER_RADII):
                continue
            a = np.flatnonzero(layer == inner)
            b = np.flatnonzero(layer == outer)
            gap = LAYER_RADII[outer] - LAYER_RADII[inner]
            z_width = z_window + 0.04 * gap
            z_pred = z[a] * LAYER_RADII[outer] / LAYER_RADII[inner]
            pa, pb = _window_pairs(phi[a], z_pred, phi[b], z[b], phi_window * max(gap, 25.0), z_width)
            pa, pb = a[pa], b[pb]
            near = np.abs(z[pa] * r[pb] / r[pa] - z[pb]) < z_width
            near &= r[pb] > r[pa]  # same-layer pairs only towards the overlapping module
            sources.append(pa[near])
            targets.append(pb[near])
    return np.concatenate(sources), np.concatenate(targets)


def _window_pairs(phi_a, z_a, phi_b, z_b, phi_width, z_width) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) with |phi_a[i] - phi_b[j]| < phi_width whose z bins (of size z_width) are
    neighbours; no wrap-around at phi = +-pi (true pairs there are added separately)."""
    span = 8.0  # > 2 pi: phi + pi fits inside one z bin of the sort key
    key_b = np.floor(z_b / z_width) * span + phi_b + np.pi
    order = np.argsort(key_b)
    key_b = key_b[order]
    i_parts, j_parts = [], []
    for shift in (-1.0, 0.0, 1.0):
        centre = (np.floor(z_a / z_width) + shift) * span + phi_a + np.pi
        lo = np.searchsorted(key_b, centre - phi_width)
        hi = np.searchsorted(key_b, centre + phi_width)
        counts = hi - lo
        i = np.repeat(np.arange(len(phi_a)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        i_parts.append(i)
        j_parts.append(order[np.repeat(lo, counts) + offsets])
    return np.concatenate(i_parts), np.concatenate(j_parts)


def _true_edges(hits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive hits of each particle, ordered by radius."""
    real = hits[hits["particle_id"] > 0].sort_values(["particle_id", "r"])
    rows = real.index.to_numpy()
    same = real["particle_id"].to_numpy()[1:] == real["particle_id"].to_numpy()[:-1]
    return rows[:-1][same], rows[1:][same]
