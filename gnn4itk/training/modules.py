"""Lightning modules for the learned stages; their checkpoints keep acorn's layout.

The network lives in ``self.model`` (a :mod:`gnn4itk.models` module). On saving, the state-dict keys lose
the ``model.`` prefix and ``hyper_parameters`` becomes a plain dict (model hparams, ``"model"`` class
name, training settings), so the file loads with ``weights_only=True`` both through
:func:`gnn4itk.models.load_acorn_checkpoint` and in acorn-style code. Resuming adds the prefix back.
"""

from __future__ import annotations

import lightning as L
import torch

from gnn4itk.edge_features import unique_edges
from gnn4itk.models import build_model, model_name_of
from gnn4itk.models.mlp import plain_hparams
from gnn4itk.models.radius_graph import radius_graph
from gnn4itk.training.losses import DEFAULT_LOSS_BALANCE, hinge_loss, weighted_bce
from gnn4itk.training.truth import match_edges

_PREFIX = "model."


def _plain(value):
    """``value`` reduced to types that weights_only unpickling accepts (str, numbers, lists, dicts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _ratio(numerator: torch.Tensor | int, denominator: torch.Tensor | int) -> float:
    denominator = float(denominator)
    return float(numerator) / denominator if denominator > 0 else float("nan")


def nearest_within(query: torch.Tensor, database: torch.Tensor, r_max: float, k_max: int, block_rows: int = 2048) -> torch.Tensor:
    """The ``k_max`` nearest database points within ``r_max`` of each query, in bounded memory.

    Training-time pair mining only. An embedding early in training can put most points inside one radius;
    candidate-enumerating searches (the inference :func:`~gnn4itk.models.radius_graph.radius_graph`, built for
    trained embeddings) then need memory quadratic in N. Here every block of queries keeps only its
    ``k_max`` nearest from a ``[block_rows, N]`` distance block, so memory is bounded whatever the embedding.

    Args:
        query (FloatTensor [Q, D]), database (FloatTensor [N, D]): embeddings.
        r_max: radius (pairs closer than it); k_max: most neighbours per query; block_rows: queries per block.

    Returns:
        edge_index (LongTensor [2, E]): (query row, database row), without ``i == j`` pairs.
    """
    k = min(k_max + 1, database.shape[0])  # + 1: room for the query itself when query rows are database rows
    edges = []
    for start in range(0, query.shape[0], block_rows):
        block = query[start : start + block_rows]
        # matmul form: ~100x faster than the exact one on the GPU; its ~1e-7 relative error near r_max only
        # moves a training pair across the radius now and then, which the hinge loss does not mind
        distance = torch.cdist(block, database)
        nearest_distance, nearest = torch.topk(distance, k, dim=1, largest=False)
        rows = torch.arange(start, start + block.shape[0], device=query.device).unsqueeze(1).expand_as(nearest)
        keep = (nearest_distance < r_max) & (nearest != rows)
        # at most k_max per query: drop the farthest kept one where the query itself was not among them
        keep &= torch.cumsum(keep.long(), dim=1) <= k_max
        edges.append(torch.stack([rows[keep], nearest[keep]]))
    if not edges:
        return torch.zeros(2, 0, dtype=torch.long, device=query.device)
    return torch.cat(edges, dim=1)


class _AcornLayoutModule(L.LightningModule):
    """Shared optimiser, logging and checkpoint layout."""

    def __init__(self, model_hparams: dict, training: dict):
        super().__init__()
        self.model = build_model(plain_hparams(model_hparams))
        self.training_settings = dict(training)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=float(self.training_settings.get("lr", 1e-3)),
            weight_decay=float(self.training_settings.get("weight_decay", 0.01)),
            amsgrad=True,
        )
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=int(self.training_settings.get("patience", 10)), gamma=float(self.training_settings.get("factor", 0.9))
        )
        return [optimizer], [{"scheduler": scheduler, "interval": "epoch"}]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k[len(_PREFIX) :] if k.startswith(_PREFIX) else k: v for k, v in state.items()}
        checkpoint["hyper_parameters"] = _plain(
            {**self.training_settings, **self.model.hparams, "model": model_name_of(self.model)}
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {
            (k if k.startswith(_PREFIX) else _PREFIX + k): v for k, v in checkpoint["state_dict"].items()
        }

    def _log_metrics(self, values: dict) -> None:
        self.log_dict(values, on_step=False, on_epoch=True, batch_size=1, prog_bar=True)


class MetricLearningModule(_AcornLayoutModule):
    """Trains :class:`~gnn4itk.models.MetricLearning` or :class:`~gnn4itk.models.DoubleMetricLearning`.

    Each step builds training pairs from ``points_per_batch`` random query spacepoints: their
    neighbours within ``r_train`` (at most ``knn``) in the current embedding (hard negatives),
    ``randomisation`` x queries random pairs, and every true edge of a target particle; the pairs are
    labelled against truth and scored with the hinge loss (``margin``). Single embeddings compare truth
    in both directions, double embeddings directed (source -> target outwards).

    Validation builds the full radius graph (``r_train``, ``knn_val``) and logs ``val_loss``,
    ``val_eff`` (target true edges found / target true edges) and ``val_pur`` (true edges / edges).
    """

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out if isinstance(out, tuple) else (out, out)

    def _radius_graph(self, query: torch.Tensor, database: torch.Tensor, k_max: int) -> torch.Tensor:
        settings = self.training_settings
        method = str(settings.get("radius_method", "nearest_blocks"))
        r_train = float(settings.get("r_train", 0.1))
        if method == "nearest_blocks":
            return nearest_within(query, database, r_train, k_max, int(settings.get("radius_block_rows", 2048)))
        grid_dims = int(settings.get("radius_grid_dims", 4))
        return radius_graph(query, database, r_train, k_max, method=method, grid_dims=grid_dims, rotate=True)

    @property
    def _undirected(self) -> bool:
        return not self.model.directed  # a single embedding: truth compared in both directions

    def _pairs_loss(self, batch: dict, pairs: torch.Tensor, src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        matched = match_edges(pairs, batch["true_edges"], batch["num_nodes"], self._undirected)
        truth = matched >= 0
        weights = torch.ones(pairs.shape[1], device=pairs.device)
        weights[truth] = batch["true_target"][matched[truth]].float()  # non-target true pairs: ignored
        dist2 = (src[pairs[0]] - tgt[pairs[1]]).pow(2).sum(dim=1)
        return hinge_loss(dist2, truth, weights, float(self.training_settings.get("margin", 0.1))), truth

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        settings = self.training_settings
        x = batch["x"]
        n = x.shape[0]
        with torch.no_grad():
            src, tgt = self._embed(x)
        queries = torch.randperm(n, device=x.device)[: int(settings.get("points_per_batch", 100000))]
        hard = self._radius_graph(src[queries], tgt, int(settings.get("knn", 50)))
        hard = torch.stack([queries[hard[0]], hard[1]])
        n_random = int(float(settings.get("randomisation", 1)) * queries.numel())
        random_pairs = torch.stack([queries[torch.randint(0, queries.numel(), (n_random,), device=x.device)], torch.randint(0, n, (n_random,), device=x.device)])
        true_pairs = batch["true_edges"][:, batch["true_target"]]
        if self._undirected:
            true_pairs = torch.cat([true_pairs, true_pairs.flip(0)], dim=1)
        pairs = unique_edges(torch.cat([hard, random_pairs, true_pairs], dim=1), n)
        pairs = pairs[:, pairs[0] != pairs[1]]
        src, tgt = self._embed(x)
        loss, _ = self._pairs_loss(batch, pairs, src, tgt)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=1, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        settings = self.training_settings
        src, tgt = self._embed(batch["x"])
        edges = self._radius_graph(src, tgt, int(settings.get("knn_val", 1000)))
        loss, truth = self._pairs_loss(batch, edges, src, tgt)
        matched = match_edges(edges, batch["true_edges"], batch["num_nodes"], self._undirected)
        found = torch.zeros(batch["true_edges"].shape[1], dtype=torch.bool, device=edges.device)
        found[matched[matched >= 0]] = True
        target = batch["true_target"]
        self._log_metrics(
            {
                "val_loss": loss,
                "val_eff": _ratio((found & target).sum(), target.sum()),
                "val_pur": _ratio(truth.sum(), edges.shape[1]),
                "val_edges_per_node": _ratio(edges.shape[1], batch["num_nodes"]),
            }
        )


class EdgeClassifierModule(_AcornLayoutModule):
    """Trains :class:`~gnn4itk.models.Filter` or :class:`~gnn4itk.models.InteractionGNN2` on given graphs.

    Loss: :func:`~gnn4itk.training.losses.weighted_bce` with the sample weights (target true edges 1,
    non-target true edges ``other_true_weight``, 0 by default, fakes ``fake_weight``) and the classes
    balanced as ``loss_balance`` says (:data:`~gnn4itk.training.losses.DEFAULT_LOSS_BALANCE` unless set); the filter trains
    on at most ``edges_per_step`` random edges per step when that is set. Validation logs ``val_loss`` and, at the score cut
    (``edge_cut``; default ``filter_cut`` 0.05 for the filter, 0.5 for the GNN), ``val_eff`` (target true
    edges kept / target true edges in the graph) and ``val_pur`` (true edges kept / edges kept).
    """

    @property
    def _edgewise(self) -> bool:
        """The model scores each edge from its two spacepoints alone (the filter: ``forward(x, edge_index)``)."""
        return bool(getattr(self.model, "edgewise", False))

    def forward(self, batch: dict) -> torch.Tensor:
        if self._edgewise:
            return self.model(batch["x"], batch["edge_index"])
        if self.training and self.model.hparams.get("checkpointing", False):
            # acorn's `checkpointing`: recompute activations in the backward pass (mu=200 graphs).
            return self.model.forward_checkpointed(batch["x"], batch["edge_index"], batch["edge_attr"])
        return self.model(batch["x"], batch["edge_index"], batch["edge_attr"])

    @property
    def edge_cut(self) -> float:
        default = self.model.filter_cut if self._edgewise else 0.5
        return float(self.training_settings.get("edge_cut", default))

    @property
    def loss_balance(self) -> str:
        return str(self.training_settings.get("loss_balance", DEFAULT_LOSS_BALANCE))

    def _edge_subset(self, batch: dict) -> dict:
        """At most ``edges_per_step`` random edges of ``batch`` for the filter (all edges without it).

        The filter scores edges independently, so a uniform subset is an unbiased sample of the full loss;
        it bounds activation memory on metric-learning graphs (tens of millions of edges at mu=200).
        The GNN needs whole graphs (message passing) and always gets them.
        """
        limit = self.training_settings.get("edges_per_step")
        num_edges = batch["edge_index"].shape[1]
        if limit is None or not self._edgewise or num_edges <= int(limit):
            return batch
        keep = torch.randperm(num_edges, device=batch["edge_index"].device)[: int(limit)]
        subset = dict(batch)
        subset.update(edge_index=batch["edge_index"][:, keep], y=batch["y"][keep], weights=batch["weights"][keep])
        if "edge_attr" in batch:
            subset["edge_attr"] = batch["edge_attr"][keep]
        return subset

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch = self._edge_subset(batch)
        loss = weighted_bce(self(batch), batch["y"], batch["weights"], self.loss_balance)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=1, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch)
        kept = torch.sigmoid(logits) > self.edge_cut
        target = batch["y"] & (batch["weights"] > 0)
        self._log_metrics(
            {
                "val_loss": weighted_bce(logits, batch["y"], batch["weights"], self.loss_balance),
                "val_eff": _ratio((kept & target).sum(), target.sum()),
                "val_pur": _ratio((kept & batch["y"]).sum(), kept.sum()),
            }
        )


STAGES = {
    "metric_learning": (MetricLearningModule, "MetricLearning"),
    "double_metric_learning": (MetricLearningModule, "DoubleMetricLearning"),
    "filter": (EdgeClassifierModule, "Filter"),
    "gnn": (EdgeClassifierModule, "ChainedInteractionGNN2"),
}
"""Stage name -> (Lightning module, default model class)."""
