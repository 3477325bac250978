"""Recovery: trials whose driver or worker died are continued from their checkpoint, or re-queued.

A running trial whose owner is dead (its lease expired, or its process on this host is gone;
a driver of this very process counts as alive only while its `run` is) is paused to be
continued when its checkpoint loads and agrees with the trial's config, after making the
stored curve equal the checkpoint's history step for step (the database may lag the checkpoint
by up to `flush_seconds`, or lead it by up to `checkpoint_seconds`). Otherwise it is marked
failed ("interrupted") and re-queued with the same config and proposal, in the same transaction
that inserts its re-run, so a kill in between can neither lose the proposal nor run it twice.
"""

from __future__ import annotations

from tunelab.spaces.errors import CheckpointError
from tunelab.studies.driver.context import Context
from tunelab.studies.driver.mirror import Row
from tunelab.studies.driver.recorder import Recorder
from tunelab.studies.driver.retention import Retention
from tunelab.studies.records import TrialState
from tunelab.studies.storage.lock import gone
from tunelab.trainers import EpochResult, load_checkpoint


class Recovery:
    """Finds dead trials and brings them back.

    Args:
        ctx: The driver's shared state.
        recorder: Writes pauses, re-queues and reconciled curves.
        retention: Where checkpoints are (and deletes unreadable ones).
    """

    def __init__(self, ctx: Context, recorder: Recorder, retention: Retention) -> None:
        self.ctx, self.recorder, self.retention = ctx, recorder, retention

    def dead(self, row: Row) -> bool:
        """Whether a running trial's driver is gone (its lease ran out, or its process on this host is)."""
        if row.trial_id in self.ctx.in_flight:
            return False
        return gone(row.owner, row.lease)

    def recover(self) -> None:
        """Continue or re-queue every running trial whose driver died. Call it holding the study lock."""
        for row in self.ctx.mirror.unfinished():
            if row.state == TrialState.RUNNING and self.dead(row):
                self.recover_one(row)

    def recover_one(self, row: Row) -> None:
        """Pause `row` to continue from its checkpoint, or re-queue it (failed, "interrupted") without a usable one."""
        path = self.retention.path(row)
        reason = None
        if path is not None and path.exists():
            try:
                state = load_checkpoint(path)
                stored = state.get("config")
                # a routine may complete the trial's config before it trains (a schedule replay adds the
                # values it sets): the checkpoint must agree with every value the trial has
                if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in row.config.items()):
                    raise CheckpointError(f"{path} holds another configuration")
                history = [EpochResult(**e) for e in state["history"]]
            except (CheckpointError, KeyError, TypeError) as err:
                reason = f"its checkpoint was unreadable ({err})"
                self.retention.remove(path)
            else:
                self.recorder.reconcile(row, history)
                self.recorder.pause(row)
                return
        elif row.epochs == 0:
            reason = "its process stopped before its first epoch ended"
        else:
            reason = (f"its process stopped after {row.epochs} recorded epochs with no checkpoint to continue "
                      f"from (none was written yet, or it was deleted)")
        self.recorder.requeue(row, reason)
