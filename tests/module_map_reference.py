"""Plain pandas/numpy reference of module-map graph building, and test events (used by the tests only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gnn4itk.event import Event, complete_particles, complete_spacepoints
from module_map.search_tables import map_windows
from module_map.quantities import deta_factor, dydx_factor, np_pair_quantities, np_triplet_quantities

TRACKML = Path(__file__).parents[2] / "shared" / "data" / "trackml"
POSITIONS = ["x", "y", "z", "r", "phi", "eta"]


def _inside(values, low, high):
    return ((values >= low) & (values <= high)).all(axis=1)


def reference_edges(module_map, positions: np.ndarray, module: np.ndarray) -> set[tuple[int, int]]:
    """Edges by the literal definition: doublet windows of (Ma, Mb), and a hit c such that (a, b, c)
    or (c, a, b) passes every window of a map triplet. Brute force over all hit triples."""
    attrs = module_map.attributes
    deta, dydx = deta_factor(attrs["deta_sign"]), dydx_factor(attrs["dydx_convention"])
    d_low, d_high = map_windows(module_map, "doublets")
    t_low, t_high = map_windows(module_map, "triplets")
    hits = pd.DataFrame({"hit": np.arange(len(module)), "module": module})

    def hits_as(name, column):
        return hits.rename(columns={"hit": name, "module": column})

    d = module_map.doublets
    pairs = pd.DataFrame({"m1": d["Module1"], "m2": d["Module2"], "d": np.arange(len(d["Module1"]))})
    pairs = pairs.merge(hits_as("a", "m1"), on="m1").merge(hits_as("b", "m2"), on="m2")
    a, b, k = pairs["a"].to_numpy(), pairs["b"].to_numpy(), pairs["d"].to_numpy()
    ok = _inside(np_pair_quantities(positions[a], positions[b], deta), d_low[k], d_high[k])
    doublet_edges = set(zip(a[ok].tolist(), b[ok].tolist()))

    t = module_map.triplets
    triples = pd.DataFrame({"m1": t["Module1"], "m2": t["Module2"], "m3": t["Module3"],
                            "t": np.arange(len(t["Module1"]))})
    triples = triples.merge(hits_as("a", "m1"), on="m1").merge(hits_as("b", "m2"), on="m2")
    triples = triples.merge(hits_as("c", "m3"), on="m3")
    a, b, c, k = (triples[col].to_numpy() for col in ("a", "b", "c", "t"))
    pa, pb, pc = positions[a], positions[b], positions[c]
    ok = _inside(np_pair_quantities(pa, pb, deta), t_low[k, 0:4], t_high[k, 0:4])
    ok &= _inside(np_pair_quantities(pb, pc, deta), t_low[k, 4:8], t_high[k, 4:8])
    ok &= _inside(np_triplet_quantities(pa, pb, pc, dydx), t_low[k, 8:10], t_high[k, 8:10])
    supported = set(zip(a[ok].tolist(), b[ok].tolist())) | set(zip(b[ok].tolist(), c[ok].tolist()))
    return doublet_edges & supported


def with_noise(event: Event, fraction: float, seed: int) -> Event:
    """Add noise spacepoints: copies of random hits moved by 5 mm, in the same module (a hard case:
    many candidates near the windows' edges)."""
    rng = np.random.default_rng(seed)
    source = event.hits.sample(frac=fraction, random_state=seed)
    noise = source[["x", "y", "z", "module_id", "volume_id", "layer_id"]].copy()
    for col in ("x", "y", "z"):
        noise[col] = noise[col] + rng.normal(0, 5.0, len(noise)).astype(np.float32)
    noise["particle_id"] = 0
    noise["hit_id"] = np.arange(len(noise)) + event.hits["hit_id"].max() + 1
    hits = pd.concat([event.hits[noise.columns], noise], ignore_index=True)
    return Event(complete_spacepoints(hits), event.particles, event.event_id)


def trackml_event() -> Event:
    """The real TrackML event subset with dense module indices = row of detectors.csv."""
    ids = ["volume_id", "layer_id", "module_id"]
    detectors = pd.read_csv(TRACKML / "detectors.csv.gz", index_col=0)[ids]
    detectors["dense"] = np.arange(len(detectors))
    hits = pd.read_csv(TRACKML / "event000000001-hits.csv.gz").merge(detectors, on=ids)
    hits["module_id"] = hits.pop("dense")
    truth = pd.read_csv(TRACKML / "event000000001-truth.csv.gz", usecols=["hit_id", "particle_id"])
    hits = complete_spacepoints(hits.merge(truth, on="hit_id"))
    particles = pd.read_csv(TRACKML / "event000000001-particles.csv.gz")
    particles["primary"] = True  # TrackML has no such flag; every particle is used for the map
    return Event(hits, complete_particles(particles, hits), event_id=1)
