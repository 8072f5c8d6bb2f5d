"""`python -m worker.deliveries`: the dispatcher in a process of its own."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import threading

from shared import logs
from shared.metrics import Registry
from shared.settings import Settings, exit_on_bad_settings
from shared.store import Store
from worker.deliveries.dispatcher import Dispatcher
from worker.yielding import Yielding, process_cpu

# The dispatcher process's niceness (19 is the lowest priority), where the idle
# scheduling class (lowest_priority) is not to be had.
NICE = 19
FLUSH_INTERVAL = 1.0


def _die_with_parent() -> None:
    """Linux: SIGTERM when the worker that started this process dies, even SIGKILLed,
    so that no dispatcher outlives its worker."""
    with contextlib.suppress(AttributeError, OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the worker died before the line above
        raise SystemExit(0)


PR_SET_PDEATHSIG = 1


def lowest_priority() -> None:
    """Deliveries take the CPU that end-contact leaves, not what it needs. At nice 19
    they still took a quarter of a core from it at 16 clients (bench/webhooks.py): a
    woken end-contact process waited for the dispatcher's time slice. In the idle
    class (SCHED_IDLE) any other process that wakes up runs at once. Called before
    any thread starts: Linux sets the class per thread, and threads inherit it."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(NICE)


def main() -> None:
    """`python -m worker.deliveries`: the dispatcher in a process of its own, which
    each worker process starts and stops with itself (worker/app.py). A process, not a
    thread of the worker: deliveries cost about ten times the CPU of the marks they
    follow, and at a lower priority, with a GIL of their own, they take only what
    end-contact leaves (bench/webhooks.py)."""
    logs.configure()
    _die_with_parent()
    lowest_priority()
    with exit_on_bad_settings():
        settings = Settings.from_env()
    store = Store.connect(settings)
    metrics = Registry()
    name = f"{socket.gethostname()}-{os.getpid()}"
    dispatcher = Dispatcher(settings, name, metrics, Yielding(process_cpu(os.getppid())))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    dispatcher.start()
    while not stopping.wait(FLUSH_INTERVAL):
        _flush(store, metrics)
    dispatcher.stop()
    _flush(store, metrics)
    store.close()


def _flush(store: Store, metrics: Registry) -> None:
    with metrics.flushing() as counts:
        if counts:
            store.add_metrics(counts)
