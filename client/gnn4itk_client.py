#!/usr/bin/env python3
"""Send spacepoints to a GNN4ITk Triton server the way Athena's GNNTrackFinderTritonTool does.

    python client/gnn4itk_client.py -u HOST:8001 -m ModuleMap -i features.npy
    python client/gnn4itk_client.py -u HOST:8001 -m MetricLearning -i event000000001-hits.parquet
    python client/gnn4itk_client.py -u HOST:8001 -i features.npy --concurrency 8 --requests 400

FEATURES go as FP32 [N, F], row-major; LABELS (INT64, flat) come back and are split on -1 into tracks of
row indices. Only numpy and tritonclient are needed; torch (for ``.pt`` input) and gnn4itk (for event files
and ``gnn4itk evaluate``) are used only when installed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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
        features = np.ascontiguousarray(features, dtype=np.float32)
        tensor = self.triton.InferInput(FEATURES, list(features.shape), "FP32")
        tensor.set_data_from_numpy(features)
        if self.http:
            result = self.client.infer(model, [tensor], outputs=[self.triton.InferRequestedOutput(LABELS)])
        else:
            result = self.client.infer(model, [tensor], outputs=[self.triton.InferRequestedOutput(LABELS)], client_timeout=self.timeout)
        labels = result.as_numpy(LABELS)
        if labels is None or labels.dtype != np.int64 or labels.ndim != 1:
            raise ClientError(f"model {model} answered no 1-D INT64 LABELS")
        return labels

    def close(self) -> None:
        self.client.close()


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


def throughput(connect, model: str, features: np.ndarray, concurrency: int, requests: int) -> dict:
    """``requests`` inferences from ``concurrency`` threads (one connection each).

    Returns:
        dict: requests, failures, seconds, requests_per_s, latency_ms {p50, p90, p99, mean}.
    """
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        connection = connect()
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                try:
                    connection.infer(model, features)
                    with lock:
                        latencies.append(time.perf_counter() - start)
                except Exception as error:  # noqa: BLE001 -- counted and reported, the run goes on
                    with lock:
                        failures.append(str(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    quantiles = {f"p{q}": float(np.percentile(ms, q)) if len(ms) else None for q in (50, 90, 99)}
    return {
        "model": model,
        "spacepoints": int(features.shape[0]),
        "concurrency": concurrency,
        "requests": requests,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "seconds": seconds,
        "requests_per_s": len(latencies) / seconds if seconds > 0 else None,
        "latency_ms": {**quantiles, "mean": float(ms.mean()) if len(ms) else None},
    }


def _print_throughput(result: dict) -> None:
    lat = result["latency_ms"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"{'model':<24}{'N':>9}{'conc':>6}{'req':>7}{'fail':>6}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
    print(
        f"{result['model']:<24}{result['spacepoints']:>9}{result['concurrency']:>6}{result['requests']:>7}"
        f"{result['failures']:>6}{fmt(result['requests_per_s']):>10}{fmt(lat['p50']):>10}{fmt(lat['p90']):>10}{fmt(lat['p99']):>10}"
    )


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
    perf = parser.add_argument_group("throughput")
    perf.add_argument("--concurrency", type=int, default=0, help="clients in parallel: throughput mode")
    perf.add_argument("--requests", type=int, default=100, help="requests in throughput mode (%(default)s)")
    perf.add_argument("--json", type=Path, help="also write the result as JSON here")
    return parser


def run(args) -> int:
    def connect():
        return Connection(args.url, args.http, args.ssl, args.root_certificates, args.private_key, args.certificate_chain, args.timeout)

    connection = connect()
    try:
        params = connection.model_parameters(args.model)
        columns = args.columns.split(",") if args.columns else [c for c in params.get("feature_columns", "").split(",") if c]
        features, event = load_input(args.input, columns)
        expected = int(params["num_features"]) if params.get("num_features") else None
        if expected is not None and features.shape[1] != expected:
            raise ClientError(f"{args.input} has {features.shape[1]} feature columns, model {args.model} expects {expected}: {columns}")
        if args.concurrency > 0:
            result = throughput(connect, args.model, features, args.concurrency, args.requests)
            _print_throughput(result)
            print(json.dumps(result))
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            return 1 if result["failures"] else 0
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


if __name__ == "__main__":
    raise SystemExit(main())
