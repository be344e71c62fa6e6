"""The simulated detector: ACTS's Generic detector (TrackML geometry), a 2 T solenoid, smearing digitisation.

Module frames (one row per sensitive surface: geometry id, centre, rotation, bounds) are extracted once per
process so that local measurement coordinates become global positions with one numpy matrix product.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIELD_TESLA = 2.0

# Digitisation pitches [mm] (local 0, local 1) per Generic-detector volume. Pixels: 50 x 50 um. Short strips:
# 80 um x 1.2 mm, long strips: 120 um x 10.8 mm, i.e. coarse along the strip (local 1). The Gaussian
# resolution is pitch / sqrt(12), as for a binary readout.
PIXEL_PITCH = (0.05, 0.05)
SHORT_STRIP_PITCH = (0.08, 1.2)
LONG_STRIP_PITCH = (0.12, 10.8)
VOLUME_PITCHES = {
    7: PIXEL_PITCH,  # pixel endcap (-z)
    8: PIXEL_PITCH,  # pixel barrel
    9: PIXEL_PITCH,  # pixel endcap (+z)
    12: SHORT_STRIP_PITCH,
    13: SHORT_STRIP_PITCH,
    14: SHORT_STRIP_PITCH,
    16: LONG_STRIP_PITCH,
    17: LONG_STRIP_PITCH,
    18: LONG_STRIP_PITCH,
}


def volume_resolutions() -> dict[int, tuple[float, float]]:
    """Gaussian smearing sigma [mm] per volume, (local 0, local 1): pitch / sqrt(12)."""
    return {v: (p0 / math.sqrt(12), p1 / math.sqrt(12)) for v, (p0, p1) in VOLUME_PITCHES.items()}


def digitization_config_json() -> dict:
    """The smearing configuration in ACTS's geometry-hierarchy JSON format (``readDigiConfigFromJson``)."""
    entries = []
    for volume, sigmas in sorted(volume_resolutions().items()):
        smearing = [{"index": i, "mean": 0.0, "stddev": s, "type": "Gauss"} for i, s in enumerate(sigmas)]
        entries.append({"volume": volume, "value": {"smearing": smearing}})
    return {
        "acts-geometry-hierarchy-map": {"format-version": 0, "value-identifier": "digitization-configuration"},
        "entries": entries,
    }


def write_digitization_config(path: str | Path) -> Path:
    """Write :func:`digitization_config_json` to ``path`` and return it."""
    path = Path(path)
    path.write_text(json.dumps(digitization_config_json(), indent=1))
    return path


@functools.lru_cache(maxsize=1)
def generic_detector():
    """``(detector, tracking_geometry)`` of ACTS's Generic detector, built once per process."""
    import acts
    import acts.examples

    config = acts.examples.GenericDetector.Config()
    config.logLevel = acts.logging.WARNING
    config.layerLogLevel = acts.logging.WARNING
    config.surfaceLogLevel = acts.logging.WARNING
    config.volumeLogLevel = acts.logging.WARNING
    detector = acts.examples.GenericDetector(config)
    return detector, detector.trackingGeometry()


def magnetic_field():
    """Constant 2 T field along z (an ``acts.MagneticFieldProvider``)."""
    import acts

    return acts.ConstantBField(acts.Vector3(0.0, 0.0, FIELD_TESLA * acts.UnitConstants.T))


@dataclass(frozen=True)
class ModuleFrames:
    """Placement and bounds of every sensitive module, sorted by geometry id.

    Attributes:
        geometry_id: uint64 [M], ACTS geometry identifiers.
        center: float64 [M, 3], module centre [mm].
        rotation: float64 [M, 3, 3], local-to-global rotation (columns: local x, local y, normal).
        bounds: float64 [M, 3], (half x at -y, half x at +y, half y) [mm]; rectangles have equal half-x.
    """

    geometry_id: np.ndarray
    center: np.ndarray
    rotation: np.ndarray
    bounds: np.ndarray

    def rows(self, geometry_ids) -> np.ndarray:
        """Row of each geometry id (int64 [N]); raises ``KeyError`` naming an id that is no sensitive module."""
        geometry_ids = np.asarray(geometry_ids, dtype=np.uint64)
        rows = np.searchsorted(self.geometry_id, geometry_ids)
        rows = np.minimum(rows, len(self.geometry_id) - 1)
        bad = self.geometry_id[rows] != geometry_ids
        if bad.any():
            raise KeyError(f"geometry id {int(geometry_ids[bad][0])} is not a sensitive module of the detector")
        return rows

    def local_to_global(self, geometry_ids, local0, local1) -> np.ndarray:
        """Global positions float64 [N, 3] of local module coordinates (float [N] each, mm)."""
        rows = self.rows(geometry_ids)
        local = np.stack([np.asarray(local0, np.float64), np.asarray(local1, np.float64)], axis=1)
        return self.center[rows] + np.einsum("nij,nj->ni", self.rotation[rows, :, :2], local)

    def sample_local(self, rng: np.random.Generator, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uniform random local points on the given modules (rectangles and trapezoids)."""
        half_neg, half_pos, half_y = self.bounds[rows].T
        local1 = rng.uniform(-half_y, half_y)
        half_x = half_neg + (half_pos - half_neg) * (local1 + half_y) / (2 * half_y)
        local0 = rng.uniform(-1.0, 1.0, size=len(rows)) * half_x
        return local0, local1


@functools.lru_cache(maxsize=1)
def module_frames() -> ModuleFrames:
    """:class:`ModuleFrames` of the Generic detector (cached)."""
    import acts

    detector, geometry = generic_detector()
    context = detector.nominalGeometryContext()
    rows = []
    for geo_id, surface in geometry.geoIdSurfaceMap().items():
        if not surface.isSensitive:
            continue
        transform = surface.localToGlobalTransform(context)
        rot = transform.rotation
        rotation = [[rot[(i, j)] for j in range(3)] for i in range(3)]
        values = surface.bounds.values()
        kind = surface.bounds.type
        if kind == acts.SurfaceBoundsType.Rectangle:  # (min x, min y, max x, max y), centred modules
            bounds = ((values[2] - values[0]) / 2, (values[2] - values[0]) / 2, (values[3] - values[1]) / 2)
        elif kind == acts.SurfaceBoundsType.Trapezoid:  # (half x at -y, half x at +y, half y, rotation)
            bounds = (values[0], values[1], values[2])
        else:
            raise ValueError(f"module {geo_id} has unsupported bounds {kind}")
        rows.append((int(geo_id.value), list(transform.translation), rotation, bounds))
    rows.sort(key=lambda row: row[0])
    return ModuleFrames(
        geometry_id=np.array([r[0] for r in rows], dtype=np.uint64),
        center=np.array([r[1] for r in rows], dtype=np.float64),
        rotation=np.array([r[2] for r in rows], dtype=np.float64),
        bounds=np.array([r[3] for r in rows], dtype=np.float64),
    )


# ACTS GeometryIdentifier bit layout (Acts/Geometry/GeometryIdentifier.hpp).
_VOLUME_SHIFT, _LAYER_SHIFT, _SENSITIVE_SHIFT = 56, 36, 8
_VOLUME_MASK, _LAYER_MASK, _SENSITIVE_MASK = 0xFF, 0xFFF, 0xFFFFF


def split_geometry_id(geometry_ids) -> dict[str, np.ndarray]:
    """``volume``, ``layer``, ``sensitive`` (int64 [N] each) of ACTS geometry ids (uint64 [N])."""
    g = np.asarray(geometry_ids, dtype=np.uint64)
    return {
        "volume": ((g >> np.uint64(_VOLUME_SHIFT)) & np.uint64(_VOLUME_MASK)).astype(np.int64),
        "layer": ((g >> np.uint64(_LAYER_SHIFT)) & np.uint64(_LAYER_MASK)).astype(np.int64),
        "sensitive": ((g >> np.uint64(_SENSITIVE_SHIFT)) & np.uint64(_SENSITIVE_MASK)).astype(np.int64),
    }


@functools.lru_cache(maxsize=1)
def world_extent() -> tuple[float, float]:
    """(r_max, half_z) [mm] of the tracking world cylinder; particles born outside it cannot be simulated."""
    _, geometry = generic_detector()
    values = geometry.highestTrackingVolume.volumeBounds.values()  # (r_min, r_max, half_z, ...)
    return float(values[1]), float(values[2])


def inside_world(vx, vy, vz, margin_mm: float = 1.0) -> np.ndarray:
    """bool [N]: production points inside the tracking world, ``margin_mm`` away from its boundary."""
    r_max, half_z = world_extent()
    r = np.hypot(np.asarray(vx, np.float64), np.asarray(vy, np.float64))
    return (r < r_max - margin_mm) & (np.abs(np.asarray(vz, np.float64)) < half_z - margin_mm)
