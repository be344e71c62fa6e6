"""The Triton client script ``client/gnn4itk_client.py`` as a module, for benches, scripts and tests.

The client is a standalone script (numpy + tritonclient only, no torch, not part of the installed package)
that users copy next to Athena, so it is loaded by path from this source checkout, in one place.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CLIENT_PATH = Path(__file__).resolve().parents[1] / "client" / "gnn4itk_client.py"
"""``client/gnn4itk_client.py`` of the checkout this package runs from."""
MODULE_NAME = "gnn4itk_client"


def load_client() -> ModuleType:
    """The module of :data:`CLIENT_PATH`, loaded once per process.

    It is registered as ``sys.modules["gnn4itk_client"]`` before it runs (its dataclasses and pickled
    objects find their module by name); later calls return that module. ``sys.path`` is left alone: the
    client's throughput processes run the file by its path.

    Raises:
        FileNotFoundError: the package is installed without its source checkout (no ``client/`` beside it).
    """
    loaded = sys.modules.get(MODULE_NAME)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == CLIENT_PATH:
        return loaded
    if not CLIENT_PATH.is_file():
        raise FileNotFoundError(f"the Triton client is loaded from a source checkout: {CLIENT_PATH} not found")
    spec = importlib.util.spec_from_file_location(MODULE_NAME, CLIENT_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[MODULE_NAME]
        raise
    return module
