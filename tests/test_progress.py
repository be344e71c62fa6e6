"""Progress of long steps: plain lines when the output is not a terminal (CI logs), a live bar when it is."""

import io
import re
import time

from gnn4itk.cli import main
from gnn4itk.event import write_event
from gnn4itk.progress import Progress, format_seconds
from module_map.synthetic import synthetic_events


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class NotATerminal(io.StringIO):
    def isatty(self):
        return False


class Terminal(io.StringIO):
    def isatty(self):
        return True


def plain(total=10, interval=5.0):
    clock, stream = FakeClock(), NotATerminal()
    progress = Progress(total, "simulate", "event", stream=stream, interval=interval, clock=clock, heartbeat=False)
    return progress, clock, stream


def lines(stream):
    return stream.getvalue().splitlines()


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 4.4, 59.6, 61, 3600 + 62)] == ["0:00", "0:04", "1:00", "1:01", "1:01:02"]


def test_plain_lines_at_start_every_interval_and_at_the_end():
    progress, clock, stream = plain()
    assert not progress.live
    assert lines(stream) == ["simulate: 0/10 events (0%)"]
    clock.now += 2.0
    progress.update()  # 2 s after the first line: too early for another one
    assert len(lines(stream)) == 1
    clock.now += 3.0
    progress.update()  # 5 s: a line
    assert lines(stream)[-1] == "simulate: 2/10 events (20%), 0:05 elapsed, ~0:20 left"
    clock.now += 1.0
    progress.update(3)
    assert len(lines(stream)) == 2
    clock.now += 9.0
    progress.set_status("event 5: writing")
    progress.update(5)
    assert lines(stream)[-1] == "simulate: 10/10 events (100%), 0:15 elapsed (event 5: writing)"
    progress.set_status("")
    clock.now += 1.0
    progress.close()
    assert lines(stream)[-1] == "simulate: 10/10 events in 0:16"
    progress.close()  # a second close prints nothing more
    assert len(lines(stream)) == 4
    assert "\r" not in stream.getvalue()  # no bar redraws in a log


def test_heartbeat_reports_a_long_item_without_updates():
    """One event of minutes: the heartbeat (tick) prints the state every interval, without any update."""
    progress, clock, stream = plain(total=1)
    progress.set_status("event 0: Fatras + digitisation")
    clock.now += 4.9
    progress.tick()
    assert len(lines(stream)) == 1
    clock.now += 0.1
    progress.tick()
    assert lines(stream)[-1] == "simulate: 0/1 events (0%), 0:05 elapsed (event 0: Fatras + digitisation)"
    clock.now += 5.0
    progress.tick()
    progress.tick()  # the same moment: no second line
    assert len(lines(stream)) == 3 and lines(stream)[-1].startswith("simulate: 0/1 events (0%), 0:10 elapsed")
    progress.close()
    progress.tick()  # after the end: nothing
    assert lines(stream)[-1].startswith("simulate: 0/1 events in 0:10")
    assert len(lines(stream)) == 4


def test_unknown_total_and_no_unit():
    clock, stream = FakeClock(), NotATerminal()
    with Progress(None, "reading", "", stream=stream, clock=clock, heartbeat=False) as progress:
        clock.now += 6
        progress.update(7)
    assert lines(stream) == ["reading: 0", "reading: 7, 0:06 elapsed", "reading: 7 in 0:06"]


def test_heartbeat_thread_writes_by_itself():
    stream = NotATerminal()
    with Progress(3, "module map", "event", stream=stream, interval=0.05) as progress:
        deadline = time.monotonic() + 60
        while len(lines(stream)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        progress.update(3)
    assert len(lines(stream)) >= 4
    assert all(line.startswith("module map: 0/3 events") for line in lines(stream)[:3])
    assert lines(stream)[-1].startswith("module map: 3/3 events in ")


def test_disabled_prints_nothing():
    stream = Terminal()
    with Progress(5, "simulate", stream=stream, enabled=False) as progress:
        progress.update(5)
        progress.set_status("x")
        progress.tick()
    assert stream.getvalue() == ""


def test_a_terminal_gets_the_live_bar():
    stream = Terminal()
    with Progress(4, "simulate", "event", stream=stream) as progress:
        assert progress.live
        progress.update(4)
    text = stream.getvalue()
    assert "simulate" in text and "4/4" in text
    assert not re.search(r"^simulate: ", text, re.M), "no plain lines on a terminal"


def test_build_module_map_prints_plain_progress_into_a_log(tmp_path, capsys):
    for event in synthetic_events(3, n_particles=200, seed=31):
        write_event(event, tmp_path / "events")
    assert main(["build-module-map", "--events", str(tmp_path / "events"), "--output", str(tmp_path / "m")]) == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("module map:")]
    assert progress[0] == "module map: 0/3 events (0%)"
    # (a slow machine may add lines every few seconds in between)
    assert all(re.fullmatch(r"module map: [0-3]/3 events \(\d+%\), .*", line) for line in progress[1:-1]), progress
    assert re.fullmatch(r"module map: 3/3 events in \d+:\d\d \([\d,]+ particles, [\d,]+/min\)", progress[-1]), progress
    assert main(["build-module-map", "--events", str(tmp_path / "events"), "--output", str(tmp_path / "m"),
                 "--no-progress"]) == 0
    assert not any(line.startswith("module map:") for line in capsys.readouterr().out.splitlines())
