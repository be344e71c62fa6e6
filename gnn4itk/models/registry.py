"""Model classes by the name a checkpoint stores (``hyper_parameters["model"]``).

A model class registers itself in its own file with one decorator::

    @register_model
    class MyEdgeClassifier(nn.Module):
        def __init__(self, hparams: dict): ...

and :func:`gnn4itk.models.load_acorn_checkpoint` then builds it for a checkpoint whose ``model`` is
``"MyEdgeClassifier"``; :func:`model_name_of` is the name a saved checkpoint records. Modules of the
``gnn4itk.models`` package are imported when a name is first not found, so a new file there needs no
other line.
"""

from __future__ import annotations

from torch import nn

from gnn4itk.registry import Registry

MODELS = Registry("model", "gnn4itk.models")
"""Model name -> class; every class is built as ``cls(hparams)``."""


def register_model(cls: type[nn.Module] | None = None, *, name: str | None = None):
    """Register a model class under ``name`` (default: the class name); usable as ``@register_model``
    or ``@register_model(name="...")``."""

    def decorate(target: type[nn.Module]) -> type[nn.Module]:
        MODELS.add(name or target.__name__, target)
        return target

    return decorate if cls is None else decorate(cls)


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``.

    Raises:
        ValueError: naming the registered models.
    """
    try:
        return MODELS.get(name)
    except ValueError:
        raise ValueError(f"unsupported model {name!r}: gnn4itk builds {MODELS.names()}") from None


def model_name_of(model: nn.Module) -> str:
    """The registered name of ``model``'s class (what a checkpoint records).

    Raises:
        ValueError: for a class that is not registered.
    """
    for key, cls in MODELS.items():
        if type(model) is cls:
            return key
    raise ValueError(f"{type(model).__qualname__} is not a registered model class (gnn4itk.models.register_model)")
