"""Tracking performance: GNN4ITk efficiency, fake and duplicate rates, and the TrackML score.

* :mod:`~gnn4itk.metrics.matching` -- GNN4ITk's rates in acorn's three matching styles (``ATLAS``,
  ``one_way``, ``two_way``), following acorn's ``evaluate_labelled_graph`` + ``tracking_efficiency``, and
  :func:`evaluate_tracking`, which reports them with the TrackML score.
* :mod:`~gnn4itk.metrics.trackml` -- the TrackML challenge's per-spacepoint weights and score
  (``trackml.weights.weight_hits``, ``trackml.score.score_event``).
* :mod:`~gnn4itk.metrics.membership` -- what both are computed from: tracks in any form of
  :mod:`gnn4itk.tracks` as (row, track) membership pairs, truth tracks, shared counts.

``docs/metrics.md`` gives every formula. Everything is vectorised numpy/pandas: a mu=200 event (~140k
spacepoints, ~20k tracks) takes a fraction of a second. Every public name is importable from here.
"""

from gnn4itk.metrics.matching import (
    MATCHING_ALIASES,
    MATCHING_COUNTS,
    MATCHING_HEADER,
    MATCHING_STYLES,
    CandidatePairs,
    MatchingFigures,
    TrackingCuts,
    TrackingResult,
    candidate_pairs,
    combine_matching,
    evaluate_tracking,
    format_matching,
    match_styles,
    matching_rows,
    target_particle_mask,
)
from gnn4itk.metrics.membership import track_membership, tracks_from_table, truth_tracks
from gnn4itk.metrics.trackml import (
    ORDER_MAX_HITS,
    ORDER_MIN_HITS,
    ORDER_PROPOSAL,
    TRACKML_GENERATION_MASK,
    NoTrackMLWeight,
    order_weight_matrix,
    pt_weight,
    simulation_secondaries,
    trackml_score,
    trackml_weights,
)

__all__ = [
    "MATCHING_ALIASES",
    "MATCHING_COUNTS",
    "MATCHING_HEADER",
    "MATCHING_STYLES",
    "ORDER_MAX_HITS",
    "ORDER_MIN_HITS",
    "ORDER_PROPOSAL",
    "TRACKML_GENERATION_MASK",
    "CandidatePairs",
    "MatchingFigures",
    "NoTrackMLWeight",
    "TrackingCuts",
    "TrackingResult",
    "candidate_pairs",
    "combine_matching",
    "evaluate_tracking",
    "format_matching",
    "match_styles",
    "matching_rows",
    "order_weight_matrix",
    "pt_weight",
    "simulation_secondaries",
    "target_particle_mask",
    "track_membership",
    "trackml_score",
    "trackml_weights",
    "tracks_from_table",
    "truth_tracks",
]
