"""Training configs (``configs/train_*.yaml``) and the driver behind ``gnn4itk train``.

A config has five sections::

    stage: gnn                  # metric_learning | double_metric_learning | filter | gnn
    model: {...}                # model hyperparameters, acorn names (docs/models_architecture.md)
    data:
      train: work/events/train  # event directory, or {toy: {count, n_particles, seed}}
      val: work/events/val
      train_events: null        # optional limits
      val_events: null
      targets: {pt_min: 1.0, ...}   # gnn4itk.metrics.TrackingCuts fields (target particles)
      undirected_truth: false
    graph_source: {kind: truth_fakes, fake_ratio: 3}   # filter and gnn only (graph_sources.py)
    training: {max_epochs, lr, accelerator, devices, output_dir, logger: csv|tensorboard, ...}

Every run writes ``output_dir/checkpoints/{best,last}.ckpt`` (Lightning checkpoints in acorn layout),
``output_dir/<stage>.ckpt`` (the bare model: hyper_parameters + state_dict), and the metrics log.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import yaml

from gnn4itk.metrics import TrackingCuts
from gnn4itk.training.data import EventDataModule, SampleSpec
from gnn4itk.training.graph_sources import build_graph_source
from gnn4itk.training.losses import DEFAULT_LOSS_BALANCE, LOSS_BALANCES
from gnn4itk.training.modules import STAGES

SECTIONS = ("stage", "model", "data", "graph_source", "training")


def load_config(path: str | Path) -> dict:
    """Read a training config and check its sections (unknown ones are refused, naming them)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no config file {path}")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a training config is a mapping with sections {SECTIONS}")
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{path}: unknown config sections {unknown}; expected {SECTIONS}")
    return config


def tracking_cuts(targets: dict | None) -> TrackingCuts:
    """:class:`TrackingCuts` from a ``targets`` mapping (fields of TrackingCuts; others refused)."""
    targets = dict(targets or {})
    names = {f.name for f in fields(TrackingCuts)}
    unknown = sorted(set(targets) - names)
    if unknown:
        raise ValueError(f"unknown target-particle cuts {unknown}; expected some of {sorted(names)}")
    if "excluded_abs_pdg" in targets:
        targets["excluded_abs_pdg"] = tuple(int(v) for v in targets["excluded_abs_pdg"])
    return TrackingCuts(**targets)


def _events(source):
    """An event directory, or toy events for ``{toy: {count, n_particles, seed}}``."""
    if isinstance(source, dict) and "toy" in source:
        from module_map.synthetic import toy_events

        return toy_events(**source["toy"])
    if source is None:
        raise ValueError("the data section needs 'train' and 'val' (event directories or {toy: {...}})")
    return str(source)


def _load_initial_weights(model, path: str | Path) -> None:
    """Copy the weights of the acorn-layout checkpoint ``path`` into ``model`` (same architecture).

    A single ``MetricLearning`` checkpoint may also start a ``DoubleMetricLearning`` model: both heads then
    begin as the single embedding (:func:`gnn4itk.models.double_from_single`).
    """
    from gnn4itk.models import DoubleMetricLearning, MetricLearning, double_from_single, load_acorn_checkpoint, model_name_of

    if not Path(path).is_file():
        raise ValueError(f"init_from: no checkpoint file {path}")
    source = load_acorn_checkpoint(path)
    if isinstance(source, MetricLearning) and isinstance(model, DoubleMetricLearning):
        source = double_from_single(source)
    if type(source) is not type(model):
        raise ValueError(f"init_from: {path} holds a {model_name_of(source)}, the config builds a {model_name_of(model)}")
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as error:  # shape or key mismatch: a different configuration
        raise ValueError(f"init_from: {path} does not match the configured model: {error}") from error


def build_datamodule(stage: str, config: dict) -> EventDataModule:
    data = dict(config.get("data") or {})
    training = config.get("training") or {}
    model = config["model"]
    spec = SampleSpec(
        node_features=list(model["node_features"]),
        node_scales=model.get("node_scales"),
        cuts=tracking_cuts(data.get("targets")),
        graph_source=build_graph_source(config.get("graph_source")) if stage in ("filter", "gnn") else None,
        undirected_truth=bool(data.get("undirected_truth", False)),
        fake_weight=float(training.get("fake_weight", 1.0)),
        other_true_weight=float(training.get("other_true_weight", 0.0)),
    )
    return EventDataModule(
        _events(data.get("train")),
        _events(data.get("val")),
        spec,
        train_events=data.get("train_events"),
        val_events=data.get("val_events"),
        num_workers=int(data.get("num_workers", 0)),
    )


def run_training(
    stage: str,
    config: dict,
    output_dir: str | Path | None = None,
    max_epochs: int | None = None,
    accelerator: str | None = None,
    init_from: str | Path | None = None,
    max_minutes: float | None = None,
) -> dict:
    """Train ``stage`` as ``config`` says; command-line values override ``training`` settings.

    ``init_from`` (or ``training.init_from``) starts from the weights of an acorn-layout checkpoint of the
    same architecture (fine-tuning, or continuing on new data with a fresh optimiser); its keys must match
    exactly. ``max_minutes`` (or ``training.max_minutes``) stops training at that wall time (Lightning
    checks after every step); the bare model file is still written.

    Returns:
        dict with ``checkpoint`` (bare model file), ``best_checkpoint``, ``last_checkpoint``,
        ``log_dir`` and ``metrics`` (the last logged values).
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from gnn4itk.models import save_acorn_checkpoint

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGES)}")
    if config.get("stage") not in (None, stage):
        raise ValueError(f"the config is for stage {config['stage']!r}, not {stage!r}")
    if "model" not in config:
        raise ValueError("the config has no 'model' section")
    module_class, default_model = STAGES[stage]
    model_hparams = {"model": default_model, **config["model"]}
    training = dict(config.get("training") or {})
    if training.get("loss_balance", DEFAULT_LOSS_BALANCE) not in LOSS_BALANCES:
        raise ValueError(f"training.loss_balance {training['loss_balance']!r}: expected one of {', '.join(LOSS_BALANCES)}")
    output_dir = Path(output_dir or training.get("output_dir") or f"work/train/{stage}")
    L.seed_everything(int(training.get("seed", 0)), workers=True, verbose=False)

    datamodule = build_datamodule(stage, config)
    module = module_class(model_hparams, training)
    init_from = init_from or training.get("init_from")
    if init_from:
        _load_initial_weights(module.model, init_from)
    max_minutes = max_minutes if max_minutes is not None else training.get("max_minutes")
    logger_kind = training.get("logger", "csv")
    if logger_kind == "csv":
        logger = CSVLogger(str(output_dir), name="logs")
    elif logger_kind == "tensorboard":
        logger = TensorBoardLogger(str(output_dir), name="logs")
    else:
        raise ValueError(f"unknown logger {logger_kind!r}; choose 'csv' or 'tensorboard'")
    checkpoints = ModelCheckpoint(dirpath=str(output_dir / "checkpoints"), filename="best", monitor="val_loss", mode="min")
    # A second, unmonitored callback keeps the newest epoch (Lightning's save_last is only refreshed
    # together with a new best checkpoint).
    latest = ModelCheckpoint(dirpath=str(output_dir / "checkpoints"), filename="last", monitor=None, save_top_k=1)
    trainer = L.Trainer(
        max_epochs=int(max_epochs if max_epochs is not None else training.get("max_epochs", 10)),
        accelerator=accelerator or training.get("accelerator", "auto"),
        devices=training.get("devices", 1),
        precision=training.get("precision", "32-true"),
        gradient_clip_val=training.get("gradient_clip_val"),
        logger=logger,
        callbacks=[checkpoints, latest],
        log_every_n_steps=1,
        enable_progress_bar=bool(training.get("progress_bar", True)),
        enable_model_summary=False,
        deterministic=bool(training.get("deterministic", False)),
        max_time=timedelta(minutes=float(max_minutes)) if max_minutes else None,
    )
    trainer.fit(module, datamodule=datamodule)
    bare = save_acorn_checkpoint(module.model, output_dir / f"{stage}.ckpt")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "checkpoint": str(bare),
        "best_checkpoint": checkpoints.best_model_path,
        "last_checkpoint": latest.best_model_path,
        "log_dir": logger.log_dir,
        "metrics": metrics,
    }
