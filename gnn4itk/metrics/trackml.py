"""The TrackML challenge's per-spacepoint weights and score (``trackml.weights.weight_hits``,
``trackml.score.score_event``); ``docs/metrics.md`` gives every formula."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gnn4itk.event import Event
from gnn4itk.metrics.membership import as_int64, require_truth, shared_counts


ORDER_PROPOSAL = np.array([10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0])
"""The challenge's hit-order weight profile, from the first to the last hit of a track."""

ORDER_MIN_HITS = 4

ORDER_MAX_HITS = 20


def order_weight_matrix() -> np.ndarray:
    """The challenge's hit-order weights, float64 [ORDER_MAX_HITS + 1, ORDER_MAX_HITS].

    Row ``n`` (4 <= n <= 20) holds the weights of hits 0..n-1 of an n-hit particle: the proposal profile
    stretched linearly over n hits, normalised to sum 1. Rows below 4 are zero.
    """
    matrix = np.zeros((ORDER_MAX_HITS + 1, ORDER_MAX_HITS))
    knots = np.arange(len(ORDER_PROPOSAL))
    for n in range(ORDER_MIN_HITS, ORDER_MAX_HITS + 1):
        weights = np.interp(np.arange(n), knots * (n - 1) / (len(ORDER_PROPOSAL) - 1), ORDER_PROPOSAL)
        matrix[n, :n] = weights / weights.sum()
    return matrix


def pt_weight(pt) -> np.ndarray:
    """The challenge's momentum weight: 0.2 below 0.5 GeV, linear to 1 at 3 GeV, 1 above; 0 below 0.05 GeV.

    Args:
        pt: float array [P] in GeV.
    """
    return np.interp(np.asarray(pt, dtype=np.float64), [0.05, 0.5, 3.0], [0.2, 0.2, 1.0], left=0.0, right=1.0)


class NoTrackMLWeight(ValueError):
    """The event has no spacepoint with TrackML weight, so the score is undefined."""


TRACKML_GENERATION_MASK = 0x0000000FFF000000
"""Bits of a TrackML ``particle_id`` that hold the particle's generation (``trackml.utils``)."""


def simulation_secondaries(event: Event) -> np.ndarray | None:
    """Which particles the detector simulation made (generation > 0), bool [P], or None if unknown.

    Read from a ``generation`` or ``particle_id_gen`` (ACTS barcode) column of the particle table, or
    decoded from the ``particle_id`` bits for events read from TrackML files (``meta["source"] ==
    "trackml"``). Decay products of the generator keep generation 0, even when displaced.
    """
    particles = event.particles
    for column in ("generation", "particle_id_gen"):
        if column in particles.columns:
            return particles[column].to_numpy(np.int64) > 0
    if event.meta.get("source") == "trackml":
        ids = particles["particle_id"].to_numpy(np.int64).astype(np.uint64)
        return (ids & np.uint64(TRACKML_GENERATION_MASK)) > 0
    return None


def trackml_weights(event: Event) -> np.ndarray:
    """TrackML per-spacepoint weights, float64 [N], normalised to sum 1 over the event.

    A ``weight`` column of the spacepoint table (the truth file's weights) is used when present;
    otherwise the weights are computed as the challenge did: ``pt_weight(pt) * order_weight(ihit, nhits)``
    where ``ihit`` ranks the particle's spacepoints by ``|z - vz|`` (true ``tz`` when the table has it)
    with pandas' average-rank ties truncated, as ``trackml.weights.weight_hits`` does, and particles made
    by the detector simulation (:func:`simulation_secondaries`, where known) get 0 as in the released
    truth files. Either way noise and particles with fewer than 4 spacepoints in this event get weight 0.
    """
    require_truth(event)
    hits = event.hits
    pid = hits["particle_id"].to_numpy(np.int64)
    nhits = pd.Series(pid).map(pd.Series(pid).value_counts()).to_numpy(np.int64)
    eligible = (pid != 0) & (nhits >= ORDER_MIN_HITS)
    if "weight" in hits.columns:
        weights = np.where(eligible, hits["weight"].to_numpy(np.float64), 0.0)
    else:
        weights = np.where(eligible, _challenge_weights(event, pid, nhits), 0.0)
    total = weights.sum()
    if total <= 0:
        raise NoTrackMLWeight("no spacepoint carries TrackML weight (no weighted particle with 4 or more spacepoints)")
    return weights / total


def _challenge_weights(event: Event, pid: np.ndarray, nhits: np.ndarray) -> np.ndarray:
    """Unnormalised ``pt_weight * order_weight`` per spacepoint (``trackml.weights.weight_hits``)."""
    particles = event.particles.set_index("particle_id")
    weighted = pd.Index(particles.index).get_indexer(pid) >= 0  # hits of unknown particles weigh 0
    secondary = simulation_secondaries(event)
    if secondary is not None:  # the released truth files give material secondaries weight 0
        weighted &= ~pd.Series(secondary, index=particles.index).reindex(pid).fillna(True).to_numpy(bool)
    pt = particles["pt"].reindex(pid).fillna(0.0).to_numpy(np.float64)
    vz = particles["vz"].reindex(pid).fillna(0.0).to_numpy(np.float64)
    z = event.hits["tz" if "tz" in event.hits.columns else "z"].to_numpy(np.float64)
    # Hit order along the particle: rank of |z - vz|, ties averaged then truncated, as the challenge did.
    ihit = (pd.Series(np.abs(z - vz)).groupby(pid).rank(method="average") - 1).to_numpy().astype(np.int64)
    capped = np.minimum(nhits, ORDER_MAX_HITS)
    in_range = ihit < ORDER_MAX_HITS  # the challenge gave hits beyond the 20th weight zero
    order = np.where(in_range, order_weight_matrix()[capped, np.minimum(ihit, ORDER_MAX_HITS - 1)], 0.0)
    return np.where(weighted, pt_weight(pt) * order, 0.0)


def trackml_score(event: Event, track_ids, weights: np.ndarray | None = None) -> float:
    """The TrackML challenge score of one event.

    Every track's majority particle is the one with most of its spacepoints (noise counts as particle 0;
    a tie goes to the smaller particle id, as in ``trackml.score``, and a tie can never pass the cuts).
    The track scores the summed weight of its majority particle's spacepoints in it when
    ``2 * n_majority > n_track`` and ``2 * n_majority > n_particle``. Unassigned spacepoints are in no
    track and score nothing.

    Args:
        event: event with truth.
        track_ids: int64 [N], track id of every spacepoint, -1 for unassigned.
        weights: float64 [N] per-spacepoint weights, default :func:`trackml_weights` (sum 1).

    Returns:
        score in [0, 1].
    """
    pid = event.hits["particle_id"].to_numpy(np.int64)
    track_ids = as_int64(track_ids)
    if len(track_ids) != len(pid):
        raise ValueError(f"track ids have length {len(track_ids)}, the event has {len(pid)} spacepoints")
    weights = trackml_weights(event) if weights is None else np.asarray(weights, np.float64)
    rows = np.flatnonzero(track_ids >= 0)
    if len(rows) == 0:
        return 0.0
    _, track = np.unique(track_ids[rows], return_inverse=True)
    track = track.ravel().astype(np.int64)
    pair_track, pair_pid, shared, pair_weight = shared_counts(pid, rows, track, weights)
    # Majority per track: most spacepoints first, then the smaller particle id (pairs come pid-sorted).
    order = np.lexsort((pair_pid, -shared, pair_track))
    first = order[np.r_[True, np.diff(pair_track[order]) != 0]]
    n_track = np.bincount(track)[pair_track[first]]
    n_particle = pd.Series(pid).value_counts().reindex(pair_pid[first]).to_numpy()
    good = (2 * shared[first] > n_track) & (2 * shared[first] > n_particle)
    return float(pair_weight[first][good].sum() / weights.sum())
