"""``gnn4itk export``: the same as ``python -m export``."""

NAME = "export"
HELP = "export pipelines to TorchScript and write the Triton model repository (models/)"


def add_arguments(parser) -> None:
    from export.cli import add_arguments as export_arguments

    export_arguments(parser)


def run(args) -> int:
    from export.cli import export

    export(args)
    return 0
