"""gnn4itk.ordering.float_order_key: the exact float32 order as int64 keys (eager and scripted), for
its three uses: signed finite dphi (module-map search keys), positive scores (track-building walk),
and any float including +-inf and NaN (LABELS order by r2z2)."""

import numpy as np
import torch

from gnn4itk.ordering import FLOAT_KEY_INF, FLOAT_KEY_NAN, float_order_key

SPECIAL = [-3.4e38, -2.0, -1.0, -1e-30, -3e-39, -1e-45, -0.0, 0.0, 1e-45, 2e-45, 3e-39, 1e-38, 0.01, 0.5, 1.0, 3.4e38]


def test_exact_float32_order_of_finite_values():
    special = np.array(SPECIAL, np.float32)
    rng = np.random.default_rng(0)
    spread = rng.standard_normal(20000) * 10.0 ** rng.uniform(-44, 38, 20000)
    values = np.concatenate([special, spread.astype(np.float32), np.nextafter(special, np.float32(1))])
    values = values[np.isfinite(values)]
    got = torch.jit.script(float_order_key)(torch.from_numpy(values)).numpy()
    assert np.array_equal(got, float_order_key(torch.from_numpy(values)).numpy())
    assert np.abs(got).max() < 2**33
    i, j = rng.integers(0, len(values), (2, 200000))
    i = np.concatenate([i, np.repeat(np.arange(len(special)), len(special))])
    j = np.concatenate([j, np.tile(np.arange(len(special)), len(special))])
    assert np.array_equal(np.sign(got[i] - got[j]), np.sign(values[i].astype(np.float64) - values[j]))


def test_sorts_like_torch_sort_with_infinities_and_nan():
    special = SPECIAL + [np.inf, -np.inf, np.nan]
    spread = torch.randn(5000) * 10.0 ** torch.randint(-40, 38, (5000,))  # some overflow to +-inf
    values = torch.cat([torch.tensor(special, dtype=torch.float32), spread])
    values = torch.cat([values, values[:200]])  # ties
    key = torch.jit.script(float_order_key)(values) + FLOAT_KEY_NAN  # as LABELS packs it
    assert int(key.min()) >= 2**24 and int(key.max()) < 2**34
    assert torch.equal(torch.sort(key, stable=True)[1], torch.sort(values, stable=True)[1])
    assert float_order_key(torch.tensor([np.inf, -np.inf, np.nan])).tolist() == [
        FLOAT_KEY_INF, -FLOAT_KEY_INF, FLOAT_KEY_NAN
    ]


def test_positive_values_order_like_the_scores():
    special = [1e-45, 3e-39, 0.01, float(np.nextafter(np.float32(0.01), np.float32(1))), 0.5, 1.0, 3e38, np.inf]
    values = torch.cat([torch.tensor(special, dtype=torch.float32), torch.rand(5000).clamp(min=1e-45) ** 4])
    values = torch.cat([values, values[:100]])  # ties
    key = torch.jit.script(float_order_key)(values)
    # the walk packs ``key << 30 | row`` into a positive int64
    assert int(key.min()) >= 1 and int(key.max()) < 2**33
    order = torch.sort(values, stable=True)[1]
    assert torch.equal(torch.sort(key, stable=True)[1], order)
    ordered_values, ordered_keys = values[order], key[order]
    assert torch.equal(ordered_keys[1:] > ordered_keys[:-1], ordered_values[1:] > ordered_values[:-1])
