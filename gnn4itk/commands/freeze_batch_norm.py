"""``gnn4itk freeze-batch-norm``: a GNN checkpoint whose BatchNorms use statistics recorded on events.

Runs a pipeline with the given GNN checkpoint over events, records every BatchNorm's batch statistics in
the GNN (:mod:`gnn4itk.models.batch_statistics`), and writes the same weights with those statistics
frozen (``track_running_stats: true``). The frozen GNN no longer depends on which other spacepoints the
event holds, and skips the spacepoints without an edge. A recurrent GNN (MLPs shared by the iterations) is
first unrolled into the chained form that computes the same scores (``--unroll-recurrent``), so that each
iteration's BatchNorms get statistics of their own.
"""

from __future__ import annotations

import json

NAME = "freeze-batch-norm"
HELP = "freeze a GNN's batch statistics on events: an acorn checkpoint that skips isolated spacepoints"


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="GNN checkpoint with batch statistics (acorn layout)")
    parser.add_argument("--events", required=True, help="folder of gnn4itk Parquet events to record on (training events)")
    parser.add_argument("--max-events", type=int, default=16, help="events to average over (%(default)s)")
    parser.add_argument("--pipeline", default="ModuleMap", help="pipeline name or configuration YAML that builds the graphs")
    parser.add_argument("--module-map", default=None, help="override the configuration's module map")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--output", required=True, help="frozen checkpoint to write")
    parser.add_argument("--json", default=None, help="write the per-layer spread of the statistics to this JSON file")
    parser.add_argument("--unroll-recurrent", action="store_true",
                        help="a recurrent GNN becomes the equivalent ChainedInteractionGNN2 first (n_graph_iters "
                             "copies of its shared MLPs), whose BatchNorms run once per event and can be frozen")


def run(args) -> int:
    import tempfile
    from pathlib import Path

    import torch

    from gnn4itk.cli import UserError
    from gnn4itk.models import InteractionGNN2, chained_from_recurrent, load_acorn_checkpoint, save_acorn_checkpoint

    device = torch.device(args.device)
    checkpoint = args.checkpoint
    with tempfile.TemporaryDirectory() as scratch:
        source = load_acorn_checkpoint(checkpoint)
        if isinstance(source, InteractionGNN2) and (source.node_net_recurrent or source.edge_net_recurrent):
            if not args.unroll_recurrent:
                raise UserError(f"{checkpoint}: a recurrent GNN (its MLPs and their BatchNorms serve every iteration) "
                                "cannot be frozen as it is; --unroll-recurrent freezes its chained equivalent")
            checkpoint = save_acorn_checkpoint(chained_from_recurrent(source), Path(scratch) / "chained.ckpt")
        return _freeze(args, checkpoint, device)


def _freeze(args, checkpoint, device) -> int:
    import torch

    from gnn4itk.cli import UserError
    from gnn4itk.event import iter_events, select_features
    from gnn4itk.models import save_acorn_checkpoint
    from gnn4itk.models.batch_statistics import frozen_copy, record_batch_statistics, uses_batch_statistics
    from gnn4itk.pipeline import build_pipeline
    from gnn4itk.progress import Progress
    from gnn4itk.stages import GNNStage

    # statistics of the model as trained: float32, whatever the configuration's autocast
    pipeline = build_pipeline(args.pipeline, module_map_path=args.module_map, gnn_checkpoint=checkpoint,
                              auto_cast=False).to(device)
    stages = [c for c in pipeline.edge_classifiers if isinstance(c, GNNStage)]
    if not stages:
        raise UserError(f"pipeline {args.pipeline} has no GNN stage")
    model = stages[-1].model
    if not uses_batch_statistics(model):
        raise UserError(f"{args.checkpoint}: no BatchNorm with batch statistics, nothing to freeze")

    def run_events():
        events = list(iter_events(args.events, limit=args.max_events))
        if not events:
            raise UserError(f"no events in {args.events}")
        with Progress(len(events), "freeze-batch-norm") as bar:
            for event in events:
                yield pipeline(torch.from_numpy(select_features(event.hits, pipeline.columns)).to(device))
                bar.update()

    try:
        statistics = record_batch_statistics(model, run_events)
        frozen = frozen_copy(model, statistics)
    except ValueError as error:
        raise UserError(f"{args.checkpoint}: {error}") from error
    save_acorn_checkpoint(frozen, args.output)
    spread = {name: recorded.spread() for name, recorded in statistics.items()}
    events = len(next(iter(statistics.values())).rows)
    worst = max(spread, key=spread.get)
    print(f"{args.output}: {len(spread)} BatchNorms frozen over {events} events; largest spread of a mean over events "
          f"{spread[worst]:.3f} standard deviations ({worst})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"events": events, "spread_in_std": spread}, handle, indent=2)
    return 0
