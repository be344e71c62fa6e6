"""Benchmarks behind ``gnn4itk bench <area>``.

Each module here defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> dict``. ``run`` prints
a table of medians and returns the figures so that they can be stored as JSON (``--json``).
"""


def print_ratio_table(title: str, values: dict, reference: float, value_header: str, scale: float = 1.0) -> None:
    """Print ``{variant: value}`` as a table: each value times ``scale`` and its ratio to ``reference``.

    Args:
        title: the table's title.
        values: ``{variant: value}``, in the order of the rows.
        reference: what the ratios divide by (same unit as ``values``).
        value_header: the header of the value column (e.g. ``"median ms"``).
        scale: factor to the printed unit (``1e3``: seconds printed as ms).
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("variant")
    table.add_column(value_header, justify="right")
    table.add_column("ratio", justify="right")
    for name, value in values.items():
        table.add_row(name, f"{value * scale:.1f}", f"{value / reference:.2f}")
    Console().print(table)
