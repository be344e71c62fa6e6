"""The serving half of ``make demo``: export, start tritonserver, send events as Athena does, stop.

    python scripts/demo_serving.py --events work/demo/events --models work/demo/models

1. ``python -m export`` writes the ModuleMap model repository (shipped weights, default map) for CPU;
2. tritonserver starts from the pip wheel (or PATH) on free ports;
3. ``client/gnn4itk_client.py`` sends each event's FEATURES over gRPC, prints tracks and latency and
   scores them against truth with ``gnn4itk evaluate``;
4. the server stops, leaving nothing behind.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path, required=True, help="folder of Parquet events with truth")
    parser.add_argument("--models", type=Path, default=Path("work/demo/models"))
    parser.add_argument("--pipeline", default="ModuleMap")
    parser.add_argument("--config", default=None, help="pipeline configuration YAML (default configs/<pipeline>.yaml)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args()

    from gnn4itk.client_module import CLIENT_PATH
    from gnn4itk.event import list_events
    from gnn4itk.serve import TritonServer

    events = list_events(args.events)
    if not events:
        print(f"no events in {args.events}", file=sys.stderr)
        return 2
    print(f"== export {args.pipeline} to {args.models}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "export", "--pipelines", args.pipeline, "--output", str(args.models),
         "--device", args.device, "--warmup-event", str(events[0]),
         *(["--config", f"{args.pipeline}={args.config}"] if args.config else [])],
        check=True,
    )
    print("== start tritonserver", flush=True)
    # warm-up of every model on CPU takes a while: wait longer than the interactive default
    with TritonServer(args.models, 0, 0, 0, device=args.device, ready_timeout=900) as server:
        print(f"server ready: gRPC {server.url_grpc}, HTTP {server.url_http}, metrics {server.url_metrics}", flush=True)
        for prefix in events:
            print(f"== {prefix.name}: FEATURES to {args.pipeline} over gRPC, as Athena sends them", flush=True)
            subprocess.run(
                [sys.executable, str(CLIENT_PATH), "-u", server.url_grpc,
                 "-m", args.pipeline, "-i", str(prefix)],
                check=True,
            )
    print("== server stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
