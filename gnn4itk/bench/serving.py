"""Triton serving overhead: the same TorchScript pipeline in-process vs served (python backend) over gRPC/HTTP.

A model repository is written to a temporary folder (python flavour, KIND_CPU or KIND_GPU), a tritonserver
is started on free ports, and one event's FEATURES [N, F] go through every variant: in-process (input
copied to the device, LABELS back to the host, as the server does), the fused model over gRPC and HTTP, the
ensemble over gRPC, and a throughput run with several concurrent gRPC clients. Medians; ratios to
in-process. Without ``--torchscript`` a synthetic scripted pipeline is used (an MLP scoring every
spacepoint, LABELS grouping positive rows by score), sized like real LABELS traffic.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gnn4itk.client_module import load_client
from gnn4itk.timing import timed_calls

HELP = "Triton serving overhead: in-process vs python-backend over gRPC/HTTP, and concurrent throughput"


class SyntheticPipeline(torch.nn.Module):
    """FEATURES float32 [N, F] -> LABELS int64: an MLP score per row; positive rows, by score, in tracks of 10."""

    def __init__(self, num_features: int, hidden: int = 128):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(num_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        score = self.mlp(features).squeeze(1)
        rows = torch.argsort(score, descending=True)[: int((score > 0).sum())]
        tracks = (rows.numel() + 9) // 10
        out = torch.full([tracks, 11], -2, dtype=torch.long, device=features.device)
        out[:, 10] = -1
        padded = torch.full([tracks * 10], -2, dtype=torch.long, device=features.device)
        padded[: rows.numel()] = rows
        out[:, :10] = padded.view(tracks, 10)
        flat = out.flatten()
        return flat[flat != -2]


def add_arguments(parser) -> None:
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="KIND_CPU or KIND_GPU instances (%(default)s)")
    parser.add_argument("--torchscript", type=Path, help="pipeline to serve (FEATURES -> LABELS); default: synthetic")
    parser.add_argument("--features", type=Path, help=".npy float32 [N, F] event; default: random rows")
    parser.add_argument("--spacepoints", type=int, default=150_000, help="rows of the random event (%(default)s)")
    parser.add_argument("--num-features", type=int, default=16, help="F of the random event (%(default)s)")
    parser.add_argument("--repeats", type=int, default=20, help="timed requests per variant after warm-up (%(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients of the throughput run (%(default)s)")
    parser.add_argument("--requests", type=int, default=80, help="requests of the throughput run (%(default)s)")
    parser.add_argument("--instances", type=int, default=1, help="model instances per device (%(default)s)")


def _median_ms(function, device, repeats: int) -> float:
    """Median wall time [ms] of ``repeats`` calls after one warm-up call."""
    return 1e3 * statistics.median(timed_calls(function, device, 1, repeats))


def run(args) -> dict:
    from export.repository import PipelineSpec, StageSpec, features_tensor, labels_tensor, write_model_repository
    from gnn4itk.bench import print_ratio_table
    from gnn4itk.cli import UserError
    from gnn4itk.serve import TritonServer

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but CUDA is not available")
    client = load_client()
    device = torch.device(args.device)
    if args.features:
        features = np.ascontiguousarray(np.load(args.features), dtype=np.float32)
    else:
        features = np.random.default_rng(0).normal(size=(args.spacepoints, args.num_features)).astype(np.float32)
    num_features = features.shape[1]
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp = Path(tmp)
        script = args.torchscript
        if script is None:
            torch.manual_seed(0)
            script = tmp / "synthetic.pt"
            torch.jit.script(SyntheticPipeline(num_features)).save(str(script))
        module = torch.jit.load(str(script), map_location=device).eval()
        columns = [f"f{i}" for i in range(num_features)]
        stage = StageSpec("all", script, [features_tensor(num_features)], [labels_tensor()])
        spec = PipelineSpec("Bench", columns, fused=script, stages=[stage], warmup_features=features[:1000])
        kind = "gpu" if args.device == "cuda" else "cpu"
        write_model_repository(tmp / "models", [spec], instance_kind=kind, count=args.instances, max_spacepoints=max(len(features), 1))

        def in_process():
            with torch.inference_mode():
                labels = module(torch.from_numpy(features).to(device)).cpu()
            return labels

        reference = in_process().numpy()
        with TritonServer(tmp / "models", 0, 0, 0, device=kind) as server:
            grpc = client.Connection(server.url_grpc)
            http = client.Connection(server.url_http, http=True)
            served = grpc.infer("Bench_fused", features)
            equal = np.array_equal(served, reference)
            # float rounding may differ between processes (e.g. cuBLAS picks another kernel): the same rows
            # in another order for near-equal scores is that, other rows would be a serving bug
            same_rows = np.array_equal(np.sort(served), np.sort(reference))
            differing = int((served != reference).sum()) if served.shape == reference.shape else -1
            medians = {
                # (a served call returns with its response: nothing of it is left on this process's device)
                "in-process (torch, to device and back)": _median_ms(in_process, device, args.repeats),
                "served fused, gRPC": _median_ms(lambda: grpc.infer("Bench_fused", features), "cpu", args.repeats),
                "served fused, HTTP": _median_ms(lambda: http.infer("Bench_fused", features), "cpu", args.repeats),
                "served ensemble, gRPC": _median_ms(lambda: grpc.infer("Bench", features), "cpu", args.repeats),
            }
            grpc.close()
            http.close()
            rate = client.throughput(lambda: client.Connection(server.url_grpc), "Bench_fused", features, args.concurrency, args.requests)
    base = medians["in-process (torch, to device and back)"]
    title = f"serving: N = {len(features)}, F = {num_features}, {args.device}, {args.instances} instance(s)"
    print_ratio_table(title, medians, base, "median ms")
    lat = rate["latency_ms"]
    print(
        f"throughput, {args.concurrency} gRPC clients x {args.requests} requests: {rate['requests_per_s']:.1f} req/s, "
        f"p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, failures {rate['failures']}; "
        f"served LABELS equal in-process: {equal} (same rows: {same_rows}, {differing} of {len(reference)} entries differ)"
    )
    return {
        "device": args.device,
        "spacepoints": len(features),
        "num_features": num_features,
        "instances": args.instances,
        "median_ms": medians,
        "ratio_to_in_process": {k: v / base for k, v in medians.items()},
        "throughput": rate,
        "labels_equal": bool(equal),
        "labels_same_rows": bool(same_rows),
        "labels_entries_differing": differing,
    }
