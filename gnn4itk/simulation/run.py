"""Simulate many events in parallel processes: generation, Fatras + digitisation, Parquet output, a summary.

Each event is made whole by one process (``--jobs`` spawned workers, or the calling process for one job):
generate the crossing, run ACTS, convert to an :class:`~gnn4itk.event.Event`, write it. Nothing carries over
from one event to the next: Pythia8 is re-initialised from its cache file before every event
(:meth:`~gnn4itk.simulation.generators.Pythia8Source.restart`) and all random numbers derive from
``(seed, event_id)``, so the output does not depend on the number of workers or on which worker made what.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from gnn4itk.event import Event, write_event
from gnn4itk.simulation.generators import CrossingGenerator, GeneratorConfig, describe_generator, event_rng

NOISE_STREAM = 1  # event_rng stream of the noise spacepoints (stream 0 is the generator's)

FATRAS_FAILURE_WARN_FRACTION = 1e-3
"""Warn when Fatras fails to simulate more than this fraction of the particles it was given.

Fatras drops a particle it cannot propagate (with its hits), e.g. a soft looper that reaches the
propagator's step limit: about one particle in 30k at mu = 200, which changes no tracking figure. Such
failures are counted in the summary (and ``Event.meta``) at info level; above this fraction (1 in 1000)
they could bias efficiencies at the per-mille level, and a warning says so. docs/simulation.md.
"""


class SimulationWarning(UserWarning):
    """Something in the simulated events that can matter for their use (e.g. many Fatras failures)."""


def fatras_failure_fraction(failed: int, simulated: int) -> float:
    """Fraction of the particles given to Fatras that it failed to simulate (``simulated`` succeeded)."""
    attempted = failed + simulated
    return failed / attempted if attempted else 0.0


def warn_about_fatras_failures(failed: int, simulated: int, what: str) -> None:
    """A :class:`SimulationWarning` when the failed fraction exceeds :data:`FATRAS_FAILURE_WARN_FRACTION`."""
    fraction = fatras_failure_fraction(failed, simulated)
    if fraction > FATRAS_FAILURE_WARN_FRACTION:
        warnings.warn(
            f"Fatras failed to simulate {failed:,} of {failed + simulated:,} particles in {what} "
            f"({fraction:.2%}, more than {FATRAS_FAILURE_WARN_FRACTION:.1%}): these particles and their hits "
            "are missing from the events (see the summary for the reasons; docs/simulation.md)",
            SimulationWarning,
            stacklevel=3,
        )


@dataclass
class SimulationConfig:
    """Everything that determines the simulated events.

    Attributes:
        generator: what the crossings contain (:class:`GeneratorConfig`).
        noise_fraction: noise spacepoints added, as a fraction of the real ones.
        p_min: Fatras momentum threshold [GeV].
        acts_csv_dir: also write ACTS CSV files (ACTS's writers) into this directory.
    """

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    noise_fraction: float = 0.0
    p_min: float = 0.05
    acts_csv_dir: str | None = None

    def validate(self) -> None:
        self.generator.validate()
        if not np.isfinite(self.noise_fraction) or self.noise_fraction < 0:
            raise ValueError(f"noise fraction must be a finite number >= 0, got {self.noise_fraction}")
        if not np.isfinite(self.p_min) or self.p_min < 0:
            raise ValueError(f"p_min must be a finite number >= 0 GeV, got {self.p_min}")


def simulate_particles(particles: pd.DataFrame, info: dict, config: SimulationConfig, event_id: int) -> Event:
    """Fatras + digitisation + conversion of one crossing's generator particles into an Event.

    Args:
        particles: generator particle table (see :mod:`gnn4itk.simulation.generators`).
        info: generator description of the crossing (goes into ``Event.meta``).
        config: simulation settings.
        event_id: event number (also seeds ACTS and the noise).
    """
    from gnn4itk.simulation.convert import event_from_acts
    from gnn4itk.simulation.detector import FIELD_TESLA, volume_resolutions
    from gnn4itk.simulation.fatras import run_acts

    seed = config.generator.seed
    tables = run_acts(particles, seed, event_id, csv_dir=config.acts_csv_dir, p_min=config.p_min)
    failures = tables.pop("fatras_failures", {})
    meta = {
        **info,
        "detector": "ACTS Generic detector",
        "simulation": "ACTS Fatras (multiple scattering, energy loss, photon conversion)",
        "field_tesla": FIELD_TESLA,
        "fatras_p_min_gev": config.p_min,
        # particles Fatras gave up on (dropped with their hits), and why: {reason: count}
        "fatras_failed_particles": int(sum(failures.values())),
        "fatras_failures": dict(failures),
        "digitization": "Gaussian smearing, sigma = pitch/sqrt(12) per volume",
        "resolutions_mm": {str(v): list(s) for v, s in volume_resolutions().items()},
        "noise_fraction": config.noise_fraction,
    }
    return event_from_acts(
        tables,
        event_id=event_id,
        meta=meta,
        noise_fraction=config.noise_fraction,
        rng=event_rng(seed, event_id, NOISE_STREAM),
    )


def simulate_event(config: SimulationConfig, event_id: int = 0) -> Event:
    """Generate and simulate one event in this process (convenient for tests and notebooks).

    Fatras failures are in ``meta["fatras_failed_particles"]`` and ``meta["fatras_failures"]``; a
    :class:`SimulationWarning` comes when they exceed :data:`FATRAS_FAILURE_WARN_FRACTION`.
    """
    config.validate()
    particles, info = _generator_for(config.generator)(event_id)
    event = simulate_particles(particles, info, config, event_id)
    warn_about_fatras_failures(event.meta["fatras_failed_particles"], len(event.particles), f"event {event_id}")
    return event


_GENERATORS: dict = {}  # per process: one CrossingGenerator per GeneratorConfig (Pythia is slow to set up)


def _generator_for(config: GeneratorConfig) -> CrossingGenerator:
    key = repr(config)
    if key not in _GENERATORS:
        _GENERATORS[key] = CrossingGenerator(config)
    return _GENERATORS[key]


def _make_event(config: SimulationConfig, event_id: int, output: str, stage: Callable[[str], None] | None = None) -> dict:
    """Worker task: generate, simulate and write one event; return its counts and timing.

    ``stage`` (in-process runs only) is told what the event is doing, for the progress display.
    """
    stage = stage or (lambda text: None)
    generator = _generator_for(config.generator)
    start, cpu_start = time.perf_counter(), time.process_time()
    stage(f"event {event_id}: generating")
    particles, info = generator(event_id)
    generated, generated_cpu = time.perf_counter(), time.process_time()
    stage(f"event {event_id}: Fatras, {len(particles):,} particles")
    event = simulate_particles(particles, info, config, event_id)
    stage(f"event {event_id}: writing")
    write_event(event, output)
    counts = event.summary()
    return {
        "event_id": event_id,
        "spacepoints": counts["spacepoints"],
        "noise_spacepoints": counts["noise_spacepoints"],
        "particles": counts["particles"],
        "particles_with_hits": counts["particles_with_hits"],
        "primary_particles": counts["primary_particles"],
        "fatras_failed_particles": event.meta["fatras_failed_particles"],
        "fatras_failures": event.meta["fatras_failures"],
        "generation_s": generated - start,
        "generation_cpu_s": generated_cpu - cpu_start,
        "simulation_s": time.perf_counter() - generated,
        "simulation_cpu_s": time.process_time() - generated_cpu,
    }


def simulate_events(
    config: SimulationConfig, events: int, output: str | Path, jobs: int = 1, progress: bool = True
) -> dict:
    """Generate, simulate and write ``events`` events (numbers 0..events-1) into ``output``.

    Args:
        config: simulation settings.
        events: number of events.
        output: directory for the Parquet files (:func:`gnn4itk.event.write_event`).
        jobs: worker processes (1 = all in this process); never more than ``events`` (one event runs in
            this process: starting a worker would only add its start-up).
        progress: show progress (:class:`gnn4itk.progress.Progress`: a live bar on a terminal, a
            plain line every few seconds otherwise).

    Returns:
        Summary dict: generator, counts per event (means), Fatras failures (totals, by reason),
        seconds per event, per-event rows. A :class:`SimulationWarning` comes when the Fatras failures
        exceed :data:`FATRAS_FAILURE_WARN_FRACTION` of the particles.
    """
    from gnn4itk.progress import Progress

    config.validate()
    if events < 1:
        raise ValueError(f"events must be >= 1, got {events}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    jobs = min(jobs, events)
    output = str(output)
    Path(output).mkdir(parents=True, exist_ok=True)
    wall_start = time.perf_counter()
    results = []
    with Progress(events, "simulate", "event", enabled=progress) as bar:
        # Set up the generator here first: it writes the Pythia8 cache files (once) before workers read them.
        bar.set_status("setting up the generator")
        _generator_for(config.generator)
        init_s = time.perf_counter() - wall_start
        if jobs == 1:
            for event_id in range(events):
                results.append(_make_event(config, event_id, output, stage=bar.set_status))
                bar.update()
        else:
            bar.set_status(f"starting {jobs} workers")
            # spawn: workers start clean, with no copy of this process's Pythia or ACTS state.
            context = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                tasks = [pool.submit(_make_event, config, event_id, output) for event_id in range(events)]
                bar.set_status(f"{jobs} workers")
                for done in futures.as_completed(tasks):
                    results.append(done.result())
                    bar.update()
        bar.set_status("")
    wall_s = time.perf_counter() - wall_start
    rows = pd.DataFrame(sorted(results, key=lambda r: r["event_id"]))
    failures: dict[str, int] = {}
    for row in results:
        for reason, count in row["fatras_failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    failed = int(rows["fatras_failed_particles"].sum())
    simulated = int(rows["particles"].sum())
    warn_about_fatras_failures(failed, simulated, f"{events} event(s)")
    return {
        "events": events,
        "output": output,
        "jobs": jobs,
        "generator": describe_generator(config.generator),
        "config": asdict(config),
        "mean_spacepoints": float(rows["spacepoints"].mean()),
        "mean_noise_spacepoints": float(rows["noise_spacepoints"].mean()),
        "mean_particles": float(rows["particles"].mean()),
        "mean_particles_with_hits": float(rows["particles_with_hits"].mean()),
        "mean_primary_particles": float(rows["primary_particles"].mean()),
        "fatras_failed_particles": failed,
        "fatras_failed_fraction": fatras_failure_fraction(failed, simulated),
        "fatras_failures": dict(sorted(failures.items(), key=lambda item: -item[1])),
        "generator_init_s": init_s,
        "generation_s_per_event": float(rows["generation_s"].mean()),
        "generation_cpu_s_per_event": float(rows["generation_cpu_s"].mean()),
        "simulation_s_per_event": float(rows["simulation_s"].mean()),
        "simulation_cpu_s_per_event": float(rows["simulation_cpu_s"].mean()),
        "wall_s_per_event": wall_s / events,
        "per_event": rows.to_dict(orient="records"),
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines for a :func:`simulate_events` summary."""
    g = summary["config"]["generator"]
    return "\n".join(
        [
            f"simulated {summary['events']} event(s) -> {summary['output']}",
            f"  generator        {summary['generator']}, <mu> = {g['pileup']:g}, hard scatter {g['hard_scatter']}, "
            f"seed {g['seed']}, {summary['jobs']} job(s)",
            f"  spacepoints      {summary['mean_spacepoints']:.0f} per event "
            f"(noise {summary['mean_noise_spacepoints']:.0f})",
            f"  particles        {summary['mean_particles']:.0f} per event "
            f"(with hits {summary['mean_particles_with_hits']:.0f}, primary {summary['mean_primary_particles']:.0f})",
            *format_fatras_failures(summary),
            f"  seconds/event    {summary['wall_s_per_event']:.2f} wall (all steps, {summary['jobs']} job(s)); "
            f"generator set-up {summary['generator_init_s']:.1f} s",
            f"    generation     {summary['generation_s_per_event']:.2f} wall, "
            f"{summary['generation_cpu_s_per_event']:.2f} CPU (incl. Pythia8 re-initialisation)",
            f"    simulation     {summary['simulation_s_per_event']:.2f} wall, "
            f"{summary['simulation_cpu_s_per_event']:.2f} CPU (Fatras, digitisation, conversion, write)",
        ]
    )


def format_fatras_failures(summary: dict) -> list[str]:
    """Summary lines about the particles Fatras failed to simulate (info; see FATRAS_FAILURE_WARN_FRACTION)."""
    failed = summary.get("fatras_failed_particles", 0)
    if not failed:
        return ["  Fatras failures  none"]
    fraction = summary["fatras_failed_fraction"]
    lines = [
        f"  Fatras failures  {failed:,} particle(s) not simulated in {summary['events']} event(s) "
        f"({fraction:.1e} of all; a warning above {FATRAS_FAILURE_WARN_FRACTION:g}), dropped with their hits:"
    ]
    lines += [f"    {count:>5,} x {reason}" for reason, count in summary["fatras_failures"].items()]
    return lines
