"""Integer keys that sort like float32 values (TorchScript-able, no dependency beyond torch).

Several sorts and binary searches pack a float into an int64 beside other fields (a track number, a
doublet, a row). TorchScript cannot reinterpret a float's bits (``view(dtype)``), so the key is built
from ``frexp`` arithmetic instead. :mod:`module_map` imports this module too; it must stay free of
imports from the rest of the package.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOAT_KEY_INF = 4_680_843_264
"""``float_order_key(+inf)`` = 279 * 2**24; ``-inf`` maps to its negative."""
FLOAT_KEY_NAN = 4_697_620_480
"""``float_order_key(nan)`` = 280 * 2**24, the largest key; adding it makes every key >= 2**24."""


def float_order_key(values: Tensor) -> Tensor:
    """An integer key that orders exactly like float32 values, as ``torch.sort`` orders them.

    ``|v| = |m| 2**e`` with ``|m|`` in [0.5, 1) (``frexp``: exact, subnormals included), so ``(e, m)``
    orders the magnitudes and ``|m| 2**24`` is an integer (24 mantissa bits): a nonzero finite value
    maps to ``+-((e + 150) 2**24 + |m| 2**24)``, whose magnitude lies in [2.5 * 2**24, 279 * 2**24).
    -0.0 and 0.0 both map to 0 (they compare equal), +-inf to +-:data:`FLOAT_KEY_INF` and NaN to
    :data:`FLOAT_KEY_NAN` (last, as ``torch.sort`` puts it). Every key lies in (-2**33, 2**33), so
    ``field << 34 | (key + FLOAT_KEY_NAN)`` packs it beside another field, and a positive value's key
    lies in (2**24, 2**33).

    (Constants are literals: TorchScript reads no module globals.)

    Args:
        values: FloatTensor [*] (float32; other float dtypes are ordered by their float32 rounding
            only if they are cast first).

    Returns:
        LongTensor [*], same shape.
    """
    mantissa, exponent = torch.frexp(values)
    magnitude = ((exponent.long() + 150) << 24) + (mantissa.abs() * 16777216.0).long()
    key = torch.where(mantissa < 0, -magnitude, magnitude)
    key = torch.where(values == 0, 0, key)
    # (== inf rather than isinf: it fuses with the rest)
    key = torch.where(values == float("inf"), 4_680_843_264, torch.where(values == float("-inf"), -4_680_843_264, key))
    return torch.where(values != values, 4_697_620_480, key)
