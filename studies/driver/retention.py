"""Retention: which checkpoint files a study keeps, and deleting the others (only in the study's own folder).

Paused trials keep their checkpoints (they continue from them). A finished trial keeps its
final checkpoint as `keep_checkpoints` says: "none" (the default: the final weights are not
written at all), "best" (the best complete trial's) or "all"; a failed run's is never kept.
The trainer writes a final checkpoint only when it may be kept (`final_policy`): with "best",
only a run that ends better than the study's best when it was started. A file is deleted only while the marker of the
study's folder still names this study and database (`studies.artifacts.owns`), and a deleted
file's registration goes with it, so no trial names a file that is gone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tunelab.studies.artifacts import checkpoint_path, owns
from tunelab.studies.driver.context import Context
from tunelab.studies.driver.mirror import Row
from tunelab.studies.driver.recorder import Recorder
from tunelab.studies.records import TrialState
from tunelab.trainers.routines import is_comparable

logger = logging.getLogger(__name__)
KEEP = ("best", "all", "none")


class Retention:
    """The checkpoint files of one study.

    Args:
        ctx: The driver's shared state.
        recorder: Writes the dropped registrations.
        keep: "best", "all" or "none" (see the module docstring).
    """

    def __init__(self, ctx: Context, recorder: Recorder, keep: str = "none") -> None:
        self.ctx, self.recorder, self.keep = ctx, recorder, keep

    def path(self, row: Row) -> Path | None:
        """Where `row`'s checkpoint lives (None if it names none); a stored name outside the folder is refused."""
        study = self.ctx.study
        return checkpoint_path(study.artifacts, study.folder, row.trial_id, row.number, row.checkpoint)

    def remove(self, path: Path | None) -> None:
        """Delete a checkpoint tunelab owns, only while the study's folder is still its own.

        A file system that refuses is logged, not fatal.
        """
        if path is None or not path.exists():
            return
        study = self.ctx.study
        if not owns(self.ctx.folder, str(study.uid), study.database):
            logger.warning("kept the checkpoint %s: the marker of %s no longer names study %r of %s", path,
                           self.ctx.folder, study.name, study.database)
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            logger.warning("could not delete the checkpoint %s: %s", path, err)

    def final_policy(self, row: Row) -> bool | tuple[float, float]:
        """What a unit of work is told about its final checkpoint (`executors.base.Work.keep_final`).

        True: write it; False: do not; `(value, sign)`: write it only if the run ends better
        than the study's best now, in the study's direction (`sign * metric < sign * value`).
        """
        if self.keep == "all":
            return True
        if self.keep == "none" or not is_comparable(row.routine):
            return False
        best = self.ctx.mirror.study_best()
        return True if best is None else (float(best[1]), float(self.ctx.sign))

    def keeps(self, row: Row, state: TrialState, value: float | None) -> bool:
        """Whether the checkpoint of `row`, which is ending in `state` with `value`, is kept."""
        if state == TrialState.FAILED or self.keep == "none":
            return False
        if self.keep == "all":
            return True
        if state != TrialState.COMPLETE or value is None or not is_comparable(row.routine):
            return False
        best = self.ctx.mirror.study_best()
        return best is None or self.ctx.sign * float(value) < self.ctx.sign * best[1]

    def retain(self, row: Row) -> None:
        """Delete the checkpoints of finished trials that are not kept, now that `row` has finished.

        Only trials that may still have one are looked at: `row`, and the ones kept so far (the
        best); with "best", the first call also looks at every trial finished before this driver
        started. So a finish costs O(1) file operations, not one per trial of the study. With
        "none" (the default) only the trials that end in this call lose their files: a
        checkpoint an earlier call kept (with "best" or "all", or 0.3.0's default "best") stays.
        """
        if self.keep == "all":
            return
        mirror = self.ctx.mirror
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        if self.keep == "none":  # only this trial's file (a periodic one); what earlier calls kept stays
            path = self.path(row) if row.state in finished else None
            if path is not None:
                self.recorder.forget_checkpoint(row)
                self.remove(path)
            return
        kept = mirror.kept
        if kept is None:
            kept = mirror.kept = {tid for tid, r in mirror.rows.items() if r.state in finished}
        kept.add(row.trial_id)
        best = mirror.study_best() if self.keep == "best" else None
        for tid in sorted(kept):
            r = mirror.rows.get(tid)
            if r is None or r.state not in finished:
                kept.discard(tid)
            elif best is None or r.number != best[0]:
                path = self.path(r)
                if path is not None:  # no longer the best: its file goes, and so does its registration
                    self.recorder.forget_checkpoint(r)
                    self.remove(path)
                kept.discard(tid)
