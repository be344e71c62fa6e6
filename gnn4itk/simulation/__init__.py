"""Event simulation with pyacts: Generic detector, 2 T solenoid, Fatras, smearing digitisation.

``gnn4itk simulate`` drives :func:`simulate_events`; :func:`simulate_event` makes one event in memory.
See ``docs/simulation.md``.
"""

from gnn4itk.simulation.generators import GeneratorConfig, pythia8_available
from gnn4itk.simulation.run import SimulationConfig, format_summary, simulate_event, simulate_events

__all__ = [
    "GeneratorConfig",
    "SimulationConfig",
    "format_summary",
    "pythia8_available",
    "simulate_event",
    "simulate_events",
]
