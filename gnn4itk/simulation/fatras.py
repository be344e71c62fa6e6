"""Run one event through ACTS: primary particles -> Fatras -> smearing digitisation -> raw tables.

The ACTS sequence is: a Python source algorithm that puts the generator's particles on the whiteboard,
``FatrasSimulation`` (multiple scattering, ionisation and radiative energy loss, photon conversion; hits on
sensitive surfaces), ``DigitizationAlgorithm`` with the per-volume Gaussian smearing of
:mod:`gnn4itk.simulation.detector`, and a Python sink algorithm that copies the whiteboard content into
pandas tables with the column names of ACTS's CSV writers (:mod:`gnn4itk.io.acts_csv` reads the same
layout from files). Optionally the standard ACTS CSV writers run too (``csv_dir``).

The random numbers of Fatras and the digitisation come from ``RandomNumbers(seed=mix(seed, event_id))``;
the event therefore depends only on its particles, the seed and the event number.

Fatras gives up on a particle now and then (a soft looper reaching the propagator's step limit: about
one particle in 30k at mu = 200); it drops that particle and its hits and logs an ERROR line per
particle from C++, straight to standard output. :func:`run_acts` collects those lines instead
(:func:`native_stdout_captured`) and returns the failures counted by reason (:func:`parse_fatras_failures`);
every other line ACTS prints is passed on unchanged.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from gnn4itk.simulation.generators import PARTICLE_TABLE_COLUMNS

P_MIN_GEV = 0.05
BARCODE_FIELDS = ["pv", "sv", "part", "gen", "subpart"]
_BARCODE_ATTRS = ["vertexPrimary", "vertexSecondary", "particle", "generation", "subParticle"]


# ActsExamples::FatrasSimulation (pyacts 48), ERROR level: a line per failed particle, then per event a
# total and a count per error code:
#   "01:56:21    FatrasSimula   ERROR     event 0 particle id=2934788380928054521(vp=129|vs=0|p=48|g=1|sp=1)|
#    pdg=e+|q=1|m=0.000510999|p=0.0644569 failed to simulate with error PropagatorError:2: Propagation reached
#    the configured maximum number of steps"                                                    (one line)
#   "01:56:24    FatrasSimula   ERROR     1 particles failed to simulate"
#   "01:56:24    FatrasSimula   ERROR       Propagation reached the configured maximum number of steps (code 2): 1 times"
_FAILED_PARTICLE = re.compile(r"failed to simulate with error\s+(?P<reason>.*?)\s*$")
_FAILED_TOTAL = re.compile(r"\b(?P<count>\d+) particles? failed to simulate\s*$")
_FAILED_PER_CODE = re.compile(r"Fatras.*\(code \d+\): \d+ times?\s*$")
UNPARSED_FAILURE = "reason not recognised (see ACTS's ERROR lines above)"


def parse_fatras_failures(lines: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """Fatras's failed-particle lines, counted by reason, and the lines that are something else.

    Args:
        lines: what ACTS printed (one string per line).

    Returns:
        (``{reason: number of particles}``, e.g. ``{"PropagatorError:2: Propagation reached the
        configured maximum number of steps": 1}``; the other lines, in order). Where ACTS's totals
        count more failures than its per-particle lines gave (a message format this code does not know),
        the rest is counted under :data:`UNPARSED_FAILURE`, so that no failure goes uncounted.
    """
    failures: dict[str, int] = {}
    others = []
    reported = 0
    for line in lines:
        match = _FAILED_PARTICLE.search(line)
        total = _FAILED_TOTAL.search(line)
        if match:
            reason = match.group("reason") or "unknown error"
            failures[reason] = failures.get(reason, 0) + 1
        elif total:
            reported += int(total.group("count"))
        elif not _FAILED_PER_CODE.search(line):
            others.append(line)
    missing = reported - sum(failures.values())
    if missing > 0:
        failures[UNPARSED_FAILURE] = failures.get(UNPARSED_FAILURE, 0) + missing
    return failures, others


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers (where C++ std::cout output may wait)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to call: nothing buffered there either
        pass


@contextlib.contextmanager
def native_stdout_captured() -> Iterator[list[str]]:
    """Collect what the process writes to file descriptor 1 (C++ ``std::cout`` included) during the block.

    Python's own ``sys.stdout`` keeps writing to the original destination meanwhile (it is pointed at a
    duplicate of the original descriptor), so progress lines of other threads are not swallowed.
    Yields a list that holds the captured lines once the block is over. Where standard output has no
    file descriptor, nothing is captured.
    """
    captured: list[str] = []
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield captured
        return
    previous = sys.stdout
    try:
        python_on_fd1 = previous.fileno() == 1
    except (OSError, ValueError, AttributeError):  # e.g. pytest's capture: not on the descriptor
        python_on_fd1 = False
    with tempfile.TemporaryFile() as sink:
        if python_on_fd1:
            sys.stdout = open(  # noqa: SIM115 (closed below; closefd=False keeps `saved` open)
                saved, "w", buffering=1, encoding=getattr(previous, "encoding", None) or "utf-8",
                errors="replace", closefd=False,
            )
        os.dup2(sink.fileno(), 1)
        try:
            yield captured
        finally:
            _flush_c_stdio()
            os.dup2(saved, 1)
            if python_on_fd1:
                sys.stdout.close()
                sys.stdout = previous
            os.close(saved)
            sink.seek(0)
            captured.extend(sink.read().decode("utf-8", errors="replace").splitlines())


def acts_seed(seed: int, event_id: int) -> int:
    """The ACTS RandomNumbers seed of one event: a 63-bit mix of the master seed and the event number."""
    state = np.random.SeedSequence([int(seed), int(event_id), 7]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def _barcode(acts, values) -> object:
    barcode = acts.ActsFatrasPythonBindings.Barcode()
    for attr, value in zip(_BARCODE_ATTRS, values):
        setattr(barcode, attr, int(value))
    return barcode


_barcode_fields = operator.attrgetter(*_BARCODE_ATTRS)  # barcode -> tuple of its BARCODE_FIELDS values


class _TruthColumns:
    """Columns of a particle or simhit table filled object by object.

    ACTS's Python objects hand out their 4-vectors as whole buffers (``np.asarray``) but their elements
    one binding call each; a row of tuples cost about 12 us per simhit, these arrays about 7 (a
    mu=200 event has ~130k simhits). The values are the same doubles either way.
    """

    def __init__(self, n: int, extra: Iterable[tuple[str, type]]):
        self.ids = np.empty((n, len(BARCODE_FIELDS)), dtype=np.int64)
        self.position = np.empty((n, 4))
        self.momentum = np.empty((n, 4))
        self.extra = {name: np.empty(n, dtype=dtype) for name, dtype in extra}

    def set(self, k: int, barcode, four_position, four_momentum) -> None:
        self.ids[k] = _barcode_fields(barcode)
        self.position[k] = four_position
        self.momentum[k] = four_momentum

    def table(self, columns: list[str], momentum_size: int, before: list[str], after: list[str]) -> pd.DataFrame:
        """The table in ``columns`` order: barcode fields, ``before``, x y z t, momentum, ``after``."""
        data = {f"particle_id_{f}": self.ids[:, i] for i, f in enumerate(BARCODE_FIELDS)}
        data.update({name: self.extra[name] for name in before})
        start = len(BARCODE_FIELDS) + len(before)
        data.update(zip(columns[start : start + 4], self.position.T))
        data.update(zip(columns[start + 4 : start + 4 + momentum_size], self.momentum[:, :momentum_size].T))
        data.update({name: self.extra[name] for name in after})
        return pd.DataFrame(data, columns=columns)


def _sim_particles(acts, acts_examples, table: pd.DataFrame):
    """An ``acts.examples.SimParticleContainer`` from a particle table (see generators)."""
    container = acts_examples.SimParticleContainer()
    momentum = table[["px", "py", "pz"]].to_numpy(np.float64)
    p_abs = np.linalg.norm(momentum, axis=1)
    if (p_abs <= 0).any():
        raise ValueError("particle table has a particle with zero momentum")
    direction = momentum / p_abs[:, None]
    ids = table[[f"particle_id_{f}" for f in BARCODE_FIELDS]].to_numpy(np.int64)
    pdg = table["particle_type"].to_numpy(np.int64)
    charge = table["q"].to_numpy(np.float64)
    mass = table["m"].to_numpy(np.float64)
    position = table[["vx", "vy", "vz", "vt"]].to_numpy(np.float64)
    for i in range(len(table)):
        particle = acts_examples.SimParticle(
            _barcode(acts, ids[i]), acts.PdgParticle(int(pdg[i])), float(charge[i]), float(mass[i])
        )
        particle.fourPosition = acts.Vector4(*position[i])
        particle.direction = acts.Vector3(*direction[i])
        particle.absoluteMomentum = float(p_abs[i])
        container.insert(particle)
    return container


def particles_to_table(particles) -> pd.DataFrame:
    """ACTS ``SimParticleContainer`` -> particle table (initial state, as ``CsvParticleWriter`` writes)."""
    particles = list(particles)
    columns = _TruthColumns(len(particles), [("particle_type", np.int64), ("q", np.float64), ("m", np.float64)])
    for k, particle in enumerate(particles):
        state = particle.initialState
        columns.set(k, state.particleId, state.fourPosition, state.fourMomentum)
        columns.extra["particle_type"][k] = int(state.pdg)
        columns.extra["q"][k] = state.charge
        columns.extra["m"][k] = state.mass
    return columns.table(PARTICLE_TABLE_COLUMNS, 3, ["particle_type", "q", "m"], [])


SIMHIT_TABLE_COLUMNS = [f"particle_id_{f}" for f in BARCODE_FIELDS] + [
    "geometry_id", "tx", "ty", "tz", "tt", "tpx", "tpy", "tpz", "te", "index",
]
"""Columns of :func:`simhits_to_table` (``CsvSimHitWriter``'s truth position and momentum)."""


def simhits_to_table(simhits) -> pd.DataFrame:
    """ACTS ``SimHitContainer`` -> table of :data:`SIMHIT_TABLE_COLUMNS`."""
    simhits = list(simhits)
    columns = _TruthColumns(len(simhits), [("geometry_id", np.uint64), ("index", np.int64)])
    geometry, index = columns.extra["geometry_id"], columns.extra["index"]
    for k, hit in enumerate(simhits):
        columns.set(k, hit.particleId, hit.fourPosition, hit.momentum4Before)
        geometry[k] = hit.geometryId.value
        index[k] = hit.index
    return columns.table(SIMHIT_TABLE_COLUMNS, 4, ["geometry_id"], ["index"])


def measurements_to_table(measurements, simhit_map) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ACTS measurements and measurement->simhit map -> (measurements, map) tables as the CSV writer has them."""
    measurements = list(measurements)
    n = len(measurements)
    ids, geometry = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.uint64)
    values = np.empty((n, 4))  # local0, local1 and their variances
    for k, m in enumerate(measurements):
        params = m.fullParameters
        cov = m.fullCovariance
        ids[k] = m.index
        geometry[k] = m.geometryId.value
        values[k] = (params[0], params[1], cov[0, 0], cov[1, 1])
    table = pd.DataFrame(
        {
            "measurement_id": ids,
            "geometry_id": geometry,
            "local0": values[:, 0],
            "local1": values[:, 1],
            "var_local0": values[:, 2],
            "var_local1": values[:, 3],
        }
    )
    links = pd.DataFrame(list(simhit_map), columns=["measurement_id", "hit_id"], dtype=np.int64)
    return table, links


def run_acts(
    particles: pd.DataFrame,
    seed: int,
    event_id: int,
    csv_dir: str | Path | None = None,
    log_level: str = "ERROR",
    p_min: float = P_MIN_GEV,
) -> dict:
    """Simulate and digitise one event's particles; return raw tables.

    Args:
        particles: generator particle table (:data:`PARTICLE_TABLE_COLUMNS`).
        seed, event_id: determine all ACTS random numbers of this event.
        csv_dir: if given, ACTS's CSV writers also write the event there (ACTS file naming).
        p_min: Fatras simulates particles with momentum above this [GeV] (ACTS's default, 0.5, would
            drop the soft half of minimum-bias particles and their hits).
        log_level: ACTS log level (``acts.logging`` name). ERROR by default: the digitisation warns about
            every simhit it cannot smear inside its module, which the event counts instead
            (``meta["simhits_without_measurement"]``). Fatras's failed-particle ERROR lines are
            collected, not printed (``fatras_failures`` below); other ACTS output is printed as usual.

    Returns:
        dict of DataFrames: ``particles`` (simulated, with Fatras secondaries), ``simhits``,
        ``measurements`` (local coordinates), ``measurement_simhit_map``; and ``fatras_failures``:
        ``{reason: number of particles}`` that Fatras failed to simulate (dropped, with their hits).
    """
    import acts
    import acts.examples as ae
    import acts.examples.json as acts_json

    from gnn4itk.simulation.acts_algorithm import python_algorithm
    from gnn4itk.simulation.detector import (
        generic_detector,
        inside_world,
        magnetic_field,
        write_digitization_config,
    )

    _, geometry = generic_detector()
    born_inside = inside_world(particles["vx"], particles["vy"], particles["vz"])
    particles = particles[born_inside]  # e.g. K0s decaying beyond the detector: nothing to simulate
    field = magnetic_field()
    quiet = getattr(acts.logging, log_level)
    result: dict = {}

    def generated(event_number: int, read: dict) -> dict:
        return {"particles_generated": _sim_particles(acts, ae, particles)}

    def collect(event_number: int, read: dict) -> dict:
        result["particles"] = particles_to_table(read["particles_simulated"])
        result["simhits"] = simhits_to_table(read["simhits"])
        result["measurements"], result["measurement_simhit_map"] = measurements_to_table(
            read["measurements"], read["measurement_simhits_map"]
        )
        return {}

    sink_reads = {
        key: (kind, f"Input_{key}")
        for key, kind in [
            ("particles_simulated", ae.SimParticleContainer),
            ("simhits", ae.SimHitContainer),
            ("measurements", ae.MeasurementContainer),
            ("measurement_simhits_map", ae.MeasurementSimHitsMap),
        ]
    }

    with tempfile.TemporaryDirectory(prefix="gnn4itk-acts-") as scratch:
        rnd = ae.RandomNumbers(seed=acts_seed(seed, event_id))
        # skip=event_id: the ACTS event number (CSV file names, ACTS seeding) is ours. FPE tracking is a
        # debugging aid that aborts the run on a floating-point exception inside Fatras (seen at mu=200).
        sequencer = ae.Sequencer(
            events=1, skip=int(event_id), numThreads=1, logLevel=quiet, outputDir=scratch, trackFpes=False
        )
        sequencer.addAlgorithm(
            python_algorithm(
                "GnnSource", quiet, generated, writes={"particles_generated": (ae.SimParticleContainer, "OutputParticles")}
            )
        )
        sequencer.addAlgorithm(
            ae.FatrasSimulation(
                level=quiet,
                inputParticles="particles_generated",
                outputParticles="particles_simulated",
                outputSimHits="simhits",
                randomNumbers=rnd,
                trackingGeometry=geometry,
                magneticField=field,
                generateHitsOnSensitive=True,
                emScattering=True,
                emEnergyLossIonisation=True,
                emEnergyLossRadiation=True,
                emPhotonConversion=True,
                pMin=p_min,
            )
        )
        digi_file = write_digitization_config(Path(scratch) / "digi-smearing.json")
        digi = ae.DigitizationAlgorithm.Config(
            digitizationConfigs=acts_json.readDigiConfigFromJson(str(digi_file)),
            surfaceByIdentifier=geometry.geoIdSurfaceMap(),
            randomNumbers=rnd,
            inputSimHits="simhits",
            outputMeasurements="measurements",
            outputMeasurementParticlesMap="measurement_particles_map",
            outputMeasurementSimHitsMap="measurement_simhits_map",
            outputParticleMeasurementsMap="particle_measurements_map",
            outputSimHitMeasurementsMap="simhit_measurements_map",
        )
        sequencer.addAlgorithm(ae.DigitizationAlgorithm(digi, quiet))
        sequencer.addAlgorithm(python_algorithm("GnnSink", quiet, collect, reads=sink_reads))
        if csv_dir is not None:
            _add_csv_writers(ae, sequencer, Path(csv_dir), quiet)
        printed: list[str] = []
        try:
            with native_stdout_captured() as printed:
                sequencer.run()
        finally:  # also when the run fails: what ACTS said may explain why
            failures, others = parse_fatras_failures(printed)
            if others:  # not ours to judge: pass it on
                print("\n".join(others), flush=True)
    if not result:
        raise RuntimeError("the ACTS sequence ended without producing the event")
    result["fatras_failures"] = failures
    return result


def _add_csv_writers(ae, sequencer, directory: Path, level) -> None:
    """The standard ACTS CSV writers, as ``acts.examples.simulation`` configures them."""
    directory.mkdir(parents=True, exist_ok=True)
    out = str(directory)
    sequencer.addWriter(
        ae.CsvParticleWriter(level=level, inputParticles="particles_simulated", outputDir=out, outputStem="particles")
    )
    sequencer.addWriter(ae.CsvSimHitWriter(level=level, inputSimHits="simhits", outputDir=out, outputStem="hits"))
    sequencer.addWriter(
        ae.CsvMeasurementWriter(
            level=level,
            inputMeasurements="measurements",
            inputClusters="",
            inputMeasurementSimHitsMap="measurement_simhits_map",
            outputDir=out,
        )
    )
