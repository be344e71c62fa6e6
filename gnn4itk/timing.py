"""Wall-clock timing of device work, shared by the benchmarks."""

from __future__ import annotations

import time

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU), so that host clocks measure it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(function, device: torch.device | str, warmup: int, repeats: int) -> list[float]:
    """Wall times [s] of ``repeats`` calls of ``function()`` after ``warmup`` untimed calls.

    The device is synchronised before each clock start and after each call, so every time covers the
    whole of one call's device work.
    """
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times
