"""Track candidates and their wire format.

Three equivalent forms are used across the package:

* **LABELS** (what Triton returns and Athena parses): int64 tensor [L] of spacepoint *row indices*,
  track after track, each track followed by ``-1``; ``[-1]`` alone when there is no track.
* **track ids**: int64 array [N], the track number of every spacepoint, ``-1`` where unassigned.
* **list of tracks**: a Python list of int64 arrays of row indices.

The functions here convert between them with numpy on the host; the GPU track builder produces LABELS
directly with torch.
"""

from __future__ import annotations

import numpy as np


def split_labels(labels) -> list[np.ndarray]:
    """Split a flat LABELS array on ``-1`` into tracks, exactly as Athena's Triton tool does.

    Args:
        labels: int64 array-like [L] (numpy, list or CPU torch tensor).

    Returns:
        list of int64 arrays of row indices; empty tracks (e.g. from ``[-1]``) are dropped.
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    ends = np.flatnonzero(labels == -1)
    tracks, start = [], 0
    for end in ends:
        if end > start:
            tracks.append(labels[start:end])
        start = end + 1
    if start < len(labels):  # tolerate a missing final terminator
        tracks.append(labels[start:])
    return tracks


def track_set(labels) -> set[frozenset]:
    """The tracks of a LABELS array as a set of row sets, for comparing two answers track by track.

    Args:
        labels: int64 array-like [L] (numpy, list or torch tensor on any device).

    Returns:
        set of frozensets of row indices (a track is the same whatever the order of its rows).
    """
    if hasattr(labels, "cpu"):
        labels = labels.cpu().numpy()
    return {frozenset(t.tolist()) for t in split_labels(labels)}


def join_tracks(tracks) -> np.ndarray:
    """Inverse of :func:`split_labels`: int64 [L] with every track ended by -1, or ``[-1]`` if none."""
    tracks = [np.asarray(t, dtype=np.int64) for t in tracks if len(t) > 0]
    if not tracks:
        return np.array([-1], dtype=np.int64)
    parts = []
    for t in tracks:
        parts.append(t)
        parts.append(np.array([-1], dtype=np.int64))
    return np.concatenate(parts)


def labels_to_track_ids(labels, num_hits: int) -> np.ndarray:
    """Per-spacepoint track number (int64 [num_hits], -1 = unassigned) from LABELS.

    Raises:
        ValueError: if a row index is out of range or appears in two tracks.
    """
    track_ids = np.full(num_hits, -1, dtype=np.int64)
    for number, track in enumerate(split_labels(labels)):
        if track.min() < 0 or track.max() >= num_hits:
            raise ValueError(f"track {number} has a row index outside [0, {num_hits})")
        if (track_ids[track] != -1).any() or len(np.unique(track)) != len(track):
            raise ValueError(f"track {number} reuses a spacepoint that is already in a track")
        track_ids[track] = number
    return track_ids


def track_ids_to_tracks(track_ids) -> list[np.ndarray]:
    """Tracks (row indices, in row order) from a per-spacepoint track id array; -1 is unassigned."""
    track_ids = np.asarray(track_ids, dtype=np.int64)
    rows = np.flatnonzero(track_ids >= 0)
    if len(rows) == 0:
        return []
    order = np.argsort(track_ids[rows], kind="stable")
    rows = rows[order]
    ids = track_ids[rows]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    return np.split(rows, cuts)
