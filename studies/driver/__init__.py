"""The driver of `Study.optimize`: small parts with one job each, composed by a small loop.

| part | job |
|---|---|
| `loop.Driver` | moves units of work between the planner, the executor and the recorder |
| `planner.Planner` | what to train next, under the study lock (re-queued, interrupted, requested); populations |
| `recorder.Recorder` | the only writer of trials: creation, claims, epochs (batched), endings, re-queues |
| `outcomes.ending_of` | how an outcome becomes a trial's state, value and attributes (a pure function) |
| `recovery.Recovery` | trials whose driver or worker died: continued from their checkpoint, or re-queued |
| `retention.Retention` | which checkpoint files are kept, and deleting the others |
| `budget.Budget`, `budget.Meter` | the study's totals, and how much of them is spent |
| `policy.FailurePolicy` | when failures mean the study itself must stop |
| `progress.Progress` | the bar and the lines (a callback) |
| `guards.Heartbeat`, `guards.CtrlC` | leases of running trials; Ctrl-C pauses |
| `mirror.Mirror`, `mirror.Row` | the in-memory mirror of the study's trials, with running totals |
| `views.history_of` | what a strategy sees of the mirror |
| `context.Context` | what the parts share |

The driver is the only writer of the database (through its recorder); workers train and send
epoch results back. It does not import `studies.study`: it sees the study through
`StudyHandle`.
"""

from __future__ import annotations

from tunelab.studies.driver.budget import Budget, Meter
from tunelab.studies.driver.context import Context, StudyHandle
from tunelab.studies.driver.loop import BUDGET, LOCK_TTL, LOST_LIMIT, SECONDS_SPENT, Driver
from tunelab.studies.driver.mirror import UNFINISHED, Mirror, Row, row_of
from tunelab.studies.driver.recorder import LEASE_TTL_S
from tunelab.studies.driver.views import history_of

__all__ = ["BUDGET", "LEASE_TTL_S", "LOCK_TTL", "LOST_LIMIT", "SECONDS_SPENT", "UNFINISHED", "Budget", "Context",
           "Driver", "Meter", "Mirror", "Row", "StudyHandle", "history_of", "row_of"]
