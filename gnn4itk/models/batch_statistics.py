"""Frozen batch statistics: BatchNorm layers that normalise with fixed, recorded statistics.

acorn's GNN4ITk edge classifiers use BatchNorm without running statistics
(``track_running_stats: false``), so even in evaluation every BatchNorm normalises with the mean and
variance of the event it is given. Two consequences:

* every spacepoint enters the node MLPs' statistics, with or without an edge, so the GNN must run its
  node MLPs on all of them (56 % of the held-out mu=200 event's spacepoints have no module-map edge);
* one edge's score depends on every other spacepoint of the event: a noise hit, or a partial event,
  changes all scores.

Freezing runs the model as trained on representative events, records the mean and biased variance
each BatchNorm computes for each event, and stores their averages over events as running statistics
with ``track_running_stats: true``. The result is an ordinary acorn checkpoint (acorn builds and
evaluates it the same way) whose edge scores depend only on the edge's own neighbourhood, and which
:class:`~gnn4itk.models.InteractionGNN2` evaluates without the isolated nodes.

Only models whose every BatchNorm runs once per event can be frozen (the chained form): a BatchNorm of
an MLP shared by the iterations sees a different distribution in each iteration, and one mean cannot
stand for them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from gnn4itk.models.mlp import plain_hparams


@dataclass
class RecordedStatistics:
    """Per-event statistics of one BatchNorm layer.

    Attributes:
        means (FloatTensor [events, C]): each event's batch mean.
        variances (FloatTensor [events, C]): each event's biased batch variance (what training-mode
            BatchNorm divides by).
        rows (list[int]): rows each event's batch had.
    """

    means: Tensor
    variances: Tensor
    rows: list

    def spread(self) -> float:
        """Largest relative standard deviation over events of any channel's mean, in units of that
        channel's standard deviation (0 for one event): how much freezing moves the normalisation."""
        if self.means.shape[0] < 2:
            return 0.0
        scale = self.variances.mean(0).clamp_min(1e-12).sqrt()
        return float((self.means.std(0) / scale).max())


def batch_norm_layers(model: nn.Module) -> dict:
    """{qualified name: module} of every ``BatchNorm1d`` in ``model``, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm1d)}


def uses_batch_statistics(model: nn.Module) -> bool:
    """Whether some BatchNorm of ``model`` normalises with batch statistics in evaluation."""
    return any(not m.track_running_stats for m in batch_norm_layers(model).values())


def record_batch_statistics(model: nn.Module, run_events: Callable[[], Iterable]) -> dict:
    """Run ``model`` as trained, event by event, and record each BatchNorm's batch statistics.

    Args:
        model: a model whose BatchNorm layers use batch statistics (``track_running_stats=False``).
        run_events: called once; iterating what it returns must call ``model`` once per event (each
            item marks one finished event, e.g. the output of a pipeline that holds ``model``).

    Returns:
        {BatchNorm name: :class:`RecordedStatistics`}, one row per event.

    Raises:
        ValueError: when a BatchNorm ran other than once per event (a shared, recurrent MLP), or when
            no event was run.
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer: nothing to freeze")
    seen: dict = {name: [] for name in layers}

    def recorder(name: str):
        def hook(_module, inputs, _output):
            rows = inputs[0].detach().double()
            seen[name].append((rows.mean(0).float().cpu(), rows.var(0, unbiased=False).float().cpu(), rows.shape[0]))

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in layers.items()]
    events = 0
    try:
        with torch.no_grad():
            for _ in run_events():
                events += 1
                calls = {name: len(stats) for name, stats in seen.items()}
                wrong = {name: n for name, n in calls.items() if n != events}
                if wrong:
                    name, n = next(iter(wrong.items()))
                    raise ValueError(
                        f"BatchNorm {name} ran {n} times in {events} event(s): a BatchNorm shared by the graph "
                        "iterations (recurrent MLPs) sees a different distribution in each, so one frozen mean "
                        "cannot replace its batch statistics; only models whose BatchNorms run once per event "
                        "(ChainedInteractionGNN2) can be frozen"
                    )
    finally:
        for handle in handles:
            handle.remove()
    if events == 0:
        raise ValueError("no event was run: batch statistics need at least one event")
    return {
        name: RecordedStatistics(
            torch.stack([m for m, _, _ in stats]), torch.stack([v for _, v, _ in stats]), [n for _, _, n in stats]
        )
        for name, stats in seen.items()
    }


def frozen_copy(model: nn.Module, statistics: dict) -> nn.Module:
    """A copy of ``model`` built with ``track_running_stats: true`` whose BatchNorms hold the averages
    over events of ``statistics`` (from :func:`record_batch_statistics`) as running statistics.

    The weights are ``model``'s; ``num_batches_tracked`` holds the number of events. Returned in eval
    mode on ``model``'s device.
    """
    hparams = {**plain_hparams(model.hparams), "track_running_stats": True}
    frozen = type(model)(hparams)
    result = frozen.load_state_dict(model.state_dict(), strict=False)
    running = {k for k in result.missing_keys if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}
    if set(result.missing_keys) - running or result.unexpected_keys:
        raise ValueError(f"frozen model does not match: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    frozen_layers = batch_norm_layers(frozen)
    if set(frozen_layers) != set(statistics):
        raise ValueError(f"statistics for {sorted(statistics)} but the model's BatchNorms are {sorted(frozen_layers)}")
    for name, layer in frozen_layers.items():
        recorded = statistics[name]
        layer.running_mean.copy_(recorded.means.mean(0))
        layer.running_var.copy_(recorded.variances.mean(0))
        layer.num_batches_tracked.fill_(recorded.means.shape[0])
    device = next(model.parameters()).device
    return frozen.to(device).eval()
