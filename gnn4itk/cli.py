"""The ``gnn4itk`` command line: one entry point, one module per subcommand.

Each module in :data:`COMMANDS` defines ``NAME`` (the subcommand), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Errors the user can fix (bad files, bad options)
are raised as :class:`UserError` and printed as one line with exit code 2; ``-v`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "gnn4itk.commands.simulate",
    "gnn4itk.commands.bench",
    "gnn4itk.commands.train",
    "gnn4itk.commands.freeze_batch_norm",
    "gnn4itk.commands.build_module_map",
    "gnn4itk.commands.serve",
    "gnn4itk.commands.evaluate",
    "gnn4itk.commands.export",
    "gnn4itk.commands.validate",
    "gnn4itk.commands.baseline",
]


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn4itk", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (UserError, FileNotFoundError, ValueError, KeyError) as error:
        if args.verbose:
            raise
        print(f"gnn4itk {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
