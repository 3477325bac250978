"""Guards around one `optimize` call: the heartbeat that renews running trials' leases, and Ctrl-C.

A running trial holds a lease that another driver reads to tell a live trial from an orphan;
the heartbeat thread renews it every `LEASE_EVERY_S` seconds. Ctrl-C pauses running trials at
the end of their epoch (they checkpoint) and makes `optimize` raise `KeyboardInterrupt` once
they have; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from tunelab.studies.driver.context import Context
from tunelab.studies.driver.recorder import Recorder

LEASE_EVERY_S = 15.0


class Heartbeat:
    """Renews the leases of the trials a driver runs, from a daemon thread.

    Args:
        ctx: The driver's shared state (its `in_flight` trials).
        recorder: Writes the leases.
        every: Seconds between renewals.
    """

    def __init__(self, ctx: Context, recorder: Recorder, every: float = LEASE_EVERY_S) -> None:
        self.ctx, self.recorder, self.every = ctx, recorder, every
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            self.recorder.renew_leases(list(self.ctx.in_flight))

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._beat, name="tunelab-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()


class CtrlC:
    """Ctrl-C pauses the study instead of killing it (installed only on the main thread).

    Args:
        ctx: The driver's shared state (its `stop` event).
        pause: Asks the executor's running work to pause (only sets a flag: safe in a handler).
        say: Prints a line (the progress callback's).
    """

    def __init__(self, ctx: Context, pause: Callable[[], None], say: Callable[[str], None]) -> None:
        self.ctx, self.pause, self.say = ctx, pause, say
        self.interrupted = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.ctx.stop.is_set():
            raise KeyboardInterrupt
        self.interrupted = True
        self.ctx.stop.set()
        self.pause()
        self.say("\nCtrl-C: pausing running trials at the end of their epoch (Ctrl-C again to abort)")

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
