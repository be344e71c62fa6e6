"""Start and stop a Triton Inference Server for a gnn4itk model repository.

The ``tritonserver`` binary comes from an unpacked tree named by ``$GNN4ITK_TRITONSERVER``, from ``PATH``
(the NGC container, which has the libtorch and python backends in ``/opt/tritonserver/backends``) or,
failing both, from the ``nvidia-pytriton`` wheel, which
bundles tritonserver 2.51 with the python backend only. The wheel's backends folder lacks the python
backend stub, which depends on the Python version; it is assembled once in a cache folder
(``$XDG_CACHE_HOME/gnn4itk/tritonserver-<version>-py<X.Y>``).

A tree without Triton's PyTorch backend (the wheel's) gets the one ``make pytorch-backend`` builds
(``scripts/build_pytorch_backend.sh``: ``build/triton-pytorch-backend/``, or ``$GNN4ITK_PYTORCH_BACKEND``):
the assembled backends folder holds ``pytorch/`` with links to ``libtriton_pytorch.so`` and to the tree's
``libtritonserver.so``, and the server's ``LD_LIBRARY_PATH`` gets the ``torch/lib`` it was built against.

:class:`TritonServer` is a context manager: it starts the server in its own process group, waits for
``/v2/health/ready``, and on exit (or when this process dies: ``PR_SET_PDEATHSIG``) stops the whole
group, python-backend stubs included.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
TRITONSERVER_ENV = "GNN4ITK_TRITONSERVER"  # root of an unpacked tritonserver tree
PYTORCH_BACKEND_ENV = "GNN4ITK_PYTORCH_BACKEND"  # folder holding a built libtriton_pytorch.so
BUILT_PYTORCH_BACKEND = Path(__file__).resolve().parents[1] / "build" / "triton-pytorch-backend"
PYTORCH_BACKEND_LIB = "libtriton_pytorch.so"
BUILD_PYTORCH_BACKEND_HINT = (
    "build it with `make pytorch-backend` (scripts/build_pytorch_backend.sh), point $GNN4ITK_PYTORCH_BACKEND at a "
    "folder holding libtriton_pytorch.so, or serve with the NGC tritonserver container"
)
SERVER_PYTHONPATH_ENV = "GNN4ITK_TRITONSERVER_PYTHONPATH"  # first on the server's (and stubs') PYTHONPATH
PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """tritonserver could not be found, started, or did not become ready."""


@dataclass(frozen=True)
class Installation:
    """Where tritonserver lives and what it needs to run.

    Attributes:
        binary: the ``tritonserver`` executable.
        backend_dir: folder of backends to pass as ``--backend-directory``, or None for the built-in default.
        env: extra environment (LD_LIBRARY_PATH, PATH) for the server process.
        source: ``"PATH"``, ``"nvidia-pytriton <version>"`` or ``"GNN4ITK_TRITONSERVER=<root>"``.
        pytorch_backend: True when the backends include Triton's PyTorch backend (``pytorch_libtorch``
            models load), False when they do not, None when unknown (a server found on ``PATH``).
    """

    binary: Path
    backend_dir: Path | None
    env: dict[str, str]
    source: str
    pytorch_backend: bool | None = None


def find_tritonserver(cache_dir: str | Path | None = None, root: str | Path | None = None) -> Installation:
    """Locate tritonserver: an unpacked tree, then ``PATH``, then the ``nvidia-pytriton`` wheel.

    Args:
        cache_dir: where backends with the python stub are assembled (default ``$XDG_CACHE_HOME`` or ``~/.cache``).
        root: root of an unpacked tritonserver tree (``bin/tritonserver``, ``backends/``); default
            ``$GNN4ITK_TRITONSERVER``. Both the NGC layout (``/opt/tritonserver``) and the wheel's
            ``pytriton/tritonserver`` folder (unpacked anywhere, with ``nvidia_pytriton.libs`` two levels up)
            work.

    ``$GNN4ITK_TRITONSERVER_PYTHONPATH``, when set, goes first on the server's ``PYTHONPATH`` and so on the
    python-backend stubs' ``sys.path``: tritonserver 2.51's stub (pybind11 2.10) breaks on numpy 2, and a
    host whose Python has numpy 2 can point it at a folder with numpy<2 while its own processes keep numpy 2.

    Raises:
        ServerError: when none is found, the tree lacks the server, or there is no stub for this Python.
    """
    root = root or os.environ.get(TRITONSERVER_ENV)
    if root:
        root = Path(root).resolve()
        key = hashlib.sha1(str(root).encode()).hexdigest()[:12]
        found = tritonserver_tree(root, cache_dir, source=f"{TRITONSERVER_ENV}={root}", cache_key=f"tree-{key}")
    elif on_path := shutil.which("tritonserver"):
        found = Installation(Path(on_path), None, {}, "PATH")
    else:
        try:
            import pytriton
        except ModuleNotFoundError:
            raise ServerError(
                "tritonserver is not on PATH, $GNN4ITK_TRITONSERVER is not set and the nvidia-pytriton wheel is not "
                "installed: pip install 'gnn4itk[serve]' or use the NGC tritonserver container"
            ) from None
        version = metadata.version("nvidia-pytriton")
        wheel_root = Path(pytriton.__file__).parent / "tritonserver"
        found = tritonserver_tree(wheel_root, cache_dir, source=f"nvidia-pytriton {version}", cache_key=version)
    return _with_server_pythonpath(found)


def tritonserver_tree(root: Path, cache_dir: str | Path | None, source: str, cache_key: str) -> Installation:
    """The installation of an unpacked tritonserver folder (``bin/tritonserver``, ``backends/``).

    The python backend needs ``backends/python/triton_python_backend_stub``; a tree without it (the wheel's)
    must hold ``python_backend_stubs/<X.Y>/`` for the running Python. A tree without ``backends/pytorch``
    gets the built PyTorch backend (:func:`find_pytorch_backend`) when there is one. Either way its backends
    are then assembled once under ``cache_dir/gnn4itk/tritonserver-<cache_key>-py<X.Y>``.
    """
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServerError(f"{source}: no tritonserver executable at {binary}")
    backends = root / "backends"
    if not backends.is_dir():
        raise ServerError(f"{source}: no backends folder at {backends}")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    # The wheel's libraries sit two levels above its tritonserver folder; the NGC layout has lib/.
    libs = [root.parent.parent / "nvidia_pytriton.libs", root / "lib", Path(sysconfig.get_config_var("LIBDIR") or "")]
    stub = None
    python_backend = backends / "python"
    if python_backend.is_dir() and not (python_backend / "triton_python_backend_stub").is_file():
        stub = root / "python_backend_stubs" / python / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"{source}: no python backend stub for Python {python} (neither "
                              f"{python_backend / 'triton_python_backend_stub'} nor {stub})")
    pytorch, torch_lib = None, []
    if not (backends / "pytorch").is_dir() and (built := find_pytorch_backend()) is not None:
        # Without a libtritonserver to link beside it the backend cannot load; libtorch models then say so.
        if (server_lib := _server_library(libs)) is not None:
            pytorch, torch_lib = (built, server_lib), [_built_against_torch_lib(built)]
    if stub is not None or pytorch is not None:
        cache = Path(cache_dir or os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gnn4itk"
        backends = _assemble_backends(backends, stub, cache / f"tritonserver-{cache_key}-py{python}", pytorch)
    env = {
        # The stub embeds libpython: take the running interpreter's, and its PATH so that it finds this venv.
        "LD_LIBRARY_PATH": _join_paths([str(p) for p in libs if p.is_dir()] + torch_lib, os.environ.get("LD_LIBRARY_PATH")),
        "PATH": _join_paths([str(Path(sys.executable).parent)], os.environ.get("PATH")),
    }
    has_pytorch = (backends / "pytorch" / PYTORCH_BACKEND_LIB).exists()
    return Installation(binary, backends, env, source, pytorch_backend=has_pytorch)


def find_pytorch_backend() -> Path | None:
    """The folder of a built ``libtriton_pytorch.so``: ``$GNN4ITK_PYTORCH_BACKEND``, else this checkout's build.

    Raises:
        ServerError: when ``$GNN4ITK_PYTORCH_BACKEND`` is set but holds no backend library.
    """
    named = os.environ.get(PYTORCH_BACKEND_ENV)
    if named:
        folder = Path(named).resolve()
        if not (folder / PYTORCH_BACKEND_LIB).is_file():
            raise ServerError(f"{PYTORCH_BACKEND_ENV}={named}: no {PYTORCH_BACKEND_LIB} there")
        return folder
    return BUILT_PYTORCH_BACKEND if (BUILT_PYTORCH_BACKEND / PYTORCH_BACKEND_LIB).is_file() else None


def _built_against_torch_lib(folder: Path) -> str:
    """The ``torch/lib`` the backend in ``folder`` was linked with (its ``TORCH_LIB`` file), else this torch's.

    The server process loads that libtorch; it must be the one the backend was compiled against.
    """
    recorded = folder / "TORCH_LIB"
    if recorded.is_file():
        path = Path(recorded.read_text().strip())
        if not (path / "libtorch.so").is_file():
            raise ServerError(f"the PyTorch backend in {folder} was built against {path}, which no longer holds "
                              f"libtorch.so: rebuild it ({BUILD_PYTORCH_BACKEND_HINT})")
        return str(path)
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise ServerError(f"the PyTorch backend in {folder} needs libtorch, and torch is not installed")
    return str(Path(spec.origin).parent / "lib")


def _server_library(libs: list[Path]) -> Path | None:
    """``libtritonserver.so`` of the tree (the wheel names it ``libtritonserver-<hash>.so``)."""
    for folder in libs[:2]:
        found = sorted(folder.glob("libtritonserver*.so")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def _with_server_pythonpath(found: Installation) -> Installation:
    extra = os.environ.get(SERVER_PYTHONPATH_ENV)
    if not extra:
        return found
    env = {**found.env, "PYTHONPATH": _join_paths([extra], os.environ.get("PYTHONPATH"))}
    return dataclasses.replace(found, env=env, source=f"{found.source}, {SERVER_PYTHONPATH_ENV}={extra}")


def _join_paths(first: list[str], rest: str | None) -> str:
    return ":".join(first + ([rest] if rest else []))


def _assemble_backends(source: Path, stub: Path | None, target: Path, pytorch: tuple[Path, Path] | None = None) -> Path:
    """Copy the tree's backends into ``target/backends`` once (atomically: tests run in parallel).

    ``stub`` goes into ``python/``; ``pytorch`` = (folder of the built ``libtriton_pytorch.so``, the tree's
    ``libtritonserver`` library) becomes ``pytorch/`` with links to both, renewed on every call, since the
    build can move or be rebuilt while the copied backends stay.
    """
    backends = target / "backends"
    if not (backends / "python").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="backends-", dir=target))
        shutil.copytree(source, staging / "backends", ignore=shutil.ignore_patterns("__pycache__"))
        if stub is not None:
            shutil.copy2(stub, staging / "backends" / "python" / "triton_python_backend_stub")
        try:
            os.rename(staging / "backends", backends)
        except OSError:
            if not (backends / "python").is_dir():
                raise
        shutil.rmtree(staging, ignore_errors=True)
    if pytorch is not None:
        folder, server_lib = pytorch
        (backends / "pytorch").mkdir(exist_ok=True)
        # libtriton_pytorch.so finds libtritonserver.so beside itself (its RUNPATH is $ORIGIN).
        for name, points_to in ((PYTORCH_BACKEND_LIB, folder / PYTORCH_BACKEND_LIB), ("libtritonserver.so", server_lib)):
            _replace_link(backends / "pytorch" / name, points_to)
    return backends


def _replace_link(link: Path, points_to: Path) -> None:
    if link.is_symlink() and os.readlink(link) == str(points_to):
        return
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(points_to)
    os.replace(temporary, link)  # atomic: a server starting in parallel sees the old link or the new one


def _model_configs(repository: Path, name: str = "config.pbtxt") -> list:
    """The repository's model configs named ``name`` (``config.pbtxt``, ``configs/gpu.pbtxt``), parsed as
    Triton's ``ModelConfig`` (:func:`export.repository.parse_config`)."""
    from export.repository import parse_config

    return [parse_config(path.read_text(), str(path)) for path in sorted(Path(repository).glob(f"*/{name}"))]


def libtorch_models(repository: Path) -> list[str]:
    """Names of the models in ``repository`` that Triton's PyTorch backend runs (``pytorch_libtorch``)."""
    return [c.name for c in _model_configs(repository) if c.platform == "pytorch_libtorch" or c.backend == "pytorch"]


MIN_CUDA_POOL_BYTES = 256 << 20
MAX_CUDA_POOL_BYTES = 4 << 30
CUDA_POOL_EVENTS_PER_INSTANCE = 8
"""Events' worth of FEATURES-sized tensors each GPU instance may hold in Triton's CUDA pool at once."""


def cuda_pool_sizes(repository: Path, device: str | None, gpu_count: int | None = None) -> dict[int, int]:
    """Triton CUDA memory pool per GPU (``--cuda-memory-pool-byte-size``) for a repository: {gpu: bytes}.

    Ensemble steps hand tensors to each other through this pool; Triton's 64 MB default holds about five
    FEATURES tensors of a mu=200 event, and when it runs dry Triton falls back to pinned host memory (slower
    for the libtorch flavour; for the python backend's GPU path it meant wrong answers, see
    ``export/python_backend/model.py``). The pool is sized from the largest event the models accept:
    ``CUDA_POOL_EVENTS_PER_INSTANCE`` x ``max_spacepoints`` x F x 4 bytes per GPU instance of the largest
    instance count, kept within [256 MiB, 4 GiB]. When every GPU instance group lists its GPUs, only those
    get a pool. Empty for CPU serving or without GPUs.
    """
    configs = _model_configs(repository, f"configs/{device}.pbtxt" if device else "config.pbtxt")
    gpu_groups = [g for c in configs for g in c.instance_group if g.kind == g.KIND_GPU]
    if device == "cpu" or not gpu_groups:
        return {}
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    features_bytes = 0
    for config in configs:
        params = {k: v.string_value for k, v in config.parameters.items()}
        if "max_spacepoints" in params and "num_features" in params:
            features_bytes = max(features_bytes, int(params["max_spacepoints"]) * int(params["num_features"]) * 4)
    instances = max([1] + [g.count for g in gpu_groups])
    size = CUDA_POOL_EVENTS_PER_INSTANCE * features_bytes * instances
    size = min(MAX_CUDA_POOL_BYTES, max(MIN_CUDA_POOL_BYTES, size))
    # Instances only on listed GPUs (every group has a gpus list): no pool on the GPUs nothing runs on.
    if all(g.gpus for g in gpu_groups):
        return {gpu: size for gpu in sorted({i for g in gpu_groups for i in g.gpus}) if gpu < gpu_count}
    return {gpu: size for gpu in range(gpu_count)}


def write_instance_repository(
    repository: str | Path,
    target: str | Path,
    config_name: str | None = None,
    gpus: list[int] | None = None,
    count: int | None = None,
) -> list[str]:
    """A copy of ``repository`` in ``target`` whose GPU models have other instance groups.

    Every model folder of ``target`` holds links to the original's entries (version folders with the
    TorchScript files and ``model.py``, warm-up data) and its own ``config.pbtxt``: the model's
    ``configs/<config_name>.pbtxt`` where there is one (what ``--model-config-name`` would load), else its
    ``config.pbtxt``. In that config every ``KIND_GPU`` instance group gets ``count`` instances (None: kept)
    on each GPU of ``gpus`` (None: the list is kept; empty: no list, i.e. every GPU of the server). Ensembles
    (no instance groups) and CPU models keep their config text. The repository itself is never written to:
    it may be read-only (CVMFS) or shared.

    Args:
        repository: the model repository (``python -m export`` output).
        target: an empty or absent folder.
        config_name: ``"cpu"`` or ``"gpu"`` (``gnn4itk serve --device``), or None for ``config.pbtxt``.

    Returns:
        The names of the models whose instance groups changed (empty when no model has GPU instances).
    """
    from google.protobuf import text_format

    from export.repository import parse_config

    repository, target = Path(repository).resolve(), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    changed = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        chosen = model_dir / "configs" / f"{config_name}.pbtxt" if config_name else None
        source = chosen if chosen is not None and chosen.is_file() else model_dir / "config.pbtxt"
        text = source.read_text()
        config = parse_config(text, str(source))
        groups = [g for g in config.instance_group if g.kind == g.KIND_GPU]
        for group in groups:
            if count is not None:
                group.count = count
            if gpus is not None:
                del group.gpus[:]
                group.gpus.extend(gpus)
        if groups and (count is not None or gpus is not None):
            text = text_format.MessageToString(config)
            changed.append(config.name)
        copy = target / model_dir.name
        copy.mkdir()
        for entry in model_dir.iterdir():
            if entry.name not in ("config.pbtxt", "configs"):
                (copy / entry.name).symlink_to(entry.resolve())
        (copy / "config.pbtxt").write_text(text)
    return changed


def _listening_socket_inodes() -> dict[int, set[str]] | None:
    """{port: socket inodes} of the TCP sockets listening on this host (/proc/net/tcp*), None without /proc."""
    found: dict[int, set[str]] = {}
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not any(t.exists() for t in tables):
        return None
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":  # state LISTEN
                port = int(fields[1].rsplit(":", 1)[1], 16)
                found.setdefault(port, set()).add(fields[9])
    return found


def free_ports(count: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """``count`` different TCP ports nothing listens on now, none of ``exclude`` (the OS picks them, so
    parallel test workers do not collide).

    The sockets stay bound until all are chosen: one at a time, the OS can hand the same free port out
    twice (it did: a server got one port for gRPC and metrics and refused to start, 2026-12-07).
    """
    sockets, ports = [], []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in exclude and port not in ports:
                ports.append(port)
            if len(sockets) > count + 64:
                raise OSError(f"no {count} free TCP ports found")
    finally:
        for sock in sockets:
            sock.close()
    return ports


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies, so no server outlives a killed parent."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the process group still lets stop() reach every process


def _server_gpus(gpus: list[int] | str | None, device_count: int | None = None) -> list[int] | None:
    """``TritonServer(gpus=...)`` as instance-group GPUs of this host: None keeps the repository's placement,
    ``[]`` means no list (``"all"`` on a host where torch sees no GPU: Triton then uses whatever it finds).

    Raises:
        ServerError: for indices that are not GPUs of this host, or words that are not ``all`` or indices.
    """
    from export.repository import RepositoryError, resolve_gpus

    if gpus is None:
        return None
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count()
    try:
        resolved = resolve_gpus(gpus, device_count) or []
    except RepositoryError as error:
        raise ServerError(str(error)) from None
    if device_count and (missing := [g for g in resolved if g >= device_count]):
        raise ServerError(f"GPUs {missing} do not exist: this host has {device_count} (0 to {device_count - 1})")
    return resolved


class TritonServer:
    """A running tritonserver, as a context manager.

    Args:
        repository: model repository folder.
        http_port, grpc_port, metrics_port: ports; 0 picks a free one.
        device: ``"cpu"`` or ``"gpu"`` selects ``configs/<device>.pbtxt`` of each model (``--model-config-name``);
            None uses ``config.pbtxt``.
        tls_cert, tls_key: PEM server certificate and key: gRPC over TLS.
        tls_root: PEM root certificate of client certificates; with ``tls_mutual`` clients must present one.
        log_file: where the server's output goes (default: a temporary file, see :attr:`log_path`); ``"-"``
            leaves it on this process's stdout.
        log_verbose: tritonserver ``--log-verbose`` level.
        extra_args: more tritonserver options, e.g. ``["--backend-config=python,shm-default-byte-size=16777216"]``.
        ready_timeout: seconds to wait for ``/v2/health/ready``.
        gpus: GPUs for the GPU models' instances, overriding the repository's: ``"all"`` (every GPU of this
            host), indices (``[0, 1]`` or ``"0,1"``), or None to keep the repository's placement.
        instances_per_gpu: instances of each GPU model on each of its GPUs, overriding the repository's count;
            None keeps it. With either option the server runs on a copy of the repository
            (:func:`write_instance_repository`, removed by :meth:`stop`); the repository is not changed.

    Attributes:
        url_grpc, url_http: ``host:port`` strings for tritonclient; ``url_metrics`` the Prometheus endpoint.
    """

    def __init__(
        self,
        repository: str | Path,
        http_port: int = DEFAULT_PORTS["http"],
        grpc_port: int = DEFAULT_PORTS["grpc"],
        metrics_port: int = DEFAULT_PORTS["metrics"],
        device: str | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        tls_root: str | Path | None = None,
        tls_mutual: bool = False,
        log_file: str | Path | None = None,
        log_verbose: int = 0,
        extra_args: list[str] | None = None,
        ready_timeout: float = 180.0,
        installation: Installation | None = None,
        gpus: list[int] | str | None = None,
        instances_per_gpu: int | None = None,
    ):
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} is not a directory")
        if device not in (None, "cpu", "gpu"):
            raise ServerError(f"device must be 'cpu' or 'gpu', got {device!r}")
        if (tls_cert is None) != (tls_key is None):
            raise ServerError("TLS needs both a server certificate and its key")
        if tls_mutual and tls_root is None:
            raise ServerError("mutual TLS needs the root certificate of the client certificates")
        for path in (tls_cert, tls_key, tls_root):
            if path is not None and not Path(path).is_file():
                raise ServerError(f"TLS file {path} not found")
        self._requested_ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.ports = self._pick_ports()
        self.device = device
        self.tls = (tls_cert, tls_key, tls_root, tls_mutual) if tls_cert else None
        self.log_verbose = log_verbose
        self.extra_args = list(extra_args or [])
        self.ready_timeout = ready_timeout
        self.installation = installation or find_tritonserver()
        if self.installation.pytorch_backend is False and (needing := libtorch_models(self.repository)):
            raise ServerError(
                f"models {needing[:3]}{' ...' if len(needing) > 3 else ''} are pytorch_libtorch, and "
                f"{self.installation.source} has no PyTorch backend: {BUILD_PYTORCH_BACKEND_HINT}"
            )
        if instances_per_gpu is not None and instances_per_gpu < 1:
            raise ServerError(f"instances per GPU must be at least 1, got {instances_per_gpu}")
        self.instances = None if gpus is None and instances_per_gpu is None else (_server_gpus(gpus), instances_per_gpu)
        self._instance_dir: Path | None = None
        _ = self.model_repository  # the copy is written now: a repository without GPU models fails here, not at start
        self._own_log = log_file is None
        if log_file == "-":
            self.log_path = None
        elif log_file is None:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        else:
            self.log_path = Path(log_file)
        self.process: subprocess.Popen | None = None
        self._log_start = 0

    @property
    def model_repository(self) -> Path:
        """The repository tritonserver loads: :attr:`repository`, or its copy with the instance placement of
        ``gpus``/``instances_per_gpu`` (written on first use, again after :meth:`stop` removed it)."""
        if self.instances is None:
            return self.repository
        if self._instance_dir is None or not self._instance_dir.is_dir():
            self._instance_dir = Path(tempfile.mkdtemp(prefix="gnn4itk-instances-"))
            try:
                changed = write_instance_repository(self.repository, self._instance_dir, self.device, *self.instances)
            except BaseException:
                self._remove_instance_dir()
                raise
            if not changed:
                self._remove_instance_dir()
                where = f"configs/{self.device}.pbtxt" if self.device else "config.pbtxt"
                raise ServerError(f"no model of {self.repository} has GPU instances in {where}: --gpus and "
                                  "--instances-per-gpu place GPU instances (serve with --device gpu)")
        return self._instance_dir

    def _remove_instance_dir(self) -> None:
        if self._instance_dir is not None:
            shutil.rmtree(self._instance_dir, ignore_errors=True)
            self._instance_dir = None

    def _pick_ports(self) -> dict[str, int]:
        """The requested ports, with each 0 replaced by a free port: all different."""
        requested = self._requested_ports
        given = {port for port in requested.values() if port}
        if len(given) < sum(1 for port in requested.values() if port):
            raise ServerError(f"the HTTP, gRPC and metrics ports must differ: {requested}")
        free = iter(free_ports(sum(1 for port in requested.values() if not port), exclude=given))
        return {key: port or next(free) for key, port in requested.items()}

    # -- addresses -----------------------------------------------------------------------------
    @property
    def url_http(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def url_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def url_metrics(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def command(self) -> list[str]:
        """The tritonserver command line."""
        install = self.installation
        repository = self.model_repository
        # The instance copy holds the chosen config as config.pbtxt: no --model-config-name for it.
        config_name = self.device if self.instances is None else None
        cmd = [
            str(install.binary),
            f"--model-repository={repository}",
            f"--http-port={self.ports['http']}",
            f"--grpc-port={self.ports['grpc']}",
            f"--metrics-port={self.ports['metrics']}",
            # The configs we write are complete; the server must not guess at anything.
            "--disable-auto-complete-config",
            "--exit-on-error=true",
            "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}",
        ]
        if install.backend_dir is not None:
            cmd.append(f"--backend-directory={install.backend_dir}")
        if config_name is not None:
            cmd.append(f"--model-config-name={config_name}")
        if not any(a.startswith("--cuda-memory-pool-byte-size") for a in self.extra_args):
            cmd += [f"--cuda-memory-pool-byte-size={gpu}:{size}" for gpu, size in cuda_pool_sizes(repository, config_name).items()]
        if self.tls:
            cert, key, root, mutual = self.tls
            cmd += ["--grpc-use-ssl-mutual=true" if mutual else "--grpc-use-ssl=true"]
            cmd += [f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"]
            if root is not None:
                cmd.append(f"--grpc-root-cert={root}")
        return cmd + self.extra_args

    # -- life cycle ----------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> "TritonServer":
        """Start the server and wait until it is ready; raises :class:`ServerError` with the log's tail.

        Ports chosen here (given as 0) can be taken by someone else between choice and bind; then the
        start is retried on new ports, up to ``attempts`` times.
        """
        auto = 0 in self._requested_ports.values()
        for attempt in range(attempts):
            try:
                return self._start_once()
            except ServerError as error:
                port_taken = any(m in str(error).lower() for m in ("already in use", "cannot listen"))
                if not (auto and port_taken) or attempt == attempts - 1:
                    raise
                self.process = None
                self.ports = self._pick_ports()
        raise AssertionError("unreachable")

    def _start_once(self) -> "TritonServer":
        if self.process is not None:
            raise ServerError("server already started")
        env = {**os.environ, **self.installation.env}
        # A given log file is appended to; this run's part starts here.
        self._log_start = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0
        with open(self.log_path or os.devnull, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log if self.log_path else None,
                stderr=subprocess.STDOUT if self.log_path else None,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # own process group: stop() reaches the python backend stubs too
                preexec_fn=_die_with_parent,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://{self.url_http}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    # Another server may hold the port we picked (parallel tests: a port is free when chosen,
                    # and ours binds it only after loading its models): ready only when ours listens there.
                    if response.status == 200 and self._listens_on(self.ports["http"], self.ports["grpc"]):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise ServerError(f"tritonserver not ready after {self.ready_timeout:.0f} s:\n{self.log_tail()}")

    def _listens_on(self, *ports: int) -> bool:
        """Whether this server process holds the listening sockets of ``ports`` (Linux /proc; True elsewhere)."""
        listening = _listening_socket_inodes()
        if listening is None:
            return True
        try:
            fds = list(Path(f"/proc/{self.process.pid}/fd").iterdir())
        except OSError:
            return True  # cannot look: fall back to the HTTP answer alone
        owned = set()
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                owned.add(link[len("socket:["):-1])
        return all(listening.get(port, set()) & owned for port in ports)

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url_http}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def signal(self, signum: int) -> None:
        """Forward a signal to the server process (not the whole group: it stops its stubs itself)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self) -> int:
        return self.process.wait()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop gracefully (SIGTERM), then kill whatever is left of the process group; returns the exit code."""
        if self.process is None:
            self._remove_instance_dir()
            return None
        group = self.process.pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(group, signal.SIGKILL)  # stubs or a hung server: leave nothing behind
        except (ProcessLookupError, PermissionError):
            pass
        code = self.process.wait()
        self._remove_instance_dir()
        return code

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._own_log and exc[0] is None:
            self.log_path.unlink(missing_ok=True)

    # -- inspection ----------------------------------------------------------------------------
    def log_text(self) -> str:
        """This run's server log (empty when the log goes to the terminal)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The server's error lines (Triton's ``E...`` lines and ``error:``), or the last ``lines`` lines."""
        text = self.log_text().splitlines()
        errors = [line for line in text if re.match(r"E\d{4} ", line) or line.startswith("error:")]
        return "\n".join(errors[-lines:] if errors else text[-lines:])

    def processes(self) -> list[int]:
        """Process ids of the server and its descendants (python backend stubs)."""
        if self.process is None or self.process.poll() is not None:
            return []
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo += [int(c) for c in task.read_text().split()]
                except OSError:
                    pass
        return found

    def resident_memory(self) -> int:
        """Resident memory in bytes of the server and its stubs together (Linux /proc)."""
        total = 0
        for pid in self.processes():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total
