"""Toy events for tests and CPU smoke runs: a re-export of :func:`module_map.synthetic.toy_event`.

The package's one event generator lives in :mod:`module_map.synthetic`; import from there.
"""

from module_map.synthetic import toy_event, toy_events

__all__ = ["toy_event", "toy_events"]
