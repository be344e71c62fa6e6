"""Speed of GPU track building (CC + walkthrough) on synthetic mu=200-like scored graphs.

Each event is ~140k hits and ~1M edges before ``cc_cut`` (see
:mod:`gnn4itk.track_building.synthetic`). Variants, all timed in the same run on the same graphs:
the scripted :class:`~gnn4itk.track_building.TrackBuilder` in each mode (and with the JIT's
optimisations off), the eager module, and on the host the numba walkthrough (if numba is installed:
the ``bench`` extra) and the plain-Python reference, the baselines of the speedups. Every production result is
checked against the reference before timing.

``--dense`` scores the same graphs like an under-trained GNN (fake-edge logits N(2, 2), so nearly every
edge passes ``cc_cut`` and most pass ``walk_max``), where the walk's parallel rounds stall and the CPU
finishes the walk sequentially. The reference takes minutes on such a graph: there it is run only on a
smaller dense graph (``--check-particles``) to check the agreement, and not timed.
"""

from __future__ import annotations


import numpy as np
from gnn4itk.timing import timed_calls

HELP = "track building (CC + walkthrough) on mu=200-like graphs: scripted torch vs the CPU reference"


def add_arguments(parser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the torch builder runs")
    parser.add_argument("--events", type=int, default=3, help="synthetic events (%(default)s)")
    parser.add_argument("--particles", type=int, default=12_500, help="particles per event (%(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per graph and variant (%(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per graph and variant (%(default)s)")
    parser.add_argument(
        "--reference-repeats", type=int, default=1, help="timed reference calls per graph (slow; %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--dense", action="store_true", help="score like an under-trained GNN: almost every edge passes the cuts"
    )
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        default=None,
        help="a folder holding another version of the gnn4itk.track_building package (its modules importing "
        "each other as DIR's name): its scripted cc_and_walk is timed alongside, on the same graphs",
    )
    parser.add_argument(
        "--check-particles",
        type=int,
        default=2_000,
        help="with --dense: particles of the smaller graph checked against the reference (%(default)s)",
    )


DENSE_FAKE_LOGIT = (2.0, 2.0)
"""Mean and spread of fake-edge logits with ``--dense`` (88% of fake edges score above 0.6 = walk_max)."""


def _unoptimised(module, inputs):
    """Call a scripted module with the profiling JIT's optimisations (fusion, specialisation) off,
    as Triton's PyTorch backend does with DISABLE_OPTIMIZED_EXECUTION."""
    import torch

    with torch.jit.optimized_execution(False):
        return module(*inputs)


def _agreement(builder, graph, device) -> dict:
    """Track agreement of ``builder`` (a scripted TrackBuilder on ``device``) with the reference."""
    import torch

    from gnn4itk.track_building import build_tracks_reference
    from gnn4itk.track_building.compare import track_agreement

    reference = build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)
    inputs = (torch.from_numpy(a).to(device) for a in (graph.edge_index, graph.scores, graph.hit_r2z2))
    return track_agreement(reference[0], builder.build(*inputs)[0].cpu().numpy())


def _other_builder(folder: str):
    """``TrackBuilder`` class of another version of the package, imported from ``folder`` (a package
    whose modules import each other under the folder's name, e.g. a copy made with ``git show``)."""
    import importlib
    import sys
    from pathlib import Path

    from gnn4itk.cli import UserError

    path = Path(folder).resolve()
    if not (path / "__init__.py").is_file():
        raise UserError(f"--compare-with {folder}: no package there (no __init__.py)")
    sys.path.insert(0, str(path.parent))
    try:
        return importlib.import_module(path.name).TrackBuilder
    finally:
        sys.path.remove(str(path.parent))


def _top_level_ops(function) -> int:
    """Number of aten ops one call dispatches (not counting ops nested in other ops): on the GPU each
    is at least one kernel launch, which bounds the latency on graphs of this size."""
    from torch.profiler import profile

    with profile() as prof:
        function()

    def is_op(event):
        return event is not None and event.name.startswith("aten::")

    return sum(1 for event in prof.events() if is_op(event) and not is_op(event.cpu_parent))


def run(args) -> dict:
    import torch
    from rich.console import Console
    from rich.table import Table

    from gnn4itk.cli import UserError
    from gnn4itk.track_building import MODES, TrackBuilder, build_tracks_reference
    from gnn4itk.track_building.synthetic import synthetic_graph

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    if min(args.events, args.repeats, args.reference_repeats, args.check_particles) < 1:
        raise UserError("--events, --repeats, --reference-repeats and --check-particles must be at least 1")
    device = torch.device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise UserError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    try:
        from gnn4itk.track_building.numba_walk import build_tracks_numba
    except ImportError:  # numba is the optional `bench` extra
        build_tracks_numba = None
    scripted = {mode: torch.jit.script(TrackBuilder(mode=mode)).to(device) for mode in MODES}
    eager = TrackBuilder()
    sequential = torch.jit.script(TrackBuilder(sequential_below=128)).to(device)
    other = torch.jit.script(_other_builder(args.compare_with)()).to(device) if args.compare_with else None
    fake_logit = DENSE_FAKE_LOGIT if args.dense else (-9.0, 2.0)  # the latter: synthetic_graph's default
    times: dict[str, list[float]] = {}
    graphs, agreement, ops = [], [], None
    if args.dense:  # the reference is too slow on the full dense graph: check a smaller one
        check = synthetic_graph(num_particles=args.check_particles, seed=999, fake_logit=fake_logit)
        agreement.append(_agreement(scripted["cc_and_walk"], check, device))
        if device.type == "cuda":
            agreement.append(_agreement(sequential, check, device))
    # Three passes: graphs and agreement checks, then every torch timing, then the host baselines.
    # The plain-Python reference and numba keep the host busy for seconds; timing the GPU right after
    # them gave medians up to 2x too slow (the host thread that launches the kernels is disturbed).
    events = []
    for seed in range(args.events):
        graph = synthetic_graph(num_particles=args.particles, seed=1000 + seed, fake_logit=fake_logit)
        inputs = tuple(
            torch.from_numpy(a).to(device) for a in (graph.edge_index, graph.scores, graph.hit_r2z2)
        )
        if not args.dense:
            agreement.append(_agreement(scripted["cc_and_walk"], graph, device))
        if other is not None and not torch.equal(other(*inputs), scripted["cc_and_walk"](*inputs)):
            raise RuntimeError(f"the TrackBuilder of --compare-with {args.compare_with} gives other tracks")
        if build_tracks_numba is not None:
            numba_result = build_tracks_numba(graph.edge_index, graph.scores, graph.hit_r2z2)
            if not np.array_equal(numba_result[0], scripted["cc_and_walk"](*inputs).cpu().numpy()):
                raise RuntimeError("the numba walkthrough disagrees with the scripted TrackBuilder")
        graphs.append(
            {"hits": graph.num_hits, "edges": int(graph.edge_index.shape[1]), "edges_after_cc_cut": int((graph.scores > 0.01).sum())}
        )
        events.append((graph, inputs))
    for graph, inputs in events:
        variants = {f"scripted {mode}": (lambda m=scripted[mode], x=inputs: m(*x)) for mode in MODES}
        if not args.dense:  # variants of the production path; on dense graphs only the modes
            variants["scripted cc_and_walk, JIT optimisation off"] = lambda x=inputs: _unoptimised(scripted["cc_and_walk"], x)
            variants["eager cc_and_walk"] = lambda x=inputs: eager(*x)
        elif device.type == "cuda":  # the GPU's rounds against the host's sequential finish
            variants["scripted cc_and_walk, sequential finish on the host"] = lambda x=inputs: sequential(*x)
        if other is not None:
            variants[f"scripted cc_and_walk of {args.compare_with}"] = lambda x=inputs: other(*x)
        for name, function in variants.items():
            times.setdefault(name, []).extend(timed_calls(function, device, args.warmup, args.repeats))
        if ops is None and not args.dense:  # (profiling a dense call would record ~10^5 ops)
            ops = _top_level_ops(variants["scripted cc_and_walk"])
    for graph, _ in events:
        if build_tracks_numba is not None:
            numba_call = lambda g=graph: build_tracks_numba(g.edge_index, g.scores, g.hit_r2z2)  # noqa: E731
            times.setdefault("numba walkthrough (CPU)", []).extend(
                timed_calls(numba_call, torch.device("cpu"), 1, max(3, args.repeats // 4))
            )
        if not args.dense:
            reference_call = lambda g=graph: build_tracks_reference(g.edge_index, g.scores, g.hit_r2z2)  # noqa: E731
            times.setdefault("reference (Python, CPU)", []).extend(
                timed_calls(reference_call, torch.device("cpu"), 0, args.reference_repeats)
            )

    medians = {name: float(np.median(values)) * 1e3 for name, values in times.items()}
    baseline = medians["scripted cc_and_walk"]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    table = Table(
        title=f"track building on {device_name}: {args.events} {'dense ' if args.dense else ''}events, "
        f"~{int(np.mean([g['hits'] for g in graphs]))} hits, ~{int(np.mean([g['edges'] for g in graphs]))} edges"
    )
    table.add_column("variant")
    table.add_column("median ms", justify="right")
    table.add_column("time / scripted cc_and_walk", justify="right")
    for name, median in medians.items():
        table.add_row(name, f"{median:.2f}", f"{median / baseline:.2f}")
    console = Console()
    console.print(table)
    speedup = medians["reference (Python, CPU)"] / baseline if "reference (Python, CPU)" in medians else None
    speedup_numba = medians["numba walkthrough (CPU)"] / baseline if build_tracks_numba is not None else None
    identical = min(a["identical_fraction"] for a in agreement)
    console.print(
        "speedup of scripted cc_and_walk over the reference: "
        + (f"{speedup:.0f}x" if speedup is not None else "not timed (--dense)")
        + "; over numba: "
        + (f"{speedup_numba:.2f}x" if speedup_numba is not None else "n/a (pip install '.[bench]' for numba)")
        + f"; torch ops per call: {ops}; identical tracks vs reference (worst "
        + ("check graph" if args.dense else "event")
        + f"): {identical:.4f}"
    )
    return {
        "device": device_name,
        "dense": args.dense,
        "torch": torch.__version__,
        "events": graphs,
        "median_ms": medians,
        "speedup_vs_reference": speedup,
        "speedup_vs_numba": speedup_numba,
        "torch_threads": torch.get_num_threads(),
        "torch_ops_per_call": ops,
        "agreement": agreement,
    }
