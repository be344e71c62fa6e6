"""One gather for the TorchScript graph code (track building, module-map graph building).

Both build graphs with many small gathers, where the host's cost per op is a large part of the time on
CUDA, so the kind of gather is chosen per device (measurements in the docstring of :func:`take`).
:mod:`module_map` imports this module too; it must stay free of imports from the rest of the package.
"""

from __future__ import annotations

import torch
from torch import Tensor


def take(values: Tensor, index: Tensor) -> Tensor:
    """``values[..., index]``: entries of a 1-D tensor, or columns of a feature-major table.

    **Index rule:** every entry of ``index`` must lie in [0, K). An index out of range, negative ones
    included (they are never wrapped around as Python indexing does), is an error on every device: a
    ``RuntimeError`` / ``IndexError`` on the CPU, a device-side assert on CUDA, which ends the CUDA
    context. Callers that may hold bad rows clamp them into range first and report them at a later
    host sync (see ``TrackBuilder._filtered_edges``).

    **Kind of gather:**

    * CUDA: an element gather (``torch.gather``). ``index_select`` expands the index and calls the same
      gather (twice the host work), and on the rows of a narrow 2-D tensor (say ``[S, 2]`` int64) it
      picks a slice-gather kernel ~50x slower than an element gather; advanced indexing costs more
      still on the host. Tables are kept feature-major (``[F, K]``, gathered along K) for the same
      reason: gathering 16-byte rows of a ``[K, F]`` table took that slice-gather kernel too.
    * CPU: ``index_select`` (one pass that copies each picked element or column; ~1.5x faster than an
      element gather on ``[8, 1.3M]`` tables and 1-D float32 tensors, one thread).

    ``index_select`` is called as the method: torch_geometric replaces the function
    ``torch.index_select`` by a Python function on import, which TorchScript cannot compile.

    Args:
        values: Tensor [K] or [F, K].
        index: LongTensor [M], entries in [0, K).

    Returns:
        Tensor [M] or [F, M], dtype of ``values``.
    """
    if values.is_cuda:
        if values.dim() == 1:
            return torch.gather(values, 0, index)
        return torch.gather(values, 1, index.expand(values.size(0), index.size(0)))
    return values.index_select(values.dim() - 1, index)
