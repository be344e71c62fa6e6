"""``gnn4itk baseline``: ACTS's seeding + CKF on our events (``ckf``), and side-by-side scores (``compare``).

``gnn4itk baseline ckf --events DIR --output DIR`` runs :func:`gnn4itk.baseline.ckf.run_ckf` and writes
``event<ID:09d>-tracks.parquet`` (``hit_id, track_id``; what ``gnn4itk evaluate --tracks`` reads) per event,
then prints the three matching styles and the time per event.

``gnn4itk baseline compare --events DIR --source NAME=DIR ...`` scores several track folders on the same
events (docs/physics.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from gnn4itk.cli import UserError

NAME = "baseline"
HELP = "non-GNN baseline: ACTS seeding + CKF on our events (ckf), side-by-side scores of track folders (compare)"


def add_arguments(parser) -> None:
    from gnn4itk.baseline.ckf import CkfSettings

    d = CkfSettings()
    sub = parser.add_subparsers(dest="baseline", required=True, metavar="BASELINE")
    ckf = sub.add_parser("ckf", help="ACTS seeding + CKF + ambiguity resolution (pyacts, Generic detector)")
    ckf.add_argument("--events", required=True, nargs="+", help="event folder(s) or event prefix(es) (Parquet)")
    ckf.add_argument("--output", required=True, type=Path, help="folder for event<ID>-tracks.parquet")
    ckf.add_argument("--threads", type=int, default=1, help="ACTS sequencer threads, -1 = all cores (%(default)s)")
    ckf.add_argument("--limit", type=int, default=None, help="at most this many events")
    ckf.add_argument("--min-pt", type=float, default=d.min_pt, help="seed and track pT cut [GeV] (%(default)s)")
    ckf.add_argument(
        "--min-measurements", type=int, default=d.min_measurements, help="measurements per track (%(default)s)"
    )
    ckf.add_argument(
        "--seeding-layers",
        choices=["acts", "all-pixel"],
        default="acts",
        help="acts: ACTS's generic-seeding-config.json (barrel, 4 inner disks a side); all-pixel: every pixel layer",
    )
    ckf.add_argument("--json", type=Path, default=None, help="write timing and scores as JSON here")
    ckf.set_defaults(_baseline=_run_ckf)

    compare = sub.add_parser("compare", help="score track folders side by side on the same events")
    compare.add_argument("--events", required=True, help="event folder or one event prefix (Parquet or TrackML)")
    compare.add_argument(
        "--source", required=True, nargs="+", metavar="NAME=DIR", help="track folders (event<ID>-tracks.parquet)"
    )
    compare.add_argument("--sample", default=None, help="sample name in the table (default: the events' name)")
    compare.add_argument("--common", action="store_true", help="only the events every source has tracks for")
    compare.add_argument("--markdown", type=Path, default=None, help="append the table rows to this file")
    compare.add_argument("--json", type=Path, default=None, help="write the combined figures as JSON here")
    compare.set_defaults(_baseline=_run_compare)

    plot = sub.add_parser("plot", help="one figure: efficiency vs pT and eta, one column per sample, every source")
    plot.add_argument("--sample", required=True, nargs="+", metavar="NAME=EVENTS", help="samples: name and event folder")
    plot.add_argument(
        "--source", required=True, nargs="+", metavar="NAME=DIR",
        help="track folders; '{sample}' in DIR is replaced by the sample name",
    )
    plot.add_argument("--style", default="ATLAS", help="matching style of the efficiency (%(default)s)")
    plot.add_argument("--output", required=True, type=Path, help="PNG file")
    plot.set_defaults(_baseline=_run_plot)


def run(args) -> int:
    return args._baseline(args)


def _events(paths: list[str], limit: int | None):
    from gnn4itk.baseline.compare import event_inputs
    from gnn4itk.io.load import load_event

    prefixes = []
    for path in paths:
        try:
            prefixes += list(event_inputs(path).values())
        except ValueError as error:
            raise UserError(str(error)) from error
    if not prefixes:
        raise UserError(f"no events in {' '.join(paths)}")
    return [load_event(p) for p in prefixes[:limit]]


def _run_ckf(args) -> int:
    from gnn4itk.baseline.ckf import ALL_PIXEL_LAYERS, SEEDING_LAYERS, CkfSettings, run_ckf, settings_dict, tracks_table
    from gnn4itk.metrics import TrackingCuts, combine_matching, evaluate_tracking, format_matching

    events = _events(args.events, args.limit)
    layers = ALL_PIXEL_LAYERS if args.seeding_layers == "all-pixel" else SEEDING_LAYERS
    settings = CkfSettings(
        min_pt=args.min_pt, min_measurements=args.min_measurements, threads=args.threads, seeding_layers=layers
    )
    try:
        result = run_ckf(events, settings)
    except ValueError as error:
        raise UserError(str(error)) from error
    args.output.mkdir(parents=True, exist_ok=True)
    per_event = []
    for event, tracks in zip(events, result.tracks):
        tracks_table(event, tracks).to_parquet(args.output / f"event{event.event_id:09d}-tracks.parquet", index=False)
        row = {"event_id": event.event_id, "spacepoints": len(event.hits), "tracks": len(tracks)}
        if event.has_truth:
            row["matching"] = evaluate_tracking(event, tracks, TrackingCuts(matching="ATLAS"), form="list", trackml=False).matching
        per_event.append(row)
    n = len(events)
    reco = result.reconstruction_s()
    print(f"CKF: {n} event(s), {sum(r['tracks'] for r in per_event)} tracks -> {args.output}")
    print(
        f"  time/event  {result.wall_s / n:.2f} s wall ({settings.threads} thread(s), measurement conversion included); "
        f"ACTS algorithms {reco / n:.2f} s (seeding, CKF, ambiguity resolution; summed over threads)"
    )
    summary = {
        "events": n,
        "settings": settings_dict(settings),
        "wall_s_per_event": result.wall_s / n,
        "acts_algorithms_s_per_event": reco / n,
        "algorithm_s": result.algorithm_s,
        "per_event": [{k: v for k, v in r.items() if k != "matching"} for r in per_event],
    }
    scored = [r["matching"] for r in per_event if "matching" in r]
    if scored:
        combined = combine_matching(scored)
        print(format_matching(combined, TrackingCuts()))
        summary["matching"] = {style: figures.as_dict() for style, figures in combined.items()}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"{option} {item}: expected NAME=VALUE")
        out[name] = value
    return out


def _run_plot(args) -> int:
    from gnn4itk.baseline.compare import efficiency_figure, score_sources

    panels = []
    sources = _pairs(args.source, "--source")
    for sample, events in _pairs(args.sample, "--sample").items():
        folders = {name: Path(d.replace("{sample}", sample)) for name, d in sources.items()}
        folders = {name: d for name, d in folders.items() if d.is_dir()}
        scores = score_sources(events, folders, common_only=True)
        ids = scores[0].event_ids if scores else []
        print(f"{sample}: events {ids}, sources {', '.join(s.name for s in scores)}")
        panels.append((f"{sample} ({len(ids)} event{'s' if len(ids) != 1 else ''})", scores))
    path = efficiency_figure(panels, args.output, style=args.style)
    print(f"plot: {path} ({path.stat().st_size / 1024:.0f} kB)")
    return 0


def _run_compare(args) -> int:
    from gnn4itk.baseline.compare import MARKDOWN_HEADER, markdown_rows, score_sources
    from gnn4itk.metrics import format_matching

    sources = {}
    for item in args.source:
        name, sep, directory = item.partition("=")
        if not sep or not Path(directory).is_dir():
            raise UserError(f"--source {item}: expected NAME=DIR with an existing folder")
        sources[name] = Path(directory)
    try:
        scores = score_sources(args.events, sources, common_only=args.common)
    except ValueError as error:
        raise UserError(str(error)) from error
    sample = args.sample or Path(args.events).name
    for score in scores:
        print(f"{score.name}: events {score.event_ids}")
        print(format_matching(score.matching))
    rows = markdown_rows(sample, scores)
    print("\n".join(MARKDOWN_HEADER + rows))
    if args.markdown is not None:
        with args.markdown.open("a") as handle:
            handle.write("\n".join(rows) + "\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {s.name: {"events": s.event_ids, **{k: v.as_dict() for k, v in s.matching.items()}} for s in scores},
                indent=2,
            )
        )
    return 0
