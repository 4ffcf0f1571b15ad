"""The idle reaper: warm worker pools shrink when nothing uses them, as AWS reclaims idle capacity.

AWS keeps a Lambda execution environment for a while after an invocation and then reclaims it;
a Glue job run's workers exist only while it runs. The local cloud keeps processes warm so a run
does not pay Python's and Spark's start-up at every step (a Lambda worker holds 100-300 MB, a
Spark driver with its JVM 400-600 MB), but an idle local cloud must not keep them forever.
``IdleReaper`` calls each pool's ``reap_idle(idle_seconds)`` (the Glue and Lambda engines'),
which stops the workers idle for at least that long; a busy worker is never stopped, and the
next run starts a new one (a cold start, as in AWS). After stopping something it hands the
freed heap back to the operating system (``release_memory``).

The reaper checks every quarter of the timeout (at most every ``MAX_CHECK_SECONDS``), so a
worker goes at most a quarter of the timeout late. ``None`` or 0 turns it off (the test session
shares warm Spark drivers across clouds on purpose).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
from collections.abc import Callable, Sequence

LOGGER = logging.getLogger(__name__)

#: How long a warm worker may stay idle before it is stopped, unless the cloud is told otherwise.
#: Longer than any gap between two steps of a run (state transitions, the test endpoint's wait),
#: so a run in flight keeps its workers; short enough that an idle cloud shrinks in minutes.
DEFAULT_IDLE_TIMEOUT_SECONDS = 120.0
#: The longest the reaper sleeps between two checks.
MAX_CHECK_SECONDS = 10.0

#: ``reap_idle(idle_seconds)``: stop the workers idle for at least that long; how many it stopped.
Reap = Callable[[float], int]


class IdleReaperError(ValueError):
    """The reaper was given a timeout it cannot use."""


def release_memory() -> None:
    """Collect garbage and return the C heap's free pages to the operating system (glibc's
    ``malloc_trim``), so memory a finished job freed stops counting in the process's RSS."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return
    trim(0)


class IdleReaper:
    """A daemon thread that stops idle workers of ``pools`` after ``idle_seconds``."""

    def __init__(self, pools: Sequence[Reap], idle_seconds: float, *, on_reap: Callable[[int], None] | None = None):
        if not idle_seconds > 0:
            raise IdleReaperError(f"the idle timeout must be positive, got {idle_seconds!r}")
        self.pools = list(pools)
        self.idle_seconds = float(idle_seconds)
        #: Called with the number of workers stopped, after each check that stopped some.
        self.on_reap = on_reap
        self.check_seconds = min(self.idle_seconds / 4, MAX_CHECK_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stepml-idle-reaper", daemon=True)

    def start(self) -> IdleReaper:
        self._thread.start()
        return self

    def reap_now(self) -> int:
        """One check of every pool; the number of workers stopped."""
        stopped = 0
        for reap in self.pools:
            try:
                stopped += reap(self.idle_seconds)
            except Exception:  # one pool's failure must not keep the others' workers alive
                LOGGER.exception("reaping idle workers failed")
        if stopped:
            release_memory()
            if self.on_reap is not None:
                self.on_reap(stopped)
        return stopped

    def _loop(self) -> None:
        while not self._stop.wait(self.check_seconds):
            self.reap_now()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
