"""Speed of the pure-torch radius graph (metric-learning graph construction) at mu=200 size.

The embeddings are synthetic, 140k points on the unit sphere in 12 dimensions by default:

* ``tracks`` (default): what a trained embedding looks like -- ~10k tight clusters of 14 points (one per
  track; spread ``r_max / 4``) whose centres lie on a smooth 4-dimensional manifold (a track has four
  free parameters, and tracks that are close in the detector are close in the embedding); about 38
  edges per node at r_max 0.12;
* ``uniform``: points uniform on the sphere, the worst case for binning (almost no edges).

Variants timed in the same run on the same points (:data:`VARIANTS`): k-d tree leaves of 16, 32 or
64 points with dense leaf-pair blocks (descended 1, 2 or 4 tree levels per host sync), a grid on the first 3 coordinates, grids on the 3, 4 or 5
principal axes, and the blocked distance matrix (``brute``). Before timing,
every variant's edges are checked equal to the brute-force edges. Reported: median and min time, edges
per node, and, on CUDA, the peak memory of one call.
"""

from __future__ import annotations

from gnn4itk.timing import peak_memory, profile_table, timed_calls

HELP = "radius graph in the embedding space (k-d tree leaves, grids on 3-5 axes, blocked brute force), 140k x 12-d points"

VARIANTS = {
    "tree16": {"method": "tree", "rotate": True, "leaf_size": 16},
    "tree32": {"method": "tree", "rotate": True, "leaf_size": 32},
    "tree64": {"method": "tree", "rotate": True, "leaf_size": 64},
    "tree16s1": {"method": "tree", "rotate": True, "leaf_size": 16, "levels_per_step": 1},
    "tree32s1": {"method": "tree", "rotate": True, "leaf_size": 32, "levels_per_step": 1},
    "tree16s4": {"method": "tree", "rotate": True, "leaf_size": 16, "levels_per_step": 4},
    "tree32s4": {"method": "tree", "rotate": True, "leaf_size": 32, "levels_per_step": 4},
    "grid3": {"method": "grid", "rotate": False, "grid_dims": 3},
    "pca3": {"method": "grid", "rotate": True, "grid_dims": 3},
    "pca4": {"method": "grid", "rotate": True, "grid_dims": 4},
    "pca5": {"method": "grid", "rotate": True, "grid_dims": 5},
    "brute": {"method": "brute", "rotate": False, "grid_dims": 3},
}
"""tree<L>: k-d tree leaves of about L points (principal axes) with dense leaf-pair blocks, the trees
descended 2 levels per host sync below level 8 (tree<L>s<K>: K levels per sync);
grid<G>: grid on the first G coordinates; pca<G>: on the G principal axes; brute: blocked cdist."""


def add_arguments(parser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the graph is built")
    parser.add_argument("--points", type=int, default=140_000, help="embedded spacepoints (%(default)s)")
    parser.add_argument("--dim", type=int, default=12, help="embedding dimension (%(default)s)")
    parser.add_argument("--data", choices=["tracks", "uniform"], default="tracks", help="synthetic embedding (%(default)s)")
    parser.add_argument("--r-max", type=float, default=0.12, help="radius (%(default)s)")
    parser.add_argument("--k-max", type=int, default=1000, help="neighbour cap (%(default)s)")
    parser.add_argument("--max-candidates", type=int, default=1 << 24, help="grid candidate pairs per chunk, tree point pairs per batched product (%(default)s)")
    parser.add_argument("--block-rows", type=int, default=4096, help="brute-force rows per block (%(default)s)")
    parser.add_argument("--max-candidates-tree", type=int, default=None, help="tree: point pairs per batched product (default: --max-candidates)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of %(default)s")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per variant (%(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per variant (%(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--script", action="store_true", help="time the TorchScript RadiusGraph module instead of the eager function")
    parser.add_argument("--profile", action="store_true", help="print the torch profiler's top kernels for the first variant")


def synthetic_embedding(kind: str, points: int, dim: int, r_max: float, seed: int):
    """FloatTensor [points, dim] of unit vectors (see the module doc for the two kinds)."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return F.normalize(torch.randn(points, dim, generator=generator), dim=1)
    hits_per_track = 14
    tracks = -(-points // hits_per_track)
    latent = torch.rand(tracks, 4, generator=generator) * 2 - 1
    lift = torch.randn(4, 64, generator=generator) * 2
    mix = torch.randn(64, dim, generator=generator) / 4
    centres = F.normalize(torch.tanh(latent @ lift) @ mix, dim=1)
    noise = torch.randn(tracks, hits_per_track, dim, generator=generator) * (r_max / 4 / dim**0.5)
    return F.normalize((centres[:, None, :] + noise).reshape(-1, dim)[:points], dim=1)


def run(args) -> dict:
    import statistics

    import torch
    from rich.console import Console
    from rich.table import Table

    from gnn4itk.cli import UserError
    from gnn4itk.models.radius_graph import RadiusGraph, radius_graph

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise UserError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if min(args.points, args.dim, args.repeats) < 1 or args.warmup < 0:
        raise UserError("--points, --dim and --repeats must be positive, --warmup non-negative")
    device = torch.device(args.device)
    points = synthetic_embedding(args.data, args.points, args.dim, args.r_max, args.seed).to(device)

    def settings(name):
        tree = VARIANTS[name]["method"] == "tree"
        chunk = args.max_candidates_tree if tree and args.max_candidates_tree else args.max_candidates
        return dict(max_candidates=chunk, block_rows=args.block_rows, **VARIANTS[name])

    # --script: the TorchScript module, as served (no Python between the torch calls).
    scripted = {name: torch.jit.script(RadiusGraph(args.r_max, args.k_max, **settings(name))) for name in names} if args.script else {}

    def call(name):
        if args.script:
            return scripted[name](points)
        return radius_graph(points, None, args.r_max, args.k_max, **settings(name))

    def edge_set(edges):
        key = edges[0] * args.points + edges[1]
        return torch.sort(key)[0]

    reference = edge_set(radius_graph(points, None, args.r_max, args.k_max, **settings("brute")))  # timed or not
    if args.profile:
        # One call of the first variant after a warm-up; operators by total time (children included),
        # then grouped by input shape, to see which chunk sizes the time goes to.
        print(profile_table(lambda: call(names[0]), device, calls=1, rows=20, warmup=1, sort="total", by_shape=True))
    results = {}
    for name in names:
        if not torch.equal(edge_set(call(name)), reference):
            raise RuntimeError(f"variant {name} disagrees with the reference edges: not timed")
        _, peak, _ = peak_memory(lambda: call(name), device)
        peak = None if peak is None else peak / 2**30
        times = timed_calls(lambda: call(name), device, args.warmup, args.repeats)
        results[name] = {
            "median_ms": 1e3 * statistics.median(times),
            "min_ms": 1e3 * min(times),
            "edges_per_node": reference.numel() / args.points,
            "peak_gib": peak,
        }
    baseline = results[names[-1]]["median_ms"]
    table = Table(title=f"radius graph: {args.points} x {args.dim}-d {args.data} points, r_max {args.r_max}, k_max {args.k_max}, {device}")
    for column in ("variant", "median ms", "min ms", f"speed vs {names[-1]}", "edges/node", "peak GiB"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        table.add_row(name, f"{r['median_ms']:.1f}", f"{r['min_ms']:.1f}", f"{baseline / r['median_ms']:.2f}x", f"{r['edges_per_node']:.1f}", peak)
    Console().print(table)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": device_name, "torch": torch.__version__, "config": {k: v for k, v in vars(args).items() if not k.startswith("_")}, "results": results}
