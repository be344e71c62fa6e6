"""``gnn4itk simulate``: pile-up events through ACTS Fatras in the Generic detector, written as Parquet."""

from __future__ import annotations

NAME = "simulate"
HELP = "simulate pile-up events with pyacts (Generic detector, 2 T, Fatras, smearing digitisation)"


def add_arguments(parser) -> None:
    parser.add_argument("--pileup", type=float, default=200.0, help="mean number of minimum-bias vertices (Poisson)")
    parser.add_argument("--events", type=int, default=1, help="number of events (numbered from 0)")
    parser.add_argument("--seed", type=int, default=1, help="master random seed")
    parser.add_argument("--output", default="work/events", help="output directory for event Parquet files")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for simulation")
    parser.add_argument("--hard-scatter", choices=["none", "ttbar"], default="none", help="hard-scatter process")
    parser.add_argument(
        "--generator",
        choices=["auto", "pythia8", "gun"],
        default="auto",
        help="minimum-bias generator: Pythia8 SoftQCD (pythia8mc), a parametrised particle gun, or auto "
        "(Pythia8 when importable)",
    )
    parser.add_argument(
        "--gun-pt-min",
        type=float,
        default=None,
        metavar="GEV",
        help="particle gun only: a hard pT spectrum above this value instead of the soft one "
        "(module-map statistics; see docs/module_map.md)",
    )
    parser.add_argument("--noise-fraction", type=float, default=0.0, help="noise spacepoints per real spacepoint")
    parser.add_argument("--p-min", type=float, default=0.05, help="Fatras momentum threshold [GeV]")
    parser.add_argument("--acts-csv", default=None, metavar="DIR", help="also write ACTS CSV files into DIR")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the run summary as JSON")
    parser.add_argument(
        "--no-progress", action="store_true",
        help="no progress display (by default: a live bar on a terminal, a line every few seconds otherwise)",
    )


def run(args) -> int:
    import json
    import sys
    import warnings
    from pathlib import Path

    from gnn4itk.cli import UserError
    from gnn4itk.simulation import GeneratorConfig, SimulationConfig, format_summary, simulate_events
    from gnn4itk.simulation.run import SimulationWarning

    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise UserError(f"--output {args.output} exists and is not a directory")
    if args.events < 1 or args.jobs < 1:
        raise UserError(f"--events and --jobs must be >= 1 (got {args.events}, {args.jobs})")
    config = SimulationConfig(
        generator=GeneratorConfig(
            pileup=args.pileup,
            hard_scatter=args.hard_scatter,
            generator=args.generator,
            seed=args.seed,
            gun_pt_min=args.gun_pt_min,
        ),
        noise_fraction=args.noise_fraction,
        p_min=args.p_min,
        acts_csv_dir=args.acts_csv,
    )
    try:
        config.validate()
    except ValueError as error:
        raise UserError(str(error)) from error
    try:
        import acts.examples  # noqa: F401  (fail before generating anything)
    except ImportError as error:
        raise UserError(f"simulation needs pyacts (pip install -e '.[sim]'): {error}") from error

    print(
        f"gnn4itk simulate: generator {config.generator.resolved_generator()}, <mu> = {args.pileup:g}, "
        f"hard scatter {args.hard_scatter}, {args.events} event(s), {min(args.jobs, args.events)} job(s)"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SimulationWarning)
        summary = simulate_events(config, args.events, args.output, jobs=args.jobs, progress=not args.no_progress)
    print(format_summary(summary), flush=True)
    for warning in caught:
        if issubclass(warning.category, SimulationWarning):
            print(f"gnn4itk simulate: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2, default=str)
    return 0
