"""Speed of the tracking metrics on a synthetic event of mu=200 size (host-side numpy/pandas).

The event is random (no detector): what matters for speed is the table sizes, ~140k spacepoints from
~100k particles and ~20k candidate tracks. Variants: LABELS vs list-of-tracks input, with and without
the TrackML score, and the weight computation alone.
"""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd

from gnn4itk.timing import timed_calls

HELP = "tracking metrics + TrackML score on a mu=200-sized synthetic event (CPU, numpy/pandas)"


def add_arguments(parser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="metrics run on the host; cuda is refused")
    parser.add_argument("--hits", type=int, default=140_000, help="spacepoints (%(default)s)")
    parser.add_argument("--particles", type=int, default=100_000, help="particles (%(default)s)")
    parser.add_argument("--tracks", type=int, default=20_000, help="track candidates (%(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions after one warm-up (%(default)s)")


def synthetic_event(num_hits: int, num_particles: int, seed: int = 0):
    """Random event with truth of the requested size (5% noise)."""
    from gnn4itk.event import Event

    rng = np.random.default_rng(seed)
    # mu=200-like: ~85% of spacepoints on a quarter of the particles (a few hits each), ~10% on the
    # others (1-2 hits each), 5% noise.
    if num_particles < 2:
        raise ValueError("the synthetic event needs at least 2 particles")
    track_like = num_particles // 4 or 1
    share = rng.random(num_hits)
    pid = np.where(
        share < 0.85, rng.integers(1, track_like + 1, num_hits), rng.integers(track_like + 1, num_particles + 1, num_hits)
    )
    pid[share > 0.95] = 0
    pid = np.sort(pid)
    hits = pd.DataFrame(
        {
            "hit_id": np.arange(1, num_hits + 1),
            "x": rng.normal(0, 300, num_hits).astype(np.float32),
            "y": rng.normal(0, 300, num_hits).astype(np.float32),
            "z": rng.normal(0, 1000, num_hits).astype(np.float32),
            "module_id": rng.integers(0, 18_000, num_hits).astype(np.int32),
            "particle_id": pid,
        }
    )
    particles = pd.DataFrame(
        {
            "particle_id": np.arange(1, num_particles + 1),
            "pt": rng.exponential(1.0, num_particles) + 0.1,
            "eta": rng.uniform(-4.5, 4.5, num_particles),
            "primary": rng.random(num_particles) < 0.9,
            "pdgId": rng.choice([211, -211, 13, 11], num_particles),
            "radius": rng.exponential(50.0, num_particles),
            "vx": 0.0,
            "vy": 0.0,
            "vz": rng.normal(0, 50, num_particles),
        }
    )
    return Event(hits=hits, particles=particles)


def run(args) -> dict:
    from gnn4itk.bench import print_ratio_table
    from gnn4itk.cli import UserError
    from gnn4itk.metrics import evaluate_tracking, trackml_weights, truth_tracks
    from gnn4itk.tracks import join_tracks

    if args.device != "cpu":
        raise UserError("the tracking metrics run on the host (numpy/pandas); use --device cpu")
    event = synthetic_event(args.hits, args.particles)
    tracks = [t for t in truth_tracks(event) if len(t) >= 3][: args.tracks]
    labels = join_tracks(tracks)
    variants = {
        "evaluate, LABELS, with TrackML score": lambda: evaluate_tracking(event, labels),
        "evaluate, LABELS, no TrackML score": lambda: evaluate_tracking(event, labels, trackml=False),
        "evaluate, list of tracks": lambda: evaluate_tracking(event, tracks),
        "TrackML weights (computed)": lambda: trackml_weights(event),
        "truth tracks": lambda: truth_tracks(event),
    }
    # one warm-up call each: imports, pandas caches
    medians = {name: statistics.median(timed_calls(fn, "cpu", 1, args.repeats)) for name, fn in variants.items()}
    reference = medians["evaluate, LABELS, with TrackML score"]
    title = f"metrics: {args.hits} spacepoints, {args.particles} particles, {len(tracks)} tracks (CPU)"
    print_ratio_table(title, medians, reference, "median [ms]", scale=1e3)
    return {
        "device": "cpu",
        "hits": args.hits,
        "particles": args.particles,
        "tracks": len(tracks),
        "median_ms": {name: seconds * 1e3 for name, seconds in medians.items()},
    }
