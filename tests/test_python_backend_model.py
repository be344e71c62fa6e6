"""The generic python-backend model (export/python_backend/model.py) without a server.

The module imports ``triton_python_backend_utils``, which exists only inside Triton's stub: a small stand-in
with the calls the model makes lets the request path run here, damaged transfers included.
"""

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch

from export.repository import PYTHON_MODEL_SOURCE


class FakeTensor:
    """pb_utils.Tensor: a named host array, handed over through DLPack as the stub does."""

    def __init__(self, name, array):
        self._name, self._array = name, np.ascontiguousarray(array)

    def name(self):
        return self._name

    def shape(self):
        return list(self._array.shape)

    def is_cpu(self):
        return True

    def as_numpy(self):
        return self._array

    def to_dlpack(self):
        return torch.utils.dlpack.to_dlpack(torch.from_numpy(self._array))

    @classmethod
    def from_dlpack(cls, name, capsule):
        return cls(name, torch.utils.dlpack.from_dlpack(capsule).numpy())


class FakeResponse:
    def __init__(self, output_tensors=None, error=None):
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors or []}
        self.error = error


@pytest.fixture(scope="module")
def model_module():
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor = FakeTensor
    fake.InferenceResponse = FakeResponse
    fake.TritonError = lambda message: message
    fake.Logger = types.SimpleNamespace(log_info=lambda m: None, log_warn=lambda m: None)
    fake.get_input_tensor_by_name = lambda request, name: request.get(name)
    sys.modules["triton_python_backend_utils"] = fake
    try:
        spec = importlib.util.spec_from_file_location("gnn4itk_python_backend_model", PYTHON_MODEL_SOURCE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["triton_python_backend_utils"]


class Double(torch.nn.Module):
    def forward(self, score: torch.Tensor) -> torch.Tensor:
        return score * 2


def make_model(model_module, tmp_path, inputs, outputs):
    (tmp_path / "1").mkdir()
    torch.jit.script(Double()).save(str(tmp_path / "1" / "model.pt"))
    config = {
        "input": [{"name": n} for n in inputs],
        "output": [{"name": n} for n in outputs],
        "parameters": {"torchscript_file": {"string_value": "model.pt"}},
    }
    model = model_module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_name": "toy", "model_instance_kind": "CPU",
                      "model_repository": str(tmp_path), "model_version": "1"})
    return model


def test_digest_sees_flips_swaps_and_truncation(model_module):
    digest = model_module.digest
    value = torch.arange(1000, dtype=torch.float32)
    reference = int(digest(value))
    flipped = value.clone()
    flipped[517] = 517.0001
    swapped = torch.cat([value[500:], value[:500]])
    assert int(digest(flipped)) != reference
    assert int(digest(swapped)) != reference
    assert int(digest(value[:-1])) != reference
    assert int(digest(value.clone())) == reference
    assert digest(torch.zeros(0)).tolist() == [0]
    assert digest(torch.ones(3, dtype=torch.bool)).dtype == torch.int64
    assert int(digest(torch.arange(6).reshape(2, 3).t())) == int(digest(torch.arange(6).reshape(2, 3).t().contiguous()))
    if torch.cuda.is_available():
        assert int(digest(value.cuda())) == reference


def test_outputs_carry_their_digest_and_inputs_are_checked(model_module, tmp_path):
    model = make_model(model_module, tmp_path, ["SCORE", "SCORE__DIGEST"], ["OUT", "OUT__DIGEST"])
    score = np.linspace(-1, 1, 50, dtype=np.float32)
    sent_digest = model_module.digest(torch.from_numpy(score)).numpy()
    good = {"SCORE": FakeTensor("SCORE", score), "SCORE__DIGEST": FakeTensor("SCORE__DIGEST", sent_digest)}
    damaged_score = score.copy()
    damaged_score[7] = 0.0
    damaged = {"SCORE": FakeTensor("SCORE", damaged_score), "SCORE__DIGEST": FakeTensor("SCORE__DIGEST", sent_digest)}
    answers = model.execute([good, damaged, good])
    assert answers[0].error is None and answers[2].error is None
    np.testing.assert_array_equal(answers[0].outputs["OUT"], score * 2)
    assert answers[0].outputs["OUT__DIGEST"].tolist() == model_module.digest(torch.from_numpy(score * 2)).tolist()
    assert answers[1].outputs == {}
    assert "input SCORE [50] arrived damaged" in answers[1].error and "nothing was computed from it" in answers[1].error
    assert model.corrupted_total == 1


def test_a_missing_digest_is_refused(model_module, tmp_path):
    model = make_model(model_module, tmp_path, ["SCORE", "SCORE__DIGEST"], ["OUT"])
    answer = model.execute([{"SCORE": FakeTensor("SCORE", np.ones(4, np.float32))}])[0]
    assert "input SCORE__DIGEST is missing" in answer.error
