"""Cost of simulating one pile-up event on one core: generation, Fatras + digitisation, conversion, write.

Each stage is timed per event (wall and process CPU time) after one warm-up event that pays the one-off
costs (pyacts detector build, module frames, imports); medians over the timed events are reported, with
the spacepoint and particle counts. Generators given with ``--generators`` are compared as ratios to the
first one, in the same run. Simulation is CPU only: pyacts has no GPU path.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

HELP = "simulation cost per pile-up event on one core (pyacts Fatras + digitisation; CPU only)"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="simulation runs on the CPU; cuda is refused"
    )
    parser.add_argument("--pileup", type=float, default=200.0, help="mean pile-up (%(default)s)")
    parser.add_argument("--events", type=int, default=3, help="timed events after one warm-up event (%(default)s)")
    parser.add_argument("--generators", default="auto", help="comma-separated: pythia8, gun, auto (%(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (%(default)s)")


def _timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure(generator_name: str, pileup: float, events: int, seed: int) -> dict:
    """Median per-event seconds of every stage for one generator (``events`` timed + 1 warm-up)."""
    from gnn4itk.event import write_event
    from gnn4itk.simulation.convert import event_from_acts
    from gnn4itk.simulation.fatras import run_acts
    from gnn4itk.simulation.generators import CrossingGenerator, GeneratorConfig

    config = GeneratorConfig(pileup=pileup, generator=generator_name, seed=seed)
    generator, init_wall, _ = _timed(CrossingGenerator, config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gnn4itk-bench-sim-") as scratch:
        for event_id in range(events + 1):
            (particles, _), gen_wall, gen_cpu = _timed(generator, event_id)
            tables, acts_wall, acts_cpu = _timed(run_acts, particles, seed, event_id)
            event, conv_wall, conv_cpu = _timed(event_from_acts, tables, event_id)
            _, write_wall, write_cpu = _timed(write_event, event, scratch)
            if event_id == 0:
                continue  # warm-up
            rows.append(
                {
                    "generation": (gen_wall, gen_cpu),
                    "fatras+digitisation": (acts_wall, acts_cpu),
                    "conversion": (conv_wall, conv_cpu),
                    "write": (write_wall, write_cpu),
                    "spacepoints": len(event.hits),
                    "particles": len(event.particles),
                    "particles_with_hits": int((event.particles["nhits"] > 0).sum()),
                    "generator_particles": len(particles),
                }
            )
    stages = ["generation", "fatras+digitisation", "conversion", "write"]
    result = {"generator": generator.generator, "generator_init_wall_s": init_wall, "stages": {}}
    for stage in stages:
        result["stages"][stage] = {
            "wall_s": float(np.median([r[stage][0] for r in rows])),
            "cpu_s": float(np.median([r[stage][1] for r in rows])),
        }
    result["total_wall_s"] = float(np.median([sum(r[s][0] for s in stages) for r in rows]))
    result["total_cpu_s"] = float(np.median([sum(r[s][1] for s in stages) for r in rows]))
    for key in ("spacepoints", "particles", "particles_with_hits", "generator_particles"):
        result[key] = float(np.median([r[key] for r in rows]))
    return result


def run(args) -> dict:
    from rich.console import Console
    from rich.table import Table

    from gnn4itk.cli import UserError

    if args.device != "cpu":
        raise UserError("the simulation runs on the CPU only (pyacts has no GPU path); use --device cpu")
    if args.events < 1:
        raise UserError(f"--events must be >= 1, got {args.events}")
    names = [n.strip() for n in args.generators.split(",") if n.strip()]
    unknown = [n for n in names if n not in ("pythia8", "gun", "auto")]
    if not names or unknown:
        raise UserError(f"--generators takes pythia8, gun or auto, got {args.generators!r}")
    results = [measure(name, args.pileup, args.events, args.seed) for name in names]

    table = Table(title=f"simulation, <mu> = {args.pileup:g}, median of {args.events} event(s) per generator, 1 core")
    for column in ("generator", "stage", "wall s/event", "CPU s/event", "CPU ratio vs first"):
        table.add_column(column)
    for result in results:
        total = {"wall_s": result["total_wall_s"], "cpu_s": result["total_cpu_s"]}
        for stage, times in [*result["stages"].items(), ("total", total)]:
            reference = results[0]["stages"].get(stage, {"cpu_s": results[0]["total_cpu_s"]})["cpu_s"]
            ratio = times["cpu_s"] / reference if reference > 0 else float("nan")
            table.add_row(result["generator"], stage, f"{times['wall_s']:.2f}", f"{times['cpu_s']:.2f}", f"{ratio:.2f}")
    Console().print(table)
    for result in results:
        print(
            f"{result['generator']}: {result['spacepoints']:.0f} spacepoints, {result['particles']:.0f} particles "
            f"({result['particles_with_hits']:.0f} with hits) per event; "
            f"generator init {result['generator_init_wall_s']:.1f} s"
        )
    return {"device": "cpu", "pileup": args.pileup, "events": args.events, "results": results}
