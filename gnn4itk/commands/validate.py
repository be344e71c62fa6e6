"""``gnn4itk validate``: run a pipeline over held-out events and report physics and speed.

Counts are summed over the events before the rates are formed, so every target particle and every
candidate track weighs the same whatever event it is in.
"""

from __future__ import annotations

import json
import statistics
import time

NAME = "validate"
HELP = "run a pipeline over events with truth: efficiency, fake and duplicate rates, TrackML score, time"


def add_arguments(parser) -> None:
    parser.add_argument("--pipeline", default="ModuleMap", help="pipeline name or configuration YAML")
    parser.add_argument("--events", required=True, help="folder of gnn4itk Parquet events (with truth)")
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--module-map", default=None, help="override the configuration's module map")
    parser.add_argument("--gnn", default=None, help="override the configuration's GNN checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--loss-budget", action="store_true",
                        help="also say where the unreconstructed target particles are lost (graph, edge classification, "
                        "track building; ATLAS matching; each event's warm-up call runs stage by stage) and what the candidate "
                        "tracks that double majority rejects are (pieces of which particles, by pT)")


def aggregate(results) -> dict:
    """Sum the counts of per-event :class:`gnn4itk.metrics.TrackingResult` s and form the rates.

    The top-level ``efficiency``, ``fake_rate``, ``duplicate_rate`` and ``counts`` are the headline style's
    (``two_way``, double majority, by default), as before; ``matching`` has all three styles, ATLAS first.
    """
    from gnn4itk.metrics import combine_matching

    total: dict[str, int] = {}
    for result in results:
        for key, value in result.counts.items():
            total[key] = total.get(key, 0) + int(value)

    def ratio(a: str, b: str) -> float:
        return total[a] / total[b] if total.get(b) else float("nan")

    scores = [r.trackml_score for r in results if r.trackml_score is not None]
    matching = combine_matching(r.matching for r in results)
    return {
        "events": len(results),
        "efficiency": ratio("n_reconstructed_particles", "n_target_particles"),
        "fake_rate": ratio("n_fake_tracks", "n_candidate_tracks"),
        "duplicate_rate": ratio("n_duplicate_tracks", "n_reconstructed_particles"),
        "trackml_score_mean": statistics.fmean(scores) if scores else None,
        "counts": total,
        "matching": {style: figures.as_dict() for style, figures in matching.items()},
    }


def staged_edges(pipeline, features):
    """(graph edges LongTensor [2, E_graph], edges kept for track building LongTensor [2, E_kept]) of one
    run of ``pipeline`` stage by stage (:func:`gnn4itk.bench.pipeline.staged_run`); kept = after every edge
    classifier, with ``score > cc_cut`` of the track builder (0 if it has none)."""
    from gnn4itk.bench.pipeline import staged_run

    names = list(pipeline.classifier_names)
    staged = staged_run(pipeline, names, features, None)
    graph_edges = staged.inputs[names[0] if names else "track_building"][1]
    _, edge_index, scores = staged.inputs["track_building"]
    cc_cut = float(getattr(getattr(pipeline.track_building, "builder", None), "cc_cut", 0.0))
    return graph_edges, edge_index[:, scores > cc_cut]


def event_line(event_id, n_spacepoints: int, result, seconds: float) -> str:
    """One line per event: efficiency and fake rate of every matching style, ATLAS first."""
    styles = ", ".join(f"{s} {f.efficiency:.4f}/{f.fake_rate:.4f}" for s, f in result.matching.items())
    return f"event {event_id}: {n_spacepoints} spacepoints, efficiency/fake rate {styles}, {seconds * 1e3:.1f} ms"


def run(args) -> int:
    import torch

    from gnn4itk.event import iter_events, select_features
    from gnn4itk.metrics import combine_matching, evaluate_tracking, format_matching
    from gnn4itk.metrics.loss_budget import (
        add_fragment_budgets,
        format_fragment_budget,
        format_loss_budget,
        fragment_budget,
        loss_budget,
    )
    from gnn4itk.pipeline import build_pipeline
    from gnn4itk.timing import synchronize

    device = torch.device(args.device)
    pipeline = build_pipeline(args.pipeline, module_map_path=args.module_map, gnn_checkpoint=args.gnn, verbose=True).to(device)
    results, seconds, budgets, fragments = [], [], [], []
    with torch.inference_mode():
        for event in iter_events(args.events, limit=args.max_events):
            features = torch.from_numpy(select_features(event.hits, pipeline.columns)).to(device)
            # warm-up on this event's shapes; with --loss-budget the stage-by-stage run is the warm-up
            edges = staged_edges(pipeline, features) if args.loss_budget else pipeline(features)
            synchronize(device)
            start = time.perf_counter()
            labels = pipeline(features)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
            labels = labels.cpu().numpy()
            results.append(evaluate_tracking(event, labels))
            print(event_line(event.event_id, len(features), results[-1], seconds[-1]))
            if args.loss_budget:
                budgets.append(loss_budget(event, results[-1], *edges))
                fragments.append(fragment_budget(event, labels, results[-1]))
    if not results:
        raise FileNotFoundError(f"no events in {args.events}")
    summary = aggregate(results)
    summary["median_ms_per_event"] = 1e3 * statistics.median(seconds)
    summary["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if budgets:
        total = budgets[0]
        for budget in budgets[1:]:
            total = total + budget
        summary["loss_budget"] = total.as_dict()
        all_fragments = fragments[0]
        for more in fragments[1:]:
            all_fragments = add_fragment_budgets(all_fragments, more)
        summary["fragments"] = all_fragments
    print(json.dumps(summary, indent=2))
    print(f"{summary['events']} events together:")
    print(format_matching(combine_matching(r.matching for r in results), results[0].cuts))
    if budgets:
        print(format_loss_budget(total))
        print(format_fragment_budget(all_fragments))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 0
