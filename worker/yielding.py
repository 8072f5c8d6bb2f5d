"""Deliveries yield to end-contact while the worker beside them is busy.

The dispatcher already runs in the idle scheduling class (worker.deliveries), yet at 16
clients it still cost end-contact about 15 % (bench/webhooks.py): on two cores, what it
runs in end-contact's short waits slows end-contact's next steps (caches, the other
core, the store). So while the worker that started it is busy (it used BUSY_SHARE of a
core or more over the last LOOK seconds), first attempts start only in the first ON
seconds of every PERIOD: a trickle that keeps deliveries going, in order, while
end-contact keeps the machine. An idle worker lets them run at full speed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

BUSY_SHARE = 0.25
LOOK = 0.1
PERIOD = 0.1
ON = 0.01

CpuReader = Callable[[], float | None]


def process_cpu(pid: int) -> CpuReader:
    """A reader of the CPU seconds process `pid` used so far (Linux /proc), None when
    it cannot be read (another system, or the process is gone): then nothing yields."""
    path = f"/proc/{pid}/stat"
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read() -> float | None:
        try:
            with open(path, "rb") as stat:
                # The command name, in parentheses, may hold spaces: fields after it.
                fields = stat.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        except (OSError, IndexError, ValueError):
            return None

    return read


class Yielding:
    """Thread-safe: the runners of every webhook ask before each first attempt."""

    def __init__(
        self,
        cpu: CpuReader,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpu = cpu
        self._clock = clock
        self._lock = threading.Lock()
        self._looked = clock()
        self._used = cpu()
        self._busy = False

    def busy(self) -> bool:
        """Whether the worker used BUSY_SHARE of a core over the last look (one every
        LOOK seconds at most)."""
        now = self._clock()
        with self._lock:
            if now - self._looked >= LOOK:
                used = self._cpu()
                last, self._used = self._used, used
                elapsed, self._looked = now - self._looked, now
                if used is None or last is None:
                    self._busy = False
                else:
                    self._busy = used - last >= BUSY_SHARE * elapsed
            return self._busy

    def wait(self, sleep: Callable[[float], object]) -> None:
        """Return when an attempt may start: at once while the worker is not busy,
        else in the next ON window. `sleep` waits (and may end early, on a stop)."""
        if not self.busy():
            return
        into = self._clock() % PERIOD
        if into >= ON:
            sleep(PERIOD - into)  # to the next window's start (or a stop)
