"""acorn-layout checkpoints: ``{"hyper_parameters": dict, "state_dict": {acorn key: tensor}}``.

acorn (Lightning) checkpoints keep the model's layers at the top of the LightningModule, so their
state-dict keys (``node_encoder.0.weight``, ``net.0.weight``, ``network.0.weight`` ...) are exactly the
keys of the models here. :func:`load_acorn_checkpoint` reads one with ``torch.load(weights_only=True)``;
:func:`save_acorn_checkpoint` writes one that acorn-style code reads back.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from gnn4itk.models.interaction_gnn import ChainedInteractionGNN2, InteractionGNN2, RecurrentInteractionGNN2
from gnn4itk.models.mlp import plain_hparams
from gnn4itk.models.registry import MODELS, model_class, model_name_of, register_model

# The interaction GNNs' registration lines (their file keeps its numerics untouched); Filter, MetricLearning
# and DoubleMetricLearning register themselves with @register_model in their own files.
for _gnn in (InteractionGNN2, ChainedInteractionGNN2, RecurrentInteractionGNN2):
    register_model(_gnn)


def model_name(hparams: dict, state_dict: dict | None = None) -> str:
    """The class name for ``hparams``: ``hparams["model"]``, else guessed from the state-dict keys.

    An acorn ``InteractionGNN2`` becomes ``ChainedInteractionGNN2`` when both networks are per-iteration
    and ``RecurrentInteractionGNN2`` when both are shared (the names the GNN4ITk service uses).
    """
    name = hparams.get("model")
    if name is None and state_dict is not None:
        keys = set(state_dict)
        if any(k.startswith("src_decoder.") for k in keys):
            name = "DoubleMetricLearning"
        elif any(k.startswith("network.") for k in keys):
            name = "MetricLearning"
        elif any(k.startswith("net.") for k in keys):
            name = "Filter"
        elif any(k.startswith("node_encoder.") for k in keys):
            name = "InteractionGNN2"
    if name is None:
        raise ValueError(f"unsupported model None: gnn4itk builds {MODELS.names()}")
    if name == "InteractionGNN2":
        node_rec = bool(hparams.get("node_net_recurrent", True))
        edge_rec = bool(hparams.get("edge_net_recurrent", True))
        if not node_rec and not edge_rec:
            name = "ChainedInteractionGNN2"
        elif node_rec and edge_rec:
            name = "RecurrentInteractionGNN2"
    return name


def build_model(hparams: dict, state_dict: dict | None = None) -> nn.Module:
    """Instantiate the model ``hparams`` describes (see :func:`model_name`; classes from
    :mod:`gnn4itk.models.registry`)."""
    return model_class(model_name(hparams, state_dict))(plain_hparams(hparams))


# Lightning stores ``hyper_parameters`` as an AttributeDict (a dict subclass). weights_only unpickling
# cannot fill dict subclasses, so each is read as a plain dict instead: nothing of Lightning is imported
# or run, and the classes need not even be installed.
_ATTRIBUTE_DICTS = (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)


def _safe_globals() -> list:
    """What weights_only loading may accept beyond tensors and containers: AttributeDicts as dicts,
    and the pathlib classes that Lightning callbacks may store."""
    import pathlib

    return [(dict, name) for name in _ATTRIBUTE_DICTS] + [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with Lightning's harmless container classes allowed.

    Raises:
        ValueError: when the file holds another object type (named in the message): such files are
            refused rather than unpickled with arbitrary code.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file {path}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ValueError(
            f"{path} holds objects that weights_only loading refuses ({first_line}); re-save it with plain "
            "hyper_parameters, or allow the class with torch.serialization.add_safe_globals if you trust it"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning/acorn checkpoint: it needs 'hyper_parameters' and 'state_dict'")
    return checkpoint


def load_acorn_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", strict: bool = True) -> nn.Module:
    """Build the model stored in an acorn/Lightning checkpoint and load its weights.

    Args:
        path: ``.ckpt`` file with ``hyper_parameters`` and ``state_dict`` (acorn key names).
        map_location: device of the returned model.
        strict: refuse missing or unexpected state-dict keys (the default).

    Returns:
        the model (``MetricLearning``, ``DoubleMetricLearning``, ``Filter``, ``ChainedInteractionGNN2``,
        ``RecurrentInteractionGNN2`` or ``InteractionGNN2``) in eval mode.
    """
    # read on the CPU, where the model is built, and moved once at the end (no device round trip)
    checkpoint = read_checkpoint(path, "cpu")
    hparams = plain_hparams(checkpoint["hyper_parameters"])
    state_dict = checkpoint["state_dict"]
    model = build_model(hparams, state_dict)
    result = model.load_state_dict(state_dict, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise ValueError(
            f"{path} does not match {type(model).__name__}: missing keys {result.missing_keys}, "
            f"unexpected keys {result.unexpected_keys}"
        )
    return model.to(map_location).eval()


def save_acorn_checkpoint(model: nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model`` as an acorn-layout checkpoint readable with ``weights_only=True``.

    ``hyper_parameters`` is the model's plain hparams dict plus ``"model"`` (its registered name);
    ``state_dict`` is ``model.state_dict()``. ``extra`` entries are added at the top level.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hparams = {**plain_hparams(model.hparams), "model": model_name_of(model)}
    checkpoint = {"hyper_parameters": hparams, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    checkpoint.update(extra or {})
    torch.save(checkpoint, path)
    return path
