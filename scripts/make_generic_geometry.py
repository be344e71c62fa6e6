#!/usr/bin/env python
"""Build ``gnn4itk/data/generic_detector.parquet``: the ACTS Generic detector's module table.

Every sensitive surface of pyacts' ``acts.examples.GenericDetector`` becomes one row. Centres, rotations,
thickness and half-lengths come from ACTS; the TrackML ``(volume_id, layer_id, module_id)`` and the
readout pitch come from the TrackML ``detectors.csv`` row whose centre matches (TrackML was simulated with
this detector: centres agree within a few µm). Barrel modules also agree by number, endcap modules do
not, so every module is matched by centre and the barrel numbering is checked against the match.

Usage::

    python scripts/make_generic_geometry.py [--detectors ../shared/data/trackml/detectors.csv.gz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gnn4itk.geometry import (
    GENERIC_DETECTOR_FILE,
    ROTATION_COLUMNS,
    DetectorGeometry,
    match_modules_by_centre,
)

DEFAULT_DETECTORS = Path(__file__).resolve().parents[2] / "shared" / "data" / "trackml" / "detectors.csv.gz"
ENDCAP_VOLUMES = {7, 9, 12, 14, 16, 18}  # TrackML endcaps: module numbering differs from ACTS
MATCH_TOLERANCE = 0.01  # mm
ACTS_TRACKML_ID_PAIRS = (("acts_volume", "volume_id"), ("acts_layer", "layer_id"), ("acts_sensitive", "module_id"))


def acts_modules() -> pd.DataFrame:
    """One row per sensitive surface of the Generic detector, ordered by geometry id."""
    import acts
    import acts.examples

    detector = acts.examples.GenericDetector()
    context = detector.nominalGeometryContext()
    rows = []
    for geo_id, surface in detector.trackingGeometry().geoIdSurfaceMap().items():
        if geo_id.sensitive == 0:
            continue
        transform = surface.localToGlobalTransform(context)
        # the bindings expose Eigen matrices through element access only
        rotation = np.array([[transform.rotation[i, j] for j in range(3)] for i in range(3)])
        translation = [transform.translation[i] for i in range(3)]
        bounds = surface.bounds
        values = list(bounds.values())
        kind = type(bounds).__name__
        if kind == "RectangleBounds":  # [min u, min v, max u, max v]
            minhu = maxhu = values[2]
            hv = values[3]
        elif kind == "TrapezoidBounds":  # [half u at -v, half u at +v, half v, rotation]
            minhu, maxhu, hv = values[0], values[1], values[2]
        else:
            raise RuntimeError(f"unexpected bounds {kind} for sensitive surface {geo_id}")
        rows.append(
            {
                "geometry_id": np.uint64(geo_id.value),
                "acts_volume": geo_id.volume,
                "acts_layer": geo_id.layer,
                "acts_sensitive": geo_id.sensitive,
                "cx": translation[0],
                "cy": translation[1],
                "cz": translation[2],
                **dict(zip(ROTATION_COLUMNS, rotation.ravel())),
                "module_t": float(surface.thickness),
                "module_minhu": minhu,
                "module_maxhu": maxhu,
                "module_hv": hv,
            }
        )
    table = pd.DataFrame(rows).astype({"geometry_id": np.uint64})
    return table.sort_values("geometry_id", kind="stable").reset_index(drop=True)


def build_table(detectors_path: Path) -> pd.DataFrame:
    acts_table = acts_modules()
    trackml = DetectorGeometry.from_trackml_detectors(detectors_path).table
    if len(acts_table) != len(trackml):
        raise RuntimeError(f"ACTS has {len(acts_table)} sensitive modules, TrackML {len(trackml)}")
    match = match_modules_by_centre(
        acts_table[["cx", "cy", "cz"]].to_numpy(), trackml[["cx", "cy", "cz"]].to_numpy(), MATCH_TOLERANCE
    )
    matched = trackml.iloc[match].reset_index(drop=True)

    barrel = ~matched["volume_id"].isin(ENDCAP_VOLUMES).to_numpy()
    for acts_col, trackml_col in ACTS_TRACKML_ID_PAIRS:
        differ = barrel & (acts_table[acts_col].to_numpy() != matched[trackml_col].to_numpy())
        if differ.any():
            raise RuntimeError(f"{int(differ.sum())} barrel modules match by centre but not by {trackml_col}")
    for col in ("module_t", "module_minhu", "module_maxhu", "module_hv"):
        worst = np.abs(acts_table[col].to_numpy() - matched[col].to_numpy()).max()
        if worst > 1e-3:
            raise RuntimeError(f"ACTS and TrackML disagree on {col} by up to {worst}")

    table = acts_table.copy()
    for col in ("volume_id", "layer_id", "module_id"):
        table[col] = matched[col].to_numpy(np.int32)
    for col in ("pitch_u", "pitch_v"):
        table[col] = matched[col].to_numpy(np.float64)
    table.insert(0, "module_index", np.arange(len(table), dtype=np.int32))
    for col in ("acts_volume", "acts_layer", "acts_sensitive"):
        table[col] = table[col].astype(np.int32)
    centre = ["cx", "cy", "cz"]
    distance = np.linalg.norm(acts_table[centre].to_numpy() - matched[centre].to_numpy(), axis=1)
    print(f"matched {len(table)} modules one-to-one, largest centre distance {distance.max() * 1e3:.2f} µm")
    print(f"barrel modules with identical ids: {int(barrel.sum())}; endcap modules: {int((~barrel).sum())}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", type=Path, default=DEFAULT_DETECTORS, help="TrackML detectors.csv(.gz)")
    parser.add_argument("--output", type=Path, default=GENERIC_DETECTOR_FILE)
    args = parser.parse_args()
    table = build_table(args.detectors)
    DetectorGeometry(table, name="check")  # validates density and uniqueness before writing
    args.output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), args.output, compression="zstd")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
