"""``gnn4itk serve``: run tritonserver on a model repository until interrupted (see docs/serving.md)."""

from __future__ import annotations

import signal
from pathlib import Path

from gnn4itk.cli import UserError

NAME = "serve"
HELP = "serve a model repository with Triton (gRPC 8001, HTTP 8000, metrics 8002) until Ctrl-C"


def add_arguments(parser) -> None:
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository (%(default)s)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (%(default)s; 0 = any free)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port, Athena's (%(default)s; 0 = any free)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (%(default)s)")
    parser.add_argument(
        "--device",
        choices=["cpu", "gpu"],
        default=None,
        help="load each model's configs/<device>.pbtxt (KIND_CPU or KIND_GPU instances); default: config.pbtxt",
    )
    gpus = parser.add_argument_group("GPU instances (override the repository's instance groups; the repository is not changed)")
    # One word (not nargs="+"): the trailing tritonserver options must not be taken for GPU indices.
    gpus.add_argument("--gpus", default=None, metavar="GPUS",
                      help="GPUs for the GPU models: 'all' (every GPU of this host) or indices such as 0,1 "
                           "(default: as the repository says; a repository written without --gpus uses every GPU)")
    gpus.add_argument("--instances-per-gpu", type=int, default=None, metavar="N",
                      help="instances of each GPU model on EACH of its GPUs (default: the repository's count)")
    tls = parser.add_argument_group("gRPC over TLS")
    tls.add_argument("--tls-cert", type=Path, help="PEM server certificate")
    tls.add_argument("--tls-key", type=Path, help="PEM server private key")
    tls.add_argument("--tls-root", type=Path, help="PEM root certificate (of client certificates, for --tls-mutual)")
    tls.add_argument("--tls-mutual", action="store_true", help="require client certificates signed by --tls-root")
    parser.add_argument("--log-file", default="-", help="server log file ('-' = this terminal, the default)")
    parser.add_argument("--log-verbose", type=int, default=0, help="tritonserver --log-verbose level (%(default)s)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for readiness (%(default)s)")
    parser.add_argument("--check", action="store_true", help="only validate the repository and print its models")
    parser.add_argument("extra", nargs="*", help="further tritonserver options, after '--'")


def run(args) -> int:
    from export.repository import RepositoryError, validate_model_repository
    from gnn4itk.serve import ServerError, TritonServer

    try:
        configs = validate_model_repository(args.repository)
    except RepositoryError as error:
        raise UserError(str(error)) from None
    except ModuleNotFoundError as error:
        raise UserError(f"{error.name} is missing: pip install 'gnn4itk[serve]'") from None
    for name, config in configs.items():
        kind = "ensemble" if config.platform == "ensemble" else (config.backend or config.platform)
        print(f"model {name:32s} {kind}")
    if args.check:
        return 0
    try:
        server = TritonServer(
            args.repository,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            device=args.device,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_root=args.tls_root,
            tls_mutual=args.tls_mutual,
            log_file=args.log_file,
            log_verbose=args.log_verbose,
            extra_args=args.extra,
            ready_timeout=args.ready_timeout,
            gpus=args.gpus,
            instances_per_gpu=args.instances_per_gpu,
        )
    except ServerError as error:
        raise UserError(str(error)) from None
    if server.instances is not None:
        gpus, count = server.instances
        where = "the repository's GPUs" if gpus is None else f"GPUs {gpus}" if gpus else "every GPU"
        print(f"GPU instances: {'the repository count' if count is None else count} per GPU on {where}")
    # Forward the usual stop signals to the server, which then drains requests and exits by itself.
    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        server.signal(signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            server.start()
        except ServerError as error:
            raise UserError(str(error)) from None
        scheme = "grpcs" if args.tls_cert else "grpc"
        print(
            f"ready: {scheme}://{server.url_grpc}  http://{server.url_http}  metrics {server.url_metrics}"
            f"  ({server.installation.source})",
            flush=True,
        )
        code = server.wait()
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if stopping else code
