"""Detector geometry: one row per sensitive module, and explicit maps between module identifiers.

Three identifiers name a module (``docs/data.md`` explains them):

* the **dense module index** ``module_index`` (int32, 0..M-1): what every gnn4itk stage and the
  spacepoint column ``module_id`` use. It is below 2**24, so it survives the float32 inference tensor.
* the **ACTS geometry id** ``geometry_id`` (uint64): what pyacts/Fatras attaches to simulated hits.
* the **TrackML triple** ``(volume_id, layer_id, module_id)``: what TrackML CSV files carry.

:class:`DetectorGeometry` wraps the table and converts between them with vectorised lookups. An id that
is not in the table is never merged with another module: it maps to -1 with a warning that counts
them, or raises with ``strict=True``.

Module frame: ``u, v, w`` are the local axes (w is the normal); ``rot_{x,y,z}{u,v,w}`` is the rotation
matrix from local to global (``rot_xu`` is the global x component of the u axis). Sizes follow TrackML:
``module_t`` thickness, ``module_minhu`` / ``module_maxhu`` half-lengths in u at the -v / +v edge
(equal for rectangles), ``module_hv`` half-length in v, ``pitch_u`` / ``pitch_v`` the readout cell size.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

GENERIC_DETECTOR_FILE = Path(__file__).parent / "data" / "generic_detector.parquet"

ROTATION_COLUMNS = [f"rot_{g}{l}" for g in "xyz" for l in "uvw"]
SIZE_COLUMNS = ["module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v"]
TRACKML_ID_COLUMNS = ["volume_id", "layer_id", "module_id"]
TRACKML_DETECTOR_COLUMNS = [*TRACKML_ID_COLUMNS, "cx", "cy", "cz", *ROTATION_COLUMNS, *SIZE_COLUMNS]
"""Columns of a TrackML ``detectors.csv`` (after its unnamed leading index column)."""

GEOMETRY_COLUMNS = ["module_index", "geometry_id", *TRACKML_DETECTOR_COLUMNS]
"""Columns every geometry table has; ``geometry_id`` is 0 where the detector has no ACTS ids."""

_MAX_MODULES = 2**24  # dense indices must be exact in float32
_TRACKML_LIMITS = (2**15, 2**16, 2**32)  # volume, layer, module ranges packed into one int64 key


def _warn_or_raise(unknown: int, total: int, what: str, examples, strict: bool) -> None:
    if unknown == 0:
        return
    message = f"{unknown} of {total} {what} are not modules of this detector (e.g. {list(examples)[:5]})"
    if strict:
        raise ValueError(message)
    warnings.warn(message + "; they map to module index -1", stacklevel=3)


def _trackml_keys(volume_id, layer_id, module_id) -> tuple[np.ndarray, np.ndarray]:
    """Pack TrackML triples into int64 keys; the second array flags triples outside the packable range."""
    ids = [np.asarray(a).astype(np.int64, copy=False).ravel() for a in (volume_id, layer_id, module_id)]
    if not (len(ids[0]) == len(ids[1]) == len(ids[2])):
        raise ValueError(f"volume_id, layer_id, module_id lengths differ: {[len(a) for a in ids]}")
    valid = np.ones(len(ids[0]), dtype=bool)
    for values, limit in zip(ids, _TRACKML_LIMITS):
        valid &= (values >= 0) & (values < limit)
    vol, lay, mod = (np.where(valid, a, 0) for a in ids)
    return (vol << 48) | (lay << 32) | mod, valid


class DetectorGeometry:
    """A detector's module table with id conversions.

    Args:
        table: DataFrame with :data:`GEOMETRY_COLUMNS`; ``module_index`` must be ``0..M-1`` in row order.
        name: a short description (e.g. ``"ACTS Generic detector"``), kept in event metadata.

    Raises:
        ValueError: on missing columns, a non-dense index, or duplicated identifiers.
    """

    def __init__(self, table: pd.DataFrame, name: str = ""):
        missing = [c for c in GEOMETRY_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"geometry table lacks columns {missing}")
        table = table.reset_index(drop=True)
        if len(table) >= _MAX_MODULES:
            raise ValueError(f"{len(table)} modules: dense indices must stay below 2**24 (float32 exactness)")
        if not np.array_equal(table["module_index"].to_numpy(), np.arange(len(table))):
            raise ValueError("module_index must be 0..M-1 in row order")
        self.table = table.astype({"module_index": np.int32, "geometry_id": np.uint64})
        self.name = name

        keys, valid = _trackml_keys(*(table[c].to_numpy() for c in TRACKML_ID_COLUMNS))
        if not valid.all() or len(np.unique(keys)) != len(keys):
            raise ValueError("TrackML (volume_id, layer_id, module_id) must be unique and non-negative")
        self._trackml_order = np.argsort(keys, kind="stable")
        self._trackml_sorted = keys[self._trackml_order]

        geo = self.table["geometry_id"].to_numpy(np.uint64)
        self.has_geometry_ids = bool((geo != 0).all())
        if self.has_geometry_ids and len(np.unique(geo)) != len(geo):
            raise ValueError("geometry_id values must be unique")
        self._geo_order = np.argsort(geo, kind="stable")
        self._geo_sorted = geo[self._geo_order]

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"DetectorGeometry({self.name or 'unnamed'}, {len(self)} modules)"

    @property
    def num_modules(self) -> int:
        return len(self.table)

    # ---------------------------------------------------------------------------------------------
    # identifier -> dense index

    @staticmethod
    def _lookup(sorted_keys: np.ndarray, order: np.ndarray, keys: np.ndarray, valid: np.ndarray):
        pos = np.searchsorted(sorted_keys, keys)
        pos = np.minimum(pos, len(sorted_keys) - 1)
        found = valid & (sorted_keys[pos] == keys)
        return np.where(found, order[pos], -1).astype(np.int32), found

    def module_index_from_geometry_id(self, ids, strict: bool = False) -> np.ndarray:
        """Dense module index of ACTS geometry ids.

        Args:
            ids: uint64 array-like [N] of ``Acts::GeometryIdentifier`` values of sensitive surfaces.
            strict: raise instead of warning when an id is unknown.

        Returns:
            int32 array [N]; -1 where the id is not a module of this detector (counted in a warning).
        """
        if not self.has_geometry_ids:
            raise ValueError(f"{self!r} has no ACTS geometry ids (built from a TrackML detectors.csv)")
        ids = np.asarray(ids)
        if ids.dtype.kind not in "ui":
            raise TypeError(f"geometry ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.uint64, copy=False).ravel()
        index, found = self._lookup(self._geo_sorted, self._geo_order, ids, ids != 0)
        _warn_or_raise(int((~found).sum()), len(ids), "geometry ids", ids[~found][:5], strict)
        return index

    def module_index_from_trackml(self, volume_id, layer_id, module_id, strict: bool = False) -> np.ndarray:
        """Dense module index of TrackML ``(volume_id, layer_id, module_id)`` triples.

        Args:
            volume_id, layer_id, module_id: integer array-likes [N].
            strict: raise instead of warning when a triple is unknown.

        Returns:
            int32 array [N]; -1 where the triple is not a module of this detector (counted in a warning).
        """
        keys, valid = _trackml_keys(volume_id, layer_id, module_id)
        index, found = self._lookup(self._trackml_sorted, self._trackml_order, keys, valid)
        if not found.all():
            bad = np.flatnonzero(~found)[:5]
            examples = [tuple(int(np.ravel(a)[i]) for a in (volume_id, layer_id, module_id)) for i in bad]
            _warn_or_raise(int((~found).sum()), len(keys), "TrackML module ids", examples, strict)
        return index

    # ---------------------------------------------------------------------------------------------
    # dense index -> identifiers and module properties

    def _checked(self, index) -> np.ndarray:
        index = np.asarray(index)
        if index.dtype.kind not in "ui":
            # float32 inference tensors carry exact integers; accept them only when they are integral
            rounded = np.rint(index)
            if not np.array_equal(rounded, index):
                raise ValueError("module indices must be integers")
            index = rounded
        index = index.astype(np.int64, copy=False)
        bad = (index < 0) | (index >= len(self))
        if bad.any():
            raise ValueError(f"{int(bad.sum())} module indices outside 0..{len(self) - 1}, e.g. {index[bad][:5]}")
        return index

    def geometry_id_from_module_index(self, index) -> np.ndarray:
        """ACTS geometry ids (uint64 [N]) of dense module indices (integer [N])."""
        if not self.has_geometry_ids:
            raise ValueError(f"{self!r} has no ACTS geometry ids")
        return self.table["geometry_id"].to_numpy(np.uint64)[self._checked(index)]

    def trackml_from_module_index(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """TrackML ``(volume_id, layer_id, module_id)``, three int32 arrays [N], of dense indices [N]."""
        index = self._checked(index)
        return tuple(self.table[c].to_numpy(np.int32)[index] for c in TRACKML_ID_COLUMNS)

    def module_centers(self, index=None) -> np.ndarray:
        """Module centres, float64 [N, 3] in mm (all modules when ``index`` is None)."""
        centres = self.table[["cx", "cy", "cz"]].to_numpy(np.float64)
        return centres if index is None else centres[self._checked(index)]

    def module_rotations(self, index=None) -> np.ndarray:
        """Local-to-global rotations, float64 [N, 3, 3]; column j is local axis u, v, w (j = 0, 1, 2)."""
        rotations = self.table[ROTATION_COLUMNS].to_numpy(np.float64).reshape(-1, 3, 3)
        return rotations if index is None else rotations[self._checked(index)]

    def module_sizes(self, index=None) -> pd.DataFrame:
        """:data:`SIZE_COLUMNS` (thickness, half-lengths, pitches in mm) of the given modules, one row each."""
        sizes = self.table[SIZE_COLUMNS]
        return sizes if index is None else sizes.iloc[self._checked(index)].reset_index(drop=True)

    # ---------------------------------------------------------------------------------------------
    # construction

    @classmethod
    def from_trackml_detectors(cls, path: str | Path, name: str | None = None) -> "DetectorGeometry":
        """Build a geometry from a TrackML ``detectors.csv`` (plain or gzipped), for any TrackML-like detector.

        Dense indices follow the order of ``(volume_id, layer_id, module_id)``; ``geometry_id`` is 0
        (TrackML files carry no ACTS ids).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no detectors file {path}")
        table = pd.read_csv(path)
        # TrackML files written by pandas carry an unnamed leading index column
        table = table.drop(columns=[c for c in table.columns if str(c).startswith("Unnamed")])
        missing = [c for c in TRACKML_DETECTOR_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path} is not a TrackML detectors file: it lacks {missing}")
        table = table.sort_values(TRACKML_ID_COLUMNS, kind="stable").reset_index(drop=True)
        table.insert(0, "geometry_id", np.zeros(len(table), dtype=np.uint64))
        table.insert(0, "module_index", np.arange(len(table), dtype=np.int32))
        return cls(table, name=name or str(path))

    def to_trackml_detectors(self, path: str | Path) -> Path:
        """Write the table as a TrackML ``detectors.csv`` (``.gz`` compresses)."""
        path = Path(path)
        self.table[TRACKML_DETECTOR_COLUMNS].to_csv(path, index=False)
        return path


def match_modules_by_centre(centres_a, centres_b, tolerance: float = 0.01, chunk: int = 512) -> np.ndarray:
    """Match two lists of module centres one-to-one by nearest neighbour.

    Args:
        centres_a: float array [A, 3] in mm.
        centres_b: float array [B, 3] in mm.
        tolerance: largest accepted distance in mm.

    Returns:
        int64 array [A]: the row of ``centres_b`` matched to each row of ``centres_a``.

    Raises:
        ValueError: when a centre has no partner within ``tolerance``, or two centres of ``a`` share
            the same nearest centre of ``b`` (the match would not be one-to-one).
    """
    a = np.asarray(centres_a, dtype=np.float64)
    b = np.asarray(centres_b, dtype=np.float64)
    nearest = np.empty(len(a), dtype=np.int64)
    distance = np.empty(len(a), dtype=np.float64)
    for start in range(0, len(a), chunk):  # brute force in chunks: exact and bounded in memory
        block = a[start : start + chunk]
        d2 = sum((block[:, None, k] - b[None, :, k]) ** 2 for k in range(3))
        nearest[start : start + chunk] = d2.argmin(axis=1)
        distance[start : start + chunk] = np.sqrt(d2.min(axis=1))
    far = distance > tolerance
    if far.any():
        raise ValueError(f"{int(far.sum())} modules have no partner within {tolerance} mm (worst {distance.max():.4g})")
    if len(np.unique(nearest)) != len(nearest):
        raise ValueError("centre matching is not one-to-one: two modules share a nearest partner")
    return nearest


@functools.lru_cache(maxsize=1)
def generic_detector() -> DetectorGeometry:
    """The ACTS Generic detector (= TrackML geometry) shipped with gnn4itk: 18,728 modules.

    Dense indices follow the ACTS geometry id order. Generated by ``scripts/make_generic_geometry.py``.
    """
    if not GENERIC_DETECTOR_FILE.exists():
        raise FileNotFoundError(
            f"geometry table {GENERIC_DETECTOR_FILE} is missing; run scripts/make_generic_geometry.py"
        )
    table = pd.read_parquet(GENERIC_DETECTOR_FILE)
    return DetectorGeometry(table, name="ACTS Generic detector")
