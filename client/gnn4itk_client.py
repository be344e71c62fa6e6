#!/usr/bin/env python3
"""Send spacepoints to a GNN4ITk Triton server the way Athena's GNNTrackFinderTritonTool does.

    python client/gnn4itk_client.py -u HOST:8001 -m ModuleMap -i features.npy
    python client/gnn4itk_client.py -u HOST:8001 -m MetricLearning -i event000000001-hits.parquet
    python client/gnn4itk_client.py -u HOST:8001 -i features.npy --concurrency 8 --requests 400 --expect labels.npy

FEATURES go as FP32 [N, F], row-major; LABELS (INT64, flat) come back and are split on -1 into tracks of
row indices. Only numpy and tritonclient are needed; torch (for ``.pt`` input) and gnn4itk (for event files
and ``gnn4itk evaluate``) are used only when installed.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue
import re
import runpy
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

FEATURES = "FEATURES"
LABELS = "LABELS"
_EVENT_NAME = re.compile(r"event\d+(-hits)?(\.parquet|\.csv(\.gz)?)?$")


class ClientError(Exception):
    """Bad input or an answer the client cannot use; printed as one line."""


# ------------------------------------------------------------------------------------------------
# Wire format


def split_labels(labels: np.ndarray) -> list[np.ndarray]:
    """Tracks from flat LABELS int64 [L]: each -1 ends a track; empty tracks are dropped (as Athena does)."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    tracks, start = [], 0
    for end in np.flatnonzero(labels == -1):
        if end > start:
            tracks.append(labels[start:end])
        start = end + 1
    if start < len(labels):
        tracks.append(labels[start:])
    return tracks


class Connection:
    """A gRPC (default) or HTTP tritonclient connection.

    Args:
        url: ``host:port``.
        http: use the HTTP/REST protocol instead of gRPC.
        ssl: TLS; ``root_certificates`` (CA), ``private_key`` and ``certificate_chain`` (client certificate)
            are PEM files.
    """

    def __init__(self, url, http=False, ssl=False, root_certificates=None, private_key=None, certificate_chain=None, timeout=600.0):
        self.url, self.http, self.timeout = url, http, timeout
        for path in (root_certificates, private_key, certificate_chain):
            if path is not None and not Path(path).is_file():
                raise ClientError(f"TLS file {path} not found")
        if http:
            import tritonclient.http as triton

            options = {k: v for k, v in (("ca_certs", root_certificates), ("keyfile", private_key), ("certfile", certificate_chain)) if v}
            self.client = triton.InferenceServerClient(url, ssl=ssl, ssl_options=options or None, network_timeout=timeout, connection_timeout=timeout)
        else:
            import tritonclient.grpc as triton

            self.client = triton.InferenceServerClient(
                url, ssl=ssl, root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain
            )
        self.triton = triton

    def model_parameters(self, model: str) -> dict[str, str]:
        """The model's config ``parameters`` (feature_columns, num_features, cuts ...) as strings."""
        config = self.client.get_model_config(model) if self.http else self.client.get_model_config(model, as_json=True)
        config = config.get("config", config)
        return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}

    def infer(self, model: str, features: np.ndarray) -> np.ndarray:
        """LABELS int64 [L] for FEATURES float32 [N, F] (sent row-major, as Athena does)."""
        return self.prepare(model, features)()

    def prepare(self, model: str, features: np.ndarray) -> PreparedRequest:
        """A request built once (FEATURES copied into its input once) and sent by calling it, as often as wanted."""
        return PreparedRequest(self, model, features)

    def close(self) -> None:
        self.client.close()


class PreparedRequest:
    """FEATURES for one model wrapped in tritonclient's input once; each call sends it and returns LABELS.

    One per thread: tritonclient's inputs and clients are not meant to be shared between threads.
    """

    def __init__(self, connection: Connection, model: str, features: np.ndarray):
        features = np.ascontiguousarray(features, dtype=np.float32)
        triton = connection.triton
        self.client, self.model = connection.client, model
        self.inputs = [triton.InferInput(FEATURES, list(features.shape), "FP32")]
        self.inputs[0].set_data_from_numpy(features)
        self.outputs = [triton.InferRequestedOutput(LABELS)]
        self.options = {} if connection.http else {"client_timeout": connection.timeout}

    def __call__(self) -> np.ndarray:
        result = self.client.infer(self.model, self.inputs, outputs=self.outputs, **self.options)
        labels = result.as_numpy(LABELS)
        if labels is None or labels.dtype != np.int64 or labels.ndim != 1:
            raise ClientError(f"model {self.model} answered no 1-D INT64 LABELS")
        return labels


class ConnectionSpec(NamedTuple):
    """The parameters of a :class:`Connection`, as plain data that client processes can connect with.

    Calling it (or :meth:`connect`) opens a new connection, so it can stand wherever a ``connect`` callable is
    expected. (A NamedTuple, not a dataclass: dataclasses fail in a module that importlib loads without a
    ``sys.modules`` entry, which is a way to load this file.)
    """

    url: str
    http: bool = False
    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    timeout: float = 600.0

    def connect(self) -> Connection:
        return Connection(self.url, self.http, self.ssl, self.root_certificates, self.private_key, self.certificate_chain, self.timeout)

    __call__ = connect


# ------------------------------------------------------------------------------------------------
# Input files


def load_input(path: Path, columns: list[str] | None) -> tuple[np.ndarray, Path | None]:
    """FEATURES float32 [N, F] from a file, and the event path when the file is an event (it has truth).

    ``.npy`` holds the array; ``.npz`` an array named ``features`` (or its only array); ``.csv`` a header row
    (columns are picked by the model's ``feature_columns`` when the header names them); ``.pt`` a torch
    tensor (needs torch); an event (``event...`` prefix, ``-hits.parquet``, TrackML ``-hits.csv.gz``) is read
    with gnn4itk's ``load_event``.
    """
    name = path.name
    if _EVENT_NAME.search(name) or name.endswith(".parquet"):
        return _load_event_features(path, columns), path
    if not path.is_file():
        raise ClientError(f"input file {path} not found")
    if name.endswith(".npy"):
        return _as_features(np.load(path, allow_pickle=False), path), None
    if name.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if FEATURES.lower() in keys:
                return _as_features(archive[FEATURES.lower()], path), None
            if len(keys) == 1:
                return _as_features(archive[keys[0]], path), None
        raise ClientError(f"{path}: no array named 'features' among {keys}")
    if name.endswith(".csv"):
        return _load_csv(path, columns), None
    if name.endswith(".pt"):
        try:
            import torch
        except ModuleNotFoundError:
            raise ClientError(f"{path}: .pt input needs torch, which is not installed") from None
        return _as_features(torch.load(path, map_location="cpu", weights_only=True).numpy(), path), None
    raise ClientError(f"{path}: input must be .npy, .npz, .csv, .pt or an event file")


def _as_features(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim != 2:
        raise ClientError(f"{path}: FEATURES must be a 2-D array [N, F], got shape {list(array.shape)}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _load_csv(path: Path, columns: list[str] | None) -> np.ndarray:
    with open(path) as handle:
        header = handle.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if columns and set(columns) <= set(header):
        table = table[:, [header.index(c) for c in columns]]
    elif columns and len(header) != len(columns):
        missing = [c for c in columns if c not in header]
        raise ClientError(f"{path}: lacks the model's feature columns {missing}")
    return np.ascontiguousarray(table, dtype=np.float32)


def _load_event_features(path: Path, columns: list[str] | None) -> np.ndarray:
    if not columns:
        raise ClientError("the model's config names no feature_columns: give FEATURES as .npy/.npz/.csv")
    try:
        from gnn4itk.event import select_features
    except ModuleNotFoundError:
        raise ClientError(f"{path}: reading events needs the gnn4itk package, which is not installed") from None
    try:
        event = _gnn4itk_load_event(path)
    except (FileNotFoundError, ValueError) as error:
        raise ClientError(f"{path}: {error}") from None
    try:
        return select_features(event.hits, columns)
    except KeyError as error:
        raise ClientError(f"{path}: {error.args[0]}") from None


def _gnn4itk_load_event(path: Path):
    try:
        from gnn4itk.io.load import load_event
    except ModuleNotFoundError:
        from gnn4itk.event import read_event as load_event
    return load_event(str(path))


# ------------------------------------------------------------------------------------------------
# Evaluation hand-off


def evaluate(event: Path, labels: np.ndarray, extra: list[str]) -> int | None:
    """Run ``gnn4itk evaluate --event EVENT --tracks LABELS.pt``; None when gnn4itk/torch are missing."""
    try:
        import torch

        import gnn4itk  # noqa: F401 -- only to know it is installed
    except ModuleNotFoundError:
        print("gnn4itk is not installed: skipping the evaluation against truth", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        tracks = Path(tmp) / "labels.pt"
        torch.save(torch.from_numpy(labels.copy()), tracks)  # the answer's buffer is read-only
        command = [sys.executable, "-m", "gnn4itk", "evaluate", "--event", str(event), "--tracks", str(tracks), *extra]
        return subprocess.call(command)


# ------------------------------------------------------------------------------------------------
# Throughput
#
# throughput() starts client processes (spawned: gRPC does not survive a fork), each running worker threads
# with their own connection and their own request built once. All of them take requests from one shared
# counter, so exactly `requests` are sent, and wait for one start signal, given when every worker has
# connected and sent its warm-up requests; the timed window runs from that signal to the last answer. Every
# answer is compared with the expected LABELS. What crosses between processes is plain data (dicts, tuples,
# numpy arrays, multiprocessing objects): a child runs this file by path (runpy), so it works however the
# parent loaded it (as a script, a module, or by importlib without a sys.modules entry or sys.path change).

_KEEP = 5
"""Distinct messages kept of each kind (failures, wrong answers, warm-up, workers), each with its count."""
_CHILD = "__gnn4itk_client_process__"
"""``__name__`` of this file when it runs as a client process of :func:`throughput`."""
SATURATED = 0.8
"""Client CPU fraction above which the client itself may be what limits the rate."""


def load_expected(path: Path) -> np.ndarray:
    """Expected LABELS int64 [L] from a ``.npy`` file (as ``-o`` writes them)."""
    if not path.is_file():
        raise ClientError(f"expected LABELS file {path} not found")
    if not path.name.endswith(".npy"):
        raise ClientError(f"{path}: expected LABELS must be a .npy file")
    return _as_labels(np.load(path, allow_pickle=False), path)


def _as_labels(array, source) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ClientError(f"{source}: expected LABELS must be a 1-D integer array, got {array.dtype} {list(array.shape)}")
    return array.astype(np.int64, copy=False)


def labels_summary(labels: np.ndarray) -> str:
    """``"L labels, T tracks"``."""
    return f"{len(labels)} labels, {len(split_labels(labels))} tracks"


def describe_difference(labels: np.ndarray, expected: np.ndarray) -> str:
    """How an answer differs from the expected LABELS: lengths, track counts, first differing index."""
    common = min(len(labels), len(expected))
    differing = np.flatnonzero(labels[:common] != expected[:common])
    first = int(differing[0]) if len(differing) else common
    return f"{labels_summary(labels)} (expected {labels_summary(expected)}), first difference at index {first}"


def _message(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class _Tally:
    """What some workers saw; merged over threads, then processes (sent between them as a dict)."""

    COUNTS = ("correct", "wrong", "failures", "warmup_wrong", "warmup_failures", "worker_errors")

    def __init__(self, **saved):
        for name in self.COUNTS:
            setattr(self, name, saved.get(name, 0))
        self.latencies = list(saved.get("latencies", []))  # seconds, of every answered request (correct or wrong)
        self.messages = saved.get("messages") or {kind: [] for kind in ("failures", "wrong", "warmup", "workers")}  # [{message, count}]
        self.end = saved.get("end")  # time.monotonic() of the last answer
        self.cpu_s = list(saved.get("cpu_s", []))  # CPU seconds of each client process in the timed window

    def as_dict(self) -> dict:
        return {**{name: getattr(self, name) for name in self.COUNTS}, "messages": self.messages, "end": self.end, "cpu_s": self.cpu_s,
                "latencies": np.asarray(self.latencies, dtype=np.float64)}

    def note(self, kind: str, message: str, count: int = 1) -> None:
        kept = self.messages[kind]
        for entry in kept:
            if entry["message"] == message:
                entry["count"] += count
                return
        if len(kept) < _KEEP:
            kept.append({"message": message, "count": count})

    def merge(self, other: _Tally) -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies.extend(other.latencies)
        self.cpu_s.extend(other.cpu_s)
        for kind, messages in other.messages.items():
            for entry in messages:
                self.note(kind, entry["message"], entry["count"])
        if other.end is not None:
            self.end = other.end if self.end is None else max(self.end, other.end)


class _Sync:
    """Shared by every worker of every client process: the request counter and the start signal."""

    def __init__(self, requests: int, taken, ready, go, abort):
        self.requests, self.taken, self.ready_count, self.go, self.abort = requests, taken, ready, go, abort

    @classmethod
    def create(cls, context, requests: int) -> _Sync:
        return cls(requests, context.Value("q", 0), context.Value("i", 0), context.Event(), context.Event())

    def parts(self) -> tuple:
        return self.requests, self.taken, self.ready_count, self.go, self.abort

    def take(self) -> bool:
        """Claim one of the requests; False when all are claimed or the run is aborted."""
        if self.abort.is_set():
            return False
        with self.taken.get_lock():
            if self.taken.value >= self.requests:
                return False
            self.taken.value += 1
            return True

    def ready(self) -> None:
        with self.ready_count.get_lock():
            self.ready_count.value += 1


def _send(request: PreparedRequest, expected: np.ndarray, tally: _Tally, timed: bool) -> None:
    start = time.perf_counter()
    try:
        labels = request()
    except Exception as error:  # noqa: BLE001 -- counted and reported, the run goes on
        if timed:
            tally.failures += 1
            tally.note("failures", _message(error))
        else:
            tally.warmup_failures += 1
            tally.note("warmup", f"failure: {_message(error)}")
        return
    if timed:
        tally.latencies.append(time.perf_counter() - start)
    if np.array_equal(labels, expected):
        if timed:
            tally.correct += 1
    elif timed:
        tally.wrong += 1
        tally.note("wrong", describe_difference(labels, expected))
    else:
        tally.warmup_wrong += 1
        tally.note("warmup", f"wrong: {describe_difference(labels, expected)}")


def _worker(connect, model: str, features: np.ndarray, expected: np.ndarray, warmup: int, sync: _Sync, tally: _Tally) -> None:
    """One client: connect, build the request, warm up, wait for the start, then send until none is left."""
    connection = request = None
    try:
        try:
            connection = connect()
            request = connection.prepare(model, features)
            for _ in range(warmup):
                _send(request, expected, tally, timed=False)
        except Exception as error:  # noqa: BLE001 -- this worker sends nothing; the others go on
            request = None
            tally.worker_errors += 1
            tally.note("workers", _message(error))
        finally:
            sync.ready()
        sync.go.wait()
        while request is not None and sync.take():
            _send(request, expected, tally, timed=True)
        tally.end = time.monotonic()
    finally:
        if connection is not None:
            connection.close()


def _client_process(index: int, connect, model: str, features: np.ndarray, expected: np.ndarray, threads: int, warmup: int, sync, results) -> None:
    """One client process: ``threads`` workers; puts its tally (a dict) with its CPU seconds in ``results``."""
    if isinstance(connect, dict):
        connect = ConnectionSpec(**connect)
    if isinstance(sync, tuple):
        sync = _Sync(*sync)
    tallies = [_Tally() for _ in range(threads)]
    total = _Tally()
    try:
        workers = [
            threading.Thread(target=_worker, args=(connect, model, features, expected, warmup, sync, tally), daemon=True)
            for tally in tallies
        ]
        for worker in workers:
            worker.start()
        sync.go.wait()
        cpu = time.process_time()
        for worker in workers:
            worker.join()
        total.cpu_s.append(time.process_time() - cpu)
    except BaseException as error:  # noqa: BLE001 -- reported to the parent, which must not wait for nothing
        total.worker_errors += 1
        total.note("workers", f"client process {index}: {_message(error)}")
    for tally in tallies:
        total.merge(tally)
    results.put((index, total.as_dict()))


class _InProcess:
    """The workers of one client in this process (a ``connect`` callable, or one process): a Process look-alike."""

    exitcode = None

    def __init__(self, args: tuple):
        self.thread = threading.Thread(target=_client_process, args=args, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout=None) -> None:
        self.thread.join(timeout)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def throughput(
    connect,
    model: str,
    features: np.ndarray,
    concurrency: int,
    requests: int,
    *,
    processes: int | None = None,
    warmup: int = 0,
    expected: np.ndarray | None = None,
    metrics_url: str | None = None,
    metrics_interval: float = 1.0,
) -> dict:
    """``requests`` inferences from ``concurrency`` workers (one connection each) in ``processes`` processes.

    Args:
        connect: a :class:`ConnectionSpec`, or any callable returning a :class:`Connection` (then the workers
            are threads of this process: a callable cannot be sent to another process).
        processes: client processes; default min(concurrency, CPUs) for a ConnectionSpec, 1 for a callable.
            One process means the workers are threads of this one.
        warmup: requests each worker sends (and checks) before the timed window, not counted.
        expected: the LABELS every answer must equal; default the answer to one request sent first.
        metrics_url: Triton's Prometheus endpoint (``http://host:8002/metrics``): read before and after the
            run and every ``metrics_interval`` seconds during it; see :func:`server_metrics`.

    Client processes are spawned, so, as with any spawn-based multiprocessing, a script that calls this must
    guard its entry point with ``if __name__ == "__main__":`` (the child processes import the main module).

    Returns:
        dict: requests (= correct + wrong + failures), correct, wrong, failures, seconds (the timed window),
        requests_per_s (answered), events_per_s (correct), latency_ms {p50, p90, p99, mean} of every answer,
        the first few messages of each kind, client_cpu_s per process, client_cpu_fraction, and ``server``
        when ``metrics_url`` is given.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    spec = connect if isinstance(connect, ConnectionSpec) else None
    if concurrency < 1 or requests < 0 or warmup < 0:
        raise ValueError("throughput needs concurrency >= 1, requests >= 0 and warmup >= 0")
    if processes is None:
        processes = min(concurrency, _cpu_count()) if spec else 1
    if processes > 1 and spec is None:
        raise ValueError("several client processes need a ConnectionSpec: a connect callable cannot be sent to a spawned process")
    processes = max(1, min(processes, concurrency))

    if expected is None:  # the answer to one request, sent alone, is what every other answer must equal
        connection = connect()
        try:
            expected = connection.infer(model, features)
        finally:
            connection.close()
        reference = "first answer"
    else:
        expected, reference = _as_labels(expected, "expected"), "expected"

    context = multiprocessing.get_context("spawn")
    sync = _Sync.create(context, requests)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    if processes == 1:
        results = queue.Queue()
        runners = [_InProcess((0, connect, model, features, expected, concurrency, warmup, sync, results))]
    else:
        results = context.Queue()
        runners = []
        for index, threads in enumerate(shares):
            args = (index, spec._asdict(), model, features, expected, threads, warmup, sync.parts(), results)
            process_globals = {"_CHILD_ARGS": args}
            runners.append(context.Process(target=runpy.run_path, args=(str(Path(__file__).resolve()), process_globals, _CHILD), daemon=True))

    sampler = _MetricsSampler(metrics_url, metrics_interval) if metrics_url else None
    before = start = None
    reported: dict[int, dict] = {}
    started = []
    try:
        for runner in runners:
            runner.start()
            started.append(runner)
        while sync.ready_count.value < concurrency:
            if not all(runner.is_alive() for runner in runners):  # a process died before it could start
                sync.abort.set()
                break
            time.sleep(0.005)
        if sampler:
            before = sampler.read()
            sampler.start()
        start = time.monotonic()
        sync.go.set()
        while len(reported) < len(runners):
            try:
                index, summary = results.get(timeout=0.2)
                reported[index] = summary
            except queue.Empty:
                if not any(runner.is_alive() for runner in runners):
                    try:  # what a process put just before it ended may still be on its way
                        index, summary = results.get(timeout=1.0)
                        reported[index] = summary
                    except queue.Empty:
                        break
    finally:
        sync.abort.set()
        sync.go.set()
        if sampler:
            sampler.stop()
        for runner in started:
            runner.join(timeout=10)

    total = _Tally()
    for index, runner in enumerate(runners):
        if index in reported:
            total.merge(_Tally(**reported[index]))
        else:
            total.worker_errors += shares[index]
            total.note("workers", f"client process {index} ended (exit code {runner.exitcode}) without a result")
    end = total.end if total.end is not None else start
    seconds = max(end - start, 0.0)
    unanswered = requests - total.correct - total.wrong - total.failures
    if unanswered > 0:
        total.failures += unanswered
        total.note("failures", f"{unanswered} requests got no answer: no worker was left to send them, or a client process ended")
    ms = np.asarray(total.latencies, dtype=np.float64) * 1e3
    quantiles = {f"p{q}": float(np.percentile(ms, q)) if len(ms) else None for q in (50, 90, 99)}
    cpu_fraction = sum(total.cpu_s) / (seconds * processes) if seconds > 0 and total.cpu_s else None
    result = {
        "model": model,
        "spacepoints": int(features.shape[0]),
        "processes": processes,
        "concurrency": concurrency,
        "requests": requests,
        "warmup": warmup,
        "correct": total.correct,
        "wrong": total.wrong,
        "failures": total.failures,
        "first_failure": total.messages["failures"][0]["message"] if total.messages["failures"] else None,
        "warmup_wrong": total.warmup_wrong,
        "warmup_failures": total.warmup_failures,
        "worker_errors": total.worker_errors,
        "messages": total.messages,
        "reference": reference,
        "expected_labels": {"length": len(expected), "tracks": len(split_labels(expected))},
        "seconds": seconds,
        "requests_per_s": len(ms) / seconds if seconds > 0 else None,
        "events_per_s": total.correct / seconds if seconds > 0 else None,
        "latency_ms": {**quantiles, "mean": float(ms.mean()) if len(ms) else None},
        "client_cpu_s": total.cpu_s,
        "client_cpu_fraction": cpu_fraction,
        "client_saturated": cpu_fraction is not None and cpu_fraction > SATURATED,
    }
    if sampler:
        samples = [snapshot for moment, snapshot in sampler.samples if start <= moment <= end]
        result["server"] = server_metrics(before, sampler.read(), samples)
        if sampler.errors:
            result["server"]["read_errors"] = sampler.errors
    return result


def throughput_passed(result: dict) -> bool:
    """Every request and warm-up request answered, and answered the expected LABELS."""
    keys = ("failures", "wrong", "warmup_failures", "warmup_wrong", "worker_errors")
    return not any(result.get(key) for key in keys)


# ------------------------------------------------------------------------------------------------
# Triton's Prometheus metrics

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of a Prometheus text exposition: {metric name: [(labels, value), ...]}.

    Comments, blank lines and lines that do not parse are skipped; values may be NaN or +Inf.
    """
    metrics: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        unescape = lambda m: "\n" if m[1] == "n" else m[1]  # noqa: E731
        metrics[name].append(({k: _ESCAPE.sub(unescape, v) for k, v in _LABEL.findall(labels or "")}, number))
    return dict(metrics)


def metrics_endpoint(url: str) -> str:
    """``host:8002`` or ``http://host:8002`` become ``http://host:8002/metrics``; a full URL stays."""
    if "://" not in url:
        url = "http://" + url
    scheme, rest = url.split("://", 1)
    return url if "/" in rest else f"{scheme}://{rest}/metrics"


def read_metrics(url: str, timeout: float = 5.0) -> dict[str, list[tuple[dict[str, str], float]]]:
    """:func:`parse_metrics` of what the endpoint serves."""
    with urllib.request.urlopen(metrics_endpoint(url), timeout=timeout) as response:
        return parse_metrics(response.read().decode("utf-8", errors="replace"))


def _by_label(metrics: dict | None, name: str, label: str) -> dict[str, float]:
    """Sum of the finite samples of one metric per value of one label (over other labels: versions, reasons)."""
    totals: dict[str, float] = defaultdict(float)
    for labels, value in (metrics or {}).get(name, []):
        if label in labels and math.isfinite(value):
            totals[labels[label]] += value
    return dict(totals)


_PER_REQUEST = {
    "avg_queue_ms": "nv_inference_queue_duration_us",
    "avg_compute_infer_ms": "nv_inference_compute_infer_duration_us",
    "avg_request_ms": "nv_inference_request_duration_us",
}


def _sampled(samples: list[dict], after: dict | None, name: str, label: str | None) -> dict[str, dict]:
    """One gauge per label value (``""`` for an unlabelled gauge): {key: {mean, max, samples, after}}.

    ``mean``/``max`` are over the reads during the run, or the read after it when there were none during it;
    ``samples`` counts the reads during the run.
    """
    def values(snapshot):
        if label is not None:
            return _by_label(snapshot, name, label)
        finite = [value for _, value in (snapshot or {}).get(name, []) if math.isfinite(value)]
        return {"": finite[0]} if finite else {}

    during: dict[str, list[float]] = defaultdict(list)
    for snapshot in samples:
        for key, value in values(snapshot).items():
            during[key].append(value)
    found = {}
    for key, value in values(after).items():
        seen = during.get(key) or [value]
        found[key] = {"mean": float(np.mean(seen)), "max": float(np.max(seen)), "samples": len(during.get(key, [])), "after": value}
    return found


def server_metrics(before: dict | None, after: dict | None, samples: list[dict] = ()) -> dict:
    """Per-GPU, host CPU and per-model figures from parsed scrapes before and after a run (and some during it).

    Triton's gauges ``nv_gpu_utilization{gpu_uuid}`` (0-1), ``nv_gpu_memory_used_bytes``/``_total_bytes``,
    ``nv_cpu_utilization`` (the whole host's CPUs, 0-1) and ``nv_cpu_memory_used_bytes``/``_total_bytes`` are
    read whenever the endpoint offers them; utilisation is averaged over the reads during the run.

    Returns:
        dict: ``gpus`` {uuid: {utilization (0-1: the mean of the samples during the run, else the value
        after it), utilization_samples, memory_used_bytes (after the run), memory_used_max_bytes (the
        largest read during or after the run, when there were reads during it), memory_total_bytes}}; ``cpu`` {utilization,
        utilization_samples, memory_used_bytes, memory_total_bytes} when the server reports its host's CPU;
        ``models`` {model: {success, failure (deltas), avg_queue_ms, avg_compute_infer_ms, avg_request_ms
        (duration deltas per successful request)}}, only for models that had requests. Missing metrics are
        left out.
    """
    gpus: dict[str, dict] = defaultdict(dict)
    for uuid, figures in _sampled(samples, after, "nv_gpu_utilization", "gpu_uuid").items():
        gpus[uuid].update(utilization=figures["mean"], utilization_samples=figures["samples"])
    for uuid, figures in _sampled(samples, after, "nv_gpu_memory_used_bytes", "gpu_uuid").items():
        gpus[uuid]["memory_used_bytes"] = int(figures["after"])
        if figures["samples"]:
            gpus[uuid]["memory_used_max_bytes"] = int(max(figures["max"], figures["after"]))
    for uuid, value in _by_label(after, "nv_gpu_memory_total_bytes", "gpu_uuid").items():
        gpus[uuid]["memory_total_bytes"] = int(value)
    cpu: dict = {}
    for figures in _sampled(samples, after, "nv_cpu_utilization", None).values():
        cpu.update(utilization=figures["mean"], utilization_samples=figures["samples"])
    for key, name in (("memory_used_bytes", "nv_cpu_memory_used_bytes"), ("memory_total_bytes", "nv_cpu_memory_total_bytes")):
        for figures in _sampled([], after, name, None).values():
            cpu[key] = int(figures["after"])
    models: dict[str, dict] = {}
    if before is not None and after is not None:
        delta = lambda name: {m: v - _by_label(before, name, "model").get(m, 0.0) for m, v in _by_label(after, name, "model").items()}  # noqa: E731
        success, failure = delta("nv_inference_request_success"), delta("nv_inference_request_failure")
        durations = {key: delta(name) for key, name in _PER_REQUEST.items()}
        for model in sorted(set(success) | set(failure)):
            ok, failed = int(success.get(model, 0)), int(failure.get(model, 0))
            if ok == 0 and failed == 0:
                continue
            models[model] = {"success": ok, "failure": failed}
            for key, values in durations.items():
                if ok and model in values:
                    models[model][key] = values[model] / ok / 1e3
    result = {"gpus": dict(gpus), "models": models}
    if cpu:
        result["cpu"] = cpu
    return result


class _MetricsSampler:
    """Reads the metrics endpoint every ``interval`` seconds in a thread; keeps (time.monotonic(), parsed)."""

    def __init__(self, url: str, interval: float):
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, dict]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> dict | None:
        try:
            return read_metrics(self.url)
        except Exception as error:  # noqa: BLE001 -- metrics are extra: a failed read is reported, not fatal
            if len(self.errors) < _KEEP:
                self.errors.append(f"{metrics_endpoint(self.url)}: {_message(error)}")
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            snapshot = self.read()
            if snapshot is not None:
                self.samples.append((time.monotonic(), snapshot))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _print_throughput(result: dict) -> None:
    lat = result["latency_ms"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(
        f"{'model':<24}{'N':>9}{'proc':>6}{'conc':>6}{'req':>7}{'fail':>6}{'wrong':>7}{'req/s':>10}{'events/s':>10}"
        f"{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}"
    )
    print(
        f"{result['model']:<24}{result['spacepoints']:>9}{result['processes']:>6}{result['concurrency']:>6}{result['requests']:>7}"
        f"{result['failures']:>6}{result['wrong']:>7}{fmt(result['requests_per_s']):>10}{fmt(result['events_per_s']):>10}"
        f"{fmt(lat['p50']):>10}{fmt(lat['p90']):>10}{fmt(lat['p99']):>10}{fmt(lat['mean']):>10}"
    )
    expected = result["expected_labels"]
    against = "the expected LABELS given" if result["reference"] == "expected" else "the answer to a first request sent alone"
    print(f"every answer checked against {against} ({expected['length']} labels, {expected['tracks']} tracks)")
    cpu, fraction = result["client_cpu_s"], result["client_cpu_fraction"]
    print(
        f"client: {result['processes']} process{'es' if result['processes'] != 1 else ''}, {sum(cpu):.2f} CPU s in {result['seconds']:.2f} s "
        f"(per process {', '.join(f'{c:.2f}' for c in cpu)}), client_cpu_fraction {fmt(fraction)}"
    )
    if result["client_saturated"]:
        print(
            f"WARNING: the client processes used {fraction:.0%} of their cores: the client may be what limits the rate "
            "(more --processes, or clients on other machines)"
        )
    if result["warmup_failures"] or result["warmup_wrong"]:
        print(f"warm-up: {result['warmup_failures']} failures, {result['warmup_wrong']} wrong")
    if result["worker_errors"]:
        print(f"{result['worker_errors']} workers could not run")
    for kind, messages in result["messages"].items():
        for entry in messages:
            print(f"{kind} (x{entry['count']}): {entry['message']}")
    server = result.get("server")
    if server:
        for line in server_lines(server):
            print(line)


def server_lines(server: dict) -> list[str]:
    """Readable lines of :func:`server_metrics` figures: one per GPU, a summary over several GPUs, the host CPU,
    one per model."""
    gib = lambda n: f"{n / 2**30:.2f} GiB"  # noqa: E731
    when = lambda n: f"mean of {n} reads during the run" if n else "read after the run"  # noqa: E731
    lines = []
    for uuid, gpu in server["gpus"].items():
        parts = [f"utilisation {gpu['utilization']:.0%} ({when(gpu['utilization_samples'])})"] if "utilization" in gpu else []
        if "memory_used_bytes" in gpu:
            peak = f", peak {gib(gpu['memory_used_max_bytes'])} during the run" if "memory_used_max_bytes" in gpu else ""
            total = f" of {gib(gpu['memory_total_bytes'])}" if "memory_total_bytes" in gpu else ""
            parts.append(f"memory used {gib(gpu['memory_used_bytes'])}{total} after the run{peak}")
        lines.append(f"server GPU {uuid}: {'; '.join(parts)}")
    used = [gpu["utilization"] for gpu in server["gpus"].values() if "utilization" in gpu]
    if len(used) > 1:  # an idle or starved GPU shows as the lowest
        lines.append(f"server GPUs: {len(used)}, mean utilisation {np.mean(used):.0%}, lowest {min(used):.0%}, highest {max(used):.0%}")
    cpu = server.get("cpu")
    if cpu:
        parts = [f"utilisation {cpu['utilization']:.0%} ({when(cpu['utilization_samples'])})"] if "utilization" in cpu else []
        if "memory_used_bytes" in cpu:
            parts.append(f"memory used {gib(cpu['memory_used_bytes'])}" + (f" of {gib(cpu['memory_total_bytes'])}" if "memory_total_bytes" in cpu else ""))
        lines.append(f"server host CPU (all cores, as Triton reports it): {'; '.join(parts)}")
    for model, figures in server["models"].items():
        per_request = ", ".join(f"{key[4:-3].replace('_', ' ')} {figures[key]:.2f} ms" for key in _PER_REQUEST if key in figures)
        lines.append(f"server model {model}: {figures['success']} succeeded, {figures['failure']} failed" + (f"; per request {per_request}" if per_request else ""))
    lines += [f"server metrics not read: {error}" for error in server.get("read_errors", [])]
    return lines


# ------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-u", "--url", default="localhost:8001", help="server host:port (%(default)s; HTTP is 8000)")
    parser.add_argument("--http", action="store_true", help="use HTTP/REST instead of gRPC")
    parser.add_argument("-m", "--model", default="ModuleMap", help="ModuleMap, MetricLearning, DoubleMetricLearning, or <name>_fused")
    parser.add_argument("-i", "--input", type=Path, required=True, help=".npy, .npz, .csv, .pt, or an event file (gnn4itk)")
    parser.add_argument("--columns", help="comma-separated feature columns (default: the model's feature_columns)")
    parser.add_argument("--event", type=Path, help="event with truth the features came from: score the tracks with gnn4itk evaluate")
    parser.add_argument("--no-evaluate", action="store_true", help="do not run gnn4itk evaluate even when truth is there")
    parser.add_argument("-o", "--output", type=Path, help="write LABELS here (.npy)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request (%(default)s)")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--ssl", action="store_true", help="connect with TLS")
    tls.add_argument("--root-certificates", help="PEM CA certificate that signed the server's certificate")
    tls.add_argument("--private-key", help="PEM client key (mutual TLS)")
    tls.add_argument("--certificate-chain", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--expect", type=Path, help="expected LABELS (.npy int64, as -o writes): every answer must equal them")
    parser.add_argument("--json", type=Path, help="also write the summary (or the throughput result) as JSON here")
    perf = parser.add_argument_group("throughput")
    perf.add_argument("--concurrency", type=int, default=0, help="clients (threads, one connection each) in parallel: throughput mode")
    perf.add_argument("--requests", type=int, default=100, help="requests in throughput mode, over all clients (%(default)s)")
    perf.add_argument("--processes", type=int, help="client processes sharing the clients (default: min(concurrency, CPUs))")
    perf.add_argument("--warmup", type=int, default=1, help="requests per client before the timed run, not counted (%(default)s)")
    perf.add_argument("--metrics-url", help="Triton's metrics endpoint (http://HOST:8002/metrics): report per-GPU utilisation "
                      "and memory, the server host's CPU use and server-side times")
    return parser


def run(args) -> int:
    spec = ConnectionSpec(args.url, args.http, args.ssl, args.root_certificates, args.private_key, args.certificate_chain, args.timeout)
    expected = load_expected(args.expect) if args.expect else None
    connection = spec.connect()
    try:
        params = connection.model_parameters(args.model)
        columns = args.columns.split(",") if args.columns else [c for c in params.get("feature_columns", "").split(",") if c]
        features, event = load_input(args.input, columns)
        num_features = int(params["num_features"]) if params.get("num_features") else None
        if num_features is not None and features.shape[1] != num_features:
            raise ClientError(f"{args.input} has {features.shape[1]} feature columns, model {args.model} expects {num_features}: {columns}")
        if args.concurrency > 0:
            if args.processes is not None and args.processes < 1:
                raise ClientError("--processes must be at least 1")
            options = {"processes": args.processes, "warmup": args.warmup, "expected": expected, "metrics_url": args.metrics_url}
            result = throughput(spec, args.model, features, args.concurrency, args.requests, **options)
            _print_throughput(result)
            print(json.dumps(result))
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            return 0 if throughput_passed(result) else 1
        start = time.perf_counter()
        labels = connection.infer(args.model, features)
        latency = time.perf_counter() - start
    finally:
        connection.close()
    tracks = split_labels(labels)
    lengths = [len(t) for t in tracks]
    summary = {
        "model": args.model,
        "spacepoints": int(features.shape[0]),
        "tracks": len(tracks),
        "mean_track_length": float(np.mean(lengths)) if lengths else 0.0,
        "latency_ms": latency * 1e3,
    }
    print(f"{args.model}: {summary['tracks']} tracks from {summary['spacepoints']} spacepoints in {summary['latency_ms']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if args.output:
        np.save(args.output, labels)
    if expected is not None:
        if not np.array_equal(labels, expected):
            print(f"LABELS differ from {args.expect}: {describe_difference(labels, expected)}")
            return 1
        print(f"LABELS equal {args.expect}")
    truth = args.event or event
    if truth is not None and not args.no_evaluate:
        code = evaluate(truth, labels, [])
        return code or 0
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ClientError as error:
        print(f"gnn4itk_client: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # tritonclient raises InferenceServerException with the server's message
        if type(error).__name__ != "InferenceServerException":
            raise
        print(f"gnn4itk_client: server error: {error}", file=sys.stderr)
        return 1


if __name__ == _CHILD:  # a client process of throughput(), started as runpy.run_path(this file, {"_CHILD_ARGS": ...})
    _client_process(*_CHILD_ARGS)  # noqa: F821 -- given by run_path
elif __name__ == "__main__":
    raise SystemExit(main())
