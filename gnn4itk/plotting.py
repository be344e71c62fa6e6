"""Efficiency plots (PNG) with binomial error bars.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, so no global pyplot
state or display is touched (safe in servers, tests and threads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PT_BINS = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 50.0, 100.0])
"""Default pT bin edges [GeV], GNN4ITk-like: fine near the 1 GeV threshold, log-like above."""
ETA_BINS = np.round(np.arange(-4.0, 4.0001, 0.4), 6)
"""Default eta bin edges: 0.4 wide over |eta| <= 4, as acorn plots."""


def binned_efficiency(values, passed, bins) -> pd.DataFrame:
    """Efficiency per bin with its binomial uncertainty.

    Args:
        values: float array [P], the variable (e.g. particle pT) of every target particle.
        passed: bool array [P], whether the particle was reconstructed.
        bins: float array [B + 1], increasing bin edges; values outside are ignored.

    Returns:
        DataFrame with B rows: ``low, high, total, passed, efficiency, error`` where
        ``efficiency = passed / total`` and ``error = sqrt(eff * (1 - eff) / total)`` (NaN for empty bins).
    """
    values = np.asarray(values, dtype=np.float64)
    passed = np.asarray(passed, dtype=bool)
    bins = np.asarray(bins, dtype=np.float64)
    if bins.ndim != 1 or len(bins) < 2 or np.any(np.diff(bins) <= 0):
        raise ValueError("bins must be at least two strictly increasing edges")
    total, _ = np.histogram(values, bins=bins)
    hit, _ = np.histogram(values[passed], bins=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        efficiency = np.where(total > 0, hit / total, np.nan)
        error = np.where(total > 0, np.sqrt(efficiency * (1 - efficiency) / total), np.nan)
    return pd.DataFrame(
        {"low": bins[:-1], "high": bins[1:], "total": total, "passed": hit, "efficiency": efficiency, "error": error}
    )


def plot_efficiency(table: pd.DataFrame, xlabel: str, path, log_x: bool = False, title: str = "") -> Path:
    """Draw a :func:`binned_efficiency` table as points with x and binomial y error bars; save as PNG.

    Returns:
        the written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    filled = table["total"].to_numpy() > 0
    centre = (table["low"] + table["high"]).to_numpy() / 2
    half = (table["high"] - table["low"]).to_numpy() / 2
    ax.errorbar(
        centre[filled],
        table["efficiency"].to_numpy()[filled],
        xerr=half[filled],
        yerr=table["error"].to_numpy()[filled],
        fmt="o",
        color="black",
        label="track efficiency",
    )
    if log_x:
        ax.set_xscale("log")
    ax.set_xlim(table["low"].iloc[0], table["high"].iloc[-1])  # show the whole binned range
    ax.set_xlabel(xlabel)
    ax.set_ylabel("efficiency")
    ax.set_ylim(0.0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def efficiency_plots(targets: pd.DataFrame, directory, pt_bins=PT_BINS, eta_bins=ETA_BINS, title: str = "") -> dict:
    """Efficiency versus pT and versus eta of target particles, as PNG files in ``directory``.

    Args:
        targets: ``TrackingResult.target_particles`` (columns ``pt, eta, reconstructed``).
        directory: output folder (created).

    Returns:
        ``{"pt": path, "eta": path}`` of the written files ``efficiency_vs_pt.png``,
        ``efficiency_vs_eta.png``.
    """
    directory = Path(directory)
    passed = targets["reconstructed"].to_numpy(bool)
    pt_table = binned_efficiency(targets["pt"], passed, pt_bins)
    eta_table = binned_efficiency(targets["eta"], passed, eta_bins)
    return {
        "pt": plot_efficiency(pt_table, r"$p_T$ [GeV]", directory / "efficiency_vs_pt.png", True, title),
        "eta": plot_efficiency(eta_table, r"$\eta$", directory / "efficiency_vs_eta.png", False, title),
    }
