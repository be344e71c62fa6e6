"""Speed of GPU track building (CC + walkthrough) on synthetic mu=200-like scored graphs.

Each event is ~140k hits and ~1M edges before ``cc_cut`` (see
:mod:`gnn4itk.track_building.synthetic`). Variants, all timed in the same run on the same graphs:
the scripted :class:`~gnn4itk.track_building.TrackBuilder` in each mode (and with the JIT's
optimisations off), the eager module, and on the host the numba walkthrough (if numba is installed:
the ``bench`` extra) and the plain-Python reference, the baselines of the speedups. Every production result is
checked against the reference before timing.
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


def _unoptimised(module, inputs):
    """Call a scripted module with the profiling JIT's optimisations (fusion, specialisation) off,
    as Triton's PyTorch backend does with DISABLE_OPTIMIZED_EXECUTION."""
    import torch

    with torch.jit.optimized_execution(False):
        return module(*inputs)


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
    from gnn4itk.track_building.compare import track_agreement
    from gnn4itk.track_building.synthetic import synthetic_graph

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    if min(args.events, args.repeats, args.reference_repeats) < 1:
        raise UserError("--events, --repeats and --reference-repeats must be at least 1")
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
    times: dict[str, list[float]] = {}
    graphs, agreement, ops = [], [], None
    for seed in range(args.events):
        graph = synthetic_graph(num_particles=args.particles, seed=1000 + seed)
        inputs = tuple(
            torch.from_numpy(a).to(device) for a in (graph.edge_index, graph.scores, graph.hit_r2z2)
        )
        reference = build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)
        produced = scripted["cc_and_walk"].build(*inputs)[0].cpu().numpy()
        agreement.append(track_agreement(reference[0], produced))
        graphs.append(
            {"hits": graph.num_hits, "edges": int(graph.edge_index.shape[1]), "edges_after_cc_cut": int((graph.scores > 0.01).sum())}
        )
        variants = {f"scripted {mode}": (lambda m=scripted[mode]: m(*inputs)) for mode in MODES}
        variants["scripted cc_and_walk, JIT optimisation off"] = lambda: _unoptimised(scripted["cc_and_walk"], inputs)
        variants["eager cc_and_walk"] = lambda: eager(*inputs)
        for name, function in variants.items():
            times.setdefault(name, []).extend(timed_calls(function, device, args.warmup, args.repeats))
        if ops is None:
            ops = _top_level_ops(variants["scripted cc_and_walk"])
        if build_tracks_numba is not None:
            numba_result = build_tracks_numba(graph.edge_index, graph.scores, graph.hit_r2z2)
            if not np.array_equal(numba_result[0], reference[0]):
                raise RuntimeError("the numba walkthrough disagrees with the reference")
            numba_call = lambda: build_tracks_numba(graph.edge_index, graph.scores, graph.hit_r2z2)  # noqa: E731
            times.setdefault("numba walkthrough (CPU)", []).extend(
                timed_calls(numba_call, torch.device("cpu"), 1, max(3, args.repeats // 4))
            )
        reference_call = lambda: build_tracks_reference(graph.edge_index, graph.scores, graph.hit_r2z2)  # noqa: E731
        times.setdefault("reference (Python, CPU)", []).extend(
            timed_calls(reference_call, torch.device("cpu"), 0, args.reference_repeats)
        )

    medians = {name: float(np.median(values)) * 1e3 for name, values in times.items()}
    baseline = medians["scripted cc_and_walk"]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    table = Table(
        title=f"track building on {device_name}: {args.events} events, "
        f"~{int(np.mean([g['hits'] for g in graphs]))} hits, ~{int(np.mean([g['edges'] for g in graphs]))} edges"
    )
    table.add_column("variant")
    table.add_column("median ms", justify="right")
    table.add_column("time / scripted cc_and_walk", justify="right")
    for name, median in medians.items():
        table.add_row(name, f"{median:.2f}", f"{median / baseline:.2f}")
    console = Console()
    console.print(table)
    speedup = medians["reference (Python, CPU)"] / baseline
    speedup_numba = medians["numba walkthrough (CPU)"] / baseline if build_tracks_numba is not None else None
    identical = min(a["identical_fraction"] for a in agreement)
    console.print(
        f"speedup of scripted cc_and_walk over the reference: {speedup:.0f}x; over numba: "
        + (f"{speedup_numba:.1f}x" if speedup_numba is not None else "n/a (pip install '.[bench]' for numba)")
        + f"; torch ops per call: {ops}; identical tracks vs reference (worst event): {identical:.4f}"
    )
    return {
        "device": device_name,
        "torch": torch.__version__,
        "events": graphs,
        "median_ms": medians,
        "speedup_vs_reference": speedup,
        "speedup_vs_numba": speedup_numba,
        "torch_threads": torch.get_num_threads(),
        "torch_ops_per_call": ops,
        "agreement": agreement,
    }
