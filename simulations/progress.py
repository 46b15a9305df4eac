"""Progress of a run on stderr: a bar on a terminal, plain lines anywhere else.

On a terminal this is a tqdm bar.  When stderr is a file or a CI log it writes one line when the
first task starts, one line per finished task, and a heartbeat with the elapsed time and an estimate of
the time left at least every :data:`HEARTBEAT` seconds, so a log never goes quiet for long.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

#: seconds between heartbeat lines when stderr is not a terminal (below 30 s with room for a late one)
HEARTBEAT = 20.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


class PlainProgress:
    """The tqdm calls the runner makes (``update``, ``n``, ``set_postfix_str``, ``close``), as
    plain lines on ``stream`` with a heartbeat thread."""

    def __init__(self, total: int, initial: int = 0, desc: str = "tasks", stream=None,
                 heartbeat: float = HEARTBEAT):
        self.total, self.n, self.desc = total, float(initial), desc
        self.stream = sys.stderr if stream is None else stream
        self.start = time.monotonic()
        self.initial = initial
        self.finished = initial
        self.current = ""
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False

    def _begin(self) -> None:
        """The first line and the heartbeat, once the first task starts (nothing is printed for a
        run that never starts, e.g. when the scheduler cannot be reached)."""
        if self._started:
            return
        self._started = True
        self.start = time.monotonic()
        self._say(f"{self.desc}: {self.total - self.initial} of {self.total} tasks to run"
                  + (f" ({self.initial} up to date)" if self.initial else ""))
        threading.Thread(target=self._beat, args=(self.heartbeat,), daemon=True).start()

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def _eta(self) -> str:
        done = self.n - self.initial
        left = self.total - self.n
        if done <= 0 or left <= 0:
            return "?" if left > 0 else "00:00"
        return _clock((time.monotonic() - self.start) / done * left)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            self.beat()

    def beat(self) -> None:
        """One heartbeat line: tasks done, elapsed time, estimated time left, the latest task."""
        self._say(f"{self.desc}: {self.n:.1f}/{self.total} tasks, elapsed "
                  f"{_clock(time.monotonic() - self.start)}, about {self._eta()} left"
                  + (f" (running {self.current})" if self.current else ""))

    def update(self, amount: float) -> None:
        self._begin()
        self.n += amount
        while self.finished + 1 <= self.n + 1e-9:
            self.finished += 1
            self._say(f"{self.desc}: finished {self.finished}/{self.total} tasks, elapsed "
                      f"{_clock(time.monotonic() - self.start)}, about {self._eta()} left")

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.current = text
        self._begin()

    def close(self) -> None:
        self._stop.set()


class NoProgress:
    """Progress turned off."""

    n = 0.0

    def update(self, amount: float) -> None:
        self.n += amount

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def stage(what: str, enabled: bool = True, stream=None, heartbeat: float = HEARTBEAT):
    """Say ``what`` is being done, then a line with the elapsed time at least every ``heartbeat``
    seconds until it is done, and one when it is (for steps without tasks, such as writing a report)."""
    if not enabled:
        yield
        return
    stream = sys.stderr if stream is None else stream
    start, done = time.monotonic(), threading.Event()
    print(f"{what} ...", file=stream, flush=True)

    def beat():
        while not done.wait(heartbeat):
            print(f"{what}: still working, elapsed {_clock(time.monotonic() - start)}", file=stream, flush=True)
    threading.Thread(target=beat, daemon=True).start()
    try:
        yield
    finally:
        done.set()
    print(f"{what}: done in {_clock(time.monotonic() - start)}", file=stream, flush=True)


def progress_bar(total: int, initial: int, desc: str, enabled: bool = True):
    """A tqdm bar when stderr is a terminal, :class:`PlainProgress` lines otherwise,
    :class:`NoProgress` when not ``enabled``."""
    if not enabled:
        return NoProgress()
    if sys.stderr.isatty():
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit="task", delay=2.0, initial=initial,
                    bar_format="{l_bar}{bar}| {n:.1f}/{total} tasks [{elapsed}<{remaining}{postfix}]")
    return PlainProgress(total, initial, desc)
