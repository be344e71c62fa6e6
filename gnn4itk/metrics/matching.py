"""GNN4ITk's efficiency, fake rate and duplicate rate, and :func:`evaluate_tracking`, which reports them with
the TrackML score.

The rates come in acorn's three matching styles, ``ATLAS``, ``one_way`` and ``two_way`` (double majority),
all computed by :func:`match_styles` from one table of track-particle pairs. The definitions follow
GNN4ITk's acorn (``evaluate_labelled_graph`` + ``tracking_efficiency``); ``docs/metrics.md`` gives every
formula.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from gnn4itk.event import Event
from gnn4itk.metrics.membership import require_truth, shared_counts, track_membership
from gnn4itk.metrics.trackml import NoTrackMLWeight, trackml_score


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
    require_truth(event)
    pid = event.hits["particle_id"].to_numpy(np.int64)
    rows, track = track_membership(tracks, len(pid), form)
    pairs = candidate_pairs(pid, rows, track, cuts)

    particles = event.particles
    if not particles["particle_id"].is_unique:
        raise ValueError("the particle table lists a particle_id more than once")
    nhits = pairs.particle_hits.reindex(particles["particle_id"].to_numpy(np.int64)).fillna(0).to_numpy(np.int64)
    target = target_particle_mask(particles, nhits, cuts)
    targets = pd.DataFrame(
        {
            "particle_id": particles["particle_id"].to_numpy(np.int64)[target],
            "pt": particles["pt"].to_numpy(np.float64)[target],
            "eta": particles["eta"].to_numpy(np.float64)[target],
            "nhits": nhits[target],
        }
    )

    matching, tracks_per_target = match_styles(
        pairs.pair_track, pairs.pair_pid, pairs.purity_ok, pairs.completeness_ok, pairs.n_candidates,
        targets["particle_id"].to_numpy(),
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
            "n_tracks": len(pairs.track_len),
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


@dataclass
class CandidatePairs:
    """The (candidate track, particle) pairs every matching style is decided on.

    Attributes:
        track_len: int64 [T], spacepoints of every track.
        candidate: bool [T], tracks with >= ``track_min_hits`` spacepoints (only these are matched).
        pair_track, pair_pid, shared: int64 [K], candidate tracks and the particles they share spacepoints
            with (noise left out), and how many.
        purity_ok, completeness_ok: bool [K], ``shared > f * track_len`` and ``shared > f * particle_hits``.
        particle_hits: Series, particle_id -> spacepoints of the particle in the event (noise left out).
    """

    track_len: np.ndarray
    candidate: np.ndarray
    pair_track: np.ndarray
    pair_pid: np.ndarray
    shared: np.ndarray
    purity_ok: np.ndarray
    completeness_ok: np.ndarray
    particle_hits: pd.Series

    @property
    def n_candidates(self) -> int:
        return int(self.candidate.sum())


def candidate_pairs(pid: np.ndarray, rows: np.ndarray, track: np.ndarray, cuts: TrackingCuts) -> CandidatePairs:
    """The :class:`CandidatePairs` of tracks given as membership pairs.

    Args:
        pid: int64 [N], particle id of every spacepoint (0: noise).
        rows, track: int64 [M], membership pairs (:func:`track_membership`); ``track`` dense.
        cuts: ``track_min_hits`` and ``matching_fraction``.
    """
    n_tracks = int(track.max()) + 1 if len(track) else 0
    track_len = np.bincount(track, minlength=n_tracks)
    particle_hits = pd.Series(pid[pid != 0]).value_counts()
    pair_track, pair_pid, shared = shared_counts(pid, rows, track)
    candidate = track_len >= cuts.track_min_hits
    # noise is no particle: it lengthens tracks but is never matched; only candidates take part
    keep = (pair_pid != 0) & candidate[pair_track]
    pair_track, pair_pid, shared = pair_track[keep], pair_pid[keep], shared[keep]
    return CandidatePairs(
        track_len,
        candidate,
        pair_track,
        pair_pid,
        shared,
        shared > cuts.matching_fraction * track_len[pair_track],
        shared > cuts.matching_fraction * particle_hits.reindex(pair_pid).to_numpy(),
        particle_hits,
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
