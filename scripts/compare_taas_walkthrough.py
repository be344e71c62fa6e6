"""Our track building vs the GNN4ITk service's CC + walkthrough, track by track, on one scored graph.

    gnn4itk simulate --pileup 200 --events 1 --seed 900000 --output /tmp/s3/events
    cd /tmp/s3 && python -m gnn4itk.inference -i events/event000000000 -d cpu -s    # writes debug_data.pt
    python scripts/compare_taas_walkthrough.py /tmp/s3/debug_data.pt

The service is modelled by ``gnn4itk.track_building.taas.build_tracks_taas`` (a plain-Python model of
xju2/tracking-as-a-service, alina_ml_pipe, models/ModuleMap/2/fastwalkthrough.py). Prints the tracks
both have, the tracks only one has, the tracks with >= 5 spacepoints, and (``--explain``) how many
differences go away when one rule of the service is replaced by ours.
"""

from __future__ import annotations

import argparse
import json

import torch


def track_sets(labels_or_tracks) -> set[frozenset]:
    from gnn4itk.tracks import split_labels

    if isinstance(labels_or_tracks, list):
        return {frozenset(t) for t in labels_or_tracks}
    return {frozenset(t.tolist()) for t in split_labels(labels_or_tracks)}


def agreement(ours: set, theirs: set) -> dict:
    return {
        "ours": len(ours),
        "service": len(theirs),
        "identical": len(ours & theirs),
        "only_ours": len(ours - theirs),
        "only_service": len(theirs - ours),
        "ours_ge5": sum(len(t) >= 5 for t in ours),
        "service_ge5": sum(len(t) >= 5 for t in theirs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("debug_data", help="debug_data.pt written by python -m gnn4itk.inference -s")
    parser.add_argument("--explain", action="store_true", help="also switch the service's rules to ours one at a time")
    parser.add_argument("--show", type=int, default=0, help="print up to this many differing tracks of each side")
    parser.add_argument("--event", default=None, help="the event with truth: efficiency, fake and duplicate rate of both (GNN4ITk default cuts, all three matching styles)")
    args = parser.parse_args()

    from gnn4itk.track_building import TrackBuilder
    from gnn4itk.track_building.compare import scored_graph
    from gnn4itk.track_building.taas import build_tracks_taas

    edge_index, scores, r2z2 = scored_graph(args.debug_data)
    ours = track_sets(torch.jit.script(TrackBuilder())(edge_index, scores, r2z2))
    service = track_sets(build_tracks_taas(edge_index.numpy(), scores.numpy(), r2z2.numpy()))
    summary = {"edges": int(edge_index.shape[1]), **agreement(ours, service)}
    if args.explain:
        variants = {
            "argmax=lowest_row": {"argmax": "lowest_row"},
            "start_order=depth_row": {"start_order": "depth_row"},
            "select=longest": {"select": "longest"},
            "start_order=depth_row,select=longest": {"start_order": "depth_row", "select": "longest"},
            "all three (= ours)": {"argmax": "lowest_row", "start_order": "depth_row", "select": "longest"},
        }
        summary["service_with_our_rule"] = {}
        for name, knobs in variants.items():
            variant = track_sets(build_tracks_taas(edge_index.numpy(), scores.numpy(), r2z2.numpy(), **knobs))
            summary["service_with_our_rule"][name] = {
                "tracks": len(variant),
                "identical_to_ours": len(ours & variant),
                "differ_from_service": len(variant - service),
            }
    if args.event:
        import numpy as np

        from gnn4itk.io.load import load_event
        from gnn4itk.metrics import evaluate_tracking
        from gnn4itk.tracks import join_tracks

        event = load_event(args.event)
        for name, tracks in (("ours_metrics", ours), ("service_metrics", service)):
            labels = join_tracks([np.array(sorted(t), dtype=np.int64) for t in sorted(tracks, key=min)])
            result = evaluate_tracking(event, labels, trackml=False)
            summary[name] = {style: figures.as_dict() for style, figures in result.matching.items()}
    print(json.dumps(summary, indent=2))
    for name, tracks in (("only ours", ours - service), ("only service", service - ours)):
        for track in sorted(tracks, key=min)[: args.show]:
            print(name, sorted(track))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
