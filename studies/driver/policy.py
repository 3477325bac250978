"""The failure policy: when failing trials mean the study itself is wrong, stop it instead of spending its budget.

A trial that fails is recorded with its reason and the study goes on. But when the last
`max_failures` trials all raised and none of the study has completed, the fault is in the
code, not in a configuration; when the first trials all diverge in their first epoch, it is in
the data or the space; when checkpoints keep failing to be written, it is the disk. Then the
policy sets the study's `fatal` error (raised by `optimize` once running work has paused) and
stops new work.
"""

from __future__ import annotations

import logging

from tunelab.studies.driver.context import Context
from tunelab.studies.driver.mirror import Row
from tunelab.studies.errors import StorageError, TrialError, TunelabError
from tunelab.studies.executors import Outcome

logger = logging.getLogger(__name__)


class FailurePolicy:
    """Watches outcomes in a row and decides when a study must stop.

    Args:
        ctx: The driver's shared state (its `stop` event is set when the study must stop).
        max_failures: How many failures of one kind in a row stop the study.
    """

    def __init__(self, ctx: Context, max_failures: int) -> None:
        self.ctx, self.max_failures = ctx, max_failures
        self.failures: list[Outcome] = []
        self.early_divergences = 0
        self.storage_faults: list[str] = []
        self.fatal: TunelabError | None = None

    def _stop(self, error: TunelabError) -> None:
        self.fatal = error
        self.ctx.stop.set()

    def checkpoints(self, outcome: Outcome) -> None:
        """Stop the study when checkpoints keep failing to be written (a full disk would burn the budget)."""
        problem = outcome.result.checkpoint_error if outcome.result is not None else None
        if problem is None:
            if outcome.result is not None:
                self.storage_faults.clear()
            return
        logger.warning("trial %s: %s (its result is recorded)", outcome.work.number, problem)
        self.storage_faults.append(problem)
        if len(self.storage_faults) >= self.max_failures:
            self._stop(StorageError(
                f"the last {len(self.storage_faults)} trials could not write their checkpoints to "
                f"{str(self.ctx.study.artifacts)!r}, so the study stopped instead of spending its budget (their "
                f"results are recorded). Last: {problem}. Free disk space or make the folder writable, then run "
                f"optimize again"))

    def outcome(self, outcome: Outcome, row: Row) -> None:
        """Count a finished unit of work's outcome (success resets the counts)."""
        result = outcome.result
        if result is not None and result.status == "diverged" and len(result.epochs) == 1:
            self._early_divergence(row)
            return
        if result is not None or (outcome.error or "").startswith("out of memory"):
            self.failures.clear()
            self.early_divergences = 0
            return
        self.failures.append(outcome)
        if len(self.failures) >= self.max_failures and not self.ctx.mirror.any_complete():
            last = self.failures[-1]
            self._stop(TrialError(
                f"the last {len(self.failures)} trials all raised and no trial of the study has completed, so "
                f"the study stopped (this looks like a bug, not a bad configuration). Last error, trial "
                f"{row.number}: {last.error}\n{last.traceback or ''}"))

    def _early_divergence(self, row: Row) -> None:
        """Stop a study whose first trials all diverge in their first epoch: the data or the space is at fault."""
        self.early_divergences += 1
        if self.early_divergences >= self.max_failures and not self.ctx.mirror.any_complete():
            self._stop(TrialError(
                f"the last {self.early_divergences} trials all diverged (non-finite training loss) in their first "
                f"epoch and no trial has completed, so the study stopped instead of spending its budget. Different "
                f"learning rates failing the same way points at the data (extreme or unscaled inputs, e.g. "
                f"standardise x and y) or at the space (ranges no configuration can train with), not at one bad "
                f"configuration. Last: trial {row.number}, {row.error}"))
