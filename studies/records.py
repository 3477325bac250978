"""`TrialState` and `TrialRecord`: trials as users read them, and their mapping onto Optuna's schema.

tunelab's states map onto Optuna's as follows: pending = WAITING,
running and paused = RUNNING (told apart by the system attribute `tunelab:state`),
complete = COMPLETE, pruned = PRUNED, failed = FAIL. `state_of_optuna` and `optuna_state` are
the only two directions of that map.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tunelab.studies.errors import StorageError
from tunelab.studies.storage.limits import MAX_EPOCHS, count, mapping, number, optional_count, text

# Trial system attributes (internal bookkeeping; users read TrialRecord).
STATE = "tunelab:state"  # "running" | "paused" while Optuna says RUNNING
PAUSED_BY = "tunelab:paused_by"  # "interrupt" (Ctrl-C, crash, time budget) | "strategy"
OWNER = "tunelab:owner"  # "host:pid" of the driver running the trial
LEASE = "tunelab:lease"  # unix time until which the owner's claim holds
TARGET = "tunelab:target_epochs"  # the epoch the trial was asked to reach
PROPOSAL = "tunelab:proposal"  # index of the strategy proposal the trial runs
RETRIES = "tunelab:retries"  # times an errored trial was run again (optimize(max_retries=...))
RETRY_OF = "tunelab:retry_of"  # number of the interrupted trial this one re-runs
SUPERSEDED = "tunelab:superseded"  # an interrupted trial that was re-queued
CHECKPOINT = "tunelab:checkpoint"  # artifact id of the trial's checkpoint
RUN_SEED = "tunelab:run_seed"  # the run's seed when the strategy chose one (else the trainer's)
ROUTINE = "tunelab:routine"  # the routine that trains the trial, when not "train" (search.routines)
ROUTINE_OPTIONS = "tunelab:routine_options"  # that routine's settings, so a resume runs it the same way
# Trial user attributes (visible in optuna-dashboard).
METRICS = "metrics"
OPTUNA_CONSTRAINTS = "constraints"  # Optuna's trial system attribute of constraint values (<= 0: feasible)
METRIC_VALUE = "metric_value"  # a multi-objective trial's final metric value (its Optuna values are the objectives')
METRIC_KEYS = ("train_loss", "val_loss", "val_metric", "lr", "seconds", "grad_evals")


class TrialState(str, Enum):
    """The state of a trial (`record.state == "complete"` reads naturally)."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a study, read from the database.

    Attributes:
        number: The trial's number in the study (Optuna's `trial.number`).
        state: Its `TrialState`.
        config: Its configuration.
        value: The objective: validation metric of the last epoch (complete and pruned trials).
        best_value: Best validation metric over its epochs.
        curve: Validation metric per epoch.
        metrics: Every metric per epoch (`train_loss`, `val_loss`, `val_metric`, `lr`, `seconds`,
            `grad_evals`).
        test_metric: Test metric after a complete run (None otherwise, or without a test split).
        epochs: Epochs trained.
        grad_evals: Gradient evaluations spent.
        seconds: Training time.
        error: Why it failed, or None.
        attrs: The strategy's data stored with the trial.
        retry_of: Number of the interrupted trial this one re-runs, or None.
        n_params: Parameter count of its network (`spaces.model_size`), or None if unmeasured.
        flops: Forward FLOPs per example of its network, or None if unmeasured.
        seed: The seed of its run (the trainer's, unless the strategy asked for another), or
            None before it first ran.
        routine: The routine that trained it: "train" (the standard loop), "darts", ...
        results: What its routine learned (`TrainResult.attrs`, stored as the user attribute
            named after the routine): a DARTS search's alphas, genotype and selection scores.
            Empty for "train", except a replay answered from its nearest recorded
            configuration: `{"replay": {"nearest": <config>}}`.
        values: A multi-objective study's objective values of a complete trial, in the study's
            objectives' order (`Study.objectives`), as recorded (not normalised); None otherwise.
        latency_ms: The network's inference latency on the study's device (studies with
            `latency_ms` among their objectives), or None.
        constraints: A constrained study's constraint values of a complete trial (<= 0:
            satisfied; Optuna's `trial.constraints`), or None.
    """

    number: int
    state: TrialState
    config: dict[str, Any]
    value: float | None = None
    best_value: float | None = None
    curve: list[float] = field(default_factory=list)
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    test_metric: float | None = None
    epochs: int = 0
    grad_evals: int = 0
    seconds: float = 0.0
    error: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    retry_of: int | None = None
    n_params: int | None = None
    flops: int | None = None
    seed: int | None = None
    routine: str = "train"
    results: dict[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] | None = None
    latency_ms: float | None = None
    constraints: tuple[float, ...] | None = None

    @property
    def feasible(self) -> bool:
        """Whether it satisfies the study's outcome constraints (True without any)."""
        return self.constraints is None or all(c <= 0.0 for c in self.constraints)

    @property
    def genotype(self) -> str | None:
        """The cell's genotype string: of a `spaces.cells()` config, or the one a DARTS search found (else None)."""
        if "model.op_0_1" not in self.config:
            found = self.results.get("genotype")
            return str(found) if isinstance(found, str) else None
        from tunelab.spaces import Genotype  # a cell space's (torch): only for its trials

        return str(Genotype.from_config(self.config))

    @property
    def comparable(self) -> bool:
        """Whether its value competes for the study's best (see `search.routines.Routine.comparable`).

        A trial of the standard loop ("train") is, as registered, which is known without importing
        torch as long as `trainers.routines` is not loaded (nothing can have replaced it before).
        Any other routine is looked up with tunelab's routines registered (`search` registers
        "darts", "stn" and "schedule").
        """
        if self.routine != "train":
            import tunelab.search  # noqa: F401  (registers tunelab's other routines)
        elif "tunelab.trainers.routines" not in sys.modules:
            return True  # the standard loop as registered: nothing can have replaced it before its module loaded
        from tunelab.trainers.routines import is_comparable

        return is_comparable(self.routine)


def state_of_optuna(state: Any, paused: bool = False) -> TrialState:
    """Tunelab's state of an Optuna `TrialState` (the one map between the two; `paused` for RUNNING ones)."""
    from optuna.trial import TrialState as OTS

    if state == OTS.RUNNING:
        return TrialState.PAUSED if paused else TrialState.RUNNING
    return {OTS.WAITING: TrialState.PENDING, OTS.COMPLETE: TrialState.COMPLETE,
            OTS.PRUNED: TrialState.PRUNED}.get(state, TrialState.FAILED)


def state_of(trial: Any) -> TrialState:
    """The tunelab state of a stored trial (an `optuna.trial.FrozenTrial` or a `StoredTrial`)."""
    return state_of_optuna(trial.state, trial.system_attrs.get(STATE) == "paused")


def optuna_state(state: TrialState) -> Any:
    """The Optuna `TrialState` a finished or pending tunelab state is stored as."""
    from optuna.trial import TrialState as OTS

    return {TrialState.PENDING: OTS.WAITING, TrialState.RUNNING: OTS.RUNNING, TrialState.PAUSED: OTS.RUNNING,
            TrialState.COMPLETE: OTS.COMPLETE, TrialState.PRUNED: OTS.PRUNED, TrialState.FAILED: OTS.FAIL}[state]


def finite(x: Any) -> float | None:
    """`x` as a float, or None when missing or not finite (JSON and SQL hold no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def stored_metrics(trial: Any) -> dict[str, list[Any]]:
    """Every metric per epoch of a stored trial (`None` where unknown).

    The curve is stored once, as Optuna's intermediate values: step `e` is epoch `e`, NaN where
    training diverged. The `metrics` attribute holds the other metrics, one JSON array each.
    Databases written by tunelab 0.2.0 also kept `val_metric` in `metrics`, and left the steps
    of non-finite epochs out of the intermediate values; both layouts read the same way here
    (a missing step is a non-finite epoch), so an old trial continued by this release, whose
    steps are then written both ways, reads correctly too. Intermediate values ahead of
    `metrics` (a crash between two writes on a storage without batched writes) win, and the
    other metrics are padded with `None`.

    The lists built are as long as what is stored: a step beyond both the number of stored
    steps and the stored metric lists (which no tunelab version writes) is refused.

    Raises:
        StorageError: The attribute is not an object of lists of numbers, or a step is out of range.
    """
    where = f"trial {trial.number}"
    stored = mapping(trial.user_attrs.get(METRICS), f"{where}'s user attribute {METRICS!r}")
    steps = trial.intermediate_values
    lists: dict[str, list[Any]] = {}
    named = [k for k in stored if k not in METRIC_KEYS]  # a workload's own metrics, a Function's reported ones
    if len(named) > MAX_NAMED_METRICS:
        raise StorageError(f"{where} stores {len(named)} named metrics, more than tunelab's limit of "
                           f"{MAX_NAMED_METRICS}; the database was edited or damaged")
    for k in [*METRIC_KEYS, *named]:
        values = stored.get(k, [])
        if not isinstance(values, list) or not set(map(type, values)) <= _NUMBERS or len(values) > MAX_EPOCHS:
            raise StorageError(f"{where}'s stored metric {k!r} must be a list of at most {MAX_EPOCHS} numbers; the "
                               f"database was edited or damaged")
        lists[k] = values
    longest = max(len(v) for v in lists.values())
    if steps:
        first, last = min(steps), max(steps)
        if first < 1 or last > max(len(steps), longest) or last > MAX_EPOCHS:
            raise StorageError(
                f"{where} stores a learning-curve step {first if first < 1 else last}, but it holds {len(steps)} "
                f"steps and tunelab numbers them 1, 2, ... (at most {MAX_EPOCHS}); the database was edited or "
                f"damaged; restore it from a copy, or delete the trial")
    n = max(longest, max(steps, default=0))
    metrics: dict[str, list[Any]] = {}
    for k in [*METRIC_KEYS, *named]:
        if k == "val_metric":
            metrics[k] = [finite(steps.get(e)) for e in range(1, n + 1)]
        else:
            metrics[k] = lists[k] + [None] * (n - len(lists[k]))
    return metrics


_NUMBERS = frozenset({int, float, type(None)})
MAX_NAMED_METRICS = 100


def compact_metrics(metrics: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """What the `metrics` attribute stores of a trial's metrics: all but the curve (stored as intermediate values)."""
    return {k: v for k, v in metrics.items() if k != "val_metric"}


def microseconds(x: float | None) -> float | None:
    """A time in seconds rounded to the microsecond, None if not finite."""
    x = finite(x)
    return None if x is None else round(x, 6)


def record_of(trial: Any, order: list[str] | None = None) -> TrialRecord:
    """Build a `TrialRecord` from an `optuna.trial.FrozenTrial` of a tunelab study.

    Raises:
        StorageError: A stored attribute has the wrong type or is out of range (see `studies.limits`).
    """
    ua, sa = trial.user_attrs, trial.system_attrs
    state = state_of(trial)
    metrics = stored_metrics(trial)
    curve = [math.nan if v is None else float(v) for v in metrics["val_metric"]]
    stored = list(trial.values) if trial.values else []
    value, values = (stored[0] if stored else None), None
    if len(stored) > 1:  # a multi-objective study: its values are the objectives'; `value` is the metric's
        values = tuple(float(v) for v in stored)
        value = number(ua.get(METRIC_VALUE), f"trial {trial.number}'s user attribute {METRIC_VALUE!r}")
    if value is None and state == TrialState.PRUNED and curve:
        value = curve[-1]
    params = dict(trial.params)
    routine = text(sa.get(ROUTINE), f"trial {trial.number}'s routine") or "train"
    results = ua.get(routine)
    if order is not None:
        params = {k: params[k] for k in order if k in params} | {k: v for k, v in params.items() if k not in order}
    where = f"trial {trial.number}'s user attribute"
    seed = ua.get("seed", sa.get(RUN_SEED))
    return TrialRecord(
        number=trial.number,
        state=state,
        config=params,
        value=finite(value),
        best_value=number(ua.get("best_value"), f"{where} 'best_value'"),
        curve=curve,
        metrics=metrics,
        test_metric=number(ua.get("test_metric"), f"{where} 'test_metric'"),
        epochs=count(ua.get("epochs", len(curve)), f"{where} 'epochs'", limit=MAX_EPOCHS),
        grad_evals=count(ua.get("grad_evals", 0), f"{where} 'grad_evals'"),
        seconds=number(ua.get("seconds", 0.0), f"{where} 'seconds'") or 0.0,
        error=text(ua.get("error"), f"{where} 'error'"),
        attrs=mapping(ua.get("strategy"), f"{where} 'strategy'"),
        retry_of=optional_count(sa.get(RETRY_OF), f"trial {trial.number}'s system attribute {RETRY_OF!r}"),
        n_params=optional_count(ua.get("n_params"), f"{where} 'n_params'"),
        flops=optional_count(ua.get("flops"), f"{where} 'flops'"),
        seed=optional_count(seed, f"trial {trial.number}'s seed", low=-(2**63), limit=2**64),
        routine=routine,
        results=dict(results) if isinstance(results, dict) else {},
        values=values,
        latency_ms=number(ua.get("latency_ms"), f"{where} 'latency_ms'"),
        constraints=stored_constraints(sa.get(OPTUNA_CONSTRAINTS), trial.number),
    )


def stored_constraints(value: Any, number_: int) -> tuple[float, ...] | None:
    """A trial's stored constraint values (Optuna's list), checked; None when it has none.

    Raises:
        StorageError: Not a short list of numbers.
    """
    if value is None:
        return None
    where = f"trial {number_}'s system attribute {OPTUNA_CONSTRAINTS!r}"
    if not isinstance(value, list) or len(value) > 100:
        raise StorageError(f"{where} must be a list of at most 100 numbers; the database was edited or damaged")
    out = tuple(number(v, where) for v in value)
    return tuple(math.inf if v is None else v for v in out)  # a non-finite value counts as violated


def trials_frame(records: list[TrialRecord]) -> Any:
    """Trials as a pandas DataFrame (`Study.dataframe`).

    Columns: number, state, value, best_value, test_metric, epochs, grad_evals, seconds,
    error, n_params and flops (of the network), genotype (cell spaces only), and one
    `params.<name>` column per parameter.
    """
    import pandas as pd

    rows = []
    for t in records:
        row: dict[str, Any] = {
            "number": t.number, "state": str(t.state), "value": t.value, "best_value": t.best_value,
            "test_metric": t.test_metric, "epochs": t.epochs, "grad_evals": t.grad_evals, "seconds": t.seconds,
            "error": t.error, "n_params": t.n_params, "flops": t.flops,
        }
        if t.genotype is not None:
            row["genotype"] = t.genotype
        row.update({f"params.{k}": v for k, v in t.config.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def curves_frame(records: list[TrialRecord]) -> Any:
    """Learning curves: a pandas DataFrame indexed by epoch (1..), one column per trial number (`Study.curves`)."""
    import pandas as pd

    data = {t.number: pd.Series(t.curve, index=range(1, len(t.curve) + 1), dtype=float) for t in records if t.curve}
    frame = pd.DataFrame(data)
    frame.index.name = "epoch"
    return frame
