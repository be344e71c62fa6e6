"""``python -m gnn4itk.inference``: one event through a pipeline, as the GNN4ITk service's ``inference.py``.

    python -m gnn4itk.inference -i node_features.pt              # shipped ModuleMap model and map
    python -m gnn4itk.inference -i event000000001 -t             # Parquet/TrackML event, with timings
    python -m gnn4itk.inference --pipeline MetricLearning -i selected_graph_tensor.pt -d cpu
    python -m gnn4itk.inference --pipeline my_pipeline.yaml -i event000000001   # any configured pipeline

It runs the :class:`gnn4itk.pipeline.Pipeline` module (the one that is exported and served). Problems
with the input, the model or the map end with one line ``error: ...`` and exit code 2; ``-v`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gnn4itk.pipeline import PIPELINE_NAMES, build_pipeline, load_pipeline_config
from gnn4itk.progress import Progress
from gnn4itk.timing import synchronize, timed_calls

DEBUG_FILE = "debug_data.pt"


class InputError(Exception):
    """A problem the user can fix: reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gnn4itk.inference", description="GNN4ITk inference for one event")
    p.add_argument("-i", "--input", default="node_features.pt", help="FEATURES .pt tensor/dict/PyG Data, or an event (Parquet or TrackML CSV prefix)")
    p.add_argument("-m", "--model", default=None, help="GNN checkpoint (.ckpt) or a folder holding gnn.ckpt (default: the configuration's)")
    p.add_argument("-mmp", "--module_map_pattern_path", default=None, help="module map: native .npz or GNN4ITk ROOT base name (default: the configuration's)")
    p.add_argument("-p", "--precision", default="highest", choices=["highest", "high", "medium"], help="float32 matmul precision")
    p.add_argument("-a", "--auto_cast", action="store_const", const=True, default=None,
                   help="float16 autocast for the GNN on CUDA, with float32 fall-back (the shipped ModuleMap configuration's default)")
    p.add_argument("--float32", dest="auto_cast", action="store_const", const=False,
                   help="the GNN in float32 even where the configuration turns autocast on")
    p.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks")
    p.add_argument("-d", "--device", default="cuda", help="cuda (falls back to cpu when CUDA is absent) or cpu")
    p.add_argument("-t", "--timing", action="store_true", help="median per-stage and total times over repeated runs")
    p.add_argument("-c", "--compiling", action="store_true", help="run the TorchScript-compiled pipeline (what Triton serves)")
    p.add_argument("-s", "--save-data-for-debug", action="store_true", help=f"save graph, scores and tracks to {DEBUG_FILE}")
    p.add_argument("--pipeline", default="ModuleMap", metavar="NAME_OR_YAML",
                   help=f"a pipeline name (configs/<name>.yaml; shipped: {', '.join(PIPELINE_NAMES)}) or a configuration YAML")
    p.add_argument("--config", default=None, help="pipeline configuration YAML (wins over --pipeline)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs for -t (default 10)")
    p.add_argument("-o", "--output", default=None, help="write tracks: .pt (LABELS) or .parquet (hit_id, track_id)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress display (by default: a live bar on a terminal, a line every few seconds otherwise)")
    return p


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        print(f"CUDA is not available on this machine: running on cpu instead of {name}")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise InputError(f"unknown device {name!r}: {error}") from None


def load_input(path: str, columns: list[str]):
    """(FEATURES float32 [N, F], Event or None): a .pt file is taken as stored; events are converted."""
    from gnn4itk.event import select_features
    from gnn4itk.io.load import load_event, load_features

    if path.endswith(".pt"):
        features, _ = load_features(path, columns)
        return features, None
    event = load_event(path)
    return torch.from_numpy(select_features(event.hits, columns)), event


def gnn_checkpoint(model: str | None) -> str | None:
    if model is None:
        return None
    path = Path(model)
    if path.is_dir():
        path = path / "gnn.ckpt"
    if not path.exists():
        raise FileNotFoundError(f"no GNN checkpoint at {path}")
    return str(path)


def pipeline_stages(pipeline) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of each stage of an eager pipeline, in the order they run (edge classifiers by their
    configuration kind, :attr:`gnn4itk.pipeline.Pipeline.classifier_names`)."""
    shown = {"graph": "graph construction", "tracks": "track building"}
    return [(shown.get(name, name), module) for name, module in pipeline.stages()]


class StageProgress:
    """Progress of one pipeline run: stages done, and the one running (forward hooks of the eager pipeline).

    A scripted pipeline runs no Python hooks: its progress shows the elapsed time only.
    """

    def __init__(self, pipeline, enabled: bool = True, scripted: bool = False):
        stages = [] if scripted else pipeline_stages(pipeline)
        self.progress = Progress(len(stages) or None, "inference", "stage", enabled=enabled)
        self.handles = []
        for name, module in stages:
            self.handles.append(module.register_forward_pre_hook(lambda m, i, name=name: self.progress.set_status(name)))
            self.handles.append(module.register_forward_hook(lambda m, i, o: self.progress.update()))
        if scripted:
            self.progress.set_status("scripted pipeline")

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.progress.set_status("")
        self.progress.close()


class StageTimer:
    """Times each stage module of an eager pipeline with forward hooks (device-synchronised)."""

    def __init__(self, pipeline, device: torch.device):
        self.device = device
        self.times: dict[str, list[float]] = {}
        self.handles = []
        for name, module in pipeline_stages(pipeline):
            self.handles.append(module.register_forward_pre_hook(self._start(name)))
            self.handles.append(module.register_forward_hook(self._stop(name)))
        self._open: dict[str, float] = {}

    def _start(self, name):
        def hook(module, inputs):
            synchronize(self.device)
            self._open[name] = time.perf_counter()

        return hook

    def _stop(self, name):
        def hook(module, inputs, output):
            synchronize(self.device)
            self.times.setdefault(name, []).append(time.perf_counter() - self._open.pop(name))

        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


class DebugRecorder:
    """Keeps the graph, the scores of each classifier and the tracks of one event (forward hooks)."""

    def __init__(self, pipeline):
        self.data: dict[str, torch.Tensor] = {}
        self.handles = [pipeline.graph_construction.register_forward_hook(self._graph)]
        for i, classifier in enumerate(pipeline.edge_classifiers):
            self.handles.append(classifier.register_forward_hook(self._classifier(i)))
        self.handles.append(pipeline.track_building.register_forward_hook(self._tracks))

    def _graph(self, module, inputs, output):
        self.data["node_features"] = inputs[0].detach().cpu()
        self.data["graph_edge_index"], self.data["graph_edge_features"] = (t.detach().cpu() for t in output)

    def _classifier(self, i):
        def hook(module, inputs, output):
            self.data[f"stage{i}_edge_index"] = output[0].detach().cpu()
            self.data[f"stage{i}_scores"] = output[2].detach().cpu()

        return hook

    def _tracks(self, module, inputs, output):
        self.data["track_candidates"] = output.detach().cpu()

    def save(self, path: str):
        torch.save(self.data, path)
        for handle in self.handles:
            handle.remove()


def print_timing(timer: StageTimer | None, totals: list[float], device: torch.device) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"median times over {len(totals)} runs on {device}")
    table.add_column("stage")
    table.add_column("median [ms]", justify="right")
    if timer is not None:
        for name, values in timer.times.items():
            table.add_row(name, f"{1e3 * statistics.median(values[-len(totals):]):.2f}")
    table.add_row("total", f"{1e3 * statistics.median(totals):.2f}")
    Console().print(table)


def write_output(path: str, labels: np.ndarray, features: torch.Tensor, columns: list[str]) -> None:
    from gnn4itk.tracks import labels_to_track_ids

    if path.endswith(".pt"):
        torch.save(torch.from_numpy(labels), path)
    elif path.endswith(".parquet"):
        import pandas as pd

        track_ids = labels_to_track_ids(labels, len(features))
        rows = np.flatnonzero(track_ids >= 0)
        hit_id = features[:, columns.index("hit_id")].numpy() if "hit_id" in columns else rows
        pd.DataFrame({"row": rows, "hit_id": np.rint(hit_id[rows]).astype(np.int64), "track_id": track_ids[rows]}).to_parquet(path)
    else:
        raise InputError(f"-o {path}: unknown output type, use .pt (LABELS) or .parquet")
    print(f"tracks written to {path}")


def run(args) -> int:
    config = load_pipeline_config(args.config or args.pipeline)  # --config wins over --pipeline
    printable = {k: v for k, v in config.items() if not k.startswith("_")}
    print(f"configuration: {printable}")
    device = resolve_device(args.device)
    torch.set_float32_matmul_precision(args.precision)
    if args.auto_cast and device.type != "cuda":
        print(f"auto_cast applies on CUDA only: the GNN runs in float32 on {device}")
    pipeline = build_pipeline(
        config,
        module_map_path=args.module_map_pattern_path,
        gnn_checkpoint=gnn_checkpoint(args.model),
        auto_cast=args.auto_cast,
        verbose=True,
    ).to(device)
    features, event = load_input(args.input, list(pipeline.columns))
    features = features.to(device)
    runner = torch.jit.script(pipeline) if args.compiling else pipeline

    recorder = DebugRecorder(pipeline) if args.save_data_for_debug and not args.compiling else None
    print("start a warm-up run.")
    # No TorchScript fuser: NNC failed on CUDA 13 ("Global alloc not supported yet", H100, torch 2.11) for
    # some event sizes; the served models run without it too (export/python_backend/model.py, jit_fuser).
    with torch.inference_mode(), torch.jit.fuser("none"), warnings.catch_warnings():
        if not args.verbose:
            warnings.simplefilter("ignore", UserWarning)
        progress = StageProgress(pipeline, enabled=not args.no_progress, scripted=args.compiling)
        try:
            labels = runner(features)
        finally:
            progress.close()
        if runner.input_guard.last_non_finite:  # counted by the pipeline's input guard
            print(f"warning: {runner.input_guard.last_non_finite} NaN or inf feature values replaced by 0")
        if recorder is not None:
            recorder.save(DEBUG_FILE)
            print(f"debug data written to {DEBUG_FILE}")
        if args.timing:
            timer = None if args.compiling else StageTimer(pipeline, device)
            totals = []
            with Progress(max(1, args.repeats), "timing", "run", enabled=not args.no_progress) as runs:
                for _ in range(max(1, args.repeats)):
                    # one call at a time, so that the progress display is drawn outside the timed calls
                    totals += timed_calls(lambda: runner(features), device, 0, 1)
                    runs.update()
            if timer is not None:
                timer.remove()
            print_timing(timer, totals, device)
    labels = labels.cpu().numpy()
    print(f"total tracks {int((labels == -1).sum()) if len(labels) > 1 else 0}")
    if event is not None and event.has_truth:
        from gnn4itk.metrics import evaluate_tracking, format_matching

        result = evaluate_tracking(event, labels)
        score = "n/a" if result.trackml_score is None else f"{result.trackml_score:.4f}"
        print(format_matching(result.matching, result.cuts))
        print(f"TrackML score {score}")
    if args.output:
        write_output(args.output, labels, features.cpu(), list(pipeline.columns))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (InputError, FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
        if args.verbose:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
