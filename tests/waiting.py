"""Waiting in tests: on a state, with a deadline of its own that says what was awaited (never a sleep guess)."""

from __future__ import annotations

import time
from collections.abc import Callable

DEADLINE_S = 120.0
HOLD_S = 600.0  # how long a deliberately frozen worker holds before it gives up (its test kills it long before)


def wait_for(predicate: Callable[[], object], what: str, deadline: float = DEADLINE_S, every: float = 0.05) -> None:
    """Poll `predicate` every `every` seconds until it is true.

    Raises:
        AssertionError: Not true within `deadline` seconds; the message names `what` was awaited.
    """
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"waited {deadline:.0f} s for {what}")
        time.sleep(every)


def hold(what: str, seconds: float = HOLD_S) -> None:
    """Freeze the calling (worker) process, as a hang would, until it is killed; give up after `seconds`."""
    time.sleep(seconds)
    raise SystemExit(f"held {seconds:.0f} s ({what}) and nobody killed this process")
