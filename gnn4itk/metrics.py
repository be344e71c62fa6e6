"""Tracking performance: GNN4ITk efficiency, fake and duplicate rates, and the TrackML score.

The rates come in acorn's three matching styles, ``ATLAS``, ``one_way`` and ``two_way`` (double majority),
all computed by :func:`match_styles` from one table of track-particle pairs. The definitions follow
GNN4ITk's acorn (``evaluate_labelled_graph`` + ``tracking_efficiency``) and the
TrackML challenge's ``trackml.score.score_event`` / ``trackml.weights.weight_hits``; ``docs/metrics.md``
gives every formula. Everything is vectorised numpy/pandas: a mu=200 event (~140k spacepoints, ~20k
tracks) takes a fraction of a second.

Tracks can be given in any of the three forms of :mod:`gnn4itk.tracks` (LABELS, per-spacepoint track
ids, list of row-index arrays). Internally they become (row, track) *membership pairs*, which also
allows tracks that share spacepoints (the efficiency metrics are defined for them; the TrackML score is
not, since the challenge gave every hit exactly one track).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from gnn4itk.event import Event

MATCHING_STYLES = ("ATLAS", "one_way", "two_way")
"""acorn's ``matching_style`` values (``evaluate_labelled_graph``), in the order every report prints them.

``ATLAS`` (acorn's default, used by its CTD2023 evaluation): a track's purity alone decides both whether the
track is matched (fake rate) and whether it reconstructs the particle (efficiency); ``one_way``: purity for
the track, completeness for the particle; ``two_way`` (double majority): both, for both. Every style is
always computed (:attr:`TrackingResult.matching`); ``TrackingCuts.matching`` only picks the headline one."""

MATCHING_ALIASES = {"double_majority": "two_way", "purity": "ATLAS"}
"""Earlier names of this package, still accepted by :class:`TrackingCuts` (``double_majority`` is acorn's
``two_way``; ``purity`` is acorn's ``ATLAS``)."""


@dataclass(frozen=True)
class TrackingCuts:
    """Every selection and matching cut of the tracking metrics, with the GNN4ITk defaults.

    Attributes:
        pt_min: target particles need ``pt >= pt_min`` [GeV].
        eta_max: target particles need ``|eta| <= eta_max`` (particle pseudorapidity).
        primary_only: target particles must be primaries.
        excluded_abs_pdg: ``|pdgId|`` values that are never targets (electrons by default).
        radius_max: target particles need production radius ``< radius_max`` [mm].
        particle_min_hits: target particles need at least this many spacepoints in the event.
        track_min_hits: candidate tracks need at least this many spacepoints.
        matching_fraction: a fraction must be strictly greater than this to count as a majority.
        matching: the *headline* style, one of :data:`MATCHING_STYLES` (or an alias of
            :data:`MATCHING_ALIASES`, stored under its acorn name): it gives ``TrackingResult.efficiency``,
            ``fake_rate``, ``duplicate_rate``, ``counts``, the ``reconstructed`` column of the target table
            and the plots. ``two_way`` (double majority) by default, as before the three styles were
            reported; all styles are computed whatever this says.
    """

    pt_min: float = 1.0
    eta_max: float = 4.0
    primary_only: bool = True
    excluded_abs_pdg: tuple[int, ...] = (11,)
    radius_max: float = 260.0
    particle_min_hits: int = 3
    track_min_hits: int = 5
    matching_fraction: float = 0.5
    matching: str = "two_way"

    def __post_init__(self):
        object.__setattr__(self, "matching", MATCHING_ALIASES.get(self.matching, self.matching))
        if self.matching not in MATCHING_STYLES:
            raise ValueError(f"unknown matching style {self.matching!r}; choose one of {MATCHING_STYLES}")
        if not 0.5 <= self.matching_fraction < 1.0:
            # Below 0.5 a track could match two particles and a particle two tracks by majority.
            raise ValueError(f"matching_fraction must be in [0.5, 1), got {self.matching_fraction}")
        object.__setattr__(self, "excluded_abs_pdg", tuple(abs(int(p)) for p in self.excluded_abs_pdg))


# --------------------------------------------------------------------------------------------------
# Track inputs


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
        labels = _as_int64(tracks)
        is_end = labels == -1
        # Track number of a LABELS entry = number of terminators before it.
        number = np.cumsum(is_end) - is_end
        rows, track = labels[~is_end], number[~is_end]
    elif form == "track_ids":
        ids = _as_int64(tracks)
        if len(ids) != num_hits:
            raise ValueError(f"track ids have length {len(ids)}, the event has {num_hits} spacepoints")
        rows = np.flatnonzero(ids >= 0)
        track = ids[rows]
    elif form == "list":
        arrays = [_as_int64(t) for t in tracks]
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


def _as_int64(values) -> np.ndarray:
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
    _require_truth(event)
    hits = event.hits
    pid = hits["particle_id"].to_numpy(np.int64)
    rows = np.flatnonzero(pid != 0)
    vertex = event.particles.set_index("particle_id")[["vx", "vy", "vz"]].reindex(pid[rows]).fillna(0.0)
    position = hits[["x", "y", "z"]].to_numpy(np.float64)[rows]
    distance = np.linalg.norm(position - vertex.to_numpy(np.float64), axis=1)
    order = np.lexsort((distance, pid[rows]))
    rows = rows[order]
    return np.split(rows, np.flatnonzero(np.diff(pid[rows])) + 1) if len(rows) else []


# --------------------------------------------------------------------------------------------------
# GNN4ITk efficiency, fake rate, duplicate rate


def _clean(value):
    """NaN becomes None (JSON)."""
    return None if isinstance(value, float) and math.isnan(value) else value


MATCHING_COUNTS = (
    "n_target_particles",
    "n_reconstructed_particles",
    "n_candidate_tracks",
    "n_matched_tracks",
    "n_duplicate_tracks",
)
"""The additive counts of :class:`MatchingFigures`."""


@dataclass(frozen=True)
class MatchingFigures:
    """Efficiency, fake and duplicate rate of one matching style, from counts that add up over events.

    Attributes:
        style: one of :data:`MATCHING_STYLES`.
        n_target_particles: target particles (the same for every style).
        n_reconstructed_particles: target particles reconstructed by at least one candidate track.
        n_candidate_tracks: tracks with at least ``track_min_hits`` spacepoints (the same for every style).
        n_matched_tracks: candidate tracks matched to a particle (any particle, target or not).
        n_duplicate_tracks: (reconstructing track, reconstructed target particle) pairs minus
            reconstructed target particles.
    """

    style: str
    n_target_particles: int
    n_reconstructed_particles: int
    n_candidate_tracks: int
    n_matched_tracks: int
    n_duplicate_tracks: int

    @property
    def efficiency(self) -> float:
        return _ratio(self.n_reconstructed_particles, self.n_target_particles)

    @property
    def fake_rate(self) -> float:
        return _ratio(self.n_fake_tracks, self.n_candidate_tracks)

    @property
    def duplicate_rate(self) -> float:
        return _ratio(self.n_duplicate_tracks, self.n_reconstructed_particles)

    @property
    def n_fake_tracks(self) -> int:
        return self.n_candidate_tracks - self.n_matched_tracks

    def __add__(self, other: MatchingFigures) -> MatchingFigures:
        """Counts of two events (or event sets) together; the rates follow from the summed counts."""
        if other.style != self.style:
            raise ValueError(f"cannot add {other.style} figures to {self.style} figures")
        counts = {k: getattr(self, k) + getattr(other, k) for k in MATCHING_COUNTS}
        return MatchingFigures(self.style, **counts)

    def as_dict(self) -> dict:
        """JSON-ready: the three rates (NaN becomes None), then the counts including ``n_fake_tracks``."""
        return {
            "efficiency": _clean(self.efficiency),
            "fake_rate": _clean(self.fake_rate),
            "duplicate_rate": _clean(self.duplicate_rate),
            **{k: getattr(self, k) for k in MATCHING_COUNTS},
            "n_fake_tracks": self.n_fake_tracks,
        }


def combine_matching(per_event) -> dict[str, MatchingFigures]:
    """Sum ``{style: MatchingFigures}`` dicts over events (every target particle and candidate track weighs
    the same, whatever event it is in).

    Args:
        per_event: iterable of dicts as :attr:`TrackingResult.matching`.

    Returns:
        ``{style: MatchingFigures}`` in :data:`MATCHING_STYLES` order (all counts 0 for no events).
    """
    total = {style: MatchingFigures(style, *(0 for _ in MATCHING_COUNTS)) for style in MATCHING_STYLES}
    for matching in per_event:
        total = {style: total[style] + matching[style] for style in MATCHING_STYLES}
    return total


MATCHING_HEADER = ("matching", "efficiency", "fake rate", "duplicate rate", "reconstructed/targets", "matched/candidates")


def matching_rows(matching: dict[str, MatchingFigures]) -> list[tuple[str, ...]]:
    """One row of strings per style (:data:`MATCHING_STYLES` order, ATLAS first) under :data:`MATCHING_HEADER`;
    a rate without denominator is ``n/a``."""

    def rate(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.4f}"

    rows = []
    for style in MATCHING_STYLES:
        f = matching[style]
        rows.append(
            (
                style,
                rate(f.efficiency),
                rate(f.fake_rate),
                rate(f.duplicate_rate),
                f"{f.n_reconstructed_particles}/{f.n_target_particles}",
                f"{f.n_matched_tracks}/{f.n_candidate_tracks}",
            )
        )
    return rows


def format_matching(matching: dict[str, MatchingFigures], cuts: TrackingCuts | None = None) -> str:
    """The compact plain-text table every report prints: one line per matching style, ATLAS first.

    Args:
        matching: ``{style: MatchingFigures}``.
        cuts: when given, a last line names the candidate-track length and majority cuts.
    """
    rows = [MATCHING_HEADER, *matching_rows(matching)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(MATCHING_HEADER))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    if cuts is not None:
        lines.append(
            f"(candidate tracks: >= {cuts.track_min_hits} spacepoints; majority: > {cuts.matching_fraction:g}; "
            "docs/metrics.md)"
        )
    return "\n".join(lines)


@dataclass
class TrackingResult:
    """Outcome of :func:`evaluate_tracking`.

    ``efficiency``, ``fake_rate``, ``duplicate_rate``, ``counts`` and the ``reconstructed`` column of
    ``target_particles`` are those of the headline style ``cuts.matching`` (``two_way`` by default);
    ``matching`` holds all three styles.

    Attributes:
        efficiency: reconstructed target particles / target particles (NaN without targets).
        fake_rate: candidate tracks matched to no particle / candidate tracks (NaN without candidates).
        duplicate_rate: (matching tracks of reconstructed targets - reconstructed targets) /
            reconstructed targets (NaN when none is reconstructed).
        trackml_score: TrackML score in [0, 1], or None when it is undefined (see ``trackml_note``).
        counts: n_tracks (all given), n_candidate_tracks, n_matched_tracks, n_fake_tracks,
            n_target_particles, n_reconstructed_particles, n_duplicate_tracks.
        target_particles: DataFrame, one row per target particle: ``particle_id, pt, eta, nhits,
            n_matching_tracks, reconstructed`` (headline style) and ``reconstructed_<style>`` for every style.
        cuts: the cuts used.
        matching: ``{style: MatchingFigures}`` for every style of :data:`MATCHING_STYLES`, in that order.
    """

    efficiency: float
    fake_rate: float
    duplicate_rate: float
    trackml_score: float | None
    counts: dict
    target_particles: pd.DataFrame = field(repr=False)
    cuts: TrackingCuts = field(default_factory=TrackingCuts)
    trackml_note: str = ""
    matching: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready summary (NaN becomes None): the headline figures and counts as before, then
        ``matching``: ``{style: MatchingFigures.as_dict()}`` for all three styles, ATLAS first."""
        return {
            "efficiency": _clean(self.efficiency),
            "fake_rate": _clean(self.fake_rate),
            "duplicate_rate": _clean(self.duplicate_rate),
            "trackml_score": _clean(self.trackml_score),
            **({"trackml_note": self.trackml_note} if self.trackml_note else {}),
            **self.counts,
            "matching": {style: figures.as_dict() for style, figures in self.matching.items()},
            "cuts": {**asdict(self.cuts), "excluded_abs_pdg": list(self.cuts.excluded_abs_pdg)},
        }


def target_particle_mask(particles: pd.DataFrame, nhits: np.ndarray, cuts: TrackingCuts) -> np.ndarray:
    """Which particles are targets (the denominator of the efficiency).

    Args:
        particles: particle table with ``pt, eta, primary, pdgId, radius``.
        nhits: int array [P], spacepoints of each particle in the event's spacepoint table.
        cuts: the selection.

    Returns:
        bool array [P].
    """
    missing = [c for c in ("pt", "eta", "primary", "pdgId", "radius") if c not in particles.columns]
    if missing:
        raise ValueError(f"particle table lacks columns {missing} needed for the target selection")
    mask = (particles["pt"].to_numpy() >= cuts.pt_min) & (np.abs(particles["eta"].to_numpy()) <= cuts.eta_max)
    mask &= particles["radius"].to_numpy() < cuts.radius_max
    mask &= ~np.isin(np.abs(particles["pdgId"].to_numpy(np.int64)), cuts.excluded_abs_pdg)
    mask &= np.asarray(nhits) >= cuts.particle_min_hits
    if cuts.primary_only:
        mask &= particles["primary"].to_numpy(bool)
    return mask


def _shared_counts(pid: np.ndarray, rows: np.ndarray, track: np.ndarray, weights: np.ndarray | None = None):
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


def evaluate_tracking(
    event: Event, tracks, cuts: TrackingCuts | None = None, form: str = "auto", trackml: bool = True
) -> TrackingResult:
    """GNN4ITk tracking metrics (and the TrackML score) of ``tracks`` against the truth of ``event``.

    Args:
        event: event with truth (``hits.particle_id``, ``particles``).
        tracks: tracks in any form of :func:`track_membership`.
        cuts: selection and matching cuts (GNN4ITk defaults when None).
        form: track form, see :func:`track_membership`.
        trackml: also compute the TrackML score.

    Returns:
        :class:`TrackingResult`.
    """
    cuts = cuts or TrackingCuts()
    _require_truth(event)
    pid = event.hits["particle_id"].to_numpy(np.int64)
    rows, track = track_membership(tracks, len(pid), form)
    n_tracks = int(track.max()) + 1 if len(track) else 0
    track_len = np.bincount(track, minlength=n_tracks)

    pid_nhits = pd.Series(pid[pid != 0]).value_counts()
    pair_track, pair_pid, shared = _shared_counts(pid, rows, track)
    real = pair_pid != 0  # noise is no particle: it lengthens tracks but is never matched
    pair_track, pair_pid, shared = pair_track[real], pair_pid[real], shared[real]
    # Only candidate tracks (>= track_min_hits spacepoints) take part in any matching.
    on_candidate = track_len[pair_track] >= cuts.track_min_hits
    pair_track, pair_pid, shared = pair_track[on_candidate], pair_pid[on_candidate], shared[on_candidate]
    n_candidates = int((track_len >= cuts.track_min_hits).sum())

    particles = event.particles
    if not particles["particle_id"].is_unique:
        raise ValueError("the particle table lists a particle_id more than once")
    nhits = pid_nhits.reindex(particles["particle_id"].to_numpy(np.int64)).fillna(0).to_numpy(np.int64)
    target = target_particle_mask(particles, nhits, cuts)
    targets = pd.DataFrame(
        {
            "particle_id": particles["particle_id"].to_numpy(np.int64)[target],
            "pt": particles["pt"].to_numpy(np.float64)[target],
            "eta": particles["eta"].to_numpy(np.float64)[target],
            "nhits": nhits[target],
        }
    )

    purity_ok = shared > cuts.matching_fraction * track_len[pair_track]
    completeness_ok = shared > cuts.matching_fraction * pid_nhits.reindex(pair_pid).to_numpy()
    matching, tracks_per_target = match_styles(
        pair_track, pair_pid, purity_ok, completeness_ok, n_candidates, targets["particle_id"].to_numpy()
    )
    for style in MATCHING_STYLES:
        targets[f"reconstructed_{style}"] = tracks_per_target[style] > 0
    targets["n_matching_tracks"] = tracks_per_target[cuts.matching]
    targets["reconstructed"] = targets["n_matching_tracks"] > 0
    headline = matching[cuts.matching]

    score, note = None, ""
    if trackml:
        if len(np.unique(rows)) != len(rows):
            note = "tracks share spacepoints; the TrackML score needs every spacepoint in at most one track"
        else:
            track_ids = np.full(len(pid), -1, dtype=np.int64)
            track_ids[rows] = track
            try:
                score = trackml_score(event, track_ids)
            except NoTrackMLWeight as error:
                note = str(error)

    return TrackingResult(
        efficiency=headline.efficiency,
        fake_rate=headline.fake_rate,
        duplicate_rate=headline.duplicate_rate,
        trackml_score=score,
        counts={
            "n_tracks": n_tracks,
            "n_candidate_tracks": headline.n_candidate_tracks,
            "n_matched_tracks": headline.n_matched_tracks,
            "n_fake_tracks": headline.n_fake_tracks,
            "n_target_particles": headline.n_target_particles,
            "n_reconstructed_particles": headline.n_reconstructed_particles,
            "n_duplicate_tracks": headline.n_duplicate_tracks,
        },
        target_particles=targets,
        cuts=cuts,
        trackml_note=note,
        matching=matching,
    )


def match_styles(
    pair_track: np.ndarray,
    pair_pid: np.ndarray,
    purity_ok: np.ndarray,
    completeness_ok: np.ndarray,
    n_candidate_tracks: int,
    target_ids: np.ndarray,
) -> tuple[dict[str, MatchingFigures], dict[str, np.ndarray]]:
    """All matching styles from one track-particle matching table (acorn ``evaluate_labelled_graph`` +
    ``tracking_efficiency``).

    Per style, a pair (t, p) *matches* t (the track is not fake) and *reconstructs* p (p counts for the
    efficiency and, with every further reconstructing track, for the duplicates) when:

    ========== ========================= =========================
    style      t matched                 p reconstructed by t
    ========== ========================= =========================
    ATLAS      purity                    purity
    one_way    purity                    completeness
    two_way    purity and completeness   purity and completeness
    ========== ========================= =========================

    Args:
        pair_track, pair_pid: int64 [K], the (candidate track, particle) pairs sharing spacepoints
            (noise and tracks shorter than ``track_min_hits`` already left out).
        purity_ok, completeness_ok: bool [K], ``n_shared > f * n_reco(t)`` and ``n_shared > f * n_true(p)``.
        n_candidate_tracks: candidate tracks, pairs or not (a candidate without a pair is fake).
        target_ids: int64 [P], the target particles' ids.

    Returns:
        ``{style: MatchingFigures}`` and ``{style: int64 [P]}``, the reconstructing tracks of each target,
        both in :data:`MATCHING_STYLES` order.
    """
    both = purity_ok & completeness_ok
    conditions = {"ATLAS": (purity_ok, purity_ok), "one_way": (purity_ok, completeness_ok), "two_way": (both, both)}
    figures, per_target = {}, {}
    for style in MATCHING_STYLES:
        matched, reconstructs = conditions[style]
        n_tracks = pd.Series(pair_pid[reconstructs]).value_counts().reindex(target_ids).fillna(0).to_numpy(np.int64)
        n_reco = int((n_tracks > 0).sum())
        figures[style] = MatchingFigures(
            style,
            n_target_particles=len(target_ids),
            n_reconstructed_particles=n_reco,
            n_candidate_tracks=n_candidate_tracks,
            n_matched_tracks=len(np.unique(pair_track[matched])),
            n_duplicate_tracks=int(n_tracks.sum()) - n_reco,
        )
        per_target[style] = n_tracks
    return figures, per_target


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def _require_truth(event: Event) -> None:
    if not event.has_truth:
        raise ValueError("the event has no truth (hits.particle_id and a particle table are needed)")


# --------------------------------------------------------------------------------------------------
# TrackML score

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
    _require_truth(event)
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
    track_ids = _as_int64(track_ids)
    if len(track_ids) != len(pid):
        raise ValueError(f"track ids have length {len(track_ids)}, the event has {len(pid)} spacepoints")
    weights = trackml_weights(event) if weights is None else np.asarray(weights, np.float64)
    rows = np.flatnonzero(track_ids >= 0)
    if len(rows) == 0:
        return 0.0
    _, track = np.unique(track_ids[rows], return_inverse=True)
    track = track.ravel().astype(np.int64)
    pair_track, pair_pid, shared, pair_weight = _shared_counts(pid, rows, track, weights)
    # Majority per track: most spacepoints first, then the smaller particle id (pairs come pid-sorted).
    order = np.lexsort((pair_pid, -shared, pair_track))
    first = order[np.r_[True, np.diff(pair_track[order]) != 0]]
    n_track = np.bincount(track)[pair_track[first]]
    n_particle = pd.Series(pid).value_counts().reindex(pair_pid[first]).to_numpy()
    good = (2 * shared[first] > n_track) & (2 * shared[first] > n_particle)
    return float(pair_weight[first][good].sum() / weights.sum())
