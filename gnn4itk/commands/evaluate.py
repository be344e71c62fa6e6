"""``gnn4itk evaluate``: tracking efficiency, fake and duplicate rates and TrackML score of one event."""

from __future__ import annotations

import json
from pathlib import Path

from gnn4itk.cli import UserError

NAME = "evaluate"
HELP = "score track candidates against truth: efficiency, fake/duplicate rate, TrackML score, plots"


def add_arguments(parser) -> None:
    from gnn4itk.metrics import MATCHING_ALIASES, MATCHING_STYLES, TrackingCuts

    d = TrackingCuts()
    parser.add_argument("--event", required=True, help="event with truth (any input load_event reads)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--tracks", type=Path, help="LABELS .pt (torch int64 [L], tracks ended by -1) or .parquet/.csv with hit_id, track_id"
    )
    source.add_argument("--truth-tracks", action="store_true", help="score perfect tracks built from truth")
    cuts = parser.add_argument_group("cuts (GNN4ITk defaults)")
    cuts.add_argument("--pt-min", type=float, default=d.pt_min, help="target pT >= this [GeV] (%(default)s)")
    cuts.add_argument("--eta-max", type=float, default=d.eta_max, help="target |eta| <= this (%(default)s)")
    cuts.add_argument("--radius-max", type=float, default=d.radius_max, help="target production radius < this [mm] (%(default)s)")
    cuts.add_argument("--particle-min-hits", type=int, default=d.particle_min_hits, help="target spacepoints >= this (%(default)s)")
    cuts.add_argument("--track-min-hits", type=int, default=d.track_min_hits, help="candidate track length >= this (%(default)s)")
    cuts.add_argument("--matching-fraction", type=float, default=d.matching_fraction, help="majority threshold, strict (%(default)s)")
    cuts.add_argument(
        "--matching",
        choices=[*MATCHING_STYLES, *MATCHING_ALIASES],
        default=d.matching,
        help="headline style of the JSON top-level figures and the plots; all three are printed and in the JSON's "
        "'matching' (%(default)s)",
    )
    cuts.add_argument("--include-secondaries", action="store_true", help="do not require primary target particles")
    cuts.add_argument(
        "--exclude-pdg", type=int, nargs="*", default=list(d.excluded_abs_pdg), help="|pdgId| never targets (%(default)s)"
    )
    parser.add_argument("--plots", type=Path, default=None, help="write efficiency_vs_{pt,eta}.png here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")


def _load_event(path: str):
    from gnn4itk.io.load import load_event

    return load_event(path)


def _load_tracks(path: Path, event):
    """Tracks and their form from a LABELS .pt file or a hit_id/track_id table."""
    import pandas as pd
    import torch

    from gnn4itk.metrics import tracks_from_table

    if not path.exists():
        raise UserError(f"no tracks file {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix == ".pt":
        labels = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
            raise UserError(f"{path}: expected a 1-D integer LABELS tensor, got {type(labels).__name__}")
        return labels, "labels"
    if suffix == ".parquet":
        table = pd.read_parquet(path)
    elif suffix in (".csv", ".csv.gz"):
        table = pd.read_csv(path)
    else:
        raise UserError(f"{path}: tracks must be .pt (LABELS), .parquet or .csv (hit_id, track_id)")
    try:
        return tracks_from_table(event.hits, table), "list"
    except ValueError as error:
        raise UserError(f"{path}: {error}") from error


def _print_table(result, source: str) -> None:
    """The three matching styles (ATLAS first), then the TrackML score and the track counts."""
    from gnn4itk.metrics import format_matching

    print(f"Tracking performance: {source}")
    print(format_matching(result.matching, result.cuts))
    score = "n/a" if result.trackml_score is None else f"{result.trackml_score:.4f}"
    print(f"TrackML score {score}" + (f" ({result.trackml_note})" if result.trackml_note else ""))
    c = result.counts
    print(
        f"{c['n_tracks']} tracks, {c['n_candidate_tracks']} candidates, {c['n_target_particles']} target particles; "
        f"headline style (JSON top level, plots): {result.cuts.matching}"
    )


def run(args) -> int:
    from gnn4itk.metrics import TrackingCuts, evaluate_tracking, truth_tracks

    try:
        cuts = TrackingCuts(
            pt_min=args.pt_min,
            eta_max=args.eta_max,
            primary_only=not args.include_secondaries,
            excluded_abs_pdg=tuple(args.exclude_pdg),
            radius_max=args.radius_max,
            particle_min_hits=args.particle_min_hits,
            track_min_hits=args.track_min_hits,
            matching_fraction=args.matching_fraction,
            matching=args.matching,
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    event = _load_event(args.event)
    if not event.has_truth:
        raise UserError(f"{args.event}: the event has no truth; evaluation needs particle_id and particles")
    if args.truth_tracks:
        tracks, form, source = truth_tracks(event), "list", "truth tracks"
    else:
        (tracks, form), source = _load_tracks(args.tracks, event), args.tracks.name
    try:
        result = evaluate_tracking(event, tracks, cuts, form=form)
    except ValueError as error:
        raise UserError(str(error)) from error
    _print_table(result, source)
    summary = result.as_dict()
    if args.plots is not None:
        from gnn4itk.plotting import efficiency_plots

        paths = efficiency_plots(result.target_particles, args.plots, title=f"event {event.event_id}")
        summary["plots"] = {k: str(v) for k, v in paths.items()}
        print(f"plots: {', '.join(summary['plots'].values())}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"event": str(args.event), "tracks": source, **summary}, indent=2))
    return 0
