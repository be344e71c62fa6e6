"""Subcommands of the ``gnn4itk`` CLI: one module each, with ``NAME``, ``HELP``, ``add_arguments`` and ``run``."""
