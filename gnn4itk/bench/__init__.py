"""Benchmarks behind ``gnn4itk bench <area>``.

Each module here defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> dict``. ``run`` prints
a table of medians and returns the figures so that they can be stored as JSON (``--json``).
"""
