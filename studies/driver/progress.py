"""Progress output of `optimize`: a callback the loop calls, as Optuna's and Syne Tune's callbacks are called.

`Progress` shows a tqdm bar over the budget's first unit and one line per finished trial;
`progress=False` makes the same calls do nothing. The loop never prints itself.
"""

from __future__ import annotations

from typing import Any

from tunelab.studies.driver.budget import Budget, Meter
from tunelab.studies.driver.mirror import Mirror, Row
from tunelab.studies.records import TrialState


class Progress:
    """The bar and the lines of one `optimize` call.

    Args:
        enabled: Show anything at all (`optimize(progress=...)`).
        name: The study's name (the bar's label).
        metric: The objective's name (in each trial's line).
        budget: The budget (the bar counts its first unit).
        meter: Its meter (seconds spent).
        mirror: The study's trials (finished proposals, epochs trained, the best).
    """

    def __init__(self, enabled: bool, name: str, metric: str, budget: Budget, meter: Meter, mirror: Mirror) -> None:
        self.enabled, self.name, self.metric = enabled, name, metric
        self.budget, self.meter, self.mirror = budget, meter, mirror
        self.bar: Any = None

    def start(self) -> None:
        """Open the bar, at what the study has already spent of its first unit."""
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        unit = self.budget.unit
        total = self.budget.as_dict()[unit]
        initial = self.mirror.finished_proposals() if unit == "trials" else 0
        if unit in ("epochs", "grad_evals"):
            initial = int(self.mirror.totals()[0 if unit == "epochs" else 1])
        self.bar = tqdm(total=total, initial=min(initial, total), unit=unit[:-1] if unit.endswith("s") else unit,
                        desc=self.name, dynamic_ncols=True)

    def line(self, text: str) -> None:
        """Print one line (above the bar, when there is one)."""
        if not self.enabled:
            return
        (self.bar.write if self.bar is not None else print)(text)

    def epoch(self) -> None:
        """One epoch was trained (the bar of a budget in epochs moves)."""
        bar = self.bar
        if bar is not None and self.budget.unit == "epochs" and bar.n < (bar.total or 0):
            bar.update(1)

    def ended(self, row: Row) -> None:
        """A trial finished or paused: its line, and the bar of a budget in trials, seconds or grad_evals."""
        if not self.enabled or (row.state == TrialState.PAUSED and row.paused_by == "strategy"):
            return  # a multi-fidelity strategy pauses trials at every increment: the bar shows progress
        if row.state == TrialState.COMPLETE:
            what = f"{self.metric} {row.value:.4f}"
        elif row.state == TrialState.PAUSED:
            what = f"paused at epoch {row.epochs}"
        else:
            what = f"{row.state}: {row.error}" if row.error else str(row.state)
        best = self.mirror.study_best()
        tail = f"  best {best[1]:.4f} (trial {best[0]})" if best else ""
        self.line(f"trial {row.number:>3}  {what}  ({row.epochs} epochs, {row.seconds:.1f} s){tail}")
        bar = self.bar
        if bar is None:
            return
        unit = self.budget.unit
        if unit == "trials":
            bar.n = min(self.mirror.finished_proposals(), bar.total or 0)
        elif unit == "seconds":
            bar.n = round(min(self.meter.elapsed(), bar.total or 0.0), 1)
        elif unit == "grad_evals":
            bar.n = min(int(self.mirror.totals()[1]), bar.total or 0)
        else:
            return
        bar.refresh()

    def close_bar(self) -> None:
        """Close the bar (also when the loop ends with an error); it keeps its last count."""
        if self.bar is not None:
            self.bar.close()

    def summary(self, *, paused: bool, nothing_left: bool) -> None:
        """Say how the call ended: paused by Ctrl-C, or a study whose budget was already spent."""
        if not self.enabled:
            return
        if paused:
            n = self.mirror.count(TrialState.PAUSED)
            print(f"study {self.name!r} paused ({n} trials paused); run optimize again to continue")
        elif nothing_left:
            done = self.mirror.count(TrialState.COMPLETE)
            print(f"study {self.name!r} is complete: its budget {self.budget.text()} is spent ({done} complete "
                  f"trials); give a larger total to continue it")
