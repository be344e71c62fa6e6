"""Side-by-side scores of several track sources (our pipelines, the CKF) on the same events.

A *source* is a name and a folder of per-event track files ``event<ID:09d>-tracks.parquet`` (``hit_id,
track_id``, what ``gnn4itk baseline ckf`` and ``python -m gnn4itk.inference -o`` write), or ``.pt`` LABELS.
Every source is scored with :func:`gnn4itk.metrics.evaluate_tracking` (same cuts, all three matching
styles) on the events of an event folder for which it has tracks; counts are summed over events
(:func:`gnn4itk.metrics.combine_matching`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gnn4itk.metrics import MATCHING_STYLES, TrackingCuts, combine_matching, evaluate_tracking, tracks_from_table

_EVENT_ID = re.compile(r"event(\d+)")


@dataclass
class SourceScore:
    """Scores of one source over its events: combined ``{style: MatchingFigures}``, target table (all events)."""

    name: str
    event_ids: list[int]
    matching: dict
    targets: pd.DataFrame = field(repr=False)


def track_file(directory: Path, event_id: int) -> Path | None:
    """The source's track file of one event, or None."""
    for suffix in ("-tracks.parquet", "-tracks.csv", "-tracks.pt"):
        path = Path(directory) / f"event{event_id:09d}{suffix}"
        if path.exists():
            return path
    return None


def load_tracks(path: Path, event) -> tuple[object, str]:
    """(tracks, form) for :func:`evaluate_tracking` from a parquet/csv table or a LABELS .pt."""
    if path.suffix == ".pt":
        import torch

        return torch.load(path, map_location="cpu", weights_only=True), "labels"
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return tracks_from_table(event.hits, table), "list"


def event_inputs(events: str | Path) -> dict[int, str]:
    """``{event_id: path prefix}`` of an event folder (Parquet events) or one event prefix (Parquet or TrackML)."""
    events = Path(events)
    if events.is_dir():
        prefixes = sorted({p.name.split("-")[0] for p in events.glob("event*-hits.*")})
        return {int(_EVENT_ID.match(p).group(1)): str(events / p) for p in prefixes}
    match = _EVENT_ID.search(events.name)
    if not match:
        raise ValueError(f"{events}: not an event folder nor an event<ID> prefix")
    return {int(match.group(1)): str(events)}


def score_sources(
    events: str | Path, sources: dict[str, Path], cuts: TrackingCuts | None = None, common_only: bool = False
) -> list[SourceScore]:
    """Score every source on the events it has tracks for (all sources' common events if ``common_only``)."""
    from gnn4itk.io.load import load_event

    cuts = cuts or TrackingCuts(matching="ATLAS")
    inputs = event_inputs(events)
    available = {name: {i for i in inputs if track_file(d, i) is not None} for name, d in sources.items()}
    if common_only:
        common = set.intersection(*available.values()) if available else set()
        available = {name: common for name in available}
    loaded: dict[int, object] = {}
    scores = []
    for name, directory in sources.items():
        per_event, targets = [], []
        ids = sorted(available[name])
        for event_id in ids:
            if event_id not in loaded:
                loaded[event_id] = load_event(inputs[event_id])
            event = loaded[event_id]
            tracks, form = load_tracks(track_file(directory, event_id), event)
            result = evaluate_tracking(event, tracks, cuts, form=form, trackml=False)
            per_event.append(result.matching)
            targets.append(result.target_particles.assign(event_id=event_id))
        scores.append(
            SourceScore(
                name,
                ids,
                combine_matching(per_event),
                pd.concat(targets, ignore_index=True) if targets else pd.DataFrame(),
            )
        )
    return scores


def markdown_rows(sample: str, scores: list[SourceScore]) -> list[str]:
    """Markdown table rows (no header): one row per source and matching style, ATLAS first."""

    def pct(value: float) -> str:
        return "n/a" if np.isnan(value) else f"{100 * value:.1f} %"

    rows = []
    for score in scores:
        for style in MATCHING_STYLES:
            f = score.matching[style]
            rows.append(
                f"| {sample} | {score.name} | {len(score.event_ids)} | {style} | {pct(f.efficiency)} | "
                f"{pct(f.fake_rate)} | {pct(f.duplicate_rate)} | {f.n_reconstructed_particles}/{f.n_target_particles} | "
                f"{f.n_fake_tracks}/{f.n_candidate_tracks} |"
            )
    return rows


MARKDOWN_HEADER = [
    "| sample | tracks | events | matching | efficiency | fake rate | duplicate rate | reconstructed/targets | fake/candidates |",
    "|---|---|---|---|---|---|---|---|---|",
]


def efficiency_figure(panels: list[tuple[str, list[SourceScore]]], path: Path, style: str = "ATLAS") -> Path:
    """One PNG: efficiency vs pT (top row) and eta (bottom row) per panel (sample), one series per source."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gnn4itk.plotting import ETA_BINS, PT_BINS, binned_efficiency

    columns = len(panels)
    fig = Figure(figsize=(4.6 * columns, 6.4))
    FigureCanvasAgg(fig)
    markers = ["o", "s", "^", "D", "v", "P"]
    for c, (title, scores) in enumerate(panels):
        for r, (variable, bins, label) in enumerate(
            [("pt", PT_BINS, "particle $p_T$ [GeV]"), ("eta", ETA_BINS, r"particle $\eta$")]
        ):
            ax = fig.add_subplot(2, columns, r * columns + c + 1)
            for k, score in enumerate(scores):
                if score.targets.empty:
                    continue
                table = binned_efficiency(score.targets[variable], score.targets[f"reconstructed_{style}"], bins)
                filled = table["total"].to_numpy() > 0
                centre = ((table["low"] + table["high"]) / 2).to_numpy()
                offset = (k - (len(scores) - 1) / 2) * 0.012 * (bins[-1] - bins[0]) if variable == "eta" else 0
                ax.errorbar(
                    centre[filled] + offset,
                    table["efficiency"].to_numpy()[filled],
                    yerr=table["error"].to_numpy()[filled],
                    fmt=markers[k % len(markers)],
                    ms=3.5,
                    lw=0.8,
                    label=score.name,
                )
            if variable == "pt":
                from matplotlib.ticker import NullFormatter, ScalarFormatter

                ax.set_xscale("log")
                ax.set_xticks([1, 2, 5, 10, 20, 50, 100])
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_title(title, fontsize=9)
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel(f"efficiency ({style})", fontsize=8)
            ax.set_ylim(0.0, 1.03)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
