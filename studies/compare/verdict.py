"""The one-line verdict of an optimizer comparison, decided from the intervals of expected best.

An arm wins a problem only when its interval of the expected best validation metric at the
full budget lies entirely on the better side of every other arm's interval. Overlapping
intervals are a tie, and the verdict then says that no optimizer is better. Requiring two
95% intervals not to overlap is stricter than a 5% test of their difference (Schenker &
Gentleman 2001, "On judging the significance of differences by examining the overlap between
confidence intervals"). That margin offsets the bootstrap interval's under-coverage when k is
close to the number of trials (see `stats.expected_max_interval`).

Pure functions over plain numbers; `tables.verdict` feeds them from a comparison's table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunelab.spaces.errors import ConfigError

MIN_TRIALS = 3


@dataclass(frozen=True)
class Estimate:
    """One arm's expected best validation metric at the full budget, with its interval.

    Attributes:
        label: The arm's name in the verdict (the optimizer, or optimizer+schedule).
        value: The expected best of k trials.
        low, high: Its interval (low <= high, in the metric's units).
        trials: Trials per study (k).
    """

    label: str
    value: float
    low: float
    high: float
    trials: int

    @property
    def finite(self) -> bool:
        """Whether the estimate and both ends of its interval are numbers."""
        return all(math.isfinite(v) for v in (self.value, self.low, self.high))

    def text(self) -> str:
        """`label [low, high]`."""
        return f"{self.label} [{self.low:.4f}, {self.high:.4f}]"


def winner(estimates: Sequence[Estimate], *, maximize: bool) -> Estimate | None:
    """The arm whose interval lies strictly on the better side of every other arm's interval, if any.

    Args:
        estimates: Two or more arms with finite estimates.
        maximize: Whether larger is better.

    Returns:
        The winning arm, or None when its interval overlaps another's (a tie).

    Raises:
        ConfigError: Fewer than two arms, or an estimate that is not finite.
    """
    if len(estimates) < 2 or not all(e.finite for e in estimates):
        raise ConfigError("a winner needs two or more arms with finite estimates and intervals")
    sign = 1.0 if maximize else -1.0
    best = max(estimates, key=lambda e: sign * e.value)
    others = [e for e in estimates if e is not best]
    clear = all(best.low > e.high if maximize else best.high < e.low for e in others)
    return best if clear else None


def _why_not(estimates: Sequence[Estimate], reliable: bool) -> str | None:
    """Why no verdict can be drawn on a problem, or None when one can."""
    if not reliable:
        return ("with an adaptive strategy and one study seed the expected best has no interval "
                "(give seeds >= 2 to bootstrap over studies)")
    usable = [e for e in estimates if e.finite]
    if len(usable) < 2:
        return "fewer than two optimizers have results"
    if min(e.trials for e in usable) < MIN_TRIALS:
        return f"fewer than {MIN_TRIALS} trials per optimizer bound nothing"
    return None


def _budget(estimates: Sequence[Estimate]) -> str:
    ns = {e.trials for e in estimates if e.finite}
    return f"k={ns.pop()}" if len(ns) == 1 else "the full budget"


def verdict(per_problem: Mapping[str, Sequence[Estimate]], *, maximize: Mapping[str, bool],
            metric: Mapping[str, str], reliable: bool = True, level: float = 0.95) -> str:
    """The comparison's verdict in one line: the winner, or that no optimizer is better.

    Args:
        per_problem: Problem -> every arm's `Estimate` at the full budget.
        maximize: Problem -> whether its metric is better when larger.
        metric: Problem -> the name of its metric (e.g. "accuracy").
        reliable: False when the intervals measure nothing (an adaptive strategy with a single
            study seed: there is nothing to resample); the verdict then declines.
        level: The intervals' confidence level (for the wording).

    Returns:
        One sentence. It names a winner only where that arm's interval is clear of every other's.
    """
    pct = f"{100 * level:g}%"
    wins: dict[str, Estimate | None] = {}
    declined: dict[str, str] = {}
    for problem, estimates in per_problem.items():
        why = _why_not(estimates, reliable)
        if why is not None:
            declined[problem] = why
            continue
        wins[problem] = winner([e for e in estimates if e.finite], maximize=maximize[problem])
    if not wins:
        reasons = "; ".join(f"{p}: {why}" for p, why in declined.items())
        return f"No verdict: {reasons}."
    side = {p: "above" if maximize[p] else "below" for p in wins}
    if len(per_problem) == 1:
        (problem, won), = wins.items()
        usable = sorted((e for e in per_problem[problem] if e.finite), key=lambda e: -e.value
                        if maximize[problem] else e.value)
        what = f"expected best validation {metric[problem]}"
        if won is None:
            return (f"No optimizer is better at this budget ({_budget(usable)}) on {problem}: the {pct} intervals of "
                    f"{what} overlap ({', '.join(e.text() for e in usable)}).")
        return (f"{won.label} is best at {_budget(usable)} on {problem}: its {pct} interval of {what} "
                f"[{won.low:.4f}, {won.high:.4f}] lies {side[problem]} every other optimizer's (next: "
                f"{usable[1].text()}).")
    budget = _budget([e for p in wins for e in per_problem[p]])
    labels = {w.label for w in wins.values() if w is not None}
    tail = f" No verdict on {', '.join(declined)} ({'; '.join(declined.values())})." if declined else ""
    if not labels:
        return (f"No optimizer is better at this budget ({budget}): on every problem the {pct} intervals of expected "
                f"best validation metric overlap.{tail}")
    if len(labels) == 1 and all(w is not None for w in wins.values()):
        return (f"{labels.pop()} is best at {budget} on every problem ({', '.join(wins)}): its {pct} interval of "
                f"expected best validation metric lies clear of every other optimizer's on each.{tail}")
    best = "; ".join(f"{w.label} on {p}" for p, w in wins.items() if w is not None)
    tied = [p for p, w in wins.items() if w is None]
    overlap = f"; on {', '.join(tied)} the intervals overlap" if tied else ""
    return (f"No optimizer is best everywhere at {budget}. Best, its {pct} interval of expected best validation "
            f"metric clear of every other's: {best}{overlap}.{tail}")


__all__ = ["MIN_TRIALS", "Estimate", "verdict", "winner"]
