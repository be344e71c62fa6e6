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


def profile_table(function, device: torch.device | str, calls: int = 3, rows: int = 30, *, warmup: int = 0,
                  sort: str = "self", by_shape: bool = False) -> str:
    r"""torch.profiler's operator table of ``calls`` calls of ``function``: where the time goes, by
    operator, sorted by the device's time (the CPU's on the CPU), ``rows`` rows.

    Args:
        function (callable): called with no arguments; what it returns is dropped.
        device (torch.device or str): where ``function`` runs; on CUDA the profiler also records the
            kernels (CUDA activity) and the tables sort by device time.
        calls (int, optional): profiled calls; the table holds totals over them. (default: :obj:`3`)
        rows (int, optional): rows of each table. (default: :obj:`30`)
        warmup (int, optional): unprofiled calls first, finished before the profiler starts; the default
            assumes ``function`` is already warmed up. (default: :obj:`0`)
        sort (str, optional): :obj:`"self"` sorts by each operator's own time, :obj:`"total"` by its time
            including the operators it calls. (default: :obj:`"self"`)
        by_shape (bool, optional): also record the operators' input shapes and append a second table of
            the same calls grouped by operator and input shapes. (default: :obj:`False`)

    Returns:
        the table(s) as text (``key_averages().table``), separated by a blank line.
    """
    if sort not in ("self", "total"):
        raise ValueError(f"sort must be 'self' or 'total', not {sort!r}")
    device = torch.device(device)
    if warmup:
        for _ in range(warmup):
            function()
        synchronize(device)  # so that no warm-up work still queued on the device lands in the profile
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    # Shapes cost profiling overhead, so they are recorded only when their table is wanted.
    with torch.profiler.profile(activities=activities, record_shapes=by_shape) as profiler:
        for _ in range(calls):
            function()
        synchronize(device)
    total = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    sort_by = f"self_{total}" if sort == "self" else total
    tables = [profiler.key_averages().table(sort_by=sort_by, row_limit=rows)]
    if by_shape:
        # A narrower name column leaves room for the shapes of several inputs on one line.
        tables.append(profiler.key_averages(group_by_input_shape=True).table(
            sort_by=sort_by, row_limit=rows, max_name_column_width=30, max_shapes_column_width=70))
    return "\n".join(tables)
