"""Agreement between two sets of track candidates (e.g. production vs reference)."""

from __future__ import annotations

from gnn4itk.tracks import split_labels


def track_agreement(reference_labels, labels) -> dict:
    """How many tracks two LABELS arrays share (a track counts when it has the same set of rows).

    Args:
        reference_labels, labels: int64 array-likes [L] in the LABELS format.

    Returns:
        dict with ``reference_tracks``, ``tracks``, ``identical`` (tracks in both) and
        ``identical_fraction`` (identical / max(reference_tracks, tracks), 1.0 when both are empty).
    """
    reference = {frozenset(t.tolist()) for t in split_labels(reference_labels)}
    tracks = {frozenset(t.tolist()) for t in split_labels(labels)}
    identical = len(reference & tracks)
    larger = max(len(reference), len(tracks))
    return {
        "reference_tracks": len(reference),
        "tracks": len(tracks),
        "identical": identical,
        "identical_fraction": identical / larger if larger else 1.0,
    }
