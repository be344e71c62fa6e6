"""Ports a served tritonserver gets when some are left to the OS: all different, never a given one."""

from pathlib import Path

import pytest

import gnn4itk.serve
from gnn4itk.serve import Installation, ServerError, TritonServer, free_ports

FAKE_INSTALLATION = Installation(Path("/nonexistent/tritonserver"), None, {}, "test", pytorch_backend=False)


class RepeatingSockets:
    """Stands in for ``socket.socket``: hands out ports from a fixed list, repeats included, as an OS may
    when each socket is closed before the next is bound."""

    def __init__(self, ports):
        self.ports = iter(ports)

    def __call__(self, *args):
        owner = self

        class Sock:
            def bind(self, address):
                self.port = next(owner.ports)

            def getsockname(self):
                return ("127.0.0.1", self.port)

            def close(self):
                pass

        return Sock()


def test_free_ports_are_different_and_skip_the_excluded(monkeypatch):
    monkeypatch.setattr(gnn4itk.serve.socket, "socket", RepeatingSockets([5000, 5000, 8001, 5001, 5000, 5002]))
    assert free_ports(3, exclude={8001}) == [5000, 5001, 5002]


def test_free_ports_are_really_free_and_different():
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(1024 <= p < 65536 for p in ports)


def test_server_ports_left_to_the_os_differ_from_each_other_and_from_given_ones(monkeypatch, tmp_path):
    # the OS offers the given gRPC port and one port twice: the server still gets three different ports
    monkeypatch.setattr(gnn4itk.serve.socket, "socket", RepeatingSockets([8001, 6000, 6000, 6001]))
    server = TritonServer(tmp_path, 0, 8001, 0, device="cpu", installation=FAKE_INSTALLATION)
    assert server.ports == {"http": 6000, "grpc": 8001, "metrics": 6001}


def test_equal_given_ports_are_refused(tmp_path):
    with pytest.raises(ServerError, match="ports must differ"):
        TritonServer(tmp_path, 8000, 8000, 0, device="cpu", installation=FAKE_INSTALLATION)
