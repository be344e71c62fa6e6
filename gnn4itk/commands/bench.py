"""``gnn4itk bench AREA``: speed figures for docs/benchmarks.md (medians; variants as ratios in one run)."""

from __future__ import annotations

import importlib
import json
import pkgutil

import gnn4itk.bench

NAME = "bench"
HELP = "run a benchmark and print median timings (see docs/benchmarks.md)"


def _areas() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(gnn4itk.bench.__path__))


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    for area in _areas():
        module = importlib.import_module(f"gnn4itk.bench.{area}")
        cmd = sub.add_parser(area.replace("_", "-"), help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.add_argument("--json", default=None, help="also write the figures to this JSON file")
        cmd.set_defaults(_bench=module.run)


def run(args) -> int:
    figures = args._bench(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2, default=str)
    return 0
