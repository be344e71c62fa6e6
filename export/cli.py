"""``python -m export`` / ``gnn4itk export``: pipelines -> TorchScript files -> Triton model repository.

    python -m export                                   # the shipped pipelines, into models/
    python -m export --pipelines ModuleMap --flavour libtorch --device gpu --count 2
    python -m export --pipelines ModuleMap my_pixel_only.yaml   # a pipeline of your own, by its configuration
    python -m export --flavour libtorch --gpus all --instances-per-gpu 2   # 2 instances on each GPU of this machine
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from export.repository import FLAVOURS
from gnn4itk.pipeline import PIPELINE_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINE_NAMES), metavar="NAME_OR_YAML",
                        help="pipelines to export: names (configs/<NAME>.yaml, or the --config given for NAME) or "
                             "configuration YAMLs, served under the name they give (default: %(default)s)")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=YAML",
                        help="configuration for one pipeline (default configs/<NAME>.yaml); repeatable")
    parser.add_argument("--module-map", default=None,
                        help="module map of every module-map graph construction (default: the configuration's)")
    parser.add_argument("--output", type=Path, default=Path("models"), help="model repository (%(default)s)")
    parser.add_argument("--flavour", choices=list(FLAVOURS), default="python")
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="instance kind in config.pbtxt")
    parser.add_argument("--count", "--instances-per-gpu", dest="count", type=int, default=1,
                        help="model instances per device: on EACH GPU for KIND_GPU (%(default)s)")
    parser.add_argument("--gpus", nargs="+", default=None, metavar="GPUS",
                        help="GPUs for KIND_GPU instances: 'all' (every GPU of this machine; none found: no list, "
                             "which Triton reads as every GPU of the server) or indices such as 0,1; "
                             "default: no list (every GPU of the server)")
    parser.add_argument("--auto-cast", action="store_const", const=True, default=None,
                        help="float16 autocast of the GNN on CUDA, float32 fall-back (default: the configuration's auto_cast)")
    parser.add_argument("--float32", dest="auto_cast", action="store_const", const=False,
                        help="the GNN in float32 even where the configuration's auto_cast is on")
    parser.add_argument("--max-spacepoints", type=int, default=None, help="default: the configuration's")
    parser.add_argument("--warmup-event", default=None, help="event file whose spacepoints warm the models up")
    parser.add_argument("--warmup-rows", type=int, default=20000,
                        help="warm up with at most this many of the event's spacepoints (%(default)s; keeps CPU start-up short)")
    parser.add_argument("--skip-missing", action="store_true", help="skip pipelines whose weights or map are missing")
    parser.add_argument("--check", action="store_true", help="also run every exported file in a torch-only process")


def export_gpus(words: list[str] | None, device_count: int | None = None) -> list[int] | None:
    """The ``gpus`` of the written configs for the ``--gpus`` words (see :func:`export.repository.resolve_gpus`).

    ``all`` on a machine without GPUs writes no list and says so: Triton then uses every GPU of the server.
    """
    from export.repository import GPUS_ALL, parse_gpus, resolve_gpus

    if words is None:
        return None
    parsed = parse_gpus(words)
    gpus = resolve_gpus(parsed, device_count)
    if parsed == GPUS_ALL:
        where = f"GPUs {gpus} of this machine" if gpus else "every GPU of the server (this machine has none: no gpus list)"
        print(f"--gpus all: KIND_GPU instances on {where}")
    return gpus


def config_overrides(items: list[str]) -> dict[str, str]:
    """``--config NAME=YAML`` words -> {NAME: YAML}.

    Raises:
        ValueError: for a word without ``=`` (give a configuration of its own with ``--pipelines YAML``).
    """
    overrides = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--config takes NAME=YAML, got {item!r} (a configuration alone goes to --pipelines)")
        overrides[name] = path
    return overrides


def export(args) -> list[str]:
    import torch

    from export.repository import write_model_repository
    from export.torchscript import export_pipeline, run_isolated
    from gnn4itk.pipeline import build_pipeline, load_pipeline_config

    gpus = export_gpus(args.gpus)  # before the long part: a bad --gpus fails at once
    overrides = config_overrides(args.config)
    specs, limits = [], []
    with tempfile.TemporaryDirectory(prefix="gnn4itk-export-") as scratch:
        for item in args.pipelines:
            config = load_pipeline_config(overrides.get(item, item))
            name = item if item in overrides else config["pipeline"]  # NAME=YAML serves under NAME
            try:
                pipeline = build_pipeline(config, module_map_path=args.module_map, auto_cast=args.auto_cast, verbose=True)
            except FileNotFoundError as error:
                if args.skip_missing:
                    print(f"skipping {name}: {error}")
                    continue
                raise
            # the configs record the pipeline's own settings (Pipeline.settings): only the cuts it has
            spec = export_pipeline(pipeline, name, Path(scratch) / "torchscript")
            if args.warmup_event:
                from gnn4itk.event import select_features
                from gnn4itk.io.load import load_event

                rows = select_features(load_event(args.warmup_event).hits, pipeline.columns)
                # every k-th spacepoint: a thinned event spread over the whole detector
                step = max(1, -(-len(rows) // max(1, args.warmup_rows)))
                spec.warmup_features = rows[::step]
            if args.check:
                features = torch.from_numpy(spec.warmup_features) if spec.warmup_features is not None else torch.rand(500, len(pipeline.columns))
                expected = pipeline(features)
                out = run_isolated(spec, features, Path(scratch) / "check" / name)
                for key in ("fused", "chained"):
                    if not torch.equal(out[key], expected):
                        raise RuntimeError(f"{name}: the exported {key} model differs from the eager pipeline")
                print(f"{name}: exported files run in a torch-only process and equal the eager pipeline")
            specs.append(spec)
            limits.append(pipeline.input_guard.max_spacepoints)
        if not specs:
            raise FileNotFoundError("no pipeline could be exported")
        max_spacepoints = args.max_spacepoints or min(limits)
        names = write_model_repository(
            args.output, specs, flavour=args.flavour, instance_kind=args.device, count=args.count,
            gpus=gpus, max_spacepoints=max_spacepoints, overwrite=True,
        )
    print(f"model repository {args.output}: {', '.join(names)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        export(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
