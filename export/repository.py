"""Write and check a Triton model repository for GNN4ITk pipelines.

One call of :func:`write_model_repository` lays out, for every pipeline (``ModuleMap``, ``MetricLearning``,
``DoubleMetricLearning``, or any configured name):

* ``<name>`` -- an ensemble taking ``FEATURES`` (TYPE_FP32, dims [-1, F]) and giving ``LABELS`` (TYPE_INT64,
  dims [-1]), chaining the pipeline's stage models ``<name>_<stage>``;
* ``<name>_fused`` -- the whole scripted pipeline as one model, same interface.

Two flavours come from the same TorchScript files, one object each (:data:`FLAVOURS`):

* ``python`` (:class:`PythonFlavour`): every model is the generic python-backend model
  (``export/python_backend/model.py``) which loads the TorchScript file with torch; runs on the
  pip-installed tritonserver (``nvidia-pytriton``).
* ``libtorch`` (:class:`LibtorchFlavour`): ``platform: "pytorch_libtorch"`` models for the stock NGC
  tritonserver. The libtorch backend only knows positional tensor names (``INPUT__0``, ``OUTPUT__0``, ...),
  so every TorchScript file becomes a model ``<...>_libtorch`` and the public names (``<name>``,
  ``<name>_fused``) are ensembles that map ``FEATURES``/``LABELS`` onto the positional names.

Every config's ``parameters`` record the pipeline's own settings (:attr:`PipelineSpec.parameters`, from
:meth:`gnn4itk.pipeline.Pipeline.settings` at export: only the cuts the pipeline has, with its values) and
the served interface: ``feature_columns``, ``num_features``, ``max_spacepoints``, ``min_spacepoints``.

Every model also gets ``configs/cpu.pbtxt`` and ``configs/gpu.pbtxt`` (Triton's custom model configurations),
so ``tritonserver --model-config-name=cpu|gpu`` (``gnn4itk serve --device``) picks the instance kind without
rewriting the repository.
"""

from __future__ import annotations

import functools
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from gnn4itk.defaults import MAX_SPACEPOINTS as DEFAULT_MAX_SPACEPOINTS
from gnn4itk.defaults import MIN_SPACEPOINTS, MODEL_NAME_PATTERN

FEATURES = "FEATURES"
LABELS = "LABELS"
MODEL_FILE = "model.pt"
DIGEST_SUFFIX = "__DIGEST"
DEFAULT_WARMUP_SPACEPOINTS = 1000
INSTANCE_KINDS = ("cpu", "gpu")
DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}

PYTHON_MODEL_SOURCE = Path(__file__).parent / "python_backend" / "model.py"
_NAME_RE = re.compile(MODEL_NAME_PATTERN)


class RepositoryError(ValueError):
    """A pipeline specification or a model repository that Triton would not serve."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a stage's interface.

    Attributes:
        name: tensor name; the pipeline's ``FEATURES`` and ``LABELS`` are the ensemble's input and output,
            any other name is an intermediate tensor passed from one stage to a later one.
        dtype: Triton type without ``TYPE_``: ``"FP32"``, ``"INT64"``, ``"BOOL"``, ...
        dims: shape with -1 for variable sizes, e.g. ``(2, -1)`` for an edge index.
    """

    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass
class StageSpec:
    """One TorchScript stage of a chained pipeline (its forward takes ``inputs`` in order, returns ``outputs``).

    Attributes:
        name: stage name, e.g. ``"graph"``; the model is called ``<pipeline>_<name>``.
        torchscript: path of the scripted module (``torch.jit.save`` output).
        inputs / outputs: the tensors, in forward-argument / return-tuple order.
        warmup: optional warm-up tensors by input name (numpy arrays); a stage whose only input is
            ``FEATURES`` is warmed with the pipeline's warm-up features when this is empty.
    """

    name: str
    torchscript: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    warmup: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class PipelineSpec:
    """A served pipeline: FEATURES float32 [N, F] in, LABELS int64 [L] out.

    Attributes:
        name: public model name Athena asks for (the configuration's ``pipeline``, e.g. ``ModuleMap``).
        feature_columns: the F column names of FEATURES, in order (Athena's ``spacepointFeatures``).
        fused: TorchScript of the whole pipeline (FEATURES -> LABELS), or None.
        stages: chained stages for the ensemble; empty means the ensemble runs the fused model.
        parameters: the pipeline's cuts and settings, recorded in every config (only these: no global table).
        warmup_features: float32 [n, F] real spacepoints used to warm the models up; None for random data.
    """

    name: str
    feature_columns: Sequence[str]
    fused: Path | None = None
    stages: list[StageSpec] = field(default_factory=list)
    parameters: dict[str, float | int | str] = field(default_factory=dict)
    warmup_features: np.ndarray | None = None

    @property
    def num_features(self) -> int:
        return len(self.feature_columns)


def features_tensor(num_features: int) -> TensorSpec:
    return TensorSpec(FEATURES, "FP32", (-1, num_features))


def labels_tensor() -> TensorSpec:
    return TensorSpec(LABELS, "INT64", (-1,))


# --------------------------------------------------------------------------------------------------
# config.pbtxt text. Values are rendered from nested dicts and lists; enums are written bare.


class Enum(str):
    """A protobuf enum value (written without quotes), e.g. ``Enum("TYPE_FP32")``."""


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} into config.pbtxt")


def to_pbtxt(message: dict, indent: int = 0) -> str:
    """Protobuf text format of a message given as a dict (lists of dicts are repeated messages)."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", to_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines += [f"{pad}{key} {{", to_pbtxt(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def _io(tensors: Sequence[TensorSpec], names: Sequence[str] | None = None) -> list[dict]:
    names = names or [t.name for t in tensors]
    return [{"name": n, "data_type": Enum(f"TYPE_{t.dtype}"), "dims": list(t.dims)} for n, t in zip(names, tensors)]


def _parameters(values: dict) -> list[dict]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


GPUS_ALL = "all"
"""``--gpus all``: every GPU (see :func:`resolve_gpus`)."""


def parse_gpus(words: str | Sequence[str]) -> list[int] | str:
    """The ``--gpus`` option's words: ``"all"``, or GPU indices as ``"0,1"``, ``"0 1"`` or both mixed.

    Returns:
        :data:`GPUS_ALL`, or the indices, sorted and each once.

    Raises:
        RepositoryError: for anything else (a negative or non-integer index, ``all`` beside indices, nothing).
    """
    text = words if isinstance(words, str) else " ".join(str(word) for word in words)
    items = text.replace(",", " ").split()
    if items == [GPUS_ALL]:
        return GPUS_ALL
    if not items or not all(item.isdigit() for item in items):
        raise RepositoryError(f"--gpus takes 'all' or GPU indices such as 0,1; got {text!r}")
    return sorted({int(item) for item in items})


def resolve_gpus(gpus: Sequence[int] | str | None, device_count: int | None = None) -> list[int] | None:
    """GPU indices for ``instance_group.gpus`` from a :func:`parse_gpus` answer.

    ``"all"`` becomes every GPU of this machine, ``[0, ..., n-1]`` (``device_count``, default what torch sees),
    or None where it has none: a config without a ``gpus`` list, on which Triton places the instances on every
    GPU of the server. None stays None; a list is checked and returned sorted.

    Raises:
        RepositoryError: for a negative or repeated index.
    """
    if gpus is None:
        return None
    if isinstance(gpus, str):
        if gpus != GPUS_ALL:
            return resolve_gpus(parse_gpus(gpus), device_count)
        if device_count is None:
            import torch

            device_count = torch.cuda.device_count()
        return list(range(device_count)) or None
    indices = [int(g) for g in gpus]
    if any(g < 0 for g in indices) or len(set(indices)) != len(indices):
        raise RepositoryError(f"GPU indices must be distinct and non-negative, got {indices}")
    return sorted(indices)


def _instance_group(kind: str, count: int, gpus: Sequence[int] | None) -> list[dict]:
    """``instance_group``: ``count`` instances on EACH GPU of ``gpus`` (Triton's meaning), on every GPU without
    a list, or ``count`` CPU instances."""
    group = {"count": count, "kind": Enum("KIND_GPU" if kind == "gpu" else "KIND_CPU")}
    if kind == "gpu" and gpus:
        group["gpus"] = list(gpus)
    return [group]


def _positional(prefix: str, count: int) -> list[str]:
    return [f"{prefix}__{i}" for i in range(count)]


# --------------------------------------------------------------------------------------------------
# Flavours: how one kind of Triton model runs a TorchScript file. One object each; the writer asks them.


@dataclass
class _Model:
    """One TorchScript model to write (a stage or a fused pipeline)."""

    name: str
    torchscript: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    warmup: dict[str, np.ndarray]


class Flavour:
    """How Triton runs one TorchScript file: the model's name, config head, tensor names and files.

    Attributes:
        name: the ``--flavour`` word.
        fused_is_public: the fused model can be asked for FEATURES -> LABELS under its own name (otherwise
            the public ``<name>_fused`` is an ensemble around it).
    """

    name = ""
    fused_is_public = True

    def runner_name(self, model: _Model) -> str:
        """The Triton model that runs ``model``'s TorchScript file."""
        return model.name

    def head(self, name: str) -> dict:
        """The first fields of the config (name, backend or platform, batching)."""
        raise NotImplementedError

    def install(self, version_dir: Path) -> None:
        """Files the model needs beside ``model.pt`` in its version folder."""

    def io(self, model: _Model) -> tuple[list[dict], list[dict]]:
        """Config inputs and outputs, aligned with ``model.inputs`` / ``model.outputs``."""
        raise NotImplementedError

    def extra_io(self, model: _Model) -> tuple[list[dict], list[dict]]:
        """Config inputs and outputs beyond the module's own (none by default)."""
        return [], []

    def model_parameters(self, parameters: dict) -> dict:
        """The config ``parameters`` of a TorchScript model of a pipeline with ``parameters``."""
        raise NotImplementedError

    def warmup_tensors(self, model: _Model) -> tuple[list[TensorSpec], dict[str, np.ndarray]]:
        """(the tensors a warm-up request of ``model`` carries, in config order; their arrays by name)."""
        return list(model.inputs), dict(model.warmup)

    def step(self, model: _Model) -> tuple[list[str], list[TensorSpec], list[str], list[TensorSpec]]:
        """An ensemble step running ``model``: (model input names, tensors fed to them, model output names,
        tensors they give)."""
        raise NotImplementedError


class PythonFlavour(Flavour):
    """The generic python-backend model (``export/python_backend/model.py``) loads the file with torch.

    Intermediate tensors travel with a digest the next step checks (``X__DIGEST``, see the model's doc).
    """

    name = "python"

    def head(self, name: str) -> dict:
        return {"name": name, "backend": "python", "max_batch_size": 0}

    def install(self, version_dir: Path) -> None:
        shutil.copyfile(PYTHON_MODEL_SOURCE, version_dir / "model.py")

    def io(self, model: _Model) -> tuple[list[dict], list[dict]]:
        return _io(model.inputs), _io(model.outputs)

    def extra_io(self, model: _Model) -> tuple[list[dict], list[dict]]:
        return _io(_digests(model.inputs)), _io(_digests(model.outputs))

    def model_parameters(self, parameters: dict) -> dict:
        return {**parameters, "torchscript_file": MODEL_FILE}

    def warmup_tensors(self, model: _Model) -> tuple[list[TensorSpec], dict[str, np.ndarray]]:
        # every intermediate input travels with its digest, so a warm-up request carries it too
        digests = _digests(model.inputs)
        arrays = dict(model.warmup)
        for spec in digests:
            value = arrays.get(spec.name[: -len(DIGEST_SUFFIX)])
            if value is not None:
                arrays[spec.name] = _python_model_digest(value)
        return list(model.inputs) + digests, arrays

    def step(self, model: _Model):
        inputs, outputs = model.inputs + _digests(model.inputs), model.outputs + _digests(model.outputs)
        return [t.name for t in inputs], inputs, [t.name for t in outputs], outputs


class LibtorchFlavour(Flavour):
    """Triton's PyTorch backend (``platform: "pytorch_libtorch"``): positional tensor names, so every file is
    a model ``<...>_libtorch`` behind an ensemble that maps FEATURES / LABELS onto them."""

    name = "libtorch"
    fused_is_public = False

    def runner_name(self, model: _Model) -> str:
        return f"{model.name}_libtorch"

    def head(self, name: str) -> dict:
        return {"name": name, "platform": "pytorch_libtorch", "max_batch_size": 0}

    def io(self, model: _Model) -> tuple[list[dict], list[dict]]:
        names = self.step(model)
        return _io(model.inputs, names[0]), _io(model.outputs, names[2])

    def model_parameters(self, parameters: dict) -> dict:
        # TorchScript's tensor-expression fuser (NNC) is off, as in the python flavour (parameter jit_fuser):
        # with the backend's defaults (fuser on) the GPU warm-up failed in the GNN's edge network ("mat1 and
        # mat2 must have the same dtype, but got Int and Float"); with it off the flavour loads and serves
        # exactly (docs/serving.md says what is and is not known of the cause).
        fuser = "true" if str(parameters.get("jit_fuser", "none")) == "fuser1" else "false"
        return {**parameters, "INFERENCE_MODE": "true", "ENABLE_TENSOR_FUSER": fuser}

    def step(self, model: _Model):
        in_names, out_names = _positional("INPUT", len(model.inputs)), _positional("OUTPUT", len(model.outputs))
        return in_names, model.inputs, out_names, model.outputs


FLAVOURS: dict[str, Flavour] = {flavour.name: flavour for flavour in (PythonFlavour(), LibtorchFlavour())}
"""The flavours by their ``--flavour`` word."""


# --------------------------------------------------------------------------------------------------
# The writer.


def write_model_repository(
    out_dir: str | Path,
    models: Sequence[PipelineSpec],
    flavour: str | Flavour = "python",
    instance_kind: str = "gpu",
    count: int = 1,
    gpus: Sequence[int] | None = None,
    max_spacepoints: int = DEFAULT_MAX_SPACEPOINTS,
    warmup_spacepoints: int = DEFAULT_WARMUP_SPACEPOINTS,
    overwrite: bool = False,
) -> list[str]:
    """Write a Triton model repository serving ``models``.

    Args:
        out_dir: repository directory (created; must be empty or absent unless ``overwrite``).
        models: the pipelines (:class:`PipelineSpec`).
        flavour: ``"python"`` (generic python-backend model) or ``"libtorch"`` (``pytorch_libtorch``), or a
            :class:`Flavour`.
        instance_kind: ``"gpu"`` or ``"cpu"``: the kind in ``config.pbtxt``; ``configs/{cpu,gpu}.pbtxt``
            hold both.
        count: model instances per device: for KIND_GPU, ``count`` instances on each GPU.
        gpus: GPU indices for KIND_GPU instances (``count`` on each of them); None writes no list, which Triton
            reads as every GPU of the server (the repository then suits one GPU or many); ensembles never get
            an instance group.
        max_spacepoints: requests with more FEATURES rows are answered with an error (python flavour).
        warmup_spacepoints: rows of random warm-up data when a pipeline has no ``warmup_features``.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        The names of every model written, public ones first.

    Raises:
        RepositoryError: for a bad option or a pipeline whose stages do not chain FEATURES to LABELS.
    """
    if not isinstance(flavour, Flavour):
        if flavour not in FLAVOURS:
            raise RepositoryError(f"flavour must be one of {tuple(FLAVOURS)}, got {flavour!r}")
        flavour = FLAVOURS[flavour]
    if instance_kind not in INSTANCE_KINDS:
        raise RepositoryError(f"instance_kind must be one of {INSTANCE_KINDS}, got {instance_kind!r}")
    if count < 1 or max_spacepoints < 1 or warmup_spacepoints < 1:
        raise RepositoryError("count, max_spacepoints and warmup_spacepoints must be positive")
    if not models:
        raise RepositoryError("no pipeline to write")
    if isinstance(gpus, str):  # "all" depends on the machine: the caller decides which one (resolve_gpus)
        raise RepositoryError(f"gpus must be GPU indices or None; resolve {gpus!r} with resolve_gpus first")
    gpus = resolve_gpus(gpus)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise RepositoryError(f"{out_dir} is not empty (pass overwrite=True to replace it)")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = dict(flavour=flavour, kind=instance_kind, count=count, gpus=gpus, warmup_rows=warmup_spacepoints)
    public, internal = [], []
    seen = set()
    for spec in models:
        _check_pipeline(spec)
        if spec.name in seen:
            raise RepositoryError(f"pipeline {spec.name!r} given twice")
        seen.add(spec.name)
        parameters = _pipeline_parameters(spec, max_spacepoints)
        # Real warm-up rows when given; None means Triton's random data.
        warmup = None if spec.warmup_features is None else np.ascontiguousarray(spec.warmup_features, dtype=np.float32)
        stages = [
            _Model(f"{spec.name}_{s.name}", Path(s.torchscript), list(s.inputs), list(s.outputs), dict(s.warmup))
            for s in spec.stages
        ]
        for stage in stages:
            if not stage.warmup and [t.name for t in stage.inputs] == [FEATURES]:
                stage.warmup = {FEATURES: warmup}
        chain_warmups(stages, warmup if warmup is not None else random_warmup_features(warmup_spacepoints, spec.num_features))
        fused = None
        if spec.fused is not None:
            io = [features_tensor(spec.num_features)], [labels_tensor()]
            fused = _Model(f"{spec.name}_fused", Path(spec.fused), *io, {FEATURES: warmup})
        for model in stages + ([fused] if fused else []):
            internal.append(_write_torchscript_model(out_dir, model, parameters, options))
        # The public ensemble chains the stages; without stages it runs the fused model.
        _write_ensemble(out_dir, spec.name, spec.num_features, stages or [fused], parameters, flavour)
        public.append(spec.name)
        if fused is not None:
            if not flavour.fused_is_public:
                _write_ensemble(out_dir, fused.name, spec.num_features, [fused], parameters, flavour)
            public.append(fused.name)
    names = public + [n for n in internal if n not in public]
    validate_model_repository(out_dir)
    return names


def _check_pipeline(spec: PipelineSpec) -> None:
    if not _NAME_RE.match(spec.name):
        raise RepositoryError(f"pipeline name {spec.name!r} must start with a letter and use only [A-Za-z0-9_-]")
    if spec.num_features < 1:
        raise RepositoryError(f"pipeline {spec.name}: feature_columns is empty")
    if len(set(spec.feature_columns)) != spec.num_features:
        raise RepositoryError(f"pipeline {spec.name}: feature_columns repeat a name: {list(spec.feature_columns)}")
    if bad := [c for c in spec.feature_columns if "," in c]:
        raise RepositoryError(f"pipeline {spec.name}: feature column names cannot contain ',': {bad}")
    if spec.fused is None and not spec.stages:
        raise RepositoryError(f"pipeline {spec.name}: give a fused TorchScript file, stages, or both")
    files = ([spec.fused] if spec.fused is not None else []) + [s.torchscript for s in spec.stages]
    if missing := [str(f) for f in files if not Path(f).is_file()]:
        raise RepositoryError(f"pipeline {spec.name}: TorchScript files not found: {missing}")
    if spec.warmup_features is not None:
        w = np.asarray(spec.warmup_features)
        if w.ndim != 2 or w.shape[1] != spec.num_features or w.shape[0] < 1:
            raise RepositoryError(f"pipeline {spec.name}: warmup_features must be [n >= 1, {spec.num_features}], got {list(w.shape)}")
    _check_chain(spec)


def _check_chain(spec: PipelineSpec) -> None:
    """Every stage input must be FEATURES or an earlier stage's output, with the same type; LABELS comes last."""
    available = {FEATURES: features_tensor(spec.num_features)}
    stage_names = set()
    for stage in spec.stages:
        where = f"pipeline {spec.name}, stage {stage.name!r}"
        if not _NAME_RE.match(stage.name) or stage.name in stage_names or stage.name == "fused":
            raise RepositoryError(f"{where}: stage names must be unique, not 'fused', and use [A-Za-z0-9_-]")
        stage_names.add(stage.name)
        if not stage.inputs or not stage.outputs:
            raise RepositoryError(f"{where}: a stage needs at least one input and one output")
        for tensor in stage.inputs:
            if tensor.dtype not in DTYPES:
                raise RepositoryError(f"{where}: input {tensor.name} has unknown dtype {tensor.dtype}")
            if tensor.name not in available:
                raise RepositoryError(f"{where}: input {tensor.name} is neither FEATURES nor made by an earlier stage")
            if available[tensor.name].dtype != tensor.dtype:
                raise RepositoryError(
                    f"{where}: input {tensor.name} is {tensor.dtype} but was produced as {available[tensor.name].dtype}"
                )
        for tensor in stage.outputs:
            if tensor.dtype not in DTYPES:
                raise RepositoryError(f"{where}: output {tensor.name} has unknown dtype {tensor.dtype}")
            if tensor.name in available:
                raise RepositoryError(f"{where}: output {tensor.name} is already produced earlier in the chain")
            available[tensor.name] = tensor
    if spec.stages:
        if LABELS not in available:
            raise RepositoryError(f"pipeline {spec.name}: no stage produces LABELS")
        last = spec.stages[-1]
        if LABELS not in [t.name for t in last.outputs] or available[LABELS] != labels_tensor():
            raise RepositoryError(f"pipeline {spec.name}: the last stage must output LABELS as INT64 dims (-1,)")


def _pipeline_parameters(spec: PipelineSpec, max_spacepoints: int) -> dict:
    """The pipeline's own settings and the served interface (FEATURES columns, event-size limits)."""
    return {
        **spec.parameters,
        "feature_columns": ",".join(spec.feature_columns),
        "num_features": spec.num_features,
        "max_spacepoints": max_spacepoints,
        "min_spacepoints": MIN_SPACEPOINTS,
    }


def _write_torchscript_model(out_dir: Path, model: _Model, parameters: dict, options: dict) -> str:
    """Write one model directory holding a TorchScript file; return the Triton model name."""
    flavour: Flavour = options["flavour"]
    name = flavour.runner_name(model)
    model_dir = out_dir / name
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True)
    shutil.copyfile(model.torchscript, version_dir / MODEL_FILE)
    flavour.install(version_dir)
    inputs, outputs = flavour.io(model)
    extra_inputs, extra_outputs = flavour.extra_io(model)
    tensors, arrays = flavour.warmup_tensors(model)
    warmup = _warmup_entries(model_dir, tensors, arrays, inputs + extra_inputs, options["warmup_rows"])
    for kind in INSTANCE_KINDS:
        config = {
            **flavour.head(name),
            "input": inputs + extra_inputs,
            "output": outputs + extra_outputs,
            "instance_group": _instance_group(kind, options["count"], options["gpus"]),
            "parameters": _parameters(flavour.model_parameters(parameters)),
        }
        if warmup:
            config["model_warmup"] = warmup
        text = to_pbtxt(config) + "\n"
        (model_dir / "configs").mkdir(exist_ok=True)
        (model_dir / "configs" / f"{kind}.pbtxt").write_text(text)
        if kind == options["kind"]:
            (model_dir / "config.pbtxt").write_text(text)
    return name


def _digests(tensors: Sequence[TensorSpec]) -> list[TensorSpec]:
    """``X__DIGEST`` INT64 [1] for every intermediate tensor X (neither FEATURES nor LABELS)."""
    return [TensorSpec(t.name + DIGEST_SUFFIX, "INT64", (1,)) for t in tensors if t.name not in (FEATURES, LABELS)]


def _warmup_entries(model_dir: Path, tensors: list[TensorSpec], arrays: dict, inputs: list[dict], random_rows: int) -> list[dict]:
    """``model_warmup`` entries: files under ``warmup/`` with the given arrays, or finite random FEATURES.

    Args:
        tensors: what a warm-up request carries (:meth:`Flavour.warmup_tensors`), in the order of ``inputs``,
            the config's input entries. arrays: their values by tensor name; a ``FEATURES`` entry of None
            asks for ``random_rows`` random rows.
    """
    warm_inputs = {}
    for spec, config_input in zip(tensors, inputs):
        array = arrays.get(spec.name)
        if spec.name == FEATURES and array is None and FEATURES in arrays:
            array = random_warmup_features(random_rows, spec.dims[1])
        if array is not None:
            array = np.ascontiguousarray(array, dtype=DTYPES[spec.dtype])
            (model_dir / "warmup").mkdir(exist_ok=True)
            # Triton reads warm-up files as raw little-endian bytes, relative to the model's warmup/ folder.
            (model_dir / "warmup" / spec.name).write_bytes(array.astype(array.dtype.newbyteorder("<")).tobytes())
            warm_inputs[config_input["name"]] = {
                "data_type": config_input["data_type"],
                "dims": list(array.shape),
                "input_data_file": spec.name,
            }
    if len(warm_inputs) != len(tensors):
        return []  # a stage fed by intermediate tensors without warm-up arrays is warmed by its first request
    entries = [{"key": k, "value": v} for k, v in warm_inputs.items()]
    return [{"name": "warmup", "batch_size": 1, "count": 2, "inputs": entries}]


def random_warmup_features(rows: int, num_features: int) -> np.ndarray:
    """Finite random FEATURES float32 [rows, num_features] (Triton's own random_data is random bytes, NaN
    included): the warm-up of a pipeline exported without real spacepoints."""
    return np.random.default_rng(0).standard_normal((rows, num_features), dtype=np.float32)


def chain_warmups(stages: list[_Model], features: np.ndarray) -> None:
    """Give every stage fed by intermediate tensors the ones its ensemble would hand it for ``features``.

    The stages' TorchScript files run here on the CPU, in ensemble order, on float32 [n, F] ``features``;
    each stage without warm-up arrays gets its inputs as warm-up arrays. So every instance of every step
    runs (and TorchScript profiles and optimises it) at load rather than on the first requests: on an
    H100 with 4 instances, unwarmed ensemble steps made the first single requests take 0.75-1.4 s
    (2026-12-07). Stops at the first stage that fails or would get an empty tensor (Triton's warm-up
    needs bytes): it and the later stages stay warmed by their first request.
    """
    import torch

    values = {FEATURES: torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))}
    for stage in stages:
        if any(t.name not in values for t in stage.inputs):
            return
        inputs = [values[t.name] for t in stage.inputs]
        if not stage.warmup and any(v.numel() == 0 for v in inputs):
            return
        try:
            with torch.inference_mode():
                out = torch.jit.load(str(stage.torchscript), map_location="cpu")(*inputs)
        except Exception:  # noqa: BLE001 -- a warm-up the stage refuses is left to its first request
            return
        out = out if isinstance(out, tuple) else (out,)
        values.update({t.name: v for t, v in zip(stage.outputs, out)})
        if not stage.warmup and any(t.name != FEATURES for t in stage.inputs):
            stage.warmup = {t.name: v.numpy() for t, v in zip(stage.inputs, inputs)}


@functools.lru_cache(maxsize=1)
def _python_model():
    """``export/python_backend/model.py`` as a module (it imports outside Triton), for its ``digest``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gnn4itk_python_backend_model_source", PYTHON_MODEL_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _python_model_digest(value: np.ndarray) -> np.ndarray:
    """The python model's digest of an intermediate tensor (INT64 [1]), as the producing step sends it."""
    import torch

    return _python_model().digest(torch.from_numpy(np.ascontiguousarray(value))).numpy()




def _write_ensemble(out_dir: Path, name: str, num_features: int, steps: list[_Model], parameters: dict, flavour: Flavour) -> None:
    """An ensemble FEATURES -> LABELS over the models ``steps``, each run by ``flavour``'s runner model."""
    schedule = []
    # Triton refuses ensembles with tensors that no step reads: map only the outputs that are used.
    used = {LABELS} | {t.name for model in steps for t in model.inputs}
    used |= {n + DIGEST_SUFFIX for n in used}
    for model in steps:
        in_names, step_inputs, out_names, step_outputs = flavour.step(model)
        schedule.append(
            {
                "model_name": flavour.runner_name(model),
                "model_version": -1,
                "input_map": [{"key": k, "value": t.name} for k, t in zip(in_names, step_inputs)],
                "output_map": [{"key": k, "value": t.name} for k, t in zip(out_names, step_outputs) if t.name in used],
            }
        )
    config = {
        "name": name,
        "platform": "ensemble",
        "max_batch_size": 0,
        "input": _io([features_tensor(num_features)]),
        "output": _io([labels_tensor()]),
        "ensemble_scheduling": {"step": schedule},
        "parameters": _parameters(parameters),
    }
    model_dir = out_dir / name
    (model_dir / "1").mkdir(parents=True)  # Triton wants a version folder, even an empty one, for ensembles
    (model_dir / "config.pbtxt").write_text(to_pbtxt(config) + "\n")


# --------------------------------------------------------------------------------------------------
# Validation.


def parse_config(text: str, where: str = "config.pbtxt"):
    """Parse config text as Triton's ``ModelConfig`` protobuf (from ``tritonclient``).

    Returns:
        ``tritonclient.grpc.model_config_pb2.ModelConfig``.

    Raises:
        RepositoryError: naming the file and the protobuf parser's message.
        ModuleNotFoundError: when tritonclient (the ``serve`` extra) is not installed.
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise RepositoryError(f"{where} is not a valid Triton ModelConfig: {error}") from error


def validate_model_repository(repository: str | Path) -> dict[str, object]:
    """Check a model repository the way tritonserver will load it, with readable errors.

    Every model folder must hold a ``config.pbtxt`` (and ``configs/*.pbtxt``) that parse as ``ModelConfig``
    and name the folder; a version folder ``1`` with the model file for non-ensembles; ensemble steps must
    name models of the repository and map existing inputs and outputs.

    Returns:
        dict model name -> parsed ``ModelConfig``.

    Raises:
        RepositoryError: on the first problem found.
    """
    repository = Path(repository)
    if not repository.is_dir():
        raise RepositoryError(f"model repository {repository} is not a directory")
    configs = {}
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        path = model_dir / "config.pbtxt"
        if not path.is_file():
            raise RepositoryError(f"{model_dir}: no config.pbtxt")
        for extra in sorted((model_dir / "configs").glob("*.pbtxt")) if (model_dir / "configs").is_dir() else []:
            other = parse_config(extra.read_text(), str(extra))
            if other.name != model_dir.name:
                raise RepositoryError(f"{extra}: name {other.name!r} differs from its folder {model_dir.name!r}")
        config = parse_config(path.read_text(), str(path))
        if config.name != model_dir.name:
            raise RepositoryError(f"{path}: name {config.name!r} differs from its folder {model_dir.name!r}")
        if not (model_dir / "1").is_dir():
            raise RepositoryError(f"{model_dir}: no version folder '1'")
        if config.platform != "ensemble":
            needed = ["model.py"] if config.backend == "python" else []
            needed.append(MODEL_FILE)
            if missing := [f for f in needed if not (model_dir / "1" / f).is_file()]:
                raise RepositoryError(f"{model_dir}/1 lacks {missing}")
        configs[config.name] = config
    if not configs:
        raise RepositoryError(f"model repository {repository} has no model")
    for name, config in configs.items():
        if config.platform == "ensemble":
            _check_ensemble(name, config, configs)
    return configs


def _check_ensemble(name: str, config, configs: dict) -> None:
    available = {i.name for i in config.input}
    for step in config.ensemble_scheduling.step:
        target = configs.get(step.model_name)
        if target is None:
            raise RepositoryError(f"ensemble {name}: step model {step.model_name!r} is not in the repository")
        target_inputs = {i.name for i in target.input}
        target_outputs = {o.name for o in target.output}
        if set(step.input_map) != target_inputs:
            raise RepositoryError(f"ensemble {name}: step {step.model_name} maps inputs {sorted(step.input_map)}, model has {sorted(target_inputs)}")
        if unknown := set(step.output_map) - target_outputs:
            raise RepositoryError(f"ensemble {name}: step {step.model_name} has no outputs {sorted(unknown)}")
        if missing := set(step.input_map.values()) - available:
            raise RepositoryError(f"ensemble {name}: step {step.model_name} reads {sorted(missing)} before they are made")
        available |= set(step.output_map.values())
    if missing := {o.name for o in config.output} - available:
        raise RepositoryError(f"ensemble {name}: outputs {sorted(missing)} are produced by no step")
