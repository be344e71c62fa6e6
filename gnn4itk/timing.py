"""Wall-clock timing and peak memory of device work, shared by the benchmarks."""

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


def timed_calls_events(function, device: torch.device | str, warmup: int, repeats: int) -> list[float]:
    """Times [s] of ``repeats`` calls of ``function()`` after ``warmup`` untimed calls, from CUDA events.

    On a CUDA device each time is the span between two events recorded on the current stream just
    before and just after the call; the device is synchronised before each start, so no earlier work
    is counted, and the end event is waited for, so calls never overlap. Host work inside the call that
    delays its kernels (launch overhead, host syncs) is part of the span, as it is for a caller. On
    other devices this is :func:`timed_calls`.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return timed_calls(function, device, warmup, repeats)
    for _ in range(warmup):
        function()
    stream = torch.cuda.current_stream(device)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record(stream)
        function()
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)  # elapsed_time is in ms
    return times


def peak_memory(function, device: torch.device | str):
    """One call of ``function()`` and the GPU memory it needed.

    Returns:
        (what the call returned, peak bytes allocated during it, bytes allocated before it); both byte
        counts are None off CUDA. The peak includes what was allocated before (weights, inputs).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return function(), None, None
    synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = function()
    synchronize(device)
    return result, torch.cuda.max_memory_allocated(device), start


def profile_table(function, device: torch.device | str, calls: int = 3, rows: int = 30) -> str:
    """torch.profiler's operator table of ``calls`` calls of ``function`` (already warmed up): where the time
    goes, by operator, sorted by the device's own time (the CPU's on the CPU), ``rows`` rows.

    Returns:
        the table as text (``key_averages().table``), totals over the ``calls`` calls.
    """
    device = torch.device(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(calls):
            function()
        synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=rows)
