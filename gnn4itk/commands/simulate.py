"""``gnn4itk simulate``: minimum-bias pile-up events through ACTS Fatras (Generic detector)."""

from __future__ import annotations

NAME = "simulate"
HELP = "simulate pile-up events with pyacts (Generic detector, Fatras, smearing digitisation)"


def add_arguments(parser) -> None:
    parser.add_argument("--pileup", type=float, default=200.0, help="mean number of minimum-bias vertices")
    parser.add_argument("--events", type=int, default=1, help="number of events")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--output", default="work/events", help="output directory")


def run(args) -> int:
    from gnn4itk.cli import UserError

    raise UserError("gnn4itk simulate is being written; not available yet")
