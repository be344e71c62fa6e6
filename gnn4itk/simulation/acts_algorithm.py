"""Python algorithms for an ACTS examples sequencer: the sources and sinks that move our tables in and out.

Both ACTS sequences of the package (:func:`gnn4itk.simulation.fatras.run_acts`,
:func:`gnn4itk.baseline.ckf.run_ckf`) put their inputs on the whiteboard and read their results back
with such an algorithm; :func:`python_algorithm` is the one way they are written.
"""

from __future__ import annotations

from typing import Callable


def python_algorithm(
    name: str,
    level,
    compute: Callable[[int, dict], dict],
    reads: dict | None = None,
    writes: dict | None = None,
):
    """An ``acts.examples.IAlgorithm`` that runs ``compute`` on every event.

    Each event it reads the whiteboard entries of ``reads``, calls ``compute(event_number, read)`` with
    ``read = {key: object}``, and puts what ``compute`` returns for each key of ``writes`` on the whiteboard.

    Args:
        name: the algorithm's name (ACTS's log lines, the sequencer's timing file).
        level: ACTS log level (an ``acts.logging`` value).
        compute: ``compute(event_number, read) -> {key: object}``, one entry per key of ``writes``
            (``{}`` for a sink).
        reads, writes: ``{whiteboard key: (container type, handle name)}``; handles are made in this
            order, the handle name is the algorithm's property name for that entry.

    Returns:
        the algorithm, for ``Sequencer.addAlgorithm``.
    """
    import acts.examples as ae

    class PythonAlgorithm(ae.IAlgorithm):
        def __init__(self):
            ae.IAlgorithm.__init__(self, name=name, level=level)
            self.reads = _handles(ae.ReadDataHandle, self, reads)
            self.writes = _handles(ae.WriteDataHandle, self, writes)

        def execute(self, context):
            read = {key: handle(context.eventStore) for key, handle in self.reads.items()}
            written = compute(context.eventNumber, read)
            for key, handle in self.writes.items():
                handle(context, written[key])
            return ae.ProcessCode.SUCCESS

    return PythonAlgorithm()


def _handles(kind, algorithm, entries: dict | None) -> dict:
    """``{key: handle}``: one initialised data handle of ``kind`` per whiteboard entry."""
    handles = {}
    for key, (container, handle_name) in (entries or {}).items():
        handle = kind(algorithm, container, handle_name)
        handle.initialize(key)
        handles[key] = handle
    return handles
