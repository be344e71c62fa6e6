"""Whole-pipeline figures: the pipeline and each of its stages, eager and TorchScript, float32 and reduced precision.

One pipeline (``--pipeline`` or ``--config``; ``--module-map``) is timed on every event given, in every
variant of ``--variants``, all in the same run and on the same device:

* ``straightforward``: eager, float32, every :class:`~gnn4itk.models.interaction_gnn.InteractionGNN2` with
  ``optimized = False`` (the plain acorn-order computation), on models that have that switch. The
  baseline of every ratio.
* ``eager``: eager, float32, as built.
* ``scripted``: ``torch.jit.script(pipeline)``, float32, TorchScript's tensor fuser off: what Triton serves
  (both flavours run without the fuser, docs/serving.md).
* ``scripted_autocast``: scripted with ``GNNStage.auto_cast = True`` (float16 autocast of the GNN). CUDA
  only: on the CPU it does not apply and is skipped.
* ``scripted_tf32``: scripted float32 with TF32 matmuls (``torch.backends.cuda.matmul.allow_tf32``: float32
  inputs rounded to a 10-bit mantissa on the tensor cores, float32 sums). CUDA only. A served model gets
  it from the server's environment (``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1``), not from the model file.

For each variant: median and p90 of the whole ``Pipeline.forward`` and of each stage (``input_guard``,
``graph_construction``, each edge classifier, ``track_building``), the stage replayed on the inputs it got
in a staged run, after ``--warmup`` untimed calls (on CUDA the times come from CUDA events around device
syncs, :func:`gnn4itk.timing.timed_calls_events`). The ``--repeats`` timed calls run in rounds, each
timing every call of every variant once, so that a slow phase of a shared machine falls on all variants
alike and the ratios hold; spacepoints, edges after graph construction and into
track building, tracks; peak GPU memory of one whole call; ratios to the baseline. The reduced-precision
tracks are compared with the scripted float32 ones: identical fraction = common tracks / float32 tracks,
a track being the sorted tuple of row indices between two ``-1`` of LABELS. When the event has truth (an
event file with its particles, a synthetic event), each variant's tracks are scored in the three matching
styles, and reduced precision is judged by the largest metric difference to float32 as well
(:data:`METRIC_TOLERANCE`, issue #15's 0.001).

Events:

* ``--event PATH`` (repeatable): an event prefix or file as ``python -m gnn4itk.inference -i`` reads it,
  a directory (its first Parquet event), or a ``.npy`` FEATURES array [N, F] float32 in the configured
  columns.
* ``--synthetic-pileup 50,100,200,300``: synthetic events of those pile-ups
  (:func:`module_map.synthetic.synthetic_event`, Generic detector). When the configured module map is
  missing and no ``--module-map`` is given, a map built here from synthetic events of the same generator
  is used (``--map-particles`` particles of pT >= 0.9 GeV, like the default map).
* ``--itk-density D`` with ``--itk-spacepoints N``: real ITk module-map graphs have about 7 edges per
  spacepoint, our map about 0.7. A synthetic event of N spacepoints gets a **synthetic graph** of D edges
  per spacepoint (:func:`density_graph`: nearest neighbours in eta, phi and distance from the origin,
  outwards, in other layers). Graph construction is not run there: only the stages after it are timed,
  and their chain ``after_graph_construction`` (the whole pipeline minus graph construction).

With none of these, one synthetic mu=200 event is used.

Peer GNN (``--peer-gnn-source DIR``): the GNN4ITk Triton service's ``ChainedInteractionGNN2`` (or
``RecurrentInteractionGNN2``, as our checkpoint is) from the public xju2/tracking-as-a-service repository,
imported at run time from the user's copy (``DIR/interaction_gnn.py``; none of its code is in this
repository), built with our GNN checkpoint's hyperparameters and state dict, and timed eager float32 on
the same graph as our GNN stage, in the same run. ``torch_scatter`` and ``torch_geometric.nn``, which
that file imports but its inference path does not use, get minimal stand-ins while it is imported when
they are not installed.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import math
import statistics
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from gnn4itk.timing import peak_memory, profile_table, synchronize, timed_calls_events
from gnn4itk.tracks import track_set

HELP = "whole pipeline and each stage: eager/TorchScript, float32/autocast, pile-up sweep, ITk density, peer GNN"

VARIANTS = {
    "straightforward": "eager float32, InteractionGNN2.optimized = False (the baseline)",
    "eager": "eager float32",
    "scripted": "TorchScript float32, tensor fuser off (what Triton serves)",
    "scripted_autocast": "TorchScript, GNN under float16 autocast, tensor fuser off (CUDA only)",
    "scripted_tf32": "TorchScript float32, matmuls in TF32 on the tensor cores, tensor fuser off (CUDA only)",
}
"""Variant name -> what it is, in the order they run."""

REDUCED_PRECISION = ("scripted_autocast", "scripted_tf32")
"""The variants judged against float32 (identical tracks, truth metrics)."""

AFTER_GRAPH = "after_graph_construction"
"""Name of the chained stages after graph construction (the whole of an ITk-density event)."""

R_SCALE_MM = 1000.0
"""ITk-density graph: a step of this many mm in distance from the origin weighs as 1 in (eta, phi)."""

ETA_WINDOW = 0.3
"""ITk-density graph: neighbours are looked for within this eta distance."""

SYNTHETIC_SEED = 4_242_000
"""Seed of the first synthetic event (the map's events start elsewhere, at 1,000,000)."""


def add_arguments(parser) -> None:
    from gnn4itk.pipeline import PIPELINE_NAMES

    parser.add_argument("--pipeline", default="ModuleMap", choices=list(PIPELINE_NAMES), help="configs/<NAME>.yaml (%(default)s)")
    parser.add_argument("--config", default=None, help="pipeline configuration YAML (instead of --pipeline)")
    parser.add_argument("--module-map", default=None, help="module map overriding the configuration's")
    parser.add_argument("--event", action="append", default=[], metavar="PATH",
                        help="event prefix/file/directory as the inference CLI reads it, or a .npy FEATURES [N, F] "
                        "float32 array; repeatable")
    parser.add_argument("--synthetic-pileup", default=None, metavar="MU,...",
                        help="synthetic events at these pile-ups, e.g. 50,100,200,300")
    parser.add_argument("--itk-density", type=float, default=None, metavar="EDGES_PER_SPACEPOINT",
                        help="also a synthetic event with a synthetic graph of this density (e.g. 7); times the "
                        "stages after graph construction")
    parser.add_argument("--itk-spacepoints", type=int, default=270_000, help="spacepoints of the ITk-density event (%(default)s)")
    parser.add_argument("--map-particles", type=float, default=5e5,
                        help="particles of the synthetic map used when the configured map is missing (%(default)g)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per stage and variant (%(default)s)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed calls before them; TorchScript profiles and optimises in its first calls (%(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="also write torch.profiler operator tables of each variant's whole call to DIR, one file per event")
    parser.add_argument("--peer-gnn-source", default=None, metavar="DIR",
                        help="folder (or .py file) holding the tracking-as-a-service interaction_gnn.py: its "
                        "ChainedInteractionGNN2 is timed with our weights beside our GNN stage")


# ---------------------------------------------------------------------------------------------------
# Events


@dataclass
class BenchEvent:
    """One input of the benchmark.

    Attributes:
        name: how the tables name it.
        features (FloatTensor [N, F]): FEATURES in the pipeline's columns, on the device.
        graph: ``(edge_index LongTensor [2, E], edge_attr FloatTensor [E, 6])`` for a synthetic graph
            (graph construction is then not run), else None.
        meta: what the JSON reports about the input.
        truth: the :class:`~gnn4itk.event.Event` with its particles when the input has truth (an event file,
            a synthetic event): each variant's tracks are then scored, and reduced precision is judged by
            its metrics too. None for FEATURES-only inputs and synthetic graphs.
    """

    name: str
    features: Tensor
    graph: Optional[tuple] = None
    meta: dict = field(default_factory=dict)
    truth: Optional[object] = None


def read_features(path: str, columns: list[str]) -> tuple[Tensor, object]:
    """(FEATURES [N, F] float32 of the event at ``path`` in ``columns``, its Event or None).

    A ``.npy`` file is taken as stored (2-d, F = len(columns)), without truth; a directory gives its first
    Parquet event; anything else is read as ``python -m gnn4itk.inference -i`` reads it (an event file
    comes with its Event, a ``.pt`` tensor without).
    """
    from gnn4itk.cli import UserError
    from gnn4itk.event import list_events
    from gnn4itk.inference import load_input

    file = Path(path)
    if file.suffix == ".npy":
        array = np.load(file, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] != len(columns):
            raise UserError(f"--event {path}: shape {list(array.shape)}, expected [N, {len(columns)}] with columns {columns}")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), None
    if file.is_dir():
        events = list_events(file)
        if not events:
            raise UserError(f"--event {path}: no Parquet event in this directory")
        file = events[0]
    features, event = load_input(str(file), columns)
    has_truth = event is not None and event.particles is not None and "particle_id" in event.hits
    return features, (event if has_truth else None)


def itk_like_hits(spacepoints: int, seed: int):
    """The spacepoints table (pandas) of synthetic events, exactly ``spacepoints`` rows.

    Events of consecutive seeds (:func:`module_map.synthetic.synthetic_event`, particle counts sized from
    the hits per particle seen so far) are joined like pile-up and the surplus rows dropped; their rows
    are in random order, so that keeps a random subset.
    """
    import pandas as pd

    from module_map.synthetic import synthetic_event

    tables, total, particles = [], 0, 0
    while total < spacepoints:
        # a small first event measures the hits per particle; the next ones fill the rest
        count = 500 if not tables else math.ceil((spacepoints - total) * particles / total * 1.05) + 10
        hits = synthetic_event(n_particles=count, seed=seed + len(tables)).hits
        tables.append(hits)
        total, particles = total + len(hits), particles + count
    hits = pd.concat(tables, ignore_index=True).iloc[:spacepoints].reset_index(drop=True)
    hits["hit_id"] = np.arange(1, len(hits) + 1, dtype=np.int64)
    return hits


def density_graph(r: Tensor, z: Tensor, eta: Tensor, phi: Tensor, layer: Tensor, edges_per_spacepoint: float) -> Tensor:
    """A geometrically plausible graph of a given density, standing in for an ITk module-map graph.

    Every spacepoint ``i`` may connect to spacepoints ``j`` of *other layers* that lie *further out*
    (``R_j > R_i``, ``R = sqrt(r² + z²)``) within ``ETA_WINDOW`` in eta; the distance is
    ``deta² + dphi² + ((R_j - R_i) / R_SCALE_MM)²``, so the next layers along the spacepoint's direction
    come first, as in a module map. Each spacepoint keeps its ``ceil(1.5 D) + 1`` nearest candidates, and
    of all those pairs the ``round(D N)`` shortest are the edges: spacepoints in dense regions get more
    edges, the outermost none. Edges point inner -> outer, so the graph is acyclic like the real one.

    Args:
        r, z, eta, phi (FloatTensor [N]): spacepoint coordinates (mm, rad).
        layer (LongTensor [N]): a layer key per spacepoint (pairs within a layer are not edges).
        edges_per_spacepoint: D.

    Returns:
        LongTensor [2, E] sorted by (source, target), ``E <= round(D N)`` (fewer only where too few
        candidates exist).
    """
    n = r.shape[0]
    radius = torch.sqrt(r * r + z * z)
    order = torch.argsort(eta)
    eta_s, phi_s, radius_s, layer_s = eta[order], phi[order], radius[order], layer[order]
    k = math.ceil(1.5 * edges_per_spacepoint) + 1
    sources, targets, distances = [], [], []
    start = 0
    while start < n:
        lo = int(torch.searchsorted(eta_s, eta_s[start] - ETA_WINDOW))
        chunk = max(1, (1 << 22) // max(int(torch.searchsorted(eta_s, eta_s[start] + ETA_WINDOW)) - lo, 1))
        end = min(n, start + chunk)
        hi = int(torch.searchsorted(eta_s, eta_s[end - 1] + ETA_WINDOW, right=True))
        deta = eta_s[start:end, None] - eta_s[None, lo:hi]
        dphi = torch.remainder(phi_s[start:end, None] - phi_s[None, lo:hi] + math.pi, 2 * math.pi) - math.pi
        dr = radius_s[None, lo:hi] - radius_s[start:end, None]
        d2 = deta * deta + dphi * dphi + (dr / R_SCALE_MM) ** 2
        d2 = d2.masked_fill((dr <= 0) | (layer_s[None, lo:hi] == layer_s[start:end, None]), math.inf)
        best, index = torch.topk(d2, min(k, hi - lo), dim=1, largest=False)
        found = torch.isfinite(best)
        rows = torch.arange(start, end, device=r.device)[:, None].expand_as(index)
        sources.append(rows[found])
        targets.append((index + lo)[found])
        distances.append(best[found])
        start = end
    distances = torch.cat(distances)
    keep = torch.topk(distances, min(int(round(edges_per_spacepoint * n)), distances.numel()), largest=False).indices
    src, dst = order[torch.cat(sources)[keep]], order[torch.cat(targets)[keep]]
    key = torch.sort(src * n + dst).values
    return torch.stack([key // n, key % n])


def itk_density_event(args, columns: list[str], device: torch.device) -> BenchEvent:
    """The ``--itk-density`` event: synthetic spacepoints with a synthetic graph (see :func:`density_graph`)."""
    from gnn4itk.event import select_features
    from gnn4itk.stages import EdgeFeatures

    hits = itk_like_hits(args.itk_spacepoints, SYNTHETIC_SEED + 100_000)
    features = torch.from_numpy(select_features(hits, columns)).to(device)
    coordinates = {c: torch.from_numpy(hits[c].to_numpy(np.float32, copy=True)).to(device) for c in ("r", "z", "eta", "phi")}
    layer = torch.from_numpy((hits["volume_id"].to_numpy(np.int64) << 16) + hits["layer_id"].to_numpy(np.int64)).to(device)
    with torch.no_grad():
        edge_index = density_graph(**coordinates, layer=layer, edges_per_spacepoint=args.itk_density)
        edge_attr = EdgeFeatures(columns).to(device)(features, edge_index)
    name = f"ITk density {args.itk_density:g}/sp, SYNTHETIC graph"
    meta = {"kind": "itk_density", "synthetic_graph": True, "requested_edges_per_spacepoint": args.itk_density,
            "edges_per_spacepoint": edge_index.shape[1] / max(len(hits), 1)}
    return BenchEvent(name, features, (edge_index, edge_attr), meta)


def bench_events(args, columns: list[str], device: torch.device):
    """Every input asked for, one at a time (:class:`BenchEvent`)."""
    from gnn4itk.event import select_features
    from module_map.synthetic import synthetic_event

    for path in args.event:
        features, truth = read_features(path, columns)
        yield BenchEvent(Path(path).name, features.to(device), truth=truth,
                         meta={"kind": "npy" if path.endswith(".npy") else "event", "path": path, "truth": truth is not None})
    for i, mu in enumerate(_pileups(args)):
        event = synthetic_event(mu=mu, seed=SYNTHETIC_SEED + i)
        features = torch.from_numpy(select_features(event.hits, columns)).to(device)
        yield BenchEvent(f"synthetic mu={mu:g}", features, truth=event, meta={"kind": "synthetic", "mu": mu, "truth": True})
    if args.itk_density is not None:
        yield itk_density_event(args, columns, device)


def _pileups(args) -> list[float]:
    if args.synthetic_pileup:
        return [float(mu) for mu in args.synthetic_pileup.split(",") if mu.strip()]
    return [] if args.event or args.itk_density is not None else [200.0]


# ---------------------------------------------------------------------------------------------------
# The pipeline and its variants


def _synthetic_map(particles: float) -> str:
    """Path of a module map built from synthetic events (pT >= 0.9 GeV), in a temporary folder."""
    import tempfile

    from module_map.build import BuildOptions, MapBuilder
    from module_map.synthetic import synthetic_events

    builder = MapBuilder(BuildOptions(min_pt=0.9))
    for event in synthetic_events(10**9, mu=200, seed=1_000_000):
        builder.add_event(event)
        if builder.particles_seen >= particles:
            break
    path = Path(tempfile.mkdtemp(prefix="gnn4itk_bench_map_")) / "synthetic_map.npz"
    return str(builder.finish().save(path))


def load_bench_pipeline(args) -> tuple:
    """(eager pipeline on the CPU, module-map description or None)."""
    from gnn4itk.pipeline import build_pipeline, load_pipeline_config

    config = load_pipeline_config(args.config or args.pipeline)
    graph = config["graph_construction"]
    map_path = args.module_map
    if graph.get("kind") == "module_map" and map_path is None:
        configured = Path(str(graph.get("module_map", "")))
        configured = configured if configured.is_absolute() else Path(config["_base_dir"]) / configured
        if configured.suffix == ".npz" and not configured.exists():
            print(f"no module map {configured}: building a synthetic one ({args.map_particles:g} particles)", flush=True)
            map_path = _synthetic_map(args.map_particles)
            return build_pipeline(config, module_map_path=map_path, auto_cast=False), f"synthetic, {args.map_particles:g} particles: {map_path}"
        map_path = str(configured)
    # float32 as built: the variants choose their precision themselves
    return build_pipeline(config, module_map_path=map_path, auto_cast=False), map_path


def gnn_models(pipeline: nn.Module) -> list:
    """The :class:`~gnn4itk.models.interaction_gnn.InteractionGNN2` modules inside ``pipeline``."""
    from gnn4itk.models.interaction_gnn import InteractionGNN2

    return [m for m in pipeline.modules() if isinstance(m, InteractionGNN2)]


@contextlib.contextmanager
def straightforward_gnn(pipeline: nn.Module):
    """``optimized = False`` on every InteractionGNN2 of an eager ``pipeline`` that has the switch, restored after."""
    models = [m for m in gnn_models(pipeline) if hasattr(m, "optimized")]
    before = [m.optimized for m in models]
    for model in models:
        model.optimized = False
    try:
        yield
    finally:
        for model, value in zip(models, before):
            model.optimized = value


@dataclass
class Variant:
    """A runnable form of the pipeline: ``module`` (eager or scripted), called inside ``context()``."""

    name: str
    module: nn.Module
    context: Callable = contextlib.nullcontext


def as_served():
    """The context scripted variants run in: TorchScript's tensor fuser off, as both served flavours run."""
    return torch.jit.fuser("none")


@contextlib.contextmanager
def tf32_served():
    """:func:`as_served` with float32 matmuls on the tensor cores in TF32, restored after."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with as_served():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def make_variants(pipeline: nn.Module, names: list[str], device: torch.device) -> tuple[list, dict]:
    """(the :class:`Variant` s of ``names`` that apply on ``device``, {skipped name: why})."""
    from gnn4itk.stages import GNNStage

    gnn_stages = [c for c in pipeline.edge_classifiers if isinstance(c, GNNStage)]
    variants, skipped = [], {}
    for name in names:
        if name == "straightforward":
            variants.append(Variant(name, pipeline, lambda: straightforward_gnn(pipeline)))
        elif name == "eager":
            variants.append(Variant(name, pipeline))
        elif name == "scripted":
            variants.append(Variant(name, torch.jit.script(pipeline), as_served))
        elif device.type != "cuda":
            skipped[name] = f"reduced precision ({VARIANTS[name]}) applies on CUDA only"
        elif name == "scripted_tf32":
            variants.append(Variant(name, torch.jit.script(pipeline), tf32_served))
        elif not gnn_stages:
            skipped[name] = "the pipeline has no GNN stage to autocast"
        else:
            # the script keeps the flag it was compiled with; the eager pipeline goes back to float32
            for stage in gnn_stages:
                stage.auto_cast = True
            try:
                variants.append(Variant(name, torch.jit.script(pipeline), as_served))
            finally:
                for stage in gnn_stages:
                    stage.auto_cast = False
    return variants, skipped


def classifier_names(pipeline: nn.Module) -> list[str]:
    """Stage names of the edge classifiers: their configuration kinds (``filter``, ``gnn``; numbered when a
    kind repeats), as the pipeline names them (:attr:`gnn4itk.pipeline.Pipeline.classifier_names`)."""
    return list(pipeline.classifier_names)


@dataclass
class StagedRun:
    """One run of a pipeline stage by stage, and calls that replay each stage on the inputs it got.

    Attributes:
        calls: stage name -> zero-argument call, in pipeline order (plus :data:`AFTER_GRAPH` for a
            synthetic graph: the stages after graph construction chained).
        labels (LongTensor [L]): LABELS of the run.
        counts: spacepoints, edges after graph construction, edges into track building.
        inputs: stage name -> the arguments it was called with.
    """

    calls: dict
    labels: Tensor
    counts: dict
    inputs: dict


def staged_run(pipeline: nn.Module, names: list[str], features: Tensor, graph: Optional[tuple]) -> StagedRun:
    """Run ``pipeline`` (eager or scripted) one stage after the other, as ``Pipeline.forward`` does.

    Args:
        pipeline: the pipeline; its submodules are called directly (a scripted pipeline's are scripted).
        names: the edge classifiers' stage names (:func:`classifier_names`).
        features (FloatTensor [N, F]): the event.
        graph: ``(edge_index [2, E], edge_attr [E, 6])`` replacing graph construction, or None.
    """
    guard, tracks = pipeline.input_guard, pipeline.track_building
    # getattr by position: iterating a scripted ModuleList yields the eager modules
    classifiers = [getattr(pipeline.edge_classifiers, str(i)) for i in range(len(names))]
    calls: dict = {"input_guard": lambda: guard(features)}
    x = guard(features)
    if graph is None:
        construct = pipeline.graph_construction
        calls["graph_construction"] = lambda: construct(x)
        edge_index, edge_attr = construct(x)
    else:
        edge_index, edge_attr = graph
    counts = {"spacepoints": int(x.shape[0]), "edges_graph": int(edge_index.shape[1])}
    inputs = {}
    scores = torch.ones(edge_index.shape[1], dtype=torch.float32, device=x.device)
    for name, classifier in zip(names, classifiers):
        inputs[name] = (x, edge_index, edge_attr)
        calls[name] = lambda c=classifier, a=inputs[name]: c(*a)
        edge_index, edge_attr, scores = classifier(*inputs[name])
    inputs["track_building"] = (x, edge_index, scores)
    calls["track_building"] = lambda: tracks(*inputs["track_building"])
    counts["edges_track_building"] = int(edge_index.shape[1])
    labels = tracks(*inputs["track_building"])
    if graph is not None:
        calls[AFTER_GRAPH] = lambda: _after_graph(classifiers, tracks, x, graph)
    return StagedRun(calls, labels, counts, inputs)


def _after_graph(classifiers, tracks, x: Tensor, graph: tuple) -> Tensor:
    edge_index, edge_attr = graph
    scores = torch.ones(0)
    for classifier in classifiers:
        edge_index, edge_attr, scores = classifier(x, edge_index, edge_attr)
    return tracks(x, edge_index, scores)


# ---------------------------------------------------------------------------------------------------
# Measurements


METRIC_TOLERANCE = 1e-3
"""Issue #15's bar for reduced precision: every tracking metric within this of float32's."""


RATES = ("efficiency", "fake_rate", "duplicate_rate")
"""The tracking metrics compared between precisions."""


def tracking_metrics(event, labels: Tensor) -> dict:
    """{style: :meth:`gnn4itk.metrics.MatchingFigures.as_dict`} (the three rates, None where undefined, and
    the counts) of LABELS [L] int64 against ``event``'s truth, for every matching style (GNN4ITk's target
    and matching cuts)."""
    from gnn4itk.metrics import evaluate_tracking

    result = evaluate_tracking(event, labels.cpu().numpy(), trackml=False)
    return {style: figures.as_dict() for style, figures in result.matching.items()}


def metric_differences(reference: dict, other: dict) -> dict:
    """``other - reference`` for every style and rate of :data:`RATES` of two :func:`tracking_metrics` (None
    where either is undefined), with ``largest`` (the largest absolute difference) and ``within_tolerance``
    (largest <= :data:`METRIC_TOLERANCE`)."""
    differences = {
        style: {k: None if figures[k] is None or other[style][k] is None else other[style][k] - figures[k] for k in RATES}
        for style, figures in reference.items()
    }
    largest = max((abs(v) for figures in differences.values() for v in figures.values() if v is not None), default=0.0)
    return {"by_style": differences, "largest": largest, "within_tolerance": largest <= METRIC_TOLERANCE}


def identical_fraction(reference: set, other: set) -> float:
    """|reference & other| / |reference| (1.0 when the reference has no track)."""
    return len(reference & other) / len(reference) if reference else 1.0


def peak_memory_figures(function, device: torch.device) -> dict:
    """Peak GPU memory [MB] of one call: absolute (weights, inputs, ... included) and above the start."""
    _, peak, start = peak_memory(function, device)
    if peak is None:
        return {"peak_gpu_memory_MB": None, "peak_gpu_memory_above_start_MB": None}
    return {"peak_gpu_memory_MB": peak / 2**20, "peak_gpu_memory_above_start_MB": (peak - start) / 2**20}


def summarise(times: list[float]) -> tuple[float, float]:
    """(median, p90) in ms of times in s."""
    return 1e3 * statistics.median(times), 1e3 * float(np.percentile(times, 90))


def prepare_variant(variant: Variant, names: list[str], event: BenchEvent, args, device: torch.device) -> tuple:
    """One variant on one event, up to its timing.

    Returns:
        (figures without times, its tracks, its :class:`StagedRun`, the calls to time: the whole pipeline
        (or :data:`AFTER_GRAPH`) first, then each stage), every call warmed up ``args.warmup`` times.
    """
    whole_name = "whole" if event.graph is None else AFTER_GRAPH
    with variant.context(), torch.no_grad():
        if event.graph is None:
            whole = lambda: variant.module(event.features)  # noqa: E731
            figures = peak_memory_figures(whole, device)
            labels = whole()
            staged = staged_run(variant.module, names, event.features, None)
        else:
            staged = staged_run(variant.module, names, event.features, event.graph)
            whole = staged.calls[AFTER_GRAPH]
            figures = peak_memory_figures(whole, device)
            labels = whole()
        tracks = track_set(labels)
        if event.truth is not None:
            figures["metrics"] = tracking_metrics(event.truth, labels)
        figures.update(staged.counts)
        figures.update(tracks=len(tracks), staged_tracks_identical=identical_fraction(tracks, track_set(staged.labels)))
        calls = {whole_name: whole, **{k: v for k, v in staged.calls.items() if k != AFTER_GRAPH}}
        for call in calls.values():
            timed_calls_events(call, device, args.warmup, 0)  # warm-up only
        # run to run: float16 atomics, say, sum in a different order each call
        figures["repeatable"] = bool(torch.equal(whole().cpu(), labels.cpu()))
    return figures, tracks, staged, calls


def time_interleaved(timed: dict, repeats: int, device: torch.device) -> dict:
    """Times [s] of every call, in ``repeats`` rounds that each time every call once, variant after
    variant, so that a slow phase of a shared machine falls on all variants alike.

    Args:
        timed: name -> (context factory entered around the name's calls, {stage: call}).

    Returns:
        name -> {stage: [times]}.
    """
    times = {name: {stage: [] for stage in calls} for name, (_, calls) in timed.items()}
    with torch.no_grad():
        for _ in range(repeats):
            for name, (context, calls) in timed.items():
                with context():
                    for stage, call in calls.items():
                        times[name][stage] += timed_calls_events(call, device, 0, 1)
    return times


def write_profiles(directory: Path, event_name: str, timed: dict, device: torch.device) -> Path:
    """``profile_<event>.txt`` in ``directory``: for each variant (and the peer GNN) the operator table of
    its first call (the whole pipeline, or the stages after the graph), 3 calls each."""
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in event_name)
    sections = []
    for name, (context, calls) in timed.items():
        stage, call = next(iter(calls.items()))
        with context(), torch.no_grad():
            sections.append(f"== {event_name}, {name}, {stage}: 3 calls\n{profile_table(call, device, calls=3)}\n")
    path = directory / f"profile_{safe}.txt"
    path.write_text("\n".join(sections))
    return path


PEER = "peer_gnn"
"""Name of the peer GNN among the timed calls (not a variant name)."""


def bench_event(event: BenchEvent, pipeline: nn.Module, variants: list, args, device: torch.device, peer) -> dict:
    """Every variant (and the peer GNN) on one event: the event's figures."""
    names = classifier_names(pipeline)
    result = {"name": event.name, **event.meta, "variants": {}}
    tracks, staged, timed = {}, {}, {}
    for variant in variants:
        print(f"{event.name}: {variant.name} ...", flush=True)
        result["variants"][variant.name], tracks[variant.name], staged[variant.name], calls = prepare_variant(
            variant, names, event, args, device)
        timed[variant.name] = (variant.context, calls)
    baseline = variants[0].name if variants else None
    result["baseline"] = baseline
    if peer is not None and baseline is not None:
        result[PEER], call = prepare_peer(peer, pipeline, names, staged[baseline], args, device)
        if call is not None:
            timed[PEER] = (contextlib.nullcontext, {result[PEER]["stage"]: call})
    print(f"{event.name}: timing, {args.repeats} rounds", flush=True)
    times = time_interleaved(timed, args.repeats, device)
    if getattr(args, "profile", None):
        write_profiles(args.profile, event.name, timed, device)
    for name, figures in result["variants"].items():
        pairs = {stage: summarise(values) for stage, values in times[name].items()}
        figures.update(median_ms={k: v[0] for k, v in pairs.items()}, p90_ms={k: v[1] for k, v in pairs.items()})
    for name, figures in result["variants"].items():
        base = result["variants"][baseline]["median_ms"]
        figures["ratio_to_baseline"] = {k: v / base[k] for k, v in figures["median_ms"].items() if base.get(k)}
        figures["identical_tracks_vs_baseline"] = identical_fraction(tracks[baseline], tracks[name])
        # fraction of the other variant's tracks that this one has too
        figures["identical_tracks_vs"] = {other: identical_fraction(tracks[other], tracks[name]) for other in tracks}
    if PEER in timed:
        peer_figures = result[PEER]
        median, p90 = summarise(times[PEER][peer_figures["stage"]])
        peer_figures.update(median_ms=median, p90_ms=p90, gnn_stage_over_peer={
            v: f["median_ms"][peer_figures["stage"]] / median for v, f in result["variants"].items()})
    if baseline is not None and "gnn" in staged[baseline].inputs and getattr(args, "_rates", None):
        result["gnn_floor"] = gnn_floor(pipeline, staged[baseline].inputs["gnn"], result["variants"], args._rates)
    float32 = next((n for n in ("scripted", "eager", "straightforward") if n in tracks), None)
    for name in (n for n in REDUCED_PRECISION if n in tracks and float32 is not None):
        judged = result.setdefault("reduced_precision", {})[name] = {
            "float32_variant": float32,
            "float32_tracks": len(tracks[float32]),
            "reduced_precision_tracks": len(tracks[name]),
            "common_tracks": len(tracks[float32] & tracks[name]),
            "identical_fraction": identical_fraction(tracks[float32], tracks[name]),
        }
        reduced, full = result["variants"][name], result["variants"][float32]
        if "metrics" in reduced and "metrics" in full:
            judged["metric_differences"] = metric_differences(full["metrics"], reduced["metrics"])
    first = next(iter(result["variants"].values()), {})
    for key in ("spacepoints", "edges_graph", "edges_track_building"):
        result[key] = first.get(key)
    return result


def gnn_floor(pipeline: nn.Module, inputs: tuple, variants: dict, rates: dict) -> dict:
    """The GNN stage's time over its floor (:mod:`gnn4itk.models.cost`) for every variant.

    Args:
        pipeline: the eager pipeline (its last :class:`InteractionGNN2` is the GNN stage's model).
        inputs: ``(features [N, F], edge_index [2, E], edge_attr [E, 6])`` the GNN stage got.
        variants: the event's figures per variant (with ``median_ms``).
        rates: :func:`gnn4itk.models.cost.measured_rates` of the device.
    """
    from gnn4itk.models.cost import gnn_floor_seconds, gnn_flops, gnn_min_bytes

    model = gnn_models(pipeline)[-1]
    _, edge_index, edge_attr = inputs
    nodes = int(inputs[0].shape[0])
    if model.drops_isolated_nodes():
        nodes = int(torch.unique(edge_index).numel())  # what the model keeps
    edges = int(edge_index.shape[1])
    flops = gnn_flops(model, nodes, edges)
    min_bytes = gnn_min_bytes(model, nodes, edges, int(edge_attr.shape[1]) if edge_attr.dim() == 2 else 0)
    floor_ms = gnn_floor_seconds(flops, min_bytes, rates) * 1e3
    return {
        "nodes": nodes, "edges": edges, "gflops": flops / 1e9, "min_MB": min_bytes / 1e6, "floor_ms": floor_ms,
        "rates": rates,
        "time_over_floor": {name: f["median_ms"]["gnn"] / floor_ms for name, f in variants.items() if "gnn" in f["median_ms"]},
    }


# ---------------------------------------------------------------------------------------------------
# The peer GNN (tracking-as-a-service), imported at run time from the user's copy


def _scatter_add(src: Tensor, index: Tensor, dim: int = 0, dim_size: Optional[int] = None) -> Tensor:
    """``torch_scatter.scatter_add`` for a 1-d ``index`` along dim 0 (the form the peer file uses)."""
    if dim != 0 or index.dim() != 1:
        raise NotImplementedError("stand-in scatter_add: dim=0 and a 1-d index only")
    size = int(index.max()) + 1 if dim_size is None and index.numel() else (dim_size or 0)
    return torch.zeros((size, *src.shape[1:]), dtype=src.dtype, device=src.device).index_add_(0, index, src)


def _scatter_mean(src: Tensor, index: Tensor, dim: int = 0, dim_size: Optional[int] = None) -> Tensor:
    """``torch_scatter.scatter_mean`` for a 1-d ``index`` along dim 0."""
    total = _scatter_add(src, index, dim, dim_size)
    count = _scatter_add(torch.ones_like(index, dtype=src.dtype), index, 0, total.shape[0]).clamp(min=1)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


class _MissingSAGEConv(nn.Module):
    """Stand-in for ``torch_geometric.nn.SAGEConv``: only named by the peer file, never needed here."""

    def __init__(self, *args, **kwargs):
        raise ImportError("torch_geometric is not installed: SAGEConv is not available (not needed for the GNN)")


@contextlib.contextmanager
def _peer_stand_ins():
    """Minimal ``torch_scatter`` / ``torch_geometric.nn`` modules while the peer file is imported, for
    packages that are not installed; removed afterwards, so that nothing else mistakes them for the real ones."""
    added = {}
    if importlib.util.find_spec("torch_scatter") is None:
        added["torch_scatter"] = types.ModuleType("torch_scatter")
        added["torch_scatter"].scatter_add = _scatter_add
        added["torch_scatter"].scatter_mean = _scatter_mean
    if importlib.util.find_spec("torch_geometric") is None:
        added["torch_geometric"] = types.ModuleType("torch_geometric")
        added["torch_geometric.nn"] = types.ModuleType("torch_geometric.nn")
        added["torch_geometric.nn"].SAGEConv = _MissingSAGEConv
        added["torch_geometric"].nn = added["torch_geometric.nn"]
    sys.modules.update(added)
    try:
        yield sorted(added)
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _peer_file(source: str) -> Path:
    from gnn4itk.cli import UserError

    path = Path(source)
    if path.is_file():
        return path
    if (path / "interaction_gnn.py").is_file():
        return path / "interaction_gnn.py"
    if path.is_dir():
        for candidate in sorted(path.rglob("*.py")):
            if "class ChainedInteractionGNN2" in candidate.read_text(errors="ignore"):
                return candidate
    raise UserError(f"--peer-gnn-source {source}: no interaction_gnn.py defining ChainedInteractionGNN2 there")


def load_peer_gnn(source: str, model: nn.Module) -> tuple[nn.Module, dict]:
    """The peer's interaction GNN of the same kind as ``model``, with ``model``'s hyperparameters and weights.

    Args:
        source: ``--peer-gnn-source`` (a folder holding ``interaction_gnn.py``, or the file).
        model: our :class:`~gnn4itk.models.interaction_gnn.InteractionGNN2` (chained or recurrent).

    Returns:
        (the peer module in eval mode on the CPU, a description for the JSON).

    Raises:
        UserError naming why it cannot be built or loaded.
    """
    import copy

    from gnn4itk.cli import UserError

    file = _peer_file(source)
    if model.node_net_recurrent != model.edge_net_recurrent:
        raise UserError("peer GNN: our GNN mixes a recurrent and a chained network; the peer has no such class")
    class_name = "RecurrentInteractionGNN2" if model.node_net_recurrent else "ChainedInteractionGNN2"
    name = "_gnn4itk_bench_peer_gnn"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    with _peer_stand_ins() as stand_ins:
        try:
            spec.loader.exec_module(module)
        except ImportError as error:
            raise UserError(f"peer GNN {file}: cannot be imported ({error}); its imports need packages this "
                            "environment lacks and that have no trivial stand-in") from None
    if not hasattr(module, class_name):
        raise UserError(f"peer GNN {file}: defines no {class_name}")
    try:
        peer = getattr(module, class_name)(copy.deepcopy(dict(model.hparams)))  # the peer edits its hparams
    except (KeyError, TypeError) as error:
        raise UserError(f"peer GNN {class_name}: our checkpoint's hyperparameters do not build it ({error!r})") from None
    _load_peer_state(peer, model.state_dict(), class_name)
    return peer.eval(), {"file": str(file), "class": class_name, "stand_ins": stand_ins}


def _load_peer_state(peer: nn.Module, state: dict, class_name: str) -> None:
    """Load our state dict into the peer: by name, else by position where every shape matches."""
    from gnn4itk.cli import UserError

    theirs = peer.state_dict()
    if set(theirs) == set(state):
        peer.load_state_dict(state)
        return
    ours = list(state.items())
    if len(ours) == len(theirs) and all(v.shape == w.shape for (_, v), w in zip(ours, theirs.values())):
        peer.load_state_dict({k: v for k, (_, v) in zip(theirs, ours)})
        return
    missing, unexpected = sorted(set(theirs) - set(state)), sorted(set(state) - set(theirs))
    raise UserError(f"peer GNN {class_name}: our weights do not fit it (it lacks {unexpected[:5]}, we lack "
                    f"{missing[:5]}, {len(state)} against {len(theirs)} tensors)")


def prepare_peer(peer: nn.Module, pipeline: nn.Module, names: list[str], staged: StagedRun, args, device) -> tuple:
    """The peer GNN, eager float32, on the inputs our GNN stage got, up to its timing.

    Returns:
        (figures: our stage's name, peak memory, the largest logit difference to our model in its plain
        order; the call to time, warmed up), or ({"error": ...}, None) without a GNN stage.
    """
    from gnn4itk.stages import GNNStage

    stages = [n for n, c in zip(names, pipeline.edge_classifiers) if isinstance(c, GNNStage)]
    if not stages:
        return {"error": "the pipeline has no GNN stage"}, None
    stage_name = stages[-1]
    stage = pipeline.edge_classifiers[names.index(stage_name)]
    features, edge_index, edge_attr = staged.inputs[stage_name]
    with torch.no_grad(), straightforward_gnn(pipeline):
        x = stage.inputs(features)
        call = lambda: peer(x, edge_index, edge_attr)  # noqa: E731
        figures = peak_memory_figures(call, device)
        difference = (call().float() - stage.model(x, edge_index, edge_attr).float()).abs()
        timed_calls_events(call, device, args.warmup, 0)  # warm-up only
    figures.update(stage=stage_name, max_abs_logit_difference=float(difference.max()) if difference.numel() else 0.0)
    return figures, call


# ---------------------------------------------------------------------------------------------------
# Output


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import platform

    return f"{model or platform.processor() or 'CPU'} ({torch.get_num_threads()} threads)"


def command_line(args) -> str:
    """The ``gnn4itk bench pipeline`` command line equivalent to ``args`` (every option spelled out)."""
    import shlex

    words = ["gnn4itk", "bench", "pipeline"]
    for key, value in vars(args).items():
        if key.startswith("_") or key in ("command", "area", "verbose") or value is None or value is False or value == []:
            continue
        if key == "pipeline" and args.config:  # --config wins
            continue
        option = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            words += [option] if item is True else [option, str(item)]
    return shlex.join(words)


def print_event(result: dict, device: str) -> None:
    """The table of one event: a row per stage, a column per variant."""
    from rich.console import Console
    from rich.table import Table

    variants = result["variants"]
    if not variants:
        return
    synthetic = result.get("synthetic_graph")
    table = Table(title=f"{result['name']} on {device}: {result['spacepoints']:,} spacepoints, "
                  f"{result['edges_graph']:,} edges {'(synthetic graph)' if synthetic else 'after graph construction'}, "
                  f"{result['edges_track_building']:,} into track building",
                  caption=f"median / p90 ms (median / {result['baseline']}'s)")
    stages = list(next(iter(variants.values()))["median_ms"])
    table.add_column("stage", no_wrap=True, min_width=max(len(s) for s in stages))
    for name in variants:
        table.add_column(name, justify="right")
    for stage in stages:
        table.add_row(stage, *(f"{f['median_ms'][stage]:.2f} / {f['p90_ms'][stage]:.2f} "
                               f"({f['ratio_to_baseline'][stage]:.2f})" for f in variants.values()))
    peaks = [f["peak_gpu_memory_MB"] for f in variants.values()]
    if any(p is not None for p in peaks):
        table.add_row("peak GPU memory MB", *("-" if p is None else f"{p:,.0f}" for p in peaks))
    table.add_row("tracks", *(f"{f['tracks']:,}" for f in variants.values()))
    table.add_row(f"identical to {result['baseline']}", *(f"{f['identical_tracks_vs_baseline']:.4f}" for f in variants.values()))
    for style in next(iter(variants.values())).get("metrics", {}):
        table.add_row(f"{style} eff / fake / dup", *(
            " / ".join("-" if f["metrics"][style][k] is None else f"{f['metrics'][style][k]:.4f}" for k in RATES)
            for f in variants.values()))
    console = Console()
    console.print(table)
    if synthetic:
        console.print("graph construction is SYNTHETIC here (bench.pipeline.density_graph): "
                      f"{result['edges_per_spacepoint']:.2f} edges per spacepoint; it is not timed")
    for name, rp in result.get("reduced_precision", {}).items():
        console.print(f"{name}: {rp['common_tracks']:,} of {rp['float32_tracks']:,} {rp['float32_variant']} "
                      f"float32 tracks identical ({rp['identical_fraction']:.4%})")
        if "metric_differences" in rp:
            diff = rp["metric_differences"]
            console.print(f"{name}, truth metrics: largest difference to float32 {diff['largest']:.4f} "
                          f"({'within' if diff['within_tolerance'] else 'NOT within'} {METRIC_TOLERANCE})")
    unrepeatable = [name for name, f in variants.items() if not f.get("repeatable", True)]
    if unrepeatable:
        console.print(f"LABELS differ between two calls of: {', '.join(unrepeatable)}")
    if "gnn_floor" in result:
        floor = result["gnn_floor"]
        ratios = ", ".join(f"{k} {v:.1f}" for k, v in floor["time_over_floor"].items())
        console.print(f"GNN floor: {floor['gflops']:.1f} GFLOP at {floor['rates']['matmul_flops_per_s'] / 1e12:.3g} "
                      f"TFLOP/s ({floor['rates']['matmul_dtype']}), {floor['min_MB']:.1f} MB at "
                      f"{floor['rates']['copy_bytes_per_s'] / 1e9:.0f} GB/s -> {floor['floor_ms']:.3f} ms; time / floor: {ratios}")
    if "median_ms" in result.get(PEER, {}):
        peer = result[PEER]
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in peer["gnn_stage_over_peer"].items())
        console.print(f"peer GNN (tracking-as-a-service, eager float32, our weights): "
                      f"{peer['median_ms']:.2f} / {peer['p90_ms']:.2f} ms, max |logit difference| "
                      f"{peer['max_abs_logit_difference']:.2e}; our {peer['stage']} stage / peer: {ratios}")


def print_sweep(results: list, device: str) -> None:
    """One line per event: how time and memory grow with the event."""
    from rich.console import Console
    from rich.table import Table

    if len(results) < 2 or not results[0]["variants"]:
        return
    names = list(results[0]["variants"])
    table = Table(title=f"all events on {device}: whole (or after graph construction) median ms / peak GPU MB")
    for column in ("event", "spacepoints", "edges", *names):
        table.add_column(column, justify="left" if column == "event" else "right")
    for result in results:
        cells = []
        for name in names:
            figures = result["variants"][name]
            peak = figures["peak_gpu_memory_MB"]
            cells.append(f"{next(iter(figures['median_ms'].values())):.2f}" + ("" if peak is None else f" / {peak:,.0f}"))
        table.add_row(result["name"], f"{result['spacepoints']:,}", f"{result['edges_graph']:,}", *cells)
    Console().print(table)


def run(args) -> dict:
    from gnn4itk.cli import UserError

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available")
    if args.repeats < 1 or args.warmup < 0:
        raise UserError("--repeats must be at least 1 and --warmup at least 0")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise UserError(f"--variants: unknown variants {unknown}; choose from {list(VARIANTS)}")
    names = [v for v in VARIANTS if v in names]  # the baseline first
    if args.itk_density is not None and (args.itk_density <= 0 or args.itk_spacepoints < 3):
        raise UserError("--itk-density must be positive and --itk-spacepoints at least 3")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pipeline, module_map = load_bench_pipeline(args)
    pipeline = pipeline.to(device).eval()
    peer, peer_info = None, None
    if args.peer_gnn_source:
        models = gnn_models(pipeline)
        if not models:
            raise UserError("--peer-gnn-source: the pipeline has no InteractionGNN2")
        peer, peer_info = load_peer_gnn(args.peer_gnn_source, models[-1])
        peer = peer.to(device)
    variants, skipped = make_variants(pipeline, names, device)
    from gnn4itk.models.cost import measured_rates

    # the device's best matmul and copy rates, once: the GNN floor's yardstick (small on the CPU smoke run)
    args._rates = measured_rates(device, size=8192 if device.type == "cuda" else 512, repeats=5)
    name = device_name(device)
    figures = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": name,
        "torch": torch.__version__,
        "command": command_line(args),
        "torch_threads": torch.get_num_threads(),
        "pipeline": args.config or args.pipeline,
        "module_map": module_map,
        "variants": {v.name: VARIANTS[v.name] for v in variants},
        "skipped_variants": skipped,
        "baseline": variants[0].name if variants else None,
        "gnn_optimized_switch": any(hasattr(m, "optimized") for m in gnn_models(pipeline)),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "peer_gnn": peer_info,
        "events": [],
    }
    warnings.simplefilter("ignore")  # unknown-module warnings of the map builder would repeat every call
    for event in bench_events(args, list(pipeline.columns), device):
        result = bench_event(event, pipeline, variants, args, device, peer)
        figures["events"].append(result)
        print_event(result, name)
    for variant, why in skipped.items():
        print(f"{variant}: skipped, {why}")
    if not figures["gnn_optimized_switch"] and "straightforward" in names:
        print("straightforward: this InteractionGNN2 has no `optimized` switch, so it equals eager")
    print_sweep(figures["events"], name)
    return figures
