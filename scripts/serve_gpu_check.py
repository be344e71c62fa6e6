"""Serve the ModuleMap pipeline on a GPU with a real tritonserver and check it against in-process LABELS.

    python scripts/serve_gpu_check.py --work /tmp/gpu-serve --out $OUT

Run by ``scripts/device_serve_gpu.sh`` on a CUDA host (tritonserver found by ``gnn4itk.serve.find_tritonserver``,
e.g. through ``$GNN4ITK_TRITONSERVER``). No simulation needed:

1. a module map from synthetic events (``module_map.synthetic``) and a held-out synthetic mu=200 event
   (written as Parquet for the inference CLI, and as ``features.npy`` for ``gnn4itk bench serving``);
2. the shipped ModuleMap GNN with that map, exported (python flavour, KIND_GPU instances, warm-up rows
   from the event);
3. in-process LABELS on CUDA: the eager pipeline and the exported fused TorchScript file;
4. tritonserver (``--model-config-name=gpu``): the ensemble and the fused model over gRPC and HTTP; every
   served LABELS must equal the in-process TorchScript LABELS; median latencies;
5. the server log's input-placement lines (``inputs received: NAME@gpu``): intermediate ensemble tensors
   must arrive on the GPU (DLPack, no host copy), FEATURES from the client on the host.

Writes ``serve_gpu.json`` (and the server log) to ``--out``; exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from gnn4itk.client_module import load_client



def _event(seed: int, mu: float):
    from module_map.synthetic import synthetic_event

    return synthetic_event(mu=mu, seed=seed, event_id=seed)


def build_inputs(work: Path, map_events: int, mu: float, jobs: int) -> tuple[Path, Path]:
    """(module map .npz, event prefix): the map from seeds 1000.., the held-out event from seed 999."""
    from gnn4itk.event import write_event
    from module_map.build import build_module_map

    start = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        events = list(pool.map(_event, range(1000, 1000 + map_events), [mu] * map_events))
        held_out = pool.submit(_event, 999, mu).result()
    module_map, _ = build_module_map(events, progress=False)
    map_path = module_map.save(work / "synthetic_map")
    prefix = write_event(held_out, work / "event")
    np.save(work / "features.npy", held_out.inference_tensor().numpy())
    print(f"map from {map_events} synthetic mu={mu:g} events and a held-out event of {len(held_out.hits)} "
          f"spacepoints in {time.perf_counter() - start:.1f} s", flush=True)
    return Path(map_path), prefix


def _median_ms(function, device, repeats: int) -> float:
    """Median wall time [ms] of ``repeats`` calls (no warm-up call: the pipeline has run already)."""
    from gnn4itk.timing import timed_calls

    return 1e3 * statistics.median(timed_calls(function, device, 0, repeats))


def track_difference(first: np.ndarray, second: np.ndarray) -> dict[str, int]:
    """Tracks (as sets of rows) of two LABELS arrays: how many each has, and how many only one of them has."""
    from gnn4itk.tracks import track_set

    a, b = track_set(first), track_set(second)
    return {"tracks_first": len(a), "tracks_second": len(b), "only_first": len(a - b), "only_second": len(b - a)}


def input_placement(log: str) -> dict[str, dict[str, int]]:
    """model -> {"NAME@cpu|gpu": count} from the python models' unload lines."""
    found = {}
    for model, arrivals in re.findall(r"([A-Za-z][\w-]*): unloaded; .*?inputs received: ([^\n\"]*)", log):
        found[model] = {k: int(v) for k, v in re.findall(r"(\S+@\w+) x(\d+)", arrivals)}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--map-events", type=int, default=24)
    parser.add_argument("--mu", type=float, default=200)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a dry run of this script")
    parser.add_argument("--debug", action="store_true", help="python models log input sums (GNN4ITK_SERVE_DEBUG)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    from export.repository import write_model_repository
    from export.torchscript import export_pipeline
    from gnn4itk.event import read_event, select_features
    from gnn4itk.pipeline import build_pipeline, load_pipeline_config
    from gnn4itk.serve import TritonServer, find_tritonserver

    map_path, prefix = build_inputs(args.work, args.map_events, args.mu, args.jobs)
    config = load_pipeline_config("ModuleMap")
    pipeline = build_pipeline(config, module_map_path=str(map_path), verbose=True)
    features = select_features(read_event(prefix).hits, pipeline.columns)
    cuts = {k: v for k, v in config["track_building"].items() if k != "mode"}
    spec = export_pipeline(pipeline, "ModuleMap", args.work / "torchscript", parameters=cuts)
    spec.warmup_features = features[::4]  # a thinned copy of the event: warms every stage on real shapes
    kind = "gpu" if args.device == "cuda" else "cpu"
    write_model_repository(args.work / "models", [spec], instance_kind=kind, overwrite=True)

    device = torch.device(args.device)
    gpu_features = torch.from_numpy(features).to(device)
    with torch.inference_mode():
        eager = pipeline.to(device)(gpu_features).cpu().numpy()
        fused = torch.jit.load(str(spec.fused), map_location=device).eval()
        scripted = fused(gpu_features).cpu().numpy()
        again = fused(gpu_features).cpu().numpy()  # run-to-run: CUDA atomics may reorder float sums

        def in_process():
            return fused(torch.from_numpy(features).to(device)).cpu()

        in_process_ms = _median_ms(in_process, device, args.repeats)
        # an event of spacepoints the map cannot place (random module ids) gives an empty graph: must be [-1]
        try:
            empty_graph = fused(torch.randn(1000, features.shape[1], device=device)).cpu().tolist()
        except Exception as error:  # noqa: BLE001 -- recorded for the report
            empty_graph = str(error).strip().splitlines()[-1][:200]
    result = {
        "spacepoints": len(features),
        "tracks_in_process": int((scripted == -1).sum()),
        "eager_equals_scripted": bool(np.array_equal(eager, scripted)),
        "eager_vs_scripted_tracks": track_difference(eager, scripted),
        "scripted_run_to_run_equal": bool(np.array_equal(scripted, again)),
        "empty_graph_answer": empty_graph,
        "median_ms": {"in-process fused TorchScript (to GPU and back)": in_process_ms},
        "served_equals_in_process": {},
    }
    result["client_sums"] = {"event": float(features.astype(np.float64).sum()),
                             "warm-up rows": float(spec.warmup_features.astype(np.float64).sum())}
    if args.debug:
        os.environ["GNN4ITK_SERVE_DEBUG"] = "1"  # inherited by the server and its python stubs
    client = load_client()
    log_path = args.out / "tritonserver_gpu.log"
    installation = find_tritonserver()
    print(f"tritonserver: {installation.source}", flush=True)
    start = time.perf_counter()
    # A model that fails to load must not stop the others: report what does work.
    keep_going = ["--exit-on-error=false", "--strict-readiness=false"]
    with TritonServer(args.work / "models", 0, 0, 0, device=kind, log_file=log_path, ready_timeout=150,
                      installation=installation, extra_args=keep_going) as server:
        result["server_ready_s"] = time.perf_counter() - start
        connections = {"gRPC": client.Connection(server.url_grpc), "HTTP": client.Connection(server.url_http, http=True)}
        for protocol, connection in connections.items():
            for model in ("ModuleMap", "ModuleMap_fused"):
                key = f"{model} over {protocol}"
                try:
                    served = connection.infer(model, features)
                except Exception as error:  # noqa: BLE001 -- recorded, and the check fails
                    result["served_equals_in_process"][key] = False
                    result.setdefault("errors", {})[key] = str(error)[-300:]
                    continue
                result["served_equals_in_process"][key] = bool(np.array_equal(served, scripted))
                result.setdefault("served_vs_in_process_tracks", {})[key] = track_difference(served, scripted)
                # (a served call returns with its response: nothing of it is left on this process's device)
                result["median_ms"][key] = _median_ms(lambda: connection.infer(model, features), "cpu", args.repeats)
            connection.close()
    log = log_path.read_text(errors="replace")
    result["input_placement"] = input_placement(log)
    result["models_loaded_on"] = dict(re.findall(r"(ModuleMap\w*): loaded \S+ on (\S+);", log))
    intermediate = {k: v for m in result["input_placement"].values() for k, v in m.items() if not k.startswith("FEATURES@")}
    result["intermediate_tensors_on_gpu"] = bool(intermediate) and all(k.endswith("@gpu") for k in intermediate)
    ok = all(result["served_equals_in_process"].values()) and bool(intermediate)
    if args.device == "cuda":
        ok = ok and result["intermediate_tensors_on_gpu"]
    result["ok"] = bool(ok)
    (args.out / "serve_gpu.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
