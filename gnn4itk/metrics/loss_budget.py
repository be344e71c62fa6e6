"""Where target particles are lost: in graph construction, in edge classification, or in track building.

For each target particle (:class:`~gnn4itk.metrics.TrackingCuts`) its true edges join consecutive
spacepoints along the trajectory (:func:`gnn4itk.training.truth.truth_edges`). A candidate track needs
``track_min_hits`` spacepoints, so a particle can come out as a track only if some run of at least that
many of its consecutive spacepoints is joined by edges. That gives each target particle that no
candidate track reconstructs (in the chosen matching style) one cause, the first stage that leaves no
such run:

* ``too_few_spacepoints``: the particle has fewer spacepoints than a candidate track needs;
* ``graph``: the graph (module map, radius graph) joins no run of ``track_min_hits`` of its spacepoints;
* ``edge_classification``: the graph does, but the edges that track building keeps (after the filter and
  the GNN: ``score > cc_cut``) no longer do;
* ``track_building``: the kept edges do, but no candidate track reconstructs the particle (the walk split it,
  or merged it into a track where it is not the majority).

Edges count in either direction (a graph may orient a pair either way). The same pass gives the
target-edge efficiency after each stage: the share of the target particles' true edges that the graph,
and the kept edges, contain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from gnn4itk.metrics.matching import TrackingCuts, TrackingResult

CAUSES = ("too_few_spacepoints", "graph", "edge_classification", "track_building")
"""Why a target particle is not reconstructed, in the order the pipeline's stages run."""

PT_EDGES_GEV = (1.0, 2.0, 5.0, 10.0)
"""Lower edges of the pT bins of :attr:`LossBudget.by_pt` (the last bin is open)."""


@dataclass
class LossBudget:
    """Where the target particles of one or more events went.

    Attributes:
        style: the matching style that decides ``reconstructed``.
        target_particles: number of target particles.
        reconstructed: how many a candidate track reconstructs.
        lost: {cause of :data:`CAUSES`: particles}.
        by_pt: {pT bin label: {"targets", "reconstructed", *CAUSES: particles}}.
        target_edges: the target particles' true edges.
        target_edges_in_graph, target_edges_kept: how many of them the graph, and the edges kept for
            track building, contain.
        graph_edges, kept_edges: edges of the graph and edges kept for track building.
        spacepoints: spacepoints of the events.
    """

    style: str
    target_particles: int = 0
    reconstructed: int = 0
    lost: dict = field(default_factory=lambda: {cause: 0 for cause in CAUSES})
    by_pt: dict = field(default_factory=dict)
    target_edges: int = 0
    target_edges_in_graph: int = 0
    target_edges_kept: int = 0
    graph_edges: int = 0
    kept_edges: int = 0
    spacepoints: int = 0

    def __add__(self, other: "LossBudget") -> "LossBudget":
        if other.style != self.style:
            raise ValueError(f"cannot add loss budgets of styles {self.style} and {other.style}")
        total = LossBudget(self.style)
        for name in ("target_particles", "reconstructed", "target_edges", "target_edges_in_graph",
                     "target_edges_kept", "graph_edges", "kept_edges", "spacepoints"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        total.lost = {cause: self.lost[cause] + other.lost[cause] for cause in CAUSES}
        for budget in (self, other):
            for label, counts in budget.by_pt.items():
                row = total.by_pt.setdefault(label, dict.fromkeys(counts, 0))
                for key, value in counts.items():
                    row[key] += value
        return total

    def as_dict(self) -> dict:
        """JSON-ready figures, with the efficiencies (None where undefined)."""

        def ratio(a: int, b: int):
            return a / b if b else None

        return {
            "style": self.style,
            "target_particles": self.target_particles,
            "reconstructed": self.reconstructed,
            "efficiency": ratio(self.reconstructed, self.target_particles),
            "lost": dict(self.lost),
            "lost_fraction": {cause: ratio(n, self.target_particles) for cause, n in self.lost.items()},
            "by_pt": {label: dict(counts) for label, counts in self.by_pt.items()},
            "target_edge_efficiency": {
                "graph": ratio(self.target_edges_in_graph, self.target_edges),
                "kept_for_track_building": ratio(self.target_edges_kept, self.target_edges),
            },
            "edges_per_spacepoint": {
                "graph": ratio(self.graph_edges, self.spacepoints),
                "kept_for_track_building": ratio(self.kept_edges, self.spacepoints),
            },
        }


def pt_label(index: int) -> str:
    """Label of pT bin ``index`` of :data:`PT_EDGES_GEV` (e.g. ``"1-2 GeV"``, ``">= 10 GeV"``)."""
    if index == len(PT_EDGES_GEV) - 1:
        return f">= {PT_EDGES_GEV[-1]:g} GeV"
    return f"{PT_EDGES_GEV[index]:g}-{PT_EDGES_GEV[index + 1]:g} GeV"


def _present(true_edges: np.ndarray, edges: np.ndarray, num_hits: int) -> np.ndarray:
    """bool [T]: whether each true edge (int64 [2, T]) is among ``edges`` (int64 [2, E]), either direction."""
    if true_edges.shape[1] == 0:
        return np.zeros(0, dtype=bool)
    keys = np.concatenate([edges[0] * num_hits + edges[1], edges[1] * num_hits + edges[0]])
    return np.isin(true_edges[0] * num_hits + true_edges[1], keys)


def longest_runs(particle_of_edge: np.ndarray, present: np.ndarray, particles: np.ndarray) -> np.ndarray:
    """Longest run of consecutive spacepoints joined by present true edges, per particle.

    Args:
        particle_of_edge: int64 [T], the particle of each true edge; a particle's edges are contiguous and
            in trajectory order (as :func:`gnn4itk.training.truth.truth_edges` gives them).
        present: bool [T], whether each true edge is present.
        particles: int64 [P], the particles asked for.

    Returns:
        int64 [P]: spacepoints in the longest joined run (1 when no edge of the particle is present, 0 for
        a particle without true edges).
    """
    runs = pd.Series(0, index=pd.Index(particles), dtype=np.int64)
    if len(particle_of_edge):
        # a run restarts at every missing edge and at every new particle
        restart = ~present | np.r_[True, particle_of_edge[1:] != particle_of_edge[:-1]]
        run_id = np.cumsum(restart)
        lengths = pd.Series(present.astype(np.int64)).groupby(run_id).transform("sum").to_numpy()
        edge_runs = pd.Series(lengths).groupby(particle_of_edge).max()
        runs = edge_runs.reindex(particles).fillna(0).astype(np.int64) + 1
        has_edges = np.isin(particles, particle_of_edge)
        runs = pd.Series(np.where(has_edges, runs.to_numpy(), 0), index=pd.Index(particles))
    return runs.to_numpy(np.int64)


def loss_budget(
    event,
    result: TrackingResult,
    graph_edges: torch.Tensor,
    kept_edges: torch.Tensor,
    style: str = "ATLAS",
) -> LossBudget:
    """The :class:`LossBudget` of one event.

    Args:
        event: the :class:`~gnn4itk.event.Event` with truth that the pipeline ran on.
        result: :func:`~gnn4itk.metrics.evaluate_tracking` of the pipeline's tracks on ``event``.
        graph_edges (LongTensor [2, E_graph]): the graph construction's edges.
        kept_edges (LongTensor [2, E_kept]): the edges track building keeps (after every edge classifier,
            ``score > cc_cut``).
        style: matching style deciding which targets count as reconstructed.

    Returns:
        :class:`LossBudget` for this event.
    """
    from gnn4itk.training.truth import truth_edges

    cuts: TrackingCuts = result.cuts
    targets = result.target_particles
    num_hits = len(event.hits)
    true_edges, particle_of_edge = truth_edges(event)
    on_target = np.isin(particle_of_edge, targets["particle_id"].to_numpy(np.int64))
    true_edges, particle_of_edge = true_edges[:, on_target], particle_of_edge[on_target]
    in_graph = _present(true_edges, graph_edges.detach().cpu().numpy().astype(np.int64), num_hits)
    kept = _present(true_edges, kept_edges.detach().cpu().numpy().astype(np.int64), num_hits)

    ids = targets["particle_id"].to_numpy(np.int64)
    graph_run = longest_runs(particle_of_edge, in_graph, ids)
    kept_run = longest_runs(particle_of_edge, kept & in_graph, ids)
    reconstructed = targets[f"reconstructed_{style}"].to_numpy(bool)
    need = cuts.track_min_hits
    cause = np.select(
        [reconstructed, targets["nhits"].to_numpy() < need, graph_run < need, kept_run < need],
        ["reconstructed", "too_few_spacepoints", "graph", "edge_classification"],
        "track_building",
    )
    budget = LossBudget(
        style,
        target_particles=len(ids),
        reconstructed=int(reconstructed.sum()),
        lost={c: int((cause == c).sum()) for c in CAUSES},
        target_edges=int(true_edges.shape[1]),
        target_edges_in_graph=int(in_graph.sum()),
        target_edges_kept=int((kept & in_graph).sum()),
        graph_edges=int(graph_edges.shape[1]),
        kept_edges=int(kept_edges.shape[1]),
        spacepoints=num_hits,
    )
    bins = np.searchsorted(np.asarray(PT_EDGES_GEV), targets["pt"].to_numpy(), side="right") - 1
    for index in range(len(PT_EDGES_GEV)):
        in_bin = bins == index
        budget.by_pt[pt_label(index)] = {
            "targets": int(in_bin.sum()),
            "reconstructed": int((in_bin & reconstructed).sum()),
            **{c: int((in_bin & (cause == c)).sum()) for c in CAUSES},
        }
    return budget


def format_loss_budget(budget: LossBudget) -> str:
    """A text table: the lost target particles by cause, overall and by pT, then the edge efficiencies."""
    figures = budget.as_dict()
    lines = [f"target particles not reconstructed ({budget.style} matching), by the first stage that loses them:"]
    header = f"{'pT':>12} {'targets':>8} {'reco':>7} " + " ".join(f"{c:>20}" for c in CAUSES)
    lines.append(header)
    rows = [("all", {"targets": budget.target_particles, "reconstructed": budget.reconstructed, **budget.lost})]
    rows += list(budget.by_pt.items())
    for label, counts in rows:
        lines.append(f"{label:>12} {counts['targets']:>8} {counts['reconstructed']:>7} "
                     + " ".join(f"{counts[c]:>20}" for c in CAUSES))
    efficiency = figures["target_edge_efficiency"]
    density = figures["edges_per_spacepoint"]

    def show(value):
        return "-" if value is None else f"{value:.4f}"

    lines.append(f"target-edge efficiency: graph {show(efficiency['graph'])}, kept for track building "
                 f"{show(efficiency['kept_for_track_building'])}; edges per spacepoint: graph {show(density['graph'])}, "
                 f"kept {show(density['kept_for_track_building'])}")
    return "\n".join(lines)
