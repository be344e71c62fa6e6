"""gnn4itk.gather.take: the one gather of the graph code (values, scripted, the index rule)."""

import pytest
import torch

from gnn4itk.gather import take

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_take_is_indexing_along_the_last_dimension(device):
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, 50, (200,), generator=generator).to(device)
    scripted = torch.jit.script(take)
    for values in (
        torch.randn(50, generator=generator),
        torch.randint(-9, 9, (50,), generator=generator),
        torch.randn(50, generator=generator) > 0,
        torch.randn(6, 50, generator=generator),
        torch.randn(50, 6, generator=generator).t(),  # a transposed (non-contiguous) table
        torch.randn(8, 50, generator=generator, dtype=torch.float64)[3::4],  # a strided row view
    ):
        values = values.to(device)
        want = values[..., index]
        for function in (take, scripted):
            got = function(values, index)
            assert got.dtype == values.dtype and torch.equal(got, want)
    assert take(torch.zeros(0), torch.zeros(0, dtype=torch.long)).shape == (0,)
    assert take(torch.zeros(3, 0), torch.zeros(0, dtype=torch.long)).shape == (3, 0)


def test_out_of_range_and_negative_indices_are_errors_on_the_cpu():
    # (On CUDA they are device-side asserts, which end the process's CUDA context: not tested here.)
    for values in (torch.arange(5.0), torch.arange(10.0).reshape(2, 5)):
        for bad in (5, -1):
            with pytest.raises((IndexError, RuntimeError)):
                take(values, torch.tensor([0, bad]))
