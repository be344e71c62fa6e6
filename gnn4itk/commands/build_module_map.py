"""``gnn4itk build-module-map``: create a module map from simulated events with truth."""

from __future__ import annotations

from pathlib import Path

NAME = "build-module-map"
HELP = "create a module map (doublets and triplets with cut windows) from events with truth"


def add_arguments(parser) -> None:
    parser.add_argument("--events", required=True, nargs="+", help="event directories (gnn4itk Parquet events)")
    parser.add_argument("--output", required=True, help="output base name: writes BASE.npz (native)")
    parser.add_argument("--root", action="store_true", help="also write BASE.triplets.root / BASE.doublets.root")
    parser.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    parser.add_argument("--min-pt", type=float, default=0.0, help="GeV (default 0)")
    parser.add_argument("--max-pt", type=float, default=None, help="GeV (default none)")
    parser.add_argument("--max-eta", type=float, default=4.0)
    parser.add_argument("--max-vertex-radius", type=float, default=260.0, help="mm")
    parser.add_argument("--keep-secondaries", action="store_true", help="also use non-primary particles")
    parser.add_argument("--keep-electrons", action="store_true", help="also use electrons")
    parser.add_argument("--min-hits", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.0, help="widen every window by this (e.g. 1e-10)")
    parser.add_argument("--min-occurrence", type=int, default=1, help="drop entries seen fewer times (e.g. 5)")
    parser.add_argument("--deta-sign", default="inner_minus_outer", choices=["inner_minus_outer", "outer_minus_inner"])
    parser.add_argument("--dydx-convention", default="difference", choices=["difference", "mmg"])
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress display (by default: a live bar on a terminal, a line every few seconds otherwise)",
    )


def run(args) -> int:
    from gnn4itk.cli import UserError
    from gnn4itk.event import iter_events, list_events
    from module_map.build import BuildOptions, MapBuilder
    from module_map.root_io import write_root

    prefixes = []
    for directory in args.events:
        if not Path(directory).is_dir():
            raise UserError(f"--events {directory}: not a directory")
        prefixes += [(directory, p) for p in list_events(directory)]
    if not prefixes:
        raise UserError(f"no events (event*-hits.parquet) in {' '.join(args.events)}")
    total = len(prefixes) if args.max_events is None else min(args.max_events, len(prefixes))
    try:
        options = BuildOptions(
            min_pt=args.min_pt, max_pt=args.max_pt, max_eta=args.max_eta,
            max_vertex_radius=args.max_vertex_radius, primaries_only=not args.keep_secondaries,
            skip_electrons=not args.keep_electrons, min_hits=args.min_hits, tolerance=args.tolerance,
            min_occurrence=args.min_occurrence, deta_sign=args.deta_sign, dydx_convention=args.dydx_convention,
        )
    except ValueError as error:
        raise UserError(str(error)) from None

    def stream():
        left = total
        for directory in args.events:
            for event in iter_events(directory, limit=left):
                left -= 1
                yield event
            if left <= 0:
                return

    builder = MapBuilder(options).add_events(stream(), total=total, progress=not args.no_progress)
    module_map = builder.finish()
    path = module_map.save(args.output)
    print(f"{path}: {module_map.summary_line()}")
    print(f"{builder.events} events, {builder.particles_seen:,} particles ({builder.particles_used:,} used), "
          f"{builder.particles_per_minute(wall=True):,.0f} particles/minute with reading, "
          f"{builder.particles_per_minute():,.0f} without")
    if args.root:
        for written in write_root(module_map, args.output):
            print(f"wrote {written}")
    return 0
