"""Create a module map from simulated events with truth (``gnn4itk build-module-map``).

Per event, every selected particle's spacepoints are ordered by their 3D distance from the particle's
production vertex (works for TrackML and simulation alike; no truth hit order is needed). Where a
particle leaves several consecutive spacepoints in one module (split clusters, overlaps within a
module) only the first (closest to the vertex) is kept, as MMG does; a later return to a module after
visiting another one is kept. Consecutive kept hits (1, 2) give a doublet of modules (M1, M2) and
consecutive triples a triplet (M1, M2, M3).

Per entry the map keeps the occurrence count and the min/max of every cut quantity
(:mod:`module_map.quantities`), computed in float32 exactly as the graph builder computes them.
Entries where a quantity is NaN or inf are dropped and counted.

Particle selection follows MMG's creation defaults: primaries only, no electrons, |eta| <= 4, production
radius <= 260 mm, at least 3 spacepoints after duplicate removal; ``min_pt`` 0.

Memory stays bounded: events are streamed and per-event aggregates are merged whenever the pending rows
exceed ``merge_rows``; the accumulator never holds more rows than the map has entries plus that.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from module_map.container import (
    DOUBLET_BOUND_BRANCHES,
    TRIPLET_BOUND_BRANCHES,
    ModuleMap,
    bound_columns,
    check_float32_exact,
    float32_bounds,
)
from module_map.quantities import deta_factor, dydx_factor, np_pair_quantities, np_triplet_quantities

_BITS = 21  # module indices packed into one int64 key, 21 bits each
POSITION_COLUMNS = ["x", "y", "z", "r", "phi", "eta"]


@dataclass
class BuildOptions:
    """Particle selection and map options (defaults: MMG's creation defaults)."""

    min_pt: float = 0.0  # GeV
    max_pt: float | None = None
    max_eta: float = 4.0
    max_vertex_radius: float = 260.0  # mm
    primaries_only: bool = True
    skip_electrons: bool = True
    min_hits: int = 3
    tolerance: float = 0.0  # widens every window: [min - tol, max + tol]
    min_occurrence: int = 1  # entries seen fewer times are dropped (GNN4ITk "thr" maps)
    deta_sign: str = "inner_minus_outer"
    dydx_convention: str = "difference"
    merge_rows: int = 4_000_000

    def __post_init__(self):
        deta_factor(self.deta_sign)
        dydx_factor(self.dydx_convention)
        if self.tolerance < 0 or self.min_occurrence < 1 or self.min_hits < 3:
            raise ValueError("need tolerance >= 0, min_occurrence >= 1 and min_hits >= 3")


class _Aggregate:
    """Running count / min / max per packed key, merged in batches (sorted keys, numpy reduceat)."""

    def __init__(self, width: int, merge_rows: int):
        self.width = width
        self.merge_rows = merge_rows
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)
        self.low = np.zeros((0, width), np.float32)
        self.high = np.zeros((0, width), np.float32)
        self._pending: list[tuple] = []
        self._pending_rows = 0

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        self._pending.append((keys, np.ones(len(keys), np.int64), values, values))
        self._pending_rows += len(keys)
        if self._pending_rows >= self.merge_rows:
            self.merge()

    def merge(self) -> None:
        if not self._pending:
            return
        parts = [(self.keys, self.counts, self.low, self.high), *self._pending]
        keys = np.concatenate([p[0] for p in parts])
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        self.keys = keys[starts]
        self.counts = np.add.reduceat(np.concatenate([p[1] for p in parts])[order], starts)
        self.low = np.minimum.reduceat(np.concatenate([p[2] for p in parts])[order], starts, axis=0)
        self.high = np.maximum.reduceat(np.concatenate([p[3] for p in parts])[order], starts, axis=0)
        self._pending, self._pending_rows = [], 0


def _pack(*modules: np.ndarray) -> np.ndarray:
    key = np.zeros(len(modules[0]), np.int64)
    for m in modules:
        key = (key << _BITS) | m.astype(np.int64)
    return key


def _unpack(keys: np.ndarray, n: int) -> list[np.ndarray]:
    mask = (1 << _BITS) - 1
    return [((keys >> (_BITS * (n - 1 - i))) & mask).astype(np.int32) for i in range(n)]


def select_particles(particles, options: BuildOptions) -> np.ndarray:
    """particle_id (int64 [K]) of the particles used for the map."""
    keep = particles["pt"].to_numpy() >= options.min_pt
    if options.max_pt is not None:
        keep &= particles["pt"].to_numpy() <= options.max_pt
    keep &= np.abs(particles["eta"].to_numpy()) <= options.max_eta
    keep &= particles["radius"].to_numpy() <= options.max_vertex_radius
    if options.primaries_only:
        keep &= particles["primary"].to_numpy().astype(bool)
    if options.skip_electrons:
        keep &= np.abs(particles["pdgId"].to_numpy()) != 11
    return particles["particle_id"].to_numpy()[keep]


def ordered_track_hits(event, particle_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the selected particles' hits in trajectory order, duplicates in a module removed.

    Returns:
        rows: int64 [H] rows of ``event.hits``, particle after particle, ordered by distance from the
            production vertex, consecutive same-module hits reduced to the first.
        owner: int64 [H] the particle_id of each row.
    """
    hits, particles = event.hits, event.particles
    pid = hits["particle_id"].to_numpy()
    rows = np.flatnonzero(np.isin(pid, particle_ids))
    table_ids = particles["particle_id"].to_numpy()
    by_id = np.argsort(table_ids)
    where = by_id[np.searchsorted(table_ids, pid[rows], sorter=by_id)]
    vertex = particles[["vx", "vy", "vz"]].to_numpy(np.float64)[where]
    position = hits[["x", "y", "z"]].to_numpy(np.float64)[rows]
    distance = ((position - vertex) ** 2).sum(axis=1)
    order = np.lexsort((distance, pid[rows]))
    rows, owner = rows[order], pid[rows][order]
    module = hits["module_id"].to_numpy()[rows]
    repeat = np.r_[False, (owner[1:] == owner[:-1]) & (module[1:] == module[:-1])]
    return rows[~repeat], owner[~repeat]


def _enough_hits(owner: np.ndarray, min_hits: int) -> np.ndarray:
    _, inverse, counts = np.unique(owner, return_inverse=True, return_counts=True)
    return counts[inverse] >= min_hits


class MapBuilder:
    """Streams events into doublet and triplet aggregates; :meth:`finish` returns the :class:`ModuleMap`."""

    def __init__(self, options: BuildOptions | None = None):
        self.options = options or BuildOptions()
        self._deta = deta_factor(self.options.deta_sign)
        self._dydx = dydx_factor(self.options.dydx_convention)
        self.doublets = _Aggregate(4, self.options.merge_rows)
        self.triplets = _Aggregate(10, self.options.merge_rows)
        self.events = 0
        self.particles_seen = 0
        self.particles_used = 0
        self.dropped_nonfinite = 0
        self.seconds = 0.0  # inside add_event
        self.wall_seconds = 0.0  # inside add_events, reading the events included

    def add_event(self, event) -> None:
        """Add the tracks of one event (needs truth: hits.particle_id and the particle table)."""
        if not event.has_truth:
            raise ValueError(f"event {event.event_id} has no truth; a module map needs particle_id")
        start = time.perf_counter()
        module = event.hits["module_id"].to_numpy()
        if len(module) and (module.min() < 0 or module.max() >= 1 << _BITS):
            raise ValueError(f"event {event.event_id}: module_id outside [0, 2**{_BITS}); use dense indices")
        check_float32_exact(np.unique(module))
        selected = select_particles(event.particles, self.options)
        rows, owner = ordered_track_hits(event, selected)
        enough = _enough_hits(owner, self.options.min_hits)
        rows, owner = rows[enough], owner[enough]
        positions = event.hits[POSITION_COLUMNS].to_numpy(np.float32)[rows]
        modules = module[rows]
        self.events += 1
        self.particles_seen += len(event.particles)
        self.particles_used += len(np.unique(owner))

        pair = np.flatnonzero(owner[1:] == owner[:-1])
        pair_values = np_pair_quantities(positions[pair], positions[pair + 1], self._deta)
        good = np.isfinite(pair_values).all(axis=1)
        self.dropped_nonfinite += int((~good).sum())
        self.doublets.add(_pack(modules[pair][good], modules[pair + 1][good]), pair_values[good])

        # triplet i, i+1, i+2 shares its 12 pair with pair i and its 23 pair with pair i+1
        triple = np.flatnonzero(owner[2:] == owner[:-2])
        pair_row = np.full(len(owner), -1)
        pair_row[pair] = np.arange(len(pair))
        values = np.concatenate(
            [
                pair_values[pair_row[triple]],
                pair_values[pair_row[triple + 1]],
                np_triplet_quantities(positions[triple], positions[triple + 1], positions[triple + 2], self._dydx),
            ],
            axis=1,
        )
        good = np.isfinite(values).all(axis=1)
        self.dropped_nonfinite += int((~good).sum())
        keys = _pack(modules[triple][good], modules[triple + 1][good], modules[triple + 2][good])
        self.triplets.add(keys, values[good])
        self.seconds += time.perf_counter() - start

    def add_events(self, events: Iterable, total: int | None = None, progress: bool = True) -> "MapBuilder":
        """Add a stream of events, showing progress (particles and particles per minute in its status).

        ``progress``: a live bar on a terminal, a plain line every few seconds otherwise
        (:class:`gnn4itk.progress.Progress`); False shows nothing.
        """
        from gnn4itk.progress import Progress

        start = time.perf_counter()
        seen = self.particles_seen
        with Progress(total, "module map", "event", enabled=progress) as bar:
            for event in events:
                self.add_event(event)
                rate = 60.0 * (self.particles_seen - seen) / (time.perf_counter() - start)
                bar.set_status(f"{self.particles_seen:,} particles, {rate:,.0f}/min")
                bar.update()
        self.wall_seconds += time.perf_counter() - start
        return self

    def particles_per_minute(self, wall: bool = False) -> float:
        """Particles of the input per minute: of map creation alone, or (``wall``) with event reading."""
        seconds = self.wall_seconds if wall else self.seconds
        return 60.0 * self.particles_seen / seconds if seconds > 0 else 0.0

    def finish(self) -> ModuleMap:
        """Apply ``min_occurrence`` and ``tolerance`` and return the map (the builder can continue)."""
        self.doublets.merge()
        self.triplets.merge()
        if self.dropped_nonfinite:
            warnings.warn(f"{self.dropped_nonfinite} doublet/triplet occurrences had NaN/inf quantities; dropped")
        opts = self.options
        doublets = _table(self.doublets, 2, DOUBLET_BOUND_BRANCHES, opts)
        triplets = _table(self.triplets, 3, TRIPLET_BOUND_BRANCHES, opts)
        modules = np.unique(np.concatenate([doublets["Module1"], doublets["Module2"]])).astype(np.int32)
        attributes = {
            "deta_sign": opts.deta_sign,
            "dydx_convention": opts.dydx_convention,
            "precision": "float32",
            "tolerance": opts.tolerance,
            "min_occurrence": opts.min_occurrence,
            "events": self.events,
            "particles_seen": self.particles_seen,
            "particles_used": self.particles_used,
            "options": {k: v for k, v in asdict(opts).items() if k != "merge_rows"},
        }
        return ModuleMap(modules, modules.astype(np.uint64), doublets, triplets, attributes)


def _table(aggregate: _Aggregate, n_modules: int, branches: list[str], opts: BuildOptions) -> dict:
    keep = aggregate.counts >= opts.min_occurrence
    names = ["Module1", "Module2", "Module3"][:n_modules]
    table = dict(zip(names, _unpack(aggregate.keys[keep], n_modules)))
    table["Occurence"] = np.minimum(aggregate.counts[keep], np.iinfo(np.uint32).max).astype(np.uint32)
    lows, highs = bound_columns(branches)
    for j, (low, high) in enumerate(zip(lows, highs)):
        lo = aggregate.low[keep, j]
        hi = aggregate.high[keep, j]
        if opts.tolerance > 0:
            lo = float32_bounds(lo.astype(np.float64) - opts.tolerance, upper=False)
            hi = float32_bounds(hi.astype(np.float64) + opts.tolerance, upper=True)
        table[low], table[high] = lo, hi
    return {k: table[k] for k in names + ["Occurence"] + branches}


def build_module_map(events: Iterable, options: BuildOptions | None = None, total: int | None = None,
                     progress: bool = True) -> tuple[ModuleMap, MapBuilder]:
    """Build a map from an iterable of :class:`gnn4itk.event.Event`; returns the map and the builder."""
    builder = MapBuilder(options).add_events(events, total=total, progress=progress)
    return builder.finish(), builder
