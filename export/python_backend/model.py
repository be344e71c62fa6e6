"""Generic Triton python-backend model: runs one TorchScript file with torch, nothing else of gnn4itk.

The model's ``config.pbtxt`` (written by ``export/repository.py``) names the file (parameter
``torchscript_file``), the inputs in forward-argument order and the outputs in return order.

Tensors cross the boundary between Triton and this stub on the host only: inputs arrive in host memory
(``FORCE_CPU_ONLY_INPUT_TENSORS`` is left at its default) and outputs are handed back as host tensors. The
python backend's GPU path (CUDA IPC through Triton's CUDA memory pool) breaks when that pool runs dry: Triton
falls back to pinned host memory, the stub's copy fails with ``failed to copy data: invalid argument``, and the
response still goes out with whatever its buffer held. On an H100 that returned wrong LABELS without any
error under load (docs/serving.md).

Every intermediate tensor ``X`` of an ensemble travels with ``X__DIGEST`` (INT64 [1]): the producing step
computes it on its device before the hand-over, the consuming step recomputes it where it ran the copy and
refuses the request when they differ. A damaged transfer becomes an error, never wrong tracks.

Checks on ``FEATURES`` (float32 [N, F]) come BEFORE the module runs and are answered with a
``TritonError`` for that request only; the server keeps serving:

* rank other than 2, F other than the ``num_features`` parameter, dtype other than float32;
* N above ``max_spacepoints`` (default 1,000,000) -- refused instead of running out of memory;
* N below the ``min_spacepoints`` parameter (written by ``export/repository.py`` from
  ``gnn4itk.defaults.MIN_SPACEPOINTS``, 3) for a model giving ``LABELS``: answered ``[-1]`` (no track) without
  running the module;
* NaN/inf values are replaced with 0 and counted in the server log;
* an intermediate input whose ``__DIGEST`` does not match is refused (a transfer went wrong).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton for its pure functions (export takes warm-up digests with digest())
    pb_utils = None

FEATURES = "FEATURES"
LABELS = "LABELS"
DIGEST_SUFFIX = "__DIGEST"
JIT_FUSERS = ("none", "fuser0", "fuser1")  # torch.jit.fuser names: none, legacy fuser, NNC
DEFAULT_MAX_SPACEPOINTS = 1_000_000


class RequestError(Exception):
    """A request this model refuses; the message goes back to the client."""


def check_features(shape, dtype: str, num_features, max_spacepoints) -> None:
    """Raise :class:`RequestError` when FEATURES of this shape and dtype (``"float32"``, ...) cannot be served."""
    if len(shape) != 2:
        raise RequestError(f"FEATURES must have rank 2 [N, F], got shape {list(shape)}")
    if dtype != "float32":
        raise RequestError(f"FEATURES must be FP32, got {dtype}")
    if num_features is not None and shape[1] != num_features:
        raise RequestError(f"FEATURES has {shape[1]} columns, this model expects F = {num_features}")
    if shape[0] > max_spacepoints:
        raise RequestError(f"FEATURES has {shape[0]} rows, more than max_spacepoints = {max_spacepoints}")


def digest(value: torch.Tensor) -> torch.Tensor:
    """A position-sensitive checksum of a tensor's bytes: LongTensor [1] on ``value``'s device.

    Integer arithmetic wraps modulo 2**64 and is associative, so the CPU and every GPU get the same value
    whatever their reduction order. Words are weighted by (position mod 65521) + 1 so that swapped or
    shifted blocks change it; the byte count is added so that truncation does too.
    """
    flat = value.contiguous().reshape(-1)
    if flat.numel() == 0:
        return torch.zeros(1, dtype=torch.int64, device=value.device)
    if flat.stride(0) != 1:  # a 1-element tensor counts as contiguous whatever its stride (DLPack keeps it)
        flat = torch.empty(flat.shape, dtype=flat.dtype, device=flat.device).copy_(flat)
    data = flat.view(torch.uint8)
    size = data.numel()
    if size % 4:
        data = torch.cat([data, data.new_zeros(4 - size % 4)])
    words = data.view(torch.int32).to(torch.int64)
    weights = torch.arange(words.numel(), device=words.device, dtype=torch.int64).remainder_(65521).add_(1)
    return (words * weights).sum().add(size).reshape(1)


def _to_torch(tensor: "pb_utils.Tensor") -> torch.Tensor:
    """A zero-copy torch view of a request tensor, host or GPU, through DLPack.

    Not through ``as_numpy()``: on the H100 (tritonserver 2.51's Python 3.12 stub, numpy 1.26, KIND_GPU)
    it returned other values than the request held, while DLPack gave the request's own bytes.
    """
    shape = tuple(tensor.shape())
    if math.prod(shape) == 0:  # zero-size buffers cannot travel through DLPack; no values to get wrong
        return torch.from_numpy(tensor.as_numpy().copy())
    return torch.from_dlpack(tensor.to_dlpack())


def _to_triton(name: str, value: torch.Tensor) -> "pb_utils.Tensor":
    """A host tensor for Triton (a GPU ``value`` is copied to the host first, see the module docstring; the
    blocking copy waits for the kernels that wrote it)."""
    value = value.detach().to("cpu").contiguous()
    if value.numel() == 0:  # zero-size buffers cannot travel through DLPack
        return pb_utils.Tensor(name, np.zeros(tuple(value.shape), dtype=_NUMPY_DTYPES[value.dtype]))
    return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(value))


_NUMPY_DTYPES = {torch.float32: np.float32, torch.int64: np.int64, torch.int32: np.int32, torch.bool: np.bool_,
                 torch.float16: np.float16, torch.float64: np.float64}
DEBUG = os.environ.get("GNN4ITK_SERVE_DEBUG", "") not in ("", "0")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.name = args["model_name"]
        # X__DIGEST inputs and outputs go with the intermediate tensor X: they are not the module's.
        self.input_names = [i["name"] for i in config["input"] if not i["name"].endswith(DIGEST_SUFFIX)]
        self.output_names = [o["name"] for o in config["output"] if not o["name"].endswith(DIGEST_SUFFIX)]
        declared_inputs = {i["name"] for i in config["input"]}
        declared_outputs = {o["name"] for o in config["output"]}
        self.checked_inputs = [n for n in self.input_names if n + DIGEST_SUFFIX in declared_inputs]
        self.digested_outputs = [n for n in self.output_names if n + DIGEST_SUFFIX in declared_outputs]
        self.num_features = int(params["num_features"]) if "num_features" in params else None
        self.max_spacepoints = int(params.get("max_spacepoints", DEFAULT_MAX_SPACEPOINTS))
        self.min_spacepoints = int(params.get("min_spacepoints", 0))  # the repository writer's rule; none without it
        if args["model_instance_kind"] == "GPU":
            self.device = torch.device("cuda", int(args["model_instance_device_id"]))
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        path = os.path.join(args["model_repository"], args["model_version"], params.get("torchscript_file", "model.pt"))
        self.module = torch.jit.load(path, map_location=self.device).eval()
        # TorchScript's static-shape kernel fusion (NNC) failed on CUDA 13 with "Global alloc not supported
        # yet" at the warm-up of the ModuleMap pipeline on a 1000-row event (H100, torch 2.11+cu130): by
        # default the model runs without the fuser; parameter jit_fuser = fuser1 (NNC) or fuser0 turns one on.
        self.fuser = params.get("jit_fuser", "none")
        if self.fuser not in JIT_FUSERS:
            raise ValueError(f"{self.name}: parameter jit_fuser must be one of {JIT_FUSERS}, got {self.fuser!r}")
        self.nonfinite_total = 0
        self.corrupted_total = 0
        # Where each input arrived (host or GPU): shows whether ensemble steps hand GPU tensors on
        # through DLPack or Triton copied them to the host; logged at unload.
        self.arrivals: dict = {}
        self.answers_labels = self.output_names == [LABELS]
        pb_utils.Logger.log_info(
            f"{self.name}: loaded {path} on {self.device}; inputs {self.input_names}, outputs {self.output_names}, "
            f"F = {self.num_features}, max_spacepoints = {self.max_spacepoints}, jit_fuser = {self.fuser}"
        )

    def execute(self, requests):
        # Requests of one call are independent events: one bad request must not fail the others.
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        try:
            outputs = self._run(request)
            return pb_utils.InferenceResponse(output_tensors=outputs)
        except RequestError as error:
            message = str(error)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            message = f"out of GPU memory: {error}"
        except Exception as error:  # noqa: BLE001 -- any model failure is this request's error, not the server's
            lines = str(error).strip().splitlines()
            message = f"{type(error).__name__}: {lines[-1] if lines else ''}"
        # Triton counts an error response from the python backend as a success in its metrics: log it.
        pb_utils.Logger.log_warn(f"{self.name}: refused a request: {message}")
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.name}: {message}"))

    def _run(self, request) -> list:
        inputs = []
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(f"input {name} is missing")
            value = _to_torch(tensor)
            where = f"{name}@{'cpu' if tensor.is_cpu() else 'gpu'}"
            self.arrivals[where] = self.arrivals.get(where, 0) + 1
            if name == FEATURES:
                check_features(tuple(value.shape), str(value.dtype).removeprefix("torch."), self.num_features, self.max_spacepoints)
                if self.answers_labels and value.shape[0] < self.min_spacepoints:
                    return [pb_utils.Tensor(LABELS, np.array([-1], dtype=np.int64))]
                value = self._finite(value)
            device_value = value.to(self.device)  # a blocking copy: the request's memory is read before it returns
            if DEBUG:
                self._log_sums(name, tensor, value, device_value)
            if name in self.checked_inputs:
                self._check_digest(request, name, device_value)
            inputs.append(device_value)
        with torch.inference_mode(), torch.jit.fuser(self.fuser):
            result = self.module(*inputs)
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(values) != len(self.output_names):
            raise RuntimeError(f"the module returned {len(values)} tensors, the config declares {self.output_names}")
        outputs = dict(zip(self.output_names, values))
        # Digests of what this step hands on, taken on its own device before the copy to the host.
        outputs.update({name + DIGEST_SUFFIX: digest(outputs[name]) for name in self.digested_outputs})
        return [_to_triton(name, value) for name, value in outputs.items()]

    def _check_digest(self, request, name: str, value: torch.Tensor) -> None:
        sent = pb_utils.get_input_tensor_by_name(request, name + DIGEST_SUFFIX)
        if sent is None:
            raise RequestError(f"input {name + DIGEST_SUFFIX} is missing")
        expected = int(_to_torch(sent).reshape(-1)[0])
        received = int(digest(value)[0])
        if received != expected:
            self.corrupted_total += 1
            raise RequestError(
                f"input {name} {list(value.shape)} arrived damaged (digest {received} instead of {expected}): the "
                f"transfer between ensemble steps failed, nothing was computed from it ({self.corrupted_total} since start)"
            )

    def _log_sums(self, name: str, tensor, value: torch.Tensor, device_value: torch.Tensor) -> None:
        """GNN4ITK_SERVE_DEBUG: sums of one input as numpy, torch on the host and torch on the device see it."""
        host = float(value.double().sum()) if value.device.type == "cpu" else float("nan")
        as_numpy = float(tensor.as_numpy().astype(np.float64).sum()) if tensor.is_cpu() else float("nan")
        pb_utils.Logger.log_info(
            f"{self.name}: debug {name} {list(value.shape)} {value.dtype} {'cpu' if tensor.is_cpu() else 'gpu'}: "
            f"sum numpy {as_numpy!r}, torch host {host!r}, on {self.device} {float(device_value.double().sum())!r}"
        )

    def _finite(self, features: torch.Tensor) -> torch.Tensor:
        """Replace NaN/inf with 0 (Athena can send them for degenerate clusters) and log how many."""
        bad = int((~torch.isfinite(features)).sum())
        if bad == 0:
            return features
        self.nonfinite_total += bad
        pb_utils.Logger.log_warn(
            f"{self.name}: replaced {bad} non-finite FEATURES values with 0 "
            f"({self.nonfinite_total} since start)"
        )
        return torch.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)

    def finalize(self):
        arrivals = ", ".join(f"{k} x{v}" for k, v in sorted(self.arrivals.items())) or "none"
        pb_utils.Logger.log_info(
            f"{self.name}: unloaded; {self.nonfinite_total} non-finite FEATURES values replaced; "
            f"{self.corrupted_total} damaged inputs refused; inputs received: {arrivals}"
        )
