"""Losses of the learned stages, as in acorn: hinge loss on squared distances, split weighted BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    # Mean of values * weights over the selected entries; 0 (with gradient) when there are none.
    if values.numel() == 0:
        return values.sum()
    return (values * weights).mean()


def hinge_loss(dist2: torch.Tensor, truth: torch.Tensor, weights: torch.Tensor, margin: float) -> torch.Tensor:
    """Metric-learning hinge loss on squared embedding distances.

    Positive pairs (``truth`` and weight > 0) are pulled together with loss ``d^2``; negative pairs
    (``~truth`` with weight != 0, or weight < 0) are pushed beyond ``margin``: ``max(0, margin^2 - d^2)``.
    Each part is averaged separately with its weights and the two are summed; weight 0 drops a pair.

    Args:
        dist2 (FloatTensor [P]): squared distances. truth (BoolTensor [P]). weights (FloatTensor [P]).
        margin: the radius the negatives are pushed beyond.

    Returns:
        scalar FloatTensor.
    """
    negative = (~truth & (weights != 0)) | (weights < 0)
    positive = truth & (weights > 0)
    negative_loss = F.relu(margin * margin - dist2[negative])
    return _weighted_mean(negative_loss, weights[negative].abs()) + _weighted_mean(dist2[positive], weights[positive])


LOSS_BALANCES = ("equal", "proportional")
"""How :func:`weighted_bce` adds its two classes (acorn's ``balance``)."""
DEFAULT_LOSS_BALANCE = "proportional"
"""acorn's default. The configs of weights trained with ``equal`` (the shipped filter and ModuleMap GNN)
say so; the MetricLearning GNN went from 972k to 79k edges above ``cc_cut`` with ``proportional``."""


def weighted_bce(
    logits: torch.Tensor, truth: torch.Tensor, weights: torch.Tensor, balance: str = DEFAULT_LOSS_BALANCE
) -> torch.Tensor:
    """Binary cross-entropy with edge weights, acorn's edge-classifier loss in either of its two balances.

    Positive edges: ``truth`` with weight > 0. Negative edges: ``~truth`` with weight != 0, or weight < 0
    (a true edge of a non-target particle can be trained as fake with a negative weight).

    ``equal`` averages the positives and the negatives separately and adds the two means, so each class
    weighs the same whatever its size; a score then overstates the odds of a true edge by the ratio of
    negatives to positives (times their weights' ratio). ``proportional`` (acorn's default) divides the
    summed losses by the number of edges, so a score overstates those odds only by the weights' ratio:
    on a graph of 70 fakes per target edge the two differ by 70x in odds at the same score.

    Args:
        logits (FloatTensor [E]). truth (BoolTensor [E]). weights (FloatTensor [E]).
        balance: ``"equal"`` or ``"proportional"``.

    Returns:
        scalar FloatTensor: ``mean_pos(w * bce(logit, 1)) + mean_neg(|w| * bce(logit, 0))`` (equal) or
        ``(sum_pos(w * bce(logit, 1)) + sum_neg(|w| * bce(logit, 0))) / (n_pos + n_neg)`` (proportional).
    """
    if balance not in LOSS_BALANCES:
        raise ValueError(f"loss balance {balance!r}: expected one of {', '.join(LOSS_BALANCES)}")
    negative = (~truth & (weights != 0)) | (weights < 0)
    positive = truth & (weights > 0)
    pos = F.binary_cross_entropy_with_logits(logits[positive], torch.ones_like(logits[positive]), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits[negative], torch.zeros_like(logits[negative]), reduction="none")
    if balance == "proportional":
        count = pos.numel() + neg.numel()
        if count == 0:
            return logits.sum() * 0.0
        return ((pos * weights[positive]).sum() + (neg * weights[negative].abs()).sum()) / count
    return _weighted_mean(pos, weights[positive]) + _weighted_mean(neg, weights[negative].abs())
