"""GNN4ITk track building: connected components + walkthrough on the GPU, with a CPU reference.

* :class:`TrackBuilder` -- the production ``nn.Module`` (pure torch, ``torch.jit.script``-able).
* :func:`build_tracks_reference` -- the plain-Python specification used by the tests.
* :mod:`gnn4itk.track_building.synthetic` -- mu=200-like scored graphs for tests and benchmarks.

``docs/track_building.md`` gives the semantics and every tie-break.
"""

from gnn4itk.track_building.builder import TrackBuilder, labels_from_track_of
from gnn4itk.track_building.reference import MODES, build_tracks_reference

__all__ = ["MODES", "TrackBuilder", "build_tracks_reference", "labels_from_track_of"]
