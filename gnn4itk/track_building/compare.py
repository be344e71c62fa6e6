"""Agreement between two sets of track candidates (e.g. production vs reference)."""

from __future__ import annotations

from gnn4itk.tracks import track_set


def track_agreement(reference_labels, labels) -> dict:
    """How many tracks two LABELS arrays share (a track counts when it has the same set of rows).

    Args:
        reference_labels, labels: int64 array-likes [L] in the LABELS format.

    Returns:
        dict with ``reference_tracks``, ``tracks``, ``identical`` (tracks in both) and
        ``identical_fraction`` (identical / max(reference_tracks, tracks), 1.0 when both are empty).
    """
    reference, tracks = track_set(reference_labels), track_set(labels)
    identical = len(reference & tracks)
    larger = max(len(reference), len(tracks))
    return {
        "reference_tracks": len(reference),
        "tracks": len(tracks),
        "identical": identical,
        "identical_fraction": identical / larger if larger else 1.0,
    }


def scored_graph(debug_data: str):
    """The last scored graph of a ``debug_data.pt`` (``python -m gnn4itk.inference -s``) of a ModuleMap run.

    Returns:
        (edge_index LongTensor [2, E], scores FloatTensor [E], r2z2 FloatTensor [N]): what track building
        reads; r2z2 = r^2 + z^2 from the ModuleMap FEATURES columns (r is column 5, z column 2).
    """
    import torch

    data = torch.load(debug_data, weights_only=True)
    last = max(int(k[len("stage"):].split("_")[0]) for k in data if k.startswith("stage") and k.endswith("_scores"))
    nodes = data["node_features"]
    r2z2 = (nodes[:, 5] ** 2 + nodes[:, 2] ** 2).float()
    return data[f"stage{last}_edge_index"], data[f"stage{last}_scores"], r2z2
