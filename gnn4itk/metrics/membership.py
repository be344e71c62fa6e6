"""Tracks as (row, track) membership pairs, truth tracks, and per (track, particle) shared counts: what the
GNN4ITk metrics (:mod:`~gnn4itk.metrics.matching`) and the TrackML score (:mod:`~gnn4itk.metrics.trackml`)
are both computed from.

Tracks can be given in any of the three forms of :mod:`gnn4itk.tracks` (LABELS, per-spacepoint track
ids, list of row-index arrays). Internally they become (row, track) *membership pairs*, which also
allows tracks that share spacepoints (the efficiency metrics are defined for them; the TrackML score is
not, since the challenge gave every hit exactly one track).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gnn4itk.event import Event


def track_membership(tracks, num_hits: int, form: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(row, track) membership pairs from any track form.

    Args:
        tracks: LABELS (int64 [L], tracks ended by -1), per-spacepoint track ids (int64 [num_hits],
            -1 unassigned) or a list of int64 row-index arrays; numpy, list or CPU torch tensors.
        num_hits: number of spacepoints in the event.
        form: ``"labels"``, ``"track_ids"``, ``"list"`` or ``"auto"``. ``auto`` takes a Python
            list/tuple as a list of tracks and any array or tensor as LABELS (the wire format): per-
            spacepoint track ids must be named with ``form="track_ids"``, since a LABELS array can have
            the length of the event.

    Returns:
        ``rows`` (int64 [M]) and ``track`` (int64 [M]): spacepoint row and dense track number
        (0 .. T-1, in input order) of every membership. Empty tracks are dropped.

    Raises:
        ValueError: unknown form, a row outside ``[0, num_hits)``, or a track that lists
            the same spacepoint twice.
    """
    if form == "auto":
        form = "list" if isinstance(tracks, (list, tuple)) else "labels"
    if form == "labels":
        labels = as_int64(tracks)
        is_end = labels == -1
        # Track number of a LABELS entry = number of terminators before it.
        number = np.cumsum(is_end) - is_end
        rows, track = labels[~is_end], number[~is_end]
    elif form == "track_ids":
        ids = as_int64(tracks)
        if len(ids) != num_hits:
            raise ValueError(f"track ids have length {len(ids)}, the event has {num_hits} spacepoints")
        rows = np.flatnonzero(ids >= 0)
        track = ids[rows]
    elif form == "list":
        arrays = [as_int64(t) for t in tracks]
        rows = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
        track = np.repeat(np.arange(len(arrays), dtype=np.int64), [len(a) for a in arrays])
    else:
        raise ValueError(f"unknown track form {form!r}; use 'labels', 'track_ids', 'list' or 'auto'")
    if len(rows) and (rows.min() < 0 or rows.max() >= num_hits):
        raise ValueError(f"a track has a spacepoint row index outside [0, {num_hits})")
    _, track = np.unique(track, return_inverse=True)  # dense numbers; drops empty tracks
    track = track.astype(np.int64)
    if len(np.unique(track * num_hits + rows)) != len(rows):
        raise ValueError("a track lists the same spacepoint more than once")
    return rows, track


def as_int64(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.int64).ravel()


def tracks_from_table(hits: pd.DataFrame, table: pd.DataFrame) -> list[np.ndarray]:
    """Tracks (row-index arrays) from a ``hit_id, track_id`` table; ``track_id < 0`` = unassigned.

    A ``hit_id`` may appear under several track ids (shared spacepoints).

    Args:
        hits: the event's spacepoint table (``hit_id`` int64 [N]).
        table: DataFrame with integer columns ``hit_id`` and ``track_id``.

    Returns:
        list of int64 row-index arrays, one per track id in increasing order.
    """
    missing = [c for c in ("hit_id", "track_id") if c not in table.columns]
    if missing:
        raise ValueError(f"track table lacks columns {missing}; it needs hit_id and track_id")
    table = table[table["track_id"] >= 0]
    row_of_hit = pd.Series(np.arange(len(hits), dtype=np.int64), index=hits["hit_id"].to_numpy())
    rows = row_of_hit.reindex(table["hit_id"].to_numpy())
    if rows.isna().any():
        unknown = table["hit_id"].to_numpy()[rows.isna().to_numpy()][:5].tolist()
        raise ValueError(f"track table names hit_ids that are not in the event, e.g. {unknown}")
    rows = rows.to_numpy(np.int64)
    track_ids = table["track_id"].to_numpy(np.int64)
    order = np.lexsort((rows, track_ids))
    rows, track_ids = rows[order], track_ids[order]
    return np.split(rows, np.flatnonzero(np.diff(track_ids)) + 1) if len(rows) else []


def truth_tracks(event: Event) -> list[np.ndarray]:
    """Perfect tracks from truth: one per particle with spacepoints, ordered along the trajectory.

    Spacepoints are ordered by their 3-D distance from the particle's production vertex (from the
    origin where the particle is not in the particle table). Noise (``particle_id == 0``) is in no track.

    Returns:
        list of int64 row-index arrays, one per particle, in increasing ``particle_id`` order.
    """
    require_truth(event)
    hits = event.hits
    pid = hits["particle_id"].to_numpy(np.int64)
    rows = np.flatnonzero(pid != 0)
    vertex = event.particles.set_index("particle_id")[["vx", "vy", "vz"]].reindex(pid[rows]).fillna(0.0)
    position = hits[["x", "y", "z"]].to_numpy(np.float64)[rows]
    distance = np.linalg.norm(position - vertex.to_numpy(np.float64), axis=1)
    order = np.lexsort((distance, pid[rows]))
    rows = rows[order]
    return np.split(rows, np.flatnonzero(np.diff(pid[rows])) + 1) if len(rows) else []


def shared_counts(pid: np.ndarray, rows: np.ndarray, track: np.ndarray, weights: np.ndarray | None = None):
    """Per (track, particle) pair: the number of shared spacepoints and, optionally, their summed weight.

    Args:
        pid: int64 [N] particle id of every spacepoint.
        rows, track: int64 [M] membership pairs; ``track`` dense (0 .. T-1).
        weights: float64 [N] per-spacepoint weights, or None.

    Returns:
        ``pair_track`` int64 [K], ``pair_pid`` int64 [K], ``shared`` int64 [K] (and ``pair_weight``
        float64 [K] when ``weights`` is given), sorted by track then pid.
    """
    pid_codes, pid_values = pd.factorize(pid[rows], sort=True)
    n = max(len(pid_values), 1)
    keys, inverse, shared = np.unique(track * n + pid_codes, return_inverse=True, return_counts=True)
    out = (keys // n, np.asarray(pid_values, dtype=np.int64)[keys % n], shared.astype(np.int64))
    if weights is None:
        return out
    return (*out, np.bincount(inverse.ravel(), weights=weights[rows], minlength=len(keys)))


def require_truth(event: Event) -> None:
    if not event.has_truth:
        raise ValueError("the event has no truth (hits.particle_id and a particle table are needed)")
