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
and the kept edges, contain; and what the graph's and the kept edges join (:func:`edge_kinds`): where a
dense graph's edges come from.

:func:`fragment_budget` looks at the other side, the candidate tracks that double-majority matching
rejects (its fake rate): tracks without a majority particle, and pure pieces of particles, by whether
the particle is a target and by its pT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from gnn4itk.metrics.matching import TrackingCuts, TrackingResult, candidate_pairs

CAUSES = ("too_few_spacepoints", "graph", "edge_classification", "track_building")
"""Why a target particle is not reconstructed, in the order the pipeline's stages run."""

PT_EDGES_GEV = (1.0, 2.0, 5.0, 10.0)
"""Lower edges of the pT bins of :attr:`LossBudget.by_pt` (the last bin is open)."""

EDGE_KINDS = ("target", "other_particle", "skip", "two_particles", "noise")
"""What an edge joins: two consecutive spacepoints of a target particle (``target``) or of another
particle (``other_particle``: soft, secondary, electron...), two spacepoints of one particle that are not
consecutive (``skip``), spacepoints of two particles (``two_particles``), or a noise spacepoint (``noise``)."""


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
    graph_edge_kinds: dict = field(default_factory=lambda: dict.fromkeys(EDGE_KINDS, 0))
    kept_edge_kinds: dict = field(default_factory=lambda: dict.fromkeys(EDGE_KINDS, 0))

    def __add__(self, other: "LossBudget") -> "LossBudget":
        if other.style != self.style:
            raise ValueError(f"cannot add loss budgets of styles {self.style} and {other.style}")
        total = LossBudget(self.style)
        for name in ("target_particles", "reconstructed", "target_edges", "target_edges_in_graph",
                     "target_edges_kept", "graph_edges", "kept_edges", "spacepoints"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        total.lost = {cause: self.lost[cause] + other.lost[cause] for cause in CAUSES}
        for name in ("graph_edge_kinds", "kept_edge_kinds"):
            setattr(total, name, {k: getattr(self, name)[k] + getattr(other, name)[k] for k in EDGE_KINDS})
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
            "edge_kinds": {"graph": dict(self.graph_edge_kinds), "kept_for_track_building": dict(self.kept_edge_kinds)},
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


def edge_kinds(edges: np.ndarray, true_edges: np.ndarray, on_target: np.ndarray, particle_of_hit: np.ndarray) -> dict:
    """How many edges of each kind of :data:`EDGE_KINDS` a graph holds.

    Args:
        edges: int64 [2, E], spacepoint rows; a true pair counts in either direction.
        true_edges: int64 [2, T], consecutive spacepoints of every particle
            (:func:`gnn4itk.training.truth.truth_edges`).
        on_target: bool [T], whether each true edge belongs to a target particle.
        particle_of_hit: int64 [N], ``particle_id`` of every spacepoint (0 for noise).

    Returns:
        {kind: edges}, summing to E.
    """
    from gnn4itk.training.truth import match_edges

    matched = match_edges(torch.from_numpy(edges), torch.from_numpy(true_edges), len(particle_of_hit), True).numpy()
    true = matched >= 0
    target = np.zeros_like(true)
    target[true] = on_target[matched[true]]
    first, second = particle_of_hit[edges[0]], particle_of_hit[edges[1]]
    noise = ~true & ((first == 0) | (second == 0))
    skip = ~true & ~noise & (first == second)
    kinds = {
        "target": target,
        "other_particle": true & ~target,
        "skip": skip,
        "two_particles": ~true & ~noise & ~skip,
        "noise": noise,
    }
    return {kind: int(kinds[kind].sum()) for kind in EDGE_KINDS}


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
    graph_edges = graph_edges.detach().cpu().numpy().astype(np.int64)
    kept_edges = kept_edges.detach().cpu().numpy().astype(np.int64)
    particle_of_hit = event.hits["particle_id"].to_numpy(np.int64)
    kinds = {name: edge_kinds(edges, true_edges, on_target, particle_of_hit)
             for name, edges in (("graph", graph_edges), ("kept", kept_edges))}
    true_edges, particle_of_edge = true_edges[:, on_target], particle_of_edge[on_target]
    in_graph = _present(true_edges, graph_edges, num_hits)
    kept = _present(true_edges, kept_edges, num_hits)

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
        graph_edge_kinds=kinds["graph"],
        kept_edge_kinds=kinds["kept"],
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
    lines.append("edges by what they join (" + ", ".join(EDGE_KINDS) + "):")
    for label, kinds in (("graph", budget.graph_edge_kinds), ("kept", budget.kept_edge_kinds)):
        lines.append(f"{label:>12} " + " ".join(f"{kinds[k]:>14,}" for k in EDGE_KINDS))
    return "\n".join(lines)


FRAGMENT_KINDS = ("no_majority", "non_target", "target")
"""What a candidate track that double-majority matching rejects is: ``no_majority`` (no particle holds
more than half of its spacepoints: a fake in every style), or a pure piece of a particle that is not a
target (``non_target``: soft, secondary, electron...) or of a target particle (``target``), holding no more
than half of that particle's spacepoints."""


def fragment_budget(event, tracks, result: TrackingResult) -> dict:
    """The candidate tracks that double-majority (``two_way``) matching rejects, by kind and pT.

    Args:
        event: the :class:`~gnn4itk.event.Event` with truth.
        tracks: the pipeline's tracks in any form of :func:`gnn4itk.metrics.track_membership` (LABELS).
        result: :func:`~gnn4itk.metrics.evaluate_tracking` of ``tracks`` on ``event`` (its cuts and targets).

    Returns:
        {"candidates": candidate tracks, "rejected": those two_way rejects, "by_kind": {kind of
        :data:`FRAGMENT_KINDS`: tracks}, "by_pt": {pT label: {"non_target", "target": tracks}}}; a piece is
        binned by its particle's pT, with ``"< 1 GeV"`` below :data:`PT_EDGES_GEV` (pieces of particles of
        pT >= 1 GeV that are no targets: secondaries, electrons, beyond |eta| or radius cuts, count as
        ``non_target`` in their bin).
    """
    from gnn4itk.metrics.membership import track_membership

    pid = event.hits["particle_id"].to_numpy(np.int64)
    pairs = candidate_pairs(pid, *track_membership(tracks, len(pid)), result.cuts)
    matched = np.zeros(len(pairs.track_len), dtype=bool)
    matched[pairs.pair_track[pairs.purity_ok & pairs.completeness_ok]] = True
    # the majority particle of each candidate (at most one particle can hold more than half)
    majority = np.zeros(len(pairs.track_len), dtype=np.int64)
    majority[pairs.pair_track[pairs.purity_ok]] = pairs.pair_pid[pairs.purity_ok]
    rejected = pairs.candidate & ~matched
    pieces = majority[rejected]
    by_kind = dict.fromkeys(FRAGMENT_KINDS, 0)
    by_kind["no_majority"] = int((pieces == 0).sum())
    pieces = pieces[pieces != 0]
    target = np.isin(pieces, result.target_particles["particle_id"].to_numpy(np.int64))
    piece_pt = event.particles.set_index("particle_id")["pt"].reindex(pieces).fillna(0.0).to_numpy()
    bins = np.searchsorted(np.asarray(PT_EDGES_GEV), piece_pt, side="right")  # 0: below 1 GeV
    labels = ["< 1 GeV"] + [pt_label(i) for i in range(len(PT_EDGES_GEV))]
    by_pt = {label: {"non_target": 0, "target": 0} for label in labels}
    for kind, mask in (("target", target), ("non_target", ~target)):
        by_kind[kind] = int(mask.sum())
        for index, label in enumerate(labels):
            by_pt[label][kind] = int((mask & (bins == index)).sum())
    return {"candidates": pairs.n_candidates, "rejected": int(rejected.sum()), "by_kind": by_kind, "by_pt": by_pt}


def format_fragment_budget(fragments: dict) -> str:
    """A text table of :func:`fragment_budget`."""
    kinds = fragments["by_kind"]
    lines = [f"candidate tracks double majority rejects: {fragments['rejected']:,} of {fragments['candidates']:,} "
             f"(no majority particle {kinds['no_majority']:,}; pieces of non-target particles {kinds['non_target']:,}, "
             f"of target particles {kinds['target']:,})",
             f"{'pT of the piece':>16} {'non-target':>11} {'target':>8}"]
    for label, row in fragments["by_pt"].items():
        lines.append(f"{label:>16} {row['non_target']:>11} {row['target']:>8}")
    return "\n".join(lines)


def add_fragment_budgets(a: dict, b: dict) -> dict:
    """Two :func:`fragment_budget` results summed (events together)."""
    return {
        "candidates": a["candidates"] + b["candidates"],
        "rejected": a["rejected"] + b["rejected"],
        "by_kind": {k: a["by_kind"][k] + b["by_kind"][k] for k in FRAGMENT_KINDS},
        "by_pt": {label: {k: a["by_pt"][label][k] + b["by_pt"][label][k] for k in row} for label, row in a["by_pt"].items()},
    }
