"""``gnn4itk train STAGE --config configs/train_*.yaml``: train a learned stage with Lightning."""

from __future__ import annotations

import json

NAME = "train"
HELP = "train a learned stage (metric_learning, double_metric_learning, filter, gnn) from a YAML config"

STAGE_NAMES = ("metric_learning", "double_metric_learning", "filter", "gnn")


def add_arguments(parser) -> None:
    parser.add_argument("stage", choices=STAGE_NAMES, help="the stage to train")
    parser.add_argument("--config", required=True, help="training config (configs/train_*.yaml)")
    parser.add_argument("--output", default=None, help="output directory (overrides training.output_dir)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override training.max_epochs")
    parser.add_argument("--accelerator", default=None, help="cpu, gpu or auto (overrides training.accelerator)")
    parser.add_argument("--train", default=None, help="training event directory (overrides data.train)")
    parser.add_argument("--val", default=None, help="validation event directory (overrides data.val)")
    parser.add_argument("--init-from", default=None, metavar="CKPT",
                        help="start from the weights of this acorn-layout checkpoint (same architecture)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training at this wall time (checked after every step); the weights are still written")


def run(args) -> int:
    from gnn4itk.cli import UserError
    from gnn4itk.training.config import load_config, run_training

    config = load_config(args.config)
    data = dict(config.get("data") or {})
    for key in ("train", "val"):
        if getattr(args, key):
            data[key] = getattr(args, key)
    config["data"] = data
    if args.accelerator == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--accelerator gpu asked for, but torch sees no CUDA device")
    try:
        result = run_training(
            args.stage,
            config,
            output_dir=args.output,
            max_epochs=args.max_epochs,
            accelerator=args.accelerator,
            init_from=args.init_from,
            max_minutes=args.max_minutes,
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    print(json.dumps(result, indent=2))
    return 0
