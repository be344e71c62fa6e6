"""Integer keys that sort like float32 values (TorchScript-able, no dependency beyond torch).

Several sorts and binary searches pack a float into an int64 beside other fields (a track number, a
doublet, a row). TorchScript cannot reinterpret a float's bits (``view(dtype)`` there is a reshape), so
the key is built from ``frexp`` arithmetic instead. :mod:`module_map` imports this module too; it must
stay free of imports from the rest of the package.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOAT_KEY_INF = 4_689_231_872
"""``float_order_key(+inf)`` = 279.5 * 2**24 (the key of 2**128); ``-inf`` maps to its negative."""
FLOAT_KEY_NAN = 4_706_009_088
"""``float_order_key(nan)`` = 280.5 * 2**24 (the key of 2**129), the largest key; a key plus this lies in
[2**24, 2**34)."""


def float_order_key(values: Tensor) -> Tensor:
    """An integer key that orders exactly like float32 values, as ``torch.sort`` orders them.

    ``|v| = |m| 2**e`` with ``|m|`` in [0.5, 1) (``frexp``: exact, subnormals included), so ``(e, m)``
    orders the magnitudes and ``|m| 2**24`` is an integer (24 mantissa bits): a nonzero finite value
    maps to ``sign(v) ((e + 150) 2**24 + |m| 2**24)``, whose magnitude lies in [2.5 * 2**24, 279 * 2**24).
    -0.0 and 0.0 both map to 0 (they compare equal). +-inf and NaN are first replaced by +-2**128 and
    2**129 in float64 (beyond every float32), so +-inf map to +-:data:`FLOAT_KEY_INF` and NaN to
    :data:`FLOAT_KEY_NAN`, last, as ``torch.sort`` puts it. Every key lies in (-2**33, 2**33): the key
    plus :data:`FLOAT_KEY_NAN` fits 34 bits beside another field (``field << 34 | key + FLOAT_KEY_NAN``),
    and a positive value's key lies in (2**24, 2**33).

    The arithmetic is float64 (exact: at most 33 significant bits) with a single cast to int64 at the
    end: few ops, which on the CPU (no fuser) is what the key costs.

    Args:
        values: FloatTensor [*], float32 (a float64 value is ordered by its leading 24 mantissa bits).

    Returns:
        LongTensor [*], same shape.
    """
    # 2**128 and 2**129 (literals: TorchScript reads no module globals)
    wide = torch.nan_to_num(values.double(), nan=6.80564733841877e38, posinf=3.402823669209385e38,
                            neginf=-3.402823669209385e38)
    mantissa, exponent = torch.frexp(wide)
    return ((mantissa + torch.sign(mantissa) * (exponent + 150)) * 16777216.0).long()
