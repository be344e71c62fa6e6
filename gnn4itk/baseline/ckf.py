"""ACTS's seeding + combinatorial Kalman filter (CKF) + greedy ambiguity resolution on our stored events.

This is the chain that ACTS's own example scripts run on the Generic detector (``ckf_tracks.py``,
``full_chain_*.py``; pyacts 48), fed with our events instead of a simulation in the same sequencer:

1. a Python source algorithm turns every spacepoint row of an :class:`~gnn4itk.event.Event` into an ACTS
   2-D measurement on its module (local coordinates from the stored global position through the module
   frame of :func:`gnn4itk.simulation.detector.module_frames`, the exact inverse of how the simulation
   placed it, up to the float32 storage of positions, ~0.1 um; covariance = the digitisation's smearing sigma squared, per volume). Measurement index =
   spacepoint row, so ACTS's ``IndexSourceLink`` indices are our row indices;
2. ``SpacePointMaker`` on the pixel layers of ACTS's ``generic-seeding-config.json``
   (:data:`SEEDING_LAYERS`), ``GridTripletSeedingAlgorithm`` with the ``ckf_tracks.py`` seed finder settings,
   ``TrackParamsEstimationAlgorithm``;
3. ``TrackFindingAlgorithm`` (CKF, two-way, seed deduplication, stay-on-seed; chi2 cuts 15/25, at most 10
   branches per surface) with a track selection (pT, |eta|, at least :attr:`CkfSettings.min_measurements`
   measurements);
4. ``GreedyAmbiguityResolutionAlgorithm`` (at most 3 shared hits per track);
5. a Python sink that reads every track's measurement states (outliers and holes left out) and maps
   their source-link indices back to spacepoint rows: the tracks are a list of row-index arrays, the form
   :func:`gnn4itk.metrics.evaluate_tracking` scores (tracks may share spacepoints, as ACTS allows).

Nothing here reads truth: the CKF sees exactly what our pipelines see (positions, modules), plus the
per-volume resolution the simulation used, which a real detector would also know.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gnn4itk.event import Event

# Pixel layers used for seeding: ACTS's Examples/Configs/generic-seeding-config.json (volume, layer).
SEEDING_LAYERS = (
    (8, 2), (8, 4), (8, 6), (8, 8),
    (9, 2), (9, 4), (9, 6), (9, 8),
    (7, 14), (7, 12), (7, 10), (7, 8),
)
PIXEL_VOLUMES = (7, 8, 9)
# Every pixel layer (barrel volume 8: layers 2-8; endcap disks, volumes 7 and 9: layers 2-14).
ALL_PIXEL_LAYERS = tuple((v, layer) for v in PIXEL_VOLUMES for layer in range(2, 16 if v != 8 else 10, 2))
STRIP_VOLUMES = (12, 13, 14, 16, 17, 18)


@dataclass
class CkfSettings:
    """Seeding, CKF and ambiguity-resolution settings (ACTS example values for the Generic detector).

    Attributes:
        min_pt: seed finder minimum pT and track selection pT cut [GeV].
        seeding_layers: (volume, layer) pairs whose spacepoints seed (ACTS's choice by default).
        abs_eta_max: track selection |eta| cut.
        min_measurements: track selection and ambiguity resolution: at least this many measurements.
        max_shared_hits: ambiguity resolution: at most this many measurements shared with other tracks.
        seed_r_min, seed_r_max, seed_delta_r, seed_r_middle, collision_region, seed_z_max, impact_max: seed finder geometry [mm].
        max_seeds_per_spm, sigma_scattering, rad_length_per_seed: seed finder quality settings.
        chi2_measurement, chi2_outlier, branches_per_surface: CKF measurement selection.
        threads: ACTS sequencer threads (events run in parallel; -1 = all cores).
    """

    min_pt: float = 0.5
    seeding_layers: tuple = SEEDING_LAYERS
    abs_eta_max: float = 4.0
    min_measurements: int = 7
    max_shared_hits: int = 3
    seed_r_min: float = 20.0
    seed_r_max: float = 200.0
    seed_delta_r: tuple[float, float] = (1.0, 60.0)
    seed_r_middle: tuple[float, float] = (20.0, 180.0)
    collision_region: float = 250.0
    seed_z_max: float = 2000.0
    impact_max: float = 3.0
    max_seeds_per_spm: int = 1
    sigma_scattering: float = 5.0
    rad_length_per_seed: float = 0.1
    chi2_measurement: float = 15.0
    chi2_outlier: float = 25.0
    branches_per_surface: int = 10
    threads: int = 1


@dataclass
class CkfResult:
    """Tracks and timing of one :func:`run_ckf` call.

    Attributes:
        tracks: per event (input order), a list of int64 row-index arrays (measurement states only).
        wall_s: wall time of the whole ACTS run (measurement creation and track read-out included).
        algorithm_s: seconds per algorithm summed over events, from the sequencer's timing file
            (``{name: seconds}``); the reconstruction proper is everything but ``GnnMeasurementSource`` and
            ``GnnTrackSink`` (our Python conversion), see :meth:`reconstruction_s`.
        settings: the settings used.
    """

    tracks: list[list[np.ndarray]]
    wall_s: float
    algorithm_s: dict = field(default_factory=dict)
    settings: CkfSettings = field(default_factory=CkfSettings)

    def reconstruction_s(self) -> float:
        """ACTS seeding + CKF + ambiguity resolution seconds (summed over events), Python I/O left out."""
        return float(sum(v for k, v in self.algorithm_s.items() if not k.startswith(("Gnn", "Python"))))


def measurement_table(event: Event) -> pd.DataFrame:
    """ACTS measurement inputs of every spacepoint row: geometry id, local (0, 1) [mm], variances [mm^2].

    The local coordinates invert :meth:`ModuleFrames.local_to_global` (the simulation's placement); a
    position off the module plane (TrackML hits) is projected onto it. Events without ``geometry_id``
    (TrackML CSV) take it from the dense ``module_id`` (:func:`gnn4itk.geometry.generic_detector`, where TrackML
    modules are matched to ACTS's by centre).
    """
    from gnn4itk.simulation.detector import module_frames, split_geometry_id, volume_resolutions

    hits = event.hits
    if "geometry_id" in hits.columns:
        geometry_id = hits["geometry_id"].to_numpy(np.uint64)
    elif "module_id" in hits.columns:  # e.g. a TrackML event: the TrackML detector is the Generic detector
        from gnn4itk.geometry import generic_detector

        geometry_id = generic_detector().geometry_id_from_module_index(hits["module_id"].to_numpy())
    else:
        raise ValueError("the event has neither geometry_id nor module_id: the CKF needs the hits' modules")
    frames = module_frames()
    rows = frames.rows(geometry_id)
    offset = hits[["x", "y", "z"]].to_numpy(np.float64) - frames.center[rows]
    local = np.einsum("nji,nj->ni", frames.rotation[rows, :, :2], offset)
    volume = split_geometry_id(geometry_id)["volume"]
    sigma = volume_resolutions()
    var = np.array([[sigma[int(v)][0] ** 2, sigma[int(v)][1] ** 2] for v in np.unique(volume)])
    lookup = {int(v): i for i, v in enumerate(np.unique(volume))}
    index = np.array([lookup[int(v)] for v in volume], dtype=np.int64) if len(volume) else np.empty(0, np.int64)
    return pd.DataFrame(
        {
            "geometry_id": geometry_id,
            "local0": local[:, 0],
            "local1": local[:, 1],
            "var_local0": var[index, 0] if len(index) else np.empty(0),
            "var_local1": var[index, 1] if len(index) else np.empty(0),
        }
    )


def write_geometry_selection(path: Path, layers=SEEDING_LAYERS) -> Path:
    """The seeding layer selection as ACTS's JSON geometry list (``readJsonGeometryList``)."""
    path.write_text(json.dumps([{"volume": v, "layer": layer} for v, layer in layers], indent=1))
    return path


def _read_timing(directory: Path) -> dict:
    """``{algorithm: total seconds}`` from the sequencer's timing file (timing.csv or timing.tsv)."""
    for name, delimiter in (("timing.csv", ","), ("timing.tsv", "\t")):
        path = directory / name
        if path.exists():
            with path.open() as handle:
                rows = list(csv.DictReader(handle, delimiter=delimiter))
            out = {}
            for row in rows:
                ident = row.get("identifier", "")
                total = row.get("time_total_s")
                if total is not None:
                    out[ident.split(":", 1)[-1]] = float(total)
            return out
    return {}


def run_ckf(events: list[Event], settings: CkfSettings | None = None, log_level: str = "WARNING") -> CkfResult:
    """Seeding + CKF + ambiguity resolution on ``events``; tracks as row-index arrays per event.

    Args:
        events: Generic-detector events (``geometry_id`` column), e.g. from ``gnn4itk simulate``.
        settings: :class:`CkfSettings` (ACTS example values by default).
        log_level: ACTS log level name.
    """
    import acts
    import acts.examples as ae
    import acts.examples.json as acts_json
    from acts.examples.reconstruction import (
        SeedFilterConfigArg,
        SeedFinderConfigArg,
        SeedFinderOptionsArg,
        SeedingAlgorithmConfigArg,
        SpacePointGridConfigArg,
        TrackSelectorConfig,
        addGridTripletSeeding,
        trackSelectorDefaultKWArgs,
    )

    from gnn4itk.simulation.acts_algorithm import python_algorithm
    from gnn4itk.simulation.detector import FIELD_TESLA, generic_detector, magnetic_field

    settings = settings or CkfSettings()
    u = acts.UnitConstants
    level = getattr(acts.logging, log_level)
    _, geometry = generic_detector()
    bfield = magnetic_field()
    tables = [measurement_table(event) for event in events]
    results: dict[int, list[np.ndarray]] = {}
    ids: dict[int, object] = {}  # acts.GeometryIdentifier per geometry id, made once

    def measurements(event_number: int, read: dict) -> dict:
        table = tables[event_number]
        container = ae.MeasurementContainer()
        container.reserve(len(table))
        values = table[["local0", "local1", "var_local0", "var_local1"]].to_numpy(np.float64).tolist()
        for gid, (l0, l1, v0, v1) in zip(table["geometry_id"].tolist(), values):
            ident = ids.get(gid)
            if ident is None:
                ident = ids[gid] = acts.GeometryIdentifier(int(gid))
            container.emplaceMeasurement(ident, [0, 1], [l0, l1], [v0, v1])
        return {"measurements": container}

    def measurement_subset(event_number: int, read: dict) -> dict:
        """All measurements as the ``MeasurementSubset`` that seeding and CKF read (built on the stored container)."""
        container = read["measurements"]
        return {"measurement_subset": ae.MeasurementSubset(container, list(range(len(container))))}

    def collect_tracks(event_number: int, read: dict) -> dict:
        tracks = []
        for track in read["ambi_tracks"]:
            rows = []
            for state in track.trackStatesReversed:  # tip to stem (no forward links)
                flags = state.typeFlags
                if flags.isMeasurement and state.hasUncalibratedSourceLink:
                    rows.append(ae.IndexSourceLink.fromSourceLink(state.uncalibratedSourceLink).index())
            if rows:
                tracks.append(np.unique(np.asarray(rows, dtype=np.int64)))
        results[event_number] = tracks
        return {}

    with tempfile.TemporaryDirectory(prefix="gnn4itk-ckf-") as scratch:
        scratch = Path(scratch)
        selection = write_geometry_selection(scratch / "seeding-layers.json", settings.seeding_layers)
        sequencer = ae.Sequencer(
            events=len(events), numThreads=settings.threads, logLevel=level, outputDir=str(scratch), trackFpes=False
        )
        sequencer.addAlgorithm(
            python_algorithm(
                "GnnMeasurementSource", level, measurements,
                writes={"measurements": (ae.MeasurementContainer, "OutputMeasurements")},
            )
        )
        sequencer.addAlgorithm(
            python_algorithm(
                "GnnMeasurementSubset", level, measurement_subset,
                reads={"measurements": (ae.MeasurementContainer, "InputMeasurements")},
                writes={"measurement_subset": (ae.MeasurementSubset, "OutputMeasurementSubset")},
            )
        )
        sequencer.addAlgorithm(
            ae.SpacePointMaker(
                level=level,
                inputMeasurements="measurement_subset",
                outputSpacePoints="spacepoints",
                trackingGeometry=geometry,
                geometrySelection=acts_json.readJsonGeometryList(str(selection)),
                stripGeometrySelection=[],
            )
        )
        s = settings
        seeds = addGridTripletSeeding(
            sequencer,
            "spacepoints",
            SeedingAlgorithmConfigArg(),
            SeedFinderConfigArg(
                r=(s.seed_r_min * u.mm, s.seed_r_max * u.mm),
                deltaR=(s.seed_delta_r[0] * u.mm, s.seed_delta_r[1] * u.mm),
                collisionRegion=(-s.collision_region * u.mm, s.collision_region * u.mm),
                z=(-s.seed_z_max * u.mm, s.seed_z_max * u.mm),
                maxSeedsPerSpM=s.max_seeds_per_spm,
                sigmaScattering=s.sigma_scattering,
                radLengthPerSeed=s.rad_length_per_seed,
                minPt=s.min_pt * u.GeV,
                impactMax=s.impact_max * u.mm,
                # the default (7.4, |eta| = 2.7) would leave the Generic detector's forward seeds out
                cotThetaMax=float(np.sinh(s.abs_eta_max)),
                # middle spacepoints: the default (60-120 mm) has none for |eta| > 3.3 in the Generic detector
                rMinMiddle=s.seed_r_middle[0] * u.mm,
                rMaxMiddle=s.seed_r_middle[1] * u.mm,
            ),
            SeedFinderOptionsArg(bFieldInZ=FIELD_TESLA * u.T, beamPos=(0.0, 0.0)),
            SeedFilterConfigArg(),
            SpacePointGridConfigArg(),
            level,
            outputSeeds="seeds",
        )
        sequencer.addAlgorithm(
            ae.TrackParamsEstimationAlgorithm(
                level=level,
                inputSeeds=seeds,
                outputTrackParameters="estimatedparameters",
                outputSeeds="estimatedseeds",
                trackingGeometry=geometry,
                magneticField=bfield,
            )
        )
        selector = acts.TrackSelector.Config(
            **trackSelectorDefaultKWArgs(
                TrackSelectorConfig(
                    pt=(s.min_pt * u.GeV, None),
                    absEta=(None, s.abs_eta_max),
                    nMeasurementsMin=s.min_measurements,
                )
            )
        )
        sequencer.addAlgorithm(
            ae.TrackFindingAlgorithm(
                level=level,
                measurementSelectorCfg=acts.MeasurementSelector.Config(
                    [(acts.GeometryIdentifier(), ([], [s.chi2_measurement], [s.chi2_outlier], [s.branches_per_surface]))]
                ),
                inputMeasurements="measurement_subset",
                inputInitialTrackParameters="estimatedparameters",
                inputSeeds="estimatedseeds",
                outputTracks="ckf_tracks",
                findTracks=ae.TrackFindingAlgorithm.makeTrackFinderFunction(geometry, bfield, level),
                findTracksBrem=ae.TrackFindingAlgorithm.makeBremTrackFinderFunction(geometry, bfield, level),
                trackingGeometry=geometry,
                magneticField=bfield,
                trackSelectorCfg=selector,
                twoWay=True,
                seedDeduplication=True,
                stayOnSeed=True,
            )
        )
        sequencer.addAlgorithm(
            ae.GreedyAmbiguityResolutionAlgorithm(
                level=level,
                inputTracks="ckf_tracks",
                outputTracks="ambi_tracks",
                maximumSharedHits=s.max_shared_hits,
                nMeasurementsMin=s.min_measurements,
                maximumIterations=1000000,
            )
        )
        sequencer.addAlgorithm(
            python_algorithm(
                "GnnTrackSink", level, collect_tracks, reads={"ambi_tracks": (ae.ConstTrackContainer, "InputTracks")}
            )
        )
        start = time.perf_counter()
        sequencer.run()
        wall = time.perf_counter() - start
        timing = _read_timing(scratch)
    missing = [i for i in range(len(events)) if i not in results]
    if missing:
        raise RuntimeError(f"the ACTS sequence produced no tracks for events {missing}")
    return CkfResult(tracks=[results[i] for i in range(len(events))], wall_s=wall, algorithm_s=timing, settings=settings)


def tracks_table(event: Event, tracks: list[np.ndarray]) -> pd.DataFrame:
    """``hit_id, track_id`` table of row-index tracks (what ``gnn4itk evaluate --tracks`` reads)."""
    hit_id = event.hits["hit_id"].to_numpy(np.int64)
    if not tracks:
        return pd.DataFrame({"hit_id": np.empty(0, np.int64), "track_id": np.empty(0, np.int64)})
    rows = np.concatenate(tracks)
    track_id = np.repeat(np.arange(len(tracks), dtype=np.int64), [len(t) for t in tracks])
    return pd.DataFrame({"hit_id": hit_id[rows], "track_id": track_id})


def settings_dict(settings: CkfSettings) -> dict:
    return asdict(settings)
