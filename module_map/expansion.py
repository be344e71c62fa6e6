"""Chunked expansion of variable-size items into rows, for the module-map graph builder.

Each stage of :class:`~module_map.graph_builder.ModuleMapGraphBuilder` expands items (a doublet's first-module
hits, an edge's triplet sides, a join's matches) into one row per candidate. The expansion runs in ranges of
items of about ``chunk`` rows (:func:`chunks`), so peak memory is set by the chunk size, not by the
candidate count, and each range costs one host sync at most (one range, no sync, when everything fits).
"""

from __future__ import annotations

from typing import List, Tuple

import torch

from gnn4itk.gather import take


def chunk_plan(cum: torch.Tensor, total: int, chunk: int) -> List[List[int]]:
    """Split items with cumulative sizes ``cum`` [n] into ranges of about ``chunk`` (one host sync).

    Returns ``[boundaries, offsets]``: item ranges ``boundaries[k] .. boundaries[k+1]`` and the running
    size before each boundary (a range holds ``offsets[k+1] - offsets[k]`` rows; a single item larger
    than ``chunk`` gets a range of its own).
    """
    n = cum.size(0)
    if total <= chunk:  # one range: no device work, no sync
        return [[0, n], [0, total]]
    targets = torch.arange(chunk, total, chunk, device=cum.device, dtype=cum.dtype)
    cuts = torch.searchsorted(cum, targets, right=True)
    cuts = torch.unique_consecutive(cuts[(cuts > 0) & (cuts < n)])
    zero = torch.zeros(1, dtype=cuts.dtype, device=cuts.device)
    edges = torch.cat([zero, cuts, torch.full((1,), n, dtype=cuts.dtype, device=cuts.device)])
    offsets = torch.cat([zero, cum])[edges]
    plan: List[List[int]] = torch.stack([edges, offsets]).tolist()
    return plan


def chunks(cum: torch.Tensor, total: int, chunk: int) -> List[Tuple[int, int, int, int]]:
    """Non-empty ranges ``(first item, end item, rows before, rows)`` of about ``chunk`` rows, for items
    with cumulative sizes ``cum`` (int64 [n]) summing to ``total`` (read by the caller, with its other
    sizes, in one host sync). One range, and no device work, when ``total <= chunk``.

    Every chunked expansion of the builder loops over these ranges and calls :func:`expand` for each.
    """
    plan = chunk_plan(cum, total, chunk)
    bounds, sizes = plan[0], plan[1]
    ranges: List[Tuple[int, int, int, int]] = []
    for k in range(len(bounds) - 1):
        if sizes[k + 1] > sizes[k]:
            ranges.append((bounds[k], bounds[k + 1], sizes[k], sizes[k + 1] - sizes[k]))
    return ranges


def expand(counts: torch.Tensor, cum: torch.Tensor, first_item: int, end_item: int, rows_before: int, rows: int,
            base: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Items ``first_item .. end_item-1`` repeated ``counts`` (int64 [n]) times; ``cum`` is the
    cumulative sum of ``counts`` and ``rows_before`` the rows of the earlier items.

    Returns (owner, slot), int64 [rows]: the item of each row and ``base[owner] + g``, g the row's
    index in the whole expansion. With ``base = start - excl`` (``excl`` the exclusive cumsum of
    the counts) the slot is ``start[owner] + rank within the owner``: the element a row stands for.
    """
    row = torch.arange(rows_before, rows_before + rows, device=cum.device)
    if cum.is_cuda:
        # A row's item is the first whose cumulative count exceeds the row (items without rows are
        # skipped by right=True). Not repeat_interleave: its CUDA kernel's cost grows with the number of
        # *items*, and the pair and join expansions have millions of them, mostly empty; this binary
        # search over sorted queries costs a fraction of it (docs/benchmarks.md, figures moved from code).
        owner = torch.searchsorted(cum[first_item:end_item], row, right=True)
    else:
        # on the CPU repeat_interleave is one sequential pass, and the whole build ~1.2x faster with it
        owner = torch.repeat_interleave(counts[first_item:end_item], output_size=rows)
    if first_item > 0:
        owner = owner + first_item
    return owner, take(base, owner) + row


def joined(parts: List[torch.Tensor], features: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The chunk results ``parts`` concatenated along their last dimension (no copy for one chunk);
    without parts, an empty tensor [0] (``features`` 0) or [features, 0] of ``dtype``."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 0:
        return torch.zeros([features, 0] if features > 0 else [0], dtype=dtype, device=device)
    return torch.cat(parts, dim=-1)


def where_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """int64 [K]: positions of the true entries of ``mask`` [R] (one host sync, as every compaction)."""
    return torch.nonzero(mask).squeeze(1)
