"""Tracking metrics on hand-made events with known answers, an independent oracle, and the real event."""

from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
import torch
from tests.metrics_events import STYLES_EXPECTED, build_event, particle, rows_of, styles_event, styles_tracks

from gnn4itk.metrics import (
    MATCHING_STYLES,
    MatchingFigures,
    TrackingCuts,
    combine_matching,
    evaluate_tracking,
    format_matching,
    order_weight_matrix,
    pt_weight,
    track_membership,
    tracks_from_table,
    trackml_score,
    trackml_weights,
    truth_tracks,
)
from gnn4itk.plotting import binned_efficiency, efficiency_plots
from gnn4itk.tracks import join_tracks, labels_to_track_ids


def mixed_event():
    """Three targets plus one particle failing each target cut, and noise."""
    return build_event(
        [
            particle(1, 6),
            particle(2, 8, pt=5.0, eta=-1.0),
            particle(3, 10, pt=1.2, eta=2.5),
            particle(4, 7, pdg=-11),  # electron
            particle(5, 7, pt=0.8),  # low pT
            particle(6, 7, primary=False),  # secondary
            particle(7, 7, radius=300.0),  # produced outside 260 mm
            particle(8, 7, eta=4.2),  # forward of |eta| = 4
            particle(9, 2),  # too few spacepoints
        ],
        n_noise=5,
    )


def test_perfect_tracks_score_one():
    event = mixed_event()
    result = evaluate_tracking(event, truth_tracks(event))
    assert result.efficiency == 1.0
    assert result.fake_rate == 0.0
    assert result.duplicate_rate == 0.0
    assert result.trackml_score == pytest.approx(1.0, abs=1e-12)
    assert sorted(result.target_particles["particle_id"]) == [1, 2, 3]
    # 9 particles give 9 tracks; the 2-hit one is no candidate.
    assert result.counts["n_tracks"] == 9
    assert result.counts["n_candidate_tracks"] == 8
    assert result.counts["n_matched_tracks"] == 8


def test_truth_tracks_are_ordered_from_the_vertex():
    event = mixed_event()
    event.hits = event.hits.sample(frac=1.0, random_state=3).reset_index(drop=True)
    vertex = event.particles.set_index("particle_id")[["vx", "vy", "vz"]]
    tracks = truth_tracks(event)
    assert len(tracks) == 9
    for track in tracks:
        pid = event.hits["particle_id"].to_numpy()[track]
        assert len(set(pid)) == 1
        position = event.hits[["x", "y", "z"]].to_numpy()[track]
        distance = np.linalg.norm(position - vertex.loc[pid[0]].to_numpy(), axis=1)
        assert np.all(np.diff(distance) > 0)


def test_excluded_particles_become_targets_when_cuts_allow():
    event = mixed_event()
    loose = TrackingCuts(pt_min=0.5, eta_max=5.0, primary_only=False, excluded_abs_pdg=(), radius_max=1000.0)
    result = evaluate_tracking(event, truth_tracks(event), loose)
    assert sorted(result.target_particles["particle_id"]) == [1, 2, 3, 4, 5, 6, 7, 8]
    # The 2-hit particle becomes a target with particle_min_hits=2 but its 2-hit track is no candidate.
    result = evaluate_tracking(event, truth_tracks(event), TrackingCuts(particle_min_hits=2, primary_only=True))
    assert 9 in set(result.target_particles["particle_id"])
    assert result.efficiency == pytest.approx(3 / 4)


def split_event():
    return build_event([particle(1, 12), particle(2, 14)])


def test_split_track_double_majority_leaves_fakes():
    event = split_event()
    a, b = rows_of(event, 1), rows_of(event, 2)
    tracks = [a[:6], a[6:], b[:8], b[8:]]
    result = evaluate_tracking(event, tracks)
    # a: 6/12 is no majority, so neither half matches; b: the 8-hit half matches, the 6-hit one is fake.
    assert result.counts["n_reconstructed_particles"] == 1
    assert result.efficiency == 0.5
    assert result.counts["n_fake_tracks"] == 3
    assert result.fake_rate == 0.75
    assert result.duplicate_rate == 0.0


def test_split_track_purity_matching_gives_duplicates():
    event = split_event()
    a, b = rows_of(event, 1), rows_of(event, 2)
    result = evaluate_tracking(event, [a[:6], a[6:], b[:8], b[8:]], TrackingCuts(matching="purity"))
    assert result.efficiency == 1.0
    assert result.fake_rate == 0.0
    assert result.counts["n_duplicate_tracks"] == 2
    assert result.duplicate_rate == 1.0


def test_overlapping_split_is_a_duplicate_and_has_no_trackml_score():
    event = build_event([particle(1, 10), particle(2, 6)])
    a, b = rows_of(event, 1), rows_of(event, 2)
    result = evaluate_tracking(event, [a[:6], a[4:], b])
    assert result.efficiency == 1.0
    assert result.counts["n_duplicate_tracks"] == 1
    assert result.duplicate_rate == 0.5
    assert result.trackml_score is None
    assert "share spacepoints" in result.trackml_note
    assert result.as_dict()["trackml_score"] is None


@pytest.mark.parametrize(
    ("n_first", "n_second", "matched"),
    [(10, 4, True), (7, 5, True), (6, 6, False)],
)
def test_merged_track_matches_only_by_double_majority(n_first, n_second, matched):
    event = build_event([particle(1, n_first), particle(2, n_second, pt=0.5)])
    merged = np.concatenate([rows_of(event, 1), rows_of(event, 2)])
    result = evaluate_tracking(event, [merged])
    assert result.counts["n_candidate_tracks"] == 1
    assert result.fake_rate == (0.0 if matched else 1.0)
    assert result.efficiency == (1.0 if matched else 0.0)


def test_noise_only_track_is_fake_and_scores_nothing():
    event = build_event([particle(1, 8)], n_noise=6)
    noise = np.flatnonzero(event.hits["particle_id"].to_numpy() == 0)
    result = evaluate_tracking(event, [rows_of(event, 1), noise])
    assert result.fake_rate == 0.5
    assert result.efficiency == 1.0
    assert result.trackml_score == pytest.approx(1.0)
    only_noise = evaluate_tracking(event, [noise])
    assert only_noise.fake_rate == 1.0
    assert only_noise.trackml_score == 0.0


def test_short_tracks_are_not_candidates():
    event = build_event([particle(1, 8)])
    result = evaluate_tracking(event, [rows_of(event, 1)[:4]])
    assert result.counts["n_candidate_tracks"] == 0
    assert np.isnan(result.fake_rate)
    assert result.efficiency == 0.0
    assert np.isnan(result.duplicate_rate)
    assert result.as_dict()["fake_rate"] is None


def test_matching_fraction_is_configurable():
    event = build_event([particle(1, 10)])
    track = [rows_of(event, 1)[:7]]
    assert evaluate_tracking(event, track).efficiency == 1.0
    assert evaluate_tracking(event, track, TrackingCuts(matching_fraction=0.7)).efficiency == 0.0
    assert evaluate_tracking(event, track, TrackingCuts(matching_fraction=0.69)).efficiency == 1.0


def test_bad_cuts_are_rejected():
    with pytest.raises(ValueError, match="matching style"):
        TrackingCuts(matching="best")
    with pytest.raises(ValueError, match="matching_fraction"):
        TrackingCuts(matching_fraction=0.4)


# ---------------------------------------------------------------------------------------- matching styles


def test_three_matching_styles_on_the_styles_event():
    event = styles_event()
    result = evaluate_tracking(event, styles_tracks(event))
    assert list(result.matching) == ["ATLAS", "one_way", "two_way"] == list(MATCHING_STYLES)
    for style, (eff, fake, dup, n_reco, n_matched, n_dup) in STYLES_EXPECTED.items():
        figures = result.matching[style]
        assert (figures.efficiency, figures.fake_rate, figures.duplicate_rate) == pytest.approx((eff, fake, dup)), style
        assert (figures.n_reconstructed_particles, figures.n_matched_tracks, figures.n_duplicate_tracks) == (
            n_reco,
            n_matched,
            n_dup,
        ), style
        assert (figures.n_target_particles, figures.n_candidate_tracks, figures.n_fake_tracks) == (5, 7, 7 - n_matched)
    # The headline figures stay double majority (two_way) by default.
    assert result.cuts.matching == "two_way"
    assert (result.efficiency, result.fake_rate, result.duplicate_rate) == pytest.approx((2 / 5, 3 / 7, 1 / 2))
    assert result.counts["n_tracks"] == 8 and result.counts["n_candidate_tracks"] == 7
    targets = result.target_particles.set_index("particle_id")
    reconstructed = {style: sorted(targets.index[targets[f"reconstructed_{style}"]]) for style in MATCHING_STYLES}
    assert reconstructed == {"ATLAS": [1, 3, 4], "one_way": [2, 3, 4, 5], "two_way": [3, 4]}
    assert targets["n_matching_tracks"].to_dict() == {1: 0, 2: 0, 3: 1, 4: 2, 5: 0}
    summary = result.as_dict()
    assert list(summary["matching"]) == ["ATLAS", "one_way", "two_way"]
    assert summary["matching"]["one_way"]["efficiency"] == pytest.approx(0.8)
    assert summary["matching"]["two_way"]["n_fake_tracks"] == 3


@pytest.mark.parametrize(
    ("style", "efficiency", "fake_rate", "duplicate_rate"),
    [("ATLAS", 3 / 5, 1 / 7, 2 / 3), ("one_way", 4 / 5, 1 / 7, 1 / 4), ("two_way", 2 / 5, 3 / 7, 1 / 2), ("purity", 3 / 5, 1 / 7, 2 / 3)],
)
def test_headline_style_follows_the_cuts(style, efficiency, fake_rate, duplicate_rate):
    event = styles_event()
    result = evaluate_tracking(event, styles_tracks(event), TrackingCuts(matching=style))
    assert (result.efficiency, result.fake_rate, result.duplicate_rate) == pytest.approx((efficiency, fake_rate, duplicate_rate))
    assert result.cuts.matching in MATCHING_STYLES  # aliases are stored under acorn's name
    assert result.target_particles["reconstructed"].equals(result.target_particles[f"reconstructed_{result.cuts.matching}"])


def test_old_style_names_are_aliases():
    assert TrackingCuts(matching="purity").matching == "ATLAS"
    assert TrackingCuts(matching="double_majority").matching == "two_way"
    assert TrackingCuts().matching == "two_way"


def one_case(case: str):
    """Single failure modes; every particle is a target. Returns (event, tracks)."""
    if case == "split 6+6":  # A (12) in two halves: pure, but neither holds more than half of A
        event = build_event([particle(1, 12)])
        a = rows_of(event, 1)
        return event, [a[:6], a[6:]]
    if case == "merge 6+7":  # B (6) and C (7) in one 13-hit track: C holds 7/13, B 6/13 of it; both complete
        event = build_event([particle(1, 6), particle(2, 7)])
        return event, [np.concatenate([rows_of(event, 1), rows_of(event, 2)])]
    if case == "half noise":  # 5 of E's 8 spacepoints plus 5 noise: purity 1/2 (not more), completeness 5/8
        event = build_event([particle(1, 8)], n_noise=5)
        noise = np.flatnonzero(event.hits["particle_id"].to_numpy() == 0)
        return event, [np.concatenate([rows_of(event, 1)[:5], noise])]
    if case == "overlap":  # D (10) as 0-5 and 4-9: both pure and 6/10 complete
        event = build_event([particle(1, 10)])
        d = rows_of(event, 1)
        return event, [d[:6], d[4:]]
    if case == "fragment":  # 5 pure spacepoints of a 12-spacepoint particle, the rest unassigned
        event = build_event([particle(1, 12)])
        return event, [rows_of(event, 1)[:5]]
    raise ValueError(case)


NAN = float("nan")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # (efficiency, fake rate, duplicate rate) for ATLAS, one_way, two_way
        ("split 6+6", {"ATLAS": (1, 0, 1), "one_way": (0, 0, NAN), "two_way": (0, 1, NAN)}),
        # one_way: one track reconstructs both B and C (2 pairs, 2 particles: no duplicate)
        ("merge 6+7", {"ATLAS": (1 / 2, 0, 0), "one_way": (1, 0, 0), "two_way": (1 / 2, 0, 0)}),
        ("half noise", {"ATLAS": (0, 1, NAN), "one_way": (1, 1, 0), "two_way": (0, 1, NAN)}),
        ("overlap", {"ATLAS": (1, 0, 1), "one_way": (1, 0, 1), "two_way": (1, 0, 1)}),
        ("fragment", {"ATLAS": (1, 0, 0), "one_way": (0, 0, NAN), "two_way": (0, 1, NAN)}),
    ],
)
def test_single_failure_modes_in_every_style(case, expected):
    event, tracks = one_case(case)
    result = evaluate_tracking(event, tracks)
    for style, want in expected.items():
        f = result.matching[style]
        np.testing.assert_equal((f.efficiency, f.fake_rate, f.duplicate_rate), want, err_msg=f"{case}, {style}")


def test_matching_figures_add_up_and_print_atlas_first():
    event = styles_event()
    once = evaluate_tracking(event, styles_tracks(event)).matching
    perfect = evaluate_tracking(event, truth_tracks(event)).matching
    both = combine_matching([once, perfect])
    # Perfect tracks: 5 targets all reconstructed once, 6 candidate tracks all matched.
    assert both["two_way"] == MatchingFigures("two_way", 10, 7, 13, 10, 1)
    assert both["ATLAS"].efficiency == pytest.approx(8 / 10) and both["ATLAS"].duplicate_rate == pytest.approx(2 / 8)
    assert combine_matching([])["ATLAS"].as_dict()["efficiency"] is None
    with pytest.raises(ValueError, match="cannot add"):
        both["ATLAS"] + both["two_way"]
    lines = format_matching(once, TrackingCuts()).splitlines()
    assert lines[0].split()[:2] == ["matching", "efficiency"]
    assert [line.split()[0] for line in lines[1:4]] == ["ATLAS", "one_way", "two_way"]
    assert lines[1].split()[1:] == ["0.6000", "0.1429", "0.6667", "3/5", "6/7"]
    assert lines[3].split()[1:] == ["0.4000", "0.4286", "0.5000", "2/5", "4/7"]
    assert ">= 5 spacepoints" in lines[4] and "> 0.5" in lines[4]
    empty = format_matching(evaluate_tracking(*one_case("split 6+6")).matching).splitlines()
    assert empty[2].split()[1:4] == ["0.0000", "0.0000", "n/a"]


# ---------------------------------------------------------------------------------------- track forms


def test_all_track_forms_agree():
    event = mixed_event()
    tracks = truth_tracks(event)
    tracks = [tracks[0][:3], *tracks[1:]]  # one short track, so the forms carry some disagreement
    labels = join_tracks(tracks)
    ids = labels_to_track_ids(labels, len(event.hits))
    table = pd.DataFrame({"hit_id": event.hits["hit_id"], "track_id": ids}).sample(frac=1.0, random_state=1)
    expected = evaluate_tracking(event, tracks).as_dict()
    assert evaluate_tracking(event, torch.from_numpy(labels), form="labels").as_dict() == expected
    assert evaluate_tracking(event, labels[:-1]).as_dict() == expected  # missing final terminator
    assert evaluate_tracking(event, ids, form="track_ids").as_dict() == expected
    assert evaluate_tracking(event, tracks_from_table(event.hits, table)).as_dict() == expected


def test_track_membership_errors():
    rows, track = track_membership(np.array([0, 1, -1]), 3)  # arrays are LABELS unless told otherwise
    assert rows.tolist() == [0, 1] and track.tolist() == [0, 0]
    with pytest.raises(ValueError, match="outside"):
        track_membership(np.array([0, 5, -1]), 4)
    with pytest.raises(ValueError, match="more than once"):
        track_membership([np.array([0, 1, 1])], 4)
    with pytest.raises(ValueError, match="unknown track form"):
        track_membership([], 4, form="csv")
    with pytest.raises(ValueError, match="length"):
        track_membership(np.array([0, 0]), 4, form="track_ids")


def test_empty_labels():
    event = build_event([particle(1, 8)])
    result = evaluate_tracking(event, np.array([-1]))
    assert result.counts["n_tracks"] == 0
    assert result.efficiency == 0.0
    assert result.trackml_score == 0.0


def test_tracks_from_table_rejects_unknown_hits():
    event = build_event([particle(1, 5)])
    with pytest.raises(ValueError, match="not in the event"):
        tracks_from_table(event.hits, pd.DataFrame({"hit_id": [1, 999], "track_id": [0, 0]}))
    with pytest.raises(ValueError, match="track_id"):
        tracks_from_table(event.hits, pd.DataFrame({"hit_id": [1]}))


def test_event_without_truth_is_rejected():
    event = build_event([particle(1, 5)])
    event.particles = None
    with pytest.raises(ValueError, match="no truth"):
        evaluate_tracking(event, [np.arange(5)])


# ---------------------------------------------------------------------------------------- TrackML score


def test_order_and_pt_weights_by_hand():
    # 4 hits: the 9-point profile stretched over 0..3 is sampled at 10, 16/3, 3, 6 (sum 73/3).
    np.testing.assert_allclose(order_weight_matrix()[4, :4], np.array([30, 16, 9, 18]) / 73)
    assert order_weight_matrix()[3].sum() == 0.0
    np.testing.assert_allclose(order_weight_matrix()[5:].sum(axis=1), 1.0)
    np.testing.assert_allclose(pt_weight([0.01, 0.3, 1.75, 3.0, 50.0]), [0.0, 0.2, 0.6, 1.0, 1.0])


def hand_event():
    """A: 4 hits at 5 GeV; B: 4 hits at 1.75 GeV; C: 3 hits (weightless); 2 noise hits."""
    return build_event([particle(1, 4, pt=5.0), particle(2, 4, pt=1.75), particle(3, 3, pt=10.0)], n_noise=2)


def test_computed_trackml_weights_by_hand():
    event = hand_event()
    weights = trackml_weights(event)
    profile = np.array([30, 16, 9, 18]) / 73
    expected = np.concatenate([profile * 1.0, profile * 0.6, np.zeros(3 + 2)]) / 1.6
    np.testing.assert_allclose(weights, expected)


def test_trackml_score_by_hand():
    event = hand_event()
    a, b, c = rows_of(event, 1), rows_of(event, 2), rows_of(event, 3)
    noise = np.flatnonzero(event.hits["particle_id"].to_numpy() == 0)
    ids = np.full(len(event.hits), -1)
    ids[np.concatenate([a, noise[:1]])] = 0  # A (4/5 of the track, all of A): scores A's weight
    ids[np.concatenate([b[:3], c[:2]])] = 1  # B 3/5 of the track, 3/4 of B: scores B's first 3 hits
    expected = 1.0 / 1.6 + (30 + 16 + 9) / 73 * 0.6 / 1.6
    assert trackml_score(event, ids) == pytest.approx(expected)
    # B split 2 + 2: no half holds more than half of B, so only A scores.
    ids[b[2:]] = 2
    ids[c[:2]] = -1
    assert trackml_score(event, ids) == pytest.approx(1.0 / 1.6)


def test_trackml_weight_ties_follow_the_challenge_rank():
    event = build_event([particle(1, 5, pt=5.0)])
    event.hits.loc[2, "z"] = event.hits.loc[1, "z"]  # hits 1 and 2 tie at average rank 1.5 -> index 1
    weights = trackml_weights(event)
    row = order_weight_matrix()[5]
    expected = np.array([row[0], row[1], row[1], row[3], row[4]])
    np.testing.assert_allclose(weights, expected / expected.sum())


def test_trackml_weights_from_column_are_normalised_and_masked():
    event = build_event(
        [particle(1, 4), particle(2, 3)], n_noise=1, weights={1: [0.1, 0.1, 0.2, 0.2], 2: [0.3, 0.3, 0.3]}
    )
    event.hits.loc[len(event.hits) - 1, "weight"] = 0.5  # noise weight is dropped
    weights = trackml_weights(event)
    np.testing.assert_allclose(weights, [1 / 6, 1 / 6, 2 / 6, 2 / 6, 0, 0, 0, 0])
    ids = np.full(len(event.hits), -1)
    ids[rows_of(event, 1)[:3]] = 0
    assert trackml_score(event, ids) == pytest.approx(4 / 6)


def oracle(event, tracks, fraction=0.5, min_len=5, target_ids=()):
    """Naive per-track loops, written independently of the vectorised code.

    Returns the TrackML score and, per matching style, efficiency, fake rate and duplicate tracks.
    """
    pid = event.hits["particle_id"].tolist()
    true_n = Counter(p for p in pid if p != 0)
    all_n = Counter(pid)
    reconstructs = {style: defaultdict(int) for style in ("ATLAS", "one_way", "two_way")}
    track_ok = {style: [] for style in reconstructs}
    score = 0.0
    weights = trackml_weights(event)
    for track in tracks:
        counts = Counter(pid[i] for i in track)
        if len(track) >= min_len:
            ok = dict.fromkeys(reconstructs, False)
            for p, n in counts.items():
                if p == 0:
                    continue
                pure, complete = n > fraction * len(track), n > fraction * true_n[p]
                for style, matched, reco in (
                    ("ATLAS", pure, pure),
                    ("one_way", pure, complete),
                    ("two_way", pure and complete, pure and complete),
                ):
                    ok[style] |= matched
                    reconstructs[style][p] += reco
            for style in reconstructs:
                track_ok[style].append(ok[style])
        best = min(counts, key=lambda p: (-counts[p], p))
        if 2 * counts[best] > len(track) and 2 * counts[best] > all_n[best]:
            score += sum(weights[i] for i in track if pid[i] == best)
    styles = {}
    for style, matches in reconstructs.items():
        reco = [p for p in target_ids if matches[p]]
        styles[style] = {
            "efficiency": len(reco) / len(target_ids),
            "fake_rate": 1 - sum(track_ok[style]) / len(track_ok[style]),
            "n_duplicate_tracks": sum(matches[p] for p in reco) - len(reco),
        }
    return {"trackml_score": score, **styles}


def test_random_tracks_agree_with_naive_oracle():
    rng = np.random.default_rng(11)
    specs = [particle(i, int(rng.integers(3, 16)), pt=float(rng.uniform(0.3, 6))) for i in range(1, 61)]
    event = build_event(specs, n_noise=40)
    track_ids = np.full(len(event.hits), -1)
    for number, track in enumerate(truth_tracks(event)):
        track_ids[track] = number
    flip = rng.random(len(track_ids)) < 0.3  # reassign 30% of hits at random, leave some unassigned
    track_ids[flip] = rng.integers(-1, 70, flip.sum())
    for t in range(10):  # merge ten pairs of tracks: complete but impure tracks, where one_way differs
        track_ids[track_ids == t + 10] = t
    for t in range(20, 30):  # split ten tracks in halves: pure but incomplete tracks, where ATLAS differs
        rows = np.flatnonzero(track_ids == t)
        track_ids[rows[len(rows) // 2 :]] = 70 + t
    tracks = [np.flatnonzero(track_ids == t) for t in range(100) if (track_ids == t).any()]
    result = evaluate_tracking(event, tracks)
    want = oracle(event, tracks, target_ids=result.target_particles["particle_id"].tolist())
    assert result.efficiency == pytest.approx(want["two_way"]["efficiency"])
    assert result.fake_rate == pytest.approx(want["two_way"]["fake_rate"])
    assert result.counts["n_duplicate_tracks"] == want["two_way"]["n_duplicate_tracks"]
    for style in MATCHING_STYLES:
        figures = result.matching[style]
        assert figures.efficiency == pytest.approx(want[style]["efficiency"]), style
        assert figures.fake_rate == pytest.approx(want[style]["fake_rate"]), style
        assert figures.n_duplicate_tracks == want[style]["n_duplicate_tracks"], style
    # The random tracks tell the styles apart, so the comparison checks each style's own rule.
    assert len({round(result.matching[s].efficiency, 9) for s in MATCHING_STYLES}) == 3
    assert result.matching["ATLAS"].fake_rate < result.matching["two_way"].fake_rate
    assert result.trackml_score == pytest.approx(want["trackml_score"])
    assert 0.0 < result.trackml_score < 1.0


# ---------------------------------------------------------------------------------------- plots


def test_binned_efficiency_and_binomial_errors():
    table = binned_efficiency([1.2, 1.3, 1.4, 1.6, 7.0], [True, True, False, True, False], [1.0, 1.5, 2.0, 5.0])
    assert table["total"].tolist() == [3, 1, 0]
    assert table["passed"].tolist() == [2, 1, 0]
    assert table["efficiency"].iloc[0] == pytest.approx(2 / 3)
    assert table["error"].iloc[0] == pytest.approx(np.sqrt(2 / 3 * 1 / 3 / 3))
    assert table["error"].iloc[1] == 0.0
    assert np.isnan(table["efficiency"].iloc[2])
    with pytest.raises(ValueError, match="increasing"):
        binned_efficiency([1.0], [True], [2.0, 1.0])


def test_efficiency_plots_are_pngs(tmp_path):
    event = mixed_event()
    result = evaluate_tracking(event, truth_tracks(event))
    paths = efficiency_plots(result.target_particles, tmp_path / "plots")
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulation_secondaries_get_no_computed_weight():
    event = build_event([particle(1, 5, pt=5.0), particle(2, 5, pt=5.0)])
    event.particles["generation"] = [0, 1]
    weights = trackml_weights(event)
    assert weights[rows_of(event, 2)].sum() == 0.0
    assert weights[rows_of(event, 1)].sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------- the real event


@pytest.fixture(scope="module")
def real_event(trackml_dir):
    from gnn4itk.io.trackml import read_trackml_event

    return read_trackml_event(trackml_dir / "event000000001")


def test_real_event_perfect_tracks(real_event):
    result = evaluate_tracking(real_event, truth_tracks(real_event))
    assert result.counts["n_target_particles"] > 20
    assert result.efficiency == 1.0
    assert result.fake_rate == 0.0
    assert result.duplicate_rate == 0.0
    assert result.trackml_score == pytest.approx(1.0, abs=1e-9)


def test_real_event_computed_weights_reproduce_the_released_ones(real_event):
    from gnn4itk.event import Event

    released = trackml_weights(real_event)
    bare = Event(hits=real_event.hits.drop(columns=["weight"]), particles=real_event.particles, meta=real_event.meta)
    # The truth file stores float32 weights of the full event; after normalisation both agree to float32.
    np.testing.assert_allclose(trackml_weights(bare), released, rtol=0, atol=1e-5 * released.max())
    assert (released == 0).sum() > (real_event.hits["particle_id"] == 0).sum()  # noise and secondaries


def test_real_event_degraded_tracks_score_below_one(real_event):
    rng = np.random.default_rng(5)
    tracks = truth_tracks(real_event)
    track_ids = np.full(len(real_event.hits), -1)
    for number, track in enumerate(tracks):
        track_ids[track] = number
    drop = rng.random(len(track_ids)) < 0.2
    track_ids[drop] = -1
    result = evaluate_tracking(real_event, track_ids, form="track_ids")
    assert 0.6 < result.trackml_score < 0.95
    # Every remaining track is pure; it is fake when it keeps no more than half of its particle.
    kept = np.bincount(track_ids[track_ids >= 0])
    full = np.array([len(t) for t in tracks])[: len(kept)]
    candidates = kept >= 5
    assert result.counts["n_candidate_tracks"] == candidates.sum()
    assert result.counts["n_fake_tracks"] == (candidates & (2 * kept <= full)).sum() > 0


def test_duplicate_particle_rows_are_rejected():
    event = build_event([particle(1, 5)])
    event.particles = pd.concat([event.particles, event.particles])
    with pytest.raises(ValueError, match="more than once"):
        evaluate_tracking(event, [rows_of(event, 1)])


def test_metrics_benchmark_runs_small(capsys):
    from gnn4itk.cli import main

    assert main(["bench", "metrics", "--hits", "3000", "--particles", "2000", "--tracks", "200", "--repeats", "1"]) == 0
    assert "evaluate, LABELS, with TrackML score" in capsys.readouterr().out
    assert main(["bench", "metrics", "--device", "cuda"]) == 2


def test_event_without_weighted_particles_has_no_trackml_score():
    event = build_event([particle(1, 3), particle(2, 3)])
    result = evaluate_tracking(event, truth_tracks(event))
    assert result.trackml_score is None
    assert "no spacepoint carries TrackML weight" in result.trackml_note
    with pytest.raises(ValueError, match="TrackML weight"):
        trackml_weights(event)
