"""Module-map figures: graph-building time and peak memory, map creation speed, coverage study.

Timing mode (default): a map (``--map`` file, or built here from ``--map-events`` or from synthetic
mu=200 events, ``--map-particles``), one event (``--event`` or a synthetic mu=200 event), the scripted
and the eager builder; medians over ``--repeats`` after ``--warmup`` runs, with device sync.

Before/after (``--compare-builder FILE``): a ``ModuleMapGraphBuilder`` imported from a .py file (e.g. the
builder before a change, ``git show HEAD:module_map/graph_builder.py > old.py``) is timed scripted beside
the current one in the same process, interleaved, on the same map and event; both edge sets must be equal.

Coverage study (``--coverage-study``): maps built from growing numbers of particles (``--steps``), each
evaluated on held-out events: coverage of true edges of target particles (pT >= 1 GeV) and edges per
hit, plotted against the number of particles (``--plot``).
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from gnn4itk.timing import peak_memory, timed_calls

HELP = "module-map graph building (time, peak GPU memory, coverage) and map creation speed"


def add_arguments(parser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--map", default=None, help="module map (.npz or ROOT base); default: build one")
    parser.add_argument("--map-events", default=None, help="build the map from this events directory")
    parser.add_argument("--map-particles", type=float, default=2e6, help="synthetic particles for the map")
    parser.add_argument("--map-min-pt", type=float, default=0.0,
                        help="GeV: build maps (here and in the coverage study) from particles of this pT and above")
    parser.add_argument("--save-map", default=None, help="save the map built here (.npz)")
    parser.add_argument("--map-workers", type=int, default=1, help="processes generating the synthetic map "
                        "events (the map is the same for any number)")
    parser.add_argument("--map-only", action="store_true", help="build (and --save-map) the map, time nothing")
    parser.add_argument("--check-cpu", action="store_true", help="with --device cuda: also build the graph on "
                        "the CPU and report whether the edge sets are equal")
    parser.add_argument("--compare-builder", default=None, metavar="FILE", help="a .py file defining "
                        "ModuleMapGraphBuilder (e.g. the builder before a change): timed scripted beside the "
                        "current one, interleaved; the edge sets must be equal")
    parser.add_argument("--event", default=None, help="event prefix or directory (first event); default synthetic")
    parser.add_argument("--mu", type=float, default=200, help="pile-up of the synthetic events")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--coverage-study", action="store_true", help="coverage and edges/hit vs map size")
    parser.add_argument("--events", default=None, help="coverage study: events directory (default synthetic)")
    parser.add_argument("--steps", default="1e4,3e4,1e5,3e5,1e6,2e6", help="coverage study: particle counts")
    parser.add_argument("--test-events", type=int, default=2, help="coverage study: held-out events")
    parser.add_argument("--test-events-dir", default=None, help="coverage study: take the test events from this "
                        "directory (e.g. Pythia8 events while the maps come from particle-gun --events)")
    parser.add_argument("--test-mu", type=float, default=None, help="coverage study: pile-up of synthetic "
                        "test events (default --mu; coverage does not drop with pile-up, fewer hits are faster)")
    parser.add_argument("--plot", default="module_map_coverage.png", help="coverage study: plot file")


def _events(directory: str | None, mu: float, seed: int, count: int | None = None):
    from gnn4itk.event import iter_events
    from module_map.synthetic import synthetic_events

    if directory:
        return iter_events(directory, limit=count)
    return synthetic_events(count if count is not None else 10**9, mu=mu, seed=seed)


def _synthetic_by_seed(mu: float, seed: int):
    from module_map.synthetic import synthetic_event

    return synthetic_event(mu=mu, seed=seed, event_id=seed)


def _synthetic_map_events(mu: float, seed: int, particles: int, workers: int):
    """The synthetic events that a map of ``particles`` needs (seeds from ``seed``), generated in
    ``workers`` processes, in seed order."""
    import multiprocessing
    from functools import partial

    from module_map.synthetic import PARTICLES_PER_MU

    count = -(-particles // max(int(round(mu * PARTICLES_PER_MU)), 1))
    with multiprocessing.get_context("fork").Pool(workers) as pool:  # the children use numpy only
        yield from pool.imap(partial(_synthetic_by_seed, mu), range(seed, seed + count))


def _inputs(event, device):
    positions = torch.from_numpy(event.hits[["x", "y", "z", "r", "phi", "eta"]].to_numpy(np.float32)).to(device)
    module_id = torch.from_numpy(event.hits["module_id"].to_numpy().copy()).to(device)
    return positions, module_id


def _median_ms(fn, device: str, warmup: int, repeats: int) -> float:
    return 1e3 * statistics.median(timed_calls(fn, device, warmup, repeats))


def _build_options(args):
    from module_map.build import BuildOptions

    return BuildOptions(min_pt=args.map_min_pt)


def _get_map(args, figures: dict):
    from module_map.build import MapBuilder
    from module_map.map import load_map

    if args.map:
        start = time.perf_counter()
        module_map = load_map(args.map)
        figures["map_load_s"] = time.perf_counter() - start
        return module_map
    builder = MapBuilder(_build_options(args))
    target = int(args.map_particles)
    if args.map_workers > 1 and not args.map_events:
        events = _synthetic_map_events(args.mu, 1_000_000, target, args.map_workers)
    else:
        events = _events(args.map_events, args.mu, seed=1_000_000)
    for event in events:
        builder.add_event(event)
        if not args.map_events and builder.particles_seen >= target:
            break
    module_map = builder.finish()
    figures.update(map_particles=builder.particles_seen, map_events=builder.events,
                   map_build_particles_per_minute=builder.particles_per_minute())
    if args.save_map:
        module_map.save(args.save_map)
    return module_map


def run_timing(args) -> dict:
    from gnn4itk.event import list_events, read_event
    from module_map.coverage import edge_coverage, true_edges
    from module_map.graph_builder import ModuleMapGraphBuilder
    from module_map.synthetic import synthetic_event

    figures = {"device": "cpu" if args.map_only or args.device == "cpu" else torch.cuda.get_device_name(),
               "threads": torch.get_num_threads()}
    module_map = _get_map(args, figures)
    if args.map_only:
        figures.update(map_triplets=module_map.num_triplets, map_doublets=module_map.num_doublets)
        _print(figures)
        return figures
    figures.update(map_triplets=module_map.num_triplets, map_doublets=module_map.num_doublets)
    if args.event:
        path = Path(args.event)
        event = read_event(list_events(path)[0] if path.is_dir() else path)
    else:
        event = synthetic_event(mu=args.mu, seed=424242)
    positions, module_id = _inputs(event, args.device)
    warnings.simplefilter("ignore")  # unknown-module warnings would repeat every run
    variants = {  # name: (scripted, pair_chunk, triplet_chunk); 0 = the builder's default for the device
        "scripted": (True, 0, 0),
        "scripted_1M_chunks": (True, 1 << 20, 1 << 20),
        "scripted_4M_chunks": (True, 1 << 22, 1 << 22),
        "eager": (False, 0, 0),
    }
    with torch.no_grad():
        for name, (script, pair_chunk, triplet_chunk) in variants.items():
            builder = ModuleMapGraphBuilder(module_map, pair_chunk, triplet_chunk).to(args.device)
            if script:
                builder = torch.jit.script(builder)
            (edge_index, _), peak, base = peak_memory(lambda: builder(positions, module_id), args.device)
            if peak is not None:
                figures[f"{name}_peak_gpu_memory_MB"] = peak / 2**20
                figures[f"{name}_peak_above_map_and_inputs_MB"] = (peak - base) / 2**20
            if name == "scripted":
                figures.update(hits=len(positions), edges=int(edge_index.shape[1]),
                               edges_per_hit=edge_index.shape[1] / max(len(positions), 1),
                               unknown_module_hits=builder.last_unknown)
                if event.has_truth:
                    figures["coverage_pt1"] = edge_coverage(edge_index, true_edges(event), len(positions))
            figures[f"{name}_ms"] = _median_ms(lambda: builder(positions, module_id), args.device,
                                               args.warmup, args.repeats)
            if name == "scripted" and args.check_cpu and args.device == "cuda":  # after warm-up: JIT-fused code
                on_cpu, _ = torch.jit.script(ModuleMapGraphBuilder(module_map))(positions.cpu(), module_id.cpu())
                figures["cpu_edges_equal"] = _edge_set(on_cpu) == _edge_set(builder(positions, module_id)[0])
            del builder
    for name in variants:
        figures[f"{name}_over_scripted"] = figures[f"{name}_ms"] / figures["scripted_ms"]
    if args.compare_builder:
        with torch.no_grad():
            _compare_builders(args, module_map, positions, module_id, figures)
    _print(figures)
    return figures


def _builder_class(path: str):
    """The ``ModuleMapGraphBuilder`` class defined in the .py file ``path``."""
    import importlib.util
    import sys

    from gnn4itk.cli import UserError

    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        raise UserError(f"--compare-builder {path}: not a .py file")
    name = "_compared_module_map_graph_builder"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # TorchScript finds the source of the classes through their module
    spec.loader.exec_module(module)
    if not hasattr(module, "ModuleMapGraphBuilder"):
        raise UserError(f"--compare-builder {path}: defines no ModuleMapGraphBuilder")
    return module.ModuleMapGraphBuilder


def _host_syncs(builder, positions, module_id) -> int:
    """Host syncs of one CUDA call (synchronising operations reported by the sync debug mode)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            builder(positions, module_id)
            torch.cuda.synchronize()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def _compare_builders(args, module_map, positions, module_id, figures: dict) -> None:
    """Time the current scripted builder and the one of ``--compare-builder`` alternately (two rounds of
    half the repeats each, after their warm-up), and check that their edge sets are equal."""
    from module_map.graph_builder import ModuleMapGraphBuilder

    cuda = args.device == "cuda"
    builders = {"current": ModuleMapGraphBuilder, "compared": _builder_class(args.compare_builder)}
    scripted, edges = {}, {}
    for name, cls in builders.items():
        builder = torch.jit.script(cls(module_map).to(args.device))
        graph, peak, _ = peak_memory(lambda: builder(positions, module_id), args.device)
        edges[name] = _edge_set(graph[0])
        if peak is not None:
            figures[f"{name}_peak_gpu_memory_MB"] = peak / 2**20
        scripted[name] = builder
    times: dict = {name: [] for name in builders}
    half = max(args.repeats // 2, 1)
    for order in (["current", "compared"], ["compared", "current"]):
        for name in order:
            builder = scripted[name]
            times[name] += timed_calls(lambda: builder(positions, module_id), args.device, args.warmup, half)
    figures["compared_builder"] = args.compare_builder
    for name in builders:
        figures[f"{name}_ms"] = 1e3 * statistics.median(times[name])
        if cuda:
            figures[f"{name}_host_syncs"] = _host_syncs(scripted[name], positions, module_id)
    figures["current_over_compared"] = figures["current_ms"] / figures["compared_ms"]
    after_warmup = {name: _edge_set(b(positions, module_id)[0]) for name, b in scripted.items()}
    figures["compared_edges_equal"] = edges["current"] == edges["compared"] == after_warmup["current"] == after_warmup["compared"]
    figures["compared_edges"] = len(edges["compared"])


def run_coverage(args) -> dict:
    from module_map.build import MapBuilder
    from module_map.coverage import edge_coverage, true_edges
    from module_map.graph_builder import ModuleMapGraphBuilder

    steps = sorted(int(float(s)) for s in args.steps.split(","))
    if args.test_events_dir:  # separate test events: every event of --events builds the maps
        tests = list(_events(args.test_events_dir, args.mu, seed=0, count=args.test_events))
        stream = _events(args.events, args.mu, seed=0)
    elif args.events:  # the first events are held out for testing, the rest build the maps
        stream = _events(args.events, args.mu, seed=0)
        tests = [next(stream) for _ in range(args.test_events)]
    else:
        test_mu = args.test_mu if args.test_mu is not None else args.mu
        tests = list(_events(None, test_mu, seed=7_000_000, count=args.test_events))
        stream = _events(None, args.mu, seed=0)
    truths = [true_edges(e) for e in tests]
    builder = MapBuilder(_build_options(args))
    rows = []
    warnings.simplefilter("ignore")
    for step in steps:
        for event in stream:
            builder.add_event(event)
            if builder.particles_seen >= step:
                break
        if builder.particles_seen < step and rows and rows[-1]["particles"] == builder.particles_seen:
            break  # the events ran out
        module_map = builder.finish()
        graph = ModuleMapGraphBuilder(module_map).to(args.device)
        covered, edges, hits = [], 0, 0
        with torch.no_grad():
            for event, truth in zip(tests, truths):
                edge_index, _ = graph(*_inputs(event, args.device))
                covered.append(edge_coverage(edge_index, truth, len(event.hits)))
                edges += edge_index.shape[1]
                hits += len(event.hits)
        rows.append({"particles": builder.particles_seen, "events": builder.events,
                     "triplets": module_map.num_triplets, "coverage_pt1": float(np.mean(covered)),
                     "edges_per_hit": edges / hits})
        print(f"{rows[-1]['particles']:>10,} particles ({rows[-1]['events']} events): coverage "
              f"{rows[-1]['coverage_pt1']:.4f}, {rows[-1]['edges_per_hit']:.2f} edges/hit, "
              f"{rows[-1]['triplets']:,} triplets", flush=True)
    if args.save_map:  # the last (largest) map of the study: one pass over the events gives both
        module_map.save(args.save_map)
    _plot(rows, args.plot)
    return {"device": args.device, "source": args.events or f"synthetic mu={args.mu}", "rows": rows,
            "plot": args.plot}


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["particles"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6, 6))
    top.plot(x, [r["coverage_pt1"] for r in rows], "o-")
    top.axhline(0.99, color="grey", ls="--", lw=1)
    top.set_ylabel("true-edge coverage (pT >= 1 GeV)")
    bottom.plot(x, [r["edges_per_hit"] for r in rows], "o-", color="tab:orange")
    bottom.set_ylabel("edges per hit")
    bottom.set_xlabel("particles used to build the map")
    bottom.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _edge_set(edge_index: torch.Tensor) -> set:
    return set(zip(edge_index[0].tolist(), edge_index[1].tolist()))


def _print(figures: dict) -> None:
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        numeric = not isinstance(value, bool)  # bools are ints: print True/False, not 1/0
        text = (f"{value:,.3f}" if isinstance(value, float) else f"{value:,}" if numeric and isinstance(value, int)
                else str(value))
        print(f"{key:<{width}}  {text}")


def run(args) -> dict:
    if args.device == "cuda" and not torch.cuda.is_available():
        from gnn4itk.cli import UserError

        raise UserError("--device cuda: CUDA is not available")
    return run_coverage(args) if args.coverage_study else run_timing(args)
