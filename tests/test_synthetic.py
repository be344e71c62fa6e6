"""module_map.synthetic, the one event generator: its two detectors, and that a seed still gives the
same event (recorded before the toy generator moved here from gnn4itk.training.toy, issue #18)."""

import hashlib
import math

import numpy as np
import pytest

from module_map.synthetic import synthetic_event, toy_event, toy_events, toy_surfaces


def fingerprint(event):
    """(hash of the integer columns, weighted float sums, spacepoints): equal events, equal fingerprints;
    floats compared with a tolerance, as libm's last bits may differ between machines."""
    digest = hashlib.sha256()
    for column in ("hit_id", "module_id", "particle_id", "volume_id", "layer_id"):
        digest.update(np.ascontiguousarray(event.hits[column].to_numpy().astype(np.int64)).tobytes())
    digest.update(np.ascontiguousarray(event.particles["nhits"].to_numpy().astype(np.int64)).tobytes())
    weight = event.hits.particle_id.to_numpy() % 7 + 1
    sums = [float((event.hits[c].to_numpy().astype(np.float64) * weight).sum()) for c in "xyz"]
    return digest.hexdigest()[:16], sums + [float(event.particles.pt.sum())], len(event.hits)


@pytest.mark.parametrize(
    "make, want",
    [
        (lambda: toy_event(n_particles=60, seed=4),
         ("6a44133e65db3eff", [-9981.680069, 181396.159788, 59899.948667, 229.107086], 542)),
        (lambda: synthetic_event(n_particles=200, seed=11),
         ("c3dd38b2a3d62ebc", [13562.365142, 61738.692227, -219699.682983, 78.942429], 1777)),
    ],
    ids=["toy", "generic"],
)
def test_a_seed_gives_the_recorded_event(make, want):
    digest, sums, count = fingerprint(make())
    assert (digest, count) == (want[0], want[2])
    assert sums == pytest.approx(want[1], rel=1e-9, abs=1e-6)


def test_toy_modules_are_layer_sector_slice():
    event = toy_event(n_particles=80, seed=2)
    hits = event.hits
    sector = np.floor((np.arctan2(hits.y, hits.x).to_numpy() + math.pi) / (2 * math.pi) * 64).clip(0, 63)
    z_slice = np.floor((hits.z.to_numpy() + 1100.0) / 2200.0 * 10).clip(0, 9)
    assert np.array_equal(hits.module_id.to_numpy(), hits.layer_id.to_numpy() * 640 + sector * 10 + z_slice)
    assert len(toy_surfaces()) == 10 and (hits.volume_id == 8).all()
    assert (hits.particle_id == 0).sum() == int(0.05 * (hits.particle_id > 0).sum())  # the noise fraction


def test_toy_events_are_seeded_in_sequence():
    events = toy_events(3, n_particles=20, seed=7)
    assert [e.event_id for e in events] == [0, 1, 2]
    assert fingerprint(events[1]) == fingerprint(toy_event(n_particles=20, seed=8, event_id=1))
