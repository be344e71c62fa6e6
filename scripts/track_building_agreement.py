"""Production track builder vs the CPU reference on a real scored graph (``debug_data.pt`` of the CLI).

    python -m gnn4itk.inference -i work/demo/events/event000000000 -d cpu -s     # writes debug_data.pt
    python scripts/track_building_agreement.py debug_data.pt --event work/demo/events/event000000000

Prints the fraction of identical tracks and, with the event's truth, efficiency, fake and duplicate rates
of both (issue: >= 99.5 % identical, rates equal within 0.1 %).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("debug_data", help="debug_data.pt written by python -m gnn4itk.inference -s")
    parser.add_argument("--event", default=None, help="the event with truth, for the tracking metrics")
    args = parser.parse_args()

    from gnn4itk.track_building import TrackBuilder, build_tracks_reference
    from gnn4itk.track_building.compare import scored_graph, track_agreement

    edge_index, scores, r2z2 = scored_graph(args.debug_data)
    builder = torch.jit.script(TrackBuilder())
    start = time.perf_counter()
    labels = builder(edge_index, scores, r2z2)
    production_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = build_tracks_reference(edge_index, scores, r2z2)
    reference_labels = reference[0] if isinstance(reference, tuple) else reference
    reference_s = time.perf_counter() - start
    summary = {
        "edges": int(edge_index.shape[1]),
        "edges_above_cc_cut": int((scores > 0.01).sum()),
        **track_agreement(reference_labels, labels),
        "production_s": production_s,
        "reference_s": reference_s,
    }
    if args.event:
        from gnn4itk.io.load import load_event
        from gnn4itk.metrics import evaluate_tracking

        event = load_event(args.event)
        for name, lab in (("production", labels), ("reference", reference_labels)):
            result = evaluate_tracking(event, torch.as_tensor(lab).numpy(), trackml=False)
            summary[name] = {"efficiency": result.efficiency, "fake_rate": result.fake_rate, "duplicate_rate": result.duplicate_rate}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
