"""Progress of long command-line steps: a live bar on a terminal, short plain lines in a log.

``make demo`` and ``make default-map`` run steps of minutes (simulation, module-map creation). On a
terminal they show a live bar (rich), whose elapsed time keeps moving between updates. When standard
output is not a terminal (CI logs, ``make demo > log``) a bar would fill the log with carriage returns,
so the step prints a short line instead: when it starts, at most every :data:`PLAIN_INTERVAL_S` seconds
while it runs (also when no item finished in that time, e.g. during one long event), and when it ends::

    simulate: 0/100 events
    simulate: 14/100 events (14%), 0:25 elapsed, ~2:34 left
    simulate: 100/100 events in 2:58

``enabled=False`` (the commands' ``--no-progress``) prints nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

PLAIN_INTERVAL_S = 5.0
"""Seconds between two plain progress lines (non-terminal output)."""


def format_seconds(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a duration in seconds."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress of ``total`` items of one step.

    Args:
        total: number of items, or None when unknown.
        description: the step's name, first word of every line (e.g. ``"simulate"``).
        unit: the item's name in the singular (``"event"``); lines use ``unit + "s"``.
        enabled: False prints nothing at all.
        stream: where to write; None means ``sys.stdout`` at the time of each write (so that a
            temporary replacement of ``sys.stdout`` is followed).
        live: True for the live bar, False for plain lines, None to decide by ``stream.isatty()``.
        interval: seconds between plain lines.
        clock: monotonic clock in seconds (tests pass a fake one).
        heartbeat: plain mode only: a background thread prints the current state when no line came for
            ``interval`` seconds. Tests turn it off and call :meth:`tick` themselves.

    Use as a context manager, or call :meth:`close` at the end.
    """

    def __init__(
        self,
        total: int | None,
        description: str,
        unit: str = "event",
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        live: bool | None = None,
        interval: float = PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: bool = True,
    ):
        self.total = total
        self.description = description
        self.unit = unit
        self.enabled = enabled
        self.interval = float(interval)
        self.count = 0
        self.status = ""
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._lock = threading.Lock()
        self._closed = False
        self._rich = None
        self._task = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not enabled:
            self.live = False
            return
        self.live = self._isatty() if live is None else bool(live)
        if self.live:
            self._start_live()
        else:
            self._write(self._line())
            if heartbeat:
                self._thread = threading.Thread(target=self._beat, name=f"progress-{description}", daemon=True)
                self._thread.start()

    # ------------------------------------------------------------------------------------------ API

    def update(self, n: int = 1) -> None:
        """``n`` more items are done."""
        if not self.enabled:
            return
        with self._lock:
            self.count += n
            if self._rich is not None:
                self._rich.update(self._task, completed=self.count, status=self.status)
                return
            if self._clock() - self._last_line >= self.interval:
                self._write(self._line())

    def set_status(self, text: str) -> None:
        """A short text about the current state (shown after the counts), e.g. ``"particles 1,234"``."""
        if not self.enabled:
            return
        with self._lock:
            self.status = text
            if self._rich is not None:
                self._rich.update(self._task, status=text)

    def tick(self) -> None:
        """Plain mode: print the current state if no line came for ``interval`` seconds (the heartbeat)."""
        if not self.enabled or self.live:
            return
        with self._lock:
            if not self._closed and self._clock() - self._last_line >= self.interval:
                self._write(self._line())

    def close(self) -> None:
        """The step is over: stop the bar, or print the final line."""
        if not self.enabled or self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._closed = True
            if self._rich is not None:
                self._rich.update(self._task, completed=self.count, status=self.status)
                self._rich.stop()
                return
            elapsed = format_seconds(self._clock() - self._start)
            self._write(f"{self.description}: {self._counts()} in {elapsed}" + self._status_suffix())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ internals

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def _isatty(self) -> bool:
        try:
            return bool(self._out().isatty())
        except (AttributeError, ValueError):
            return False

    def _write(self, line: str) -> None:
        out = self._out()
        out.write(line + "\n")
        out.flush()
        self._last_line = self._clock()

    def _counts(self) -> str:
        units = f"{self.unit}s" if self.unit else ""
        if self.total is None:
            return f"{self.count} {units}".rstrip()
        return f"{self.count}/{self.total} {units}".rstrip()

    def _status_suffix(self) -> str:
        return f" ({self.status})" if self.status else ""

    def _line(self) -> str:
        """``simulate: 14/100 events (14%), 0:25 elapsed, ~2:34 left (status)``."""
        elapsed = self._clock() - self._start
        parts = [self._counts()]
        if self.total:
            parts[0] += f" ({100 * self.count // self.total}%)"
        if self.count or elapsed >= self.interval:
            parts.append(f"{format_seconds(elapsed)} elapsed")
        if self.total and 0 < self.count < self.total:
            parts.append(f"~{format_seconds(elapsed / self.count * (self.total - self.count))} left")
        return f"{self.description}: " + ", ".join(parts) + self._status_suffix()

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            self.tick()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        # narrow enough for the status to fit an 80-column terminal
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn() if self.total is not None else TextColumn("{task.completed}"),
            TextColumn(f"{self.unit}s") if self.unit else TextColumn(""),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        console = Console(file=self._stream) if self._stream is not None else Console()
        self._rich = RichProgress(*columns, console=console, refresh_per_second=4)
        self._task = self._rich.add_task(self.description, total=self.total, status="")
        self._rich.start()
