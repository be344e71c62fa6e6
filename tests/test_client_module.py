"""gnn4itk.client_module.load_client: the one loader of client/gnn4itk_client.py."""

import sys

import pytest

from gnn4itk import client_module


def test_load_client_registers_one_module(monkeypatch):
    monkeypatch.delitem(sys.modules, client_module.MODULE_NAME, raising=False)
    path_before = list(sys.path)
    client = client_module.load_client()
    assert sys.modules[client_module.MODULE_NAME] is client
    assert client_module.load_client() is client  # loaded once
    assert hasattr(client, "Connection") and hasattr(client, "throughput")
    assert sys.path == path_before


def test_load_client_without_a_checkout_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, client_module.MODULE_NAME, raising=False)
    monkeypatch.setattr(client_module, "CLIENT_PATH", tmp_path / "client" / "gnn4itk_client.py")
    with pytest.raises(FileNotFoundError, match="source checkout"):
        client_module.load_client()
    assert client_module.MODULE_NAME not in sys.modules
