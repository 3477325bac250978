"""A study's objectives: which recorded measurements it optimises, and their directions.

`studies.create(..., objectives={"accuracy": "maximize", "latency_ms": "minimize"})` makes a
multi-objective study. An objective is any measurement a trial records:

| name | what it is | when it is known |
|---|---|---|
| the trainer's metric (`trainer.metric`), or `val_metric` | the validation metric | every epoch |
| `train_loss`, `val_loss` | the epoch's losses | every epoch |
| a workload's named metric, or one a `Function`/`Objective` reports | that value | every epoch it is reported |
| `seconds` | training time so far | every epoch |
| `n_params`, `flops` | the network's size (`spaces.model_size`) | when the trial is created |
| `latency_ms` | median forward-pass time on the study's device (`trainers.Trainer.latency_ms`) | when created |

The study stores the objectives' directions as Optuna stores a multi-objective study's, and
each complete trial's values in that order, so `optuna.load_study(...).best_trials` and
optuna-dashboard show the Pareto front. A study with one objective (no `objectives=`) is
stored as before.

`studies.create(..., constraints={"latency_ms": 2.0, "accuracy": (">=", 0.9)})` adds outcome
constraints on the same measurements (`Constraints`), stored as Optuna stores a constrained
study's. This module imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.spaces.errors import ConfigError

OBJECTIVES = "tunelab:objectives"  # the study user attribute: [[name, direction], ...]
METRIC_DIRECTION = "tunelab:metric_direction"  # the trainer metric's (Optuna's directions are the objectives')
SIZES = ("n_params", "flops")
LATENCY = "latency_ms"
PER_EPOCH = ("train_loss", "val_loss", "lr")
MAX_OBJECTIVES = 10


@dataclass(frozen=True)
class Objectives:
    """The objectives of a multi-objective study, in order.

    Attributes:
        names: Objective names (recorded measurements).
        directions: "minimize" or "maximize", one per name.
        metric: The trainer's metric (what `val_metric`, the learning curve, holds).
    """

    names: tuple[str, ...]
    directions: tuple[str, ...]
    metric: str

    @property
    def signs(self) -> tuple[float, ...]:
        """+1 for a minimised objective, -1 for a maximised one (values times signs are minimised)."""
        return tuple(-1.0 if d == "maximize" else 1.0 for d in self.directions)

    @property
    def measures_latency(self) -> bool:
        """Whether the trainer must time each network's forward pass."""
        return LATENCY in self.names

    def spec(self) -> list[list[str]]:
        """`[[name, direction], ...]`: what the study stores."""
        return [[n, d] for n, d in zip(self.names, self.directions, strict=True)]

    def as_dict(self) -> dict[str, str]:
        """`{name: direction}` as the user gave them."""
        return dict(zip(self.names, self.directions, strict=True))

    @classmethod
    def from_spec(cls, spec: Any, metric: str) -> Objectives:
        """Read the stored `[[name, direction], ...]` (an untrusted value: a damaged one is a `StorageError`)."""
        from tunelab.studies.errors import StorageError

        ok = (isinstance(spec, list) and 2 <= len(spec) <= MAX_OBJECTIVES
              and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and len(p[0]) <= 200
                      and p[1] in ("minimize", "maximize") for p in spec))
        if not ok:
            raise StorageError(f"the study's stored objectives {str(spec)[:200]} are not a list of 2 to "
                               f"{MAX_OBJECTIVES} [name, direction] pairs; the database was edited or damaged")
        return cls(tuple(p[0] for p in spec), tuple(p[1] for p in spec), metric)

    def vector(self, metrics: Mapping[str, Sequence[Any]], measures: Mapping[str, Any],
               epoch: int | None = None) -> tuple[float, ...]:
        """The objectives' raw values (study directions) after `epoch` (default: the last); NaN where unknown.

        Args:
            metrics: The trial's metrics per epoch (`TrialRecord.metrics`).
            measures: Its measurements from creation: `n_params`, `flops`, `latency_ms`.
            epoch: 1-based epoch.
        """
        n = len(metrics.get("val_metric", ()))
        epoch = n if epoch is None else epoch
        out = []
        for name in self.names:
            out.append(_value(name, self.metric, metrics, measures, epoch))
        return tuple(out)

    def missing(self, metrics: Mapping[str, Sequence[Any]], measures: Mapping[str, Any]) -> str | None:
        """Why a finished run has no complete objective vector (None when it has one)."""
        vec = self.vector(metrics, measures)
        gone = [n for n, v in zip(self.names, vec, strict=True) if not math.isfinite(v)]
        if not gone:
            return None
        named = {"val_metric": self.metric}  # the curve is the trainer's metric, under its own name
        recorded = sorted({*(named.get(k, k) for k, v in metrics.items() if any(x is not None for x in v)),
                           *(k for k, v in measures.items() if v is not None), "seconds"})
        return (f"the objective(s) {gone} were not recorded (or not finite) at the run's last epoch; the trial "
                f"recorded {recorded}. Report them (run.report(...) / the objective's returned mapping), or "
                f"choose objectives among those")


def _value(name: str, metric: str, metrics: Mapping[str, Sequence[Any]], measures: Mapping[str, Any],
           epoch: int) -> float:
    if name in (*SIZES, LATENCY):
        v = measures.get(name)
    elif name == "seconds":
        v = sum(float(x or 0.0) for x in metrics.get("seconds", ())[:epoch]) if epoch else None
    else:
        key = "val_metric" if name in (metric, "val_metric") else name
        series = metrics.get(key, ())
        v = series[epoch - 1] if 0 < epoch <= len(series) else None
    return math.nan if v is None else float(v)


CONSTRAINTS = "tunelab:constraints"  # the study user attribute: [[name, "<=" | ">=", bound], ...]
MAX_CONSTRAINTS = 20


@dataclass(frozen=True)
class Constraints:
    """Outcome constraints: recorded measurements a complete trial must keep within bounds.

    Stored as Optuna stores a constrained study's: each complete trial's constraint values
    (`value - bound` for "<=", `bound - value` for ">=") in its system attribute
    `studies.records.OPTUNA_CONSTRAINTS`,
    feasible when every one is <= 0. Infeasible trials are kept, never on the Pareto front nor
    best, and ranked behind every feasible one by the strategies that read them (NSGA-II's
    constrained domination, Deb et al. 2002; Bayesian and MO-BO treat them as failed).

    Attributes:
        names: Measurement names (as objectives are named).
        ops: "<=" or ">=", one per name.
        bounds: The bounds.
        metric: The trainer's metric (what `val_metric` holds).
    """

    names: tuple[str, ...]
    ops: tuple[str, ...]
    bounds: tuple[float, ...]
    metric: str

    def spec(self) -> list[list[Any]]:
        """`[[name, op, bound], ...]`: what the study stores."""
        return [[n, o, b] for n, o, b in zip(self.names, self.ops, self.bounds, strict=True)]

    @classmethod
    def from_spec(cls, spec: Any, metric: str) -> Constraints:
        """Read the stored spec (untrusted: a damaged one is a `StorageError`)."""
        from tunelab.studies.errors import StorageError

        ok = (isinstance(spec, list) and 1 <= len(spec) <= MAX_CONSTRAINTS
              and all(isinstance(p, list) and len(p) == 3 and isinstance(p[0], str) and len(p[0]) <= 200
                      and p[1] in ("<=", ">=") and isinstance(p[2], (int, float)) and not isinstance(p[2], bool)
                      and math.isfinite(p[2]) for p in spec))
        if not ok:
            raise StorageError(f"the study's stored constraints {str(spec)[:200]} are not a list of [name, '<=' or "
                               f"'>=', bound]; the database was edited or damaged")
        return cls(tuple(p[0] for p in spec), tuple(p[1] for p in spec), tuple(float(p[2]) for p in spec), metric)

    def values(self, metrics: Mapping[str, Sequence[Any]], measures: Mapping[str, Any]) -> tuple[float, ...]:
        """Each constraint's value at the run's last epoch (<= 0: satisfied; NaN: not recorded)."""
        epoch = len(metrics.get("val_metric", ()))
        out = []
        for name, op, bound in zip(self.names, self.ops, self.bounds, strict=True):
            v = _value(name, self.metric, metrics, measures, epoch)
            out.append(v - bound if op == "<=" else bound - v)
        return tuple(out)


def violation(values: Sequence[float] | None) -> float:
    """The total violation of a trial's constraint values (0.0: feasible or unconstrained)."""
    return float(sum(max(0.0, v) for v in values or ()))


def parse_constraints(constraints: Any, trainer: Any) -> Constraints | None:
    """Check `studies.create(constraints=...)`: `{name: bound}` (at most) or `{name: (">=", bound)}`.

    Raises:
        ConfigError: Not such a mapping, or a name the trainer does not record.
    """
    if constraints is None:
        return None
    if not isinstance(constraints, Mapping) or not constraints or len(constraints) > MAX_CONSTRAINTS:
        raise ConfigError(f"constraints must be a dict of 1 to {MAX_CONSTRAINTS} measurement names -> an upper bound, "
                          f"or ('>=', lower bound), e.g. {{'latency_ms': 2.0, 'accuracy': ('>=', 0.9)}}; got "
                          f"{constraints!r}")
    names, ops, bounds = [], [], []
    known = recorded_names(trainer)
    for name, rule in constraints.items():
        op, bound = ("<=", rule) if not isinstance(rule, (tuple, list)) else (*rule, None, None)[:2]
        if (not isinstance(name, str) or op not in ("<=", ">=") or isinstance(bound, bool)
                or not isinstance(bound, (int, float)) or not math.isfinite(bound)):
            raise ConfigError(f"constraint {name!r}: {rule!r} must be an upper bound (a number) or ('<=' / '>=', a "
                              f"number)")
        if known is not None and name not in known:
            raise ConfigError(f"constraint {name!r} names a measurement {trainer!r} does not record; it records "
                              f"{sorted(known)}")
        names.append(name)
        ops.append(op)
        bounds.append(float(bound))
    return Constraints(tuple(names), tuple(ops), tuple(bounds), trainer.metric)


def parse(objectives: Any, trainer: Any) -> Objectives | None:
    """Check `studies.create(objectives=...)` against the trainer; None for a single-objective study.

    Raises:
        ConfigError: Not a mapping of 2 or more names to "minimize"/"maximize"; a name the
            trainer does not record (the message lists those it does); `latency_ms` for a
            trainer that builds no network.
    """
    if objectives is None:
        return None
    if not isinstance(objectives, Mapping) or not all(isinstance(k, str) and k for k in objectives):
        raise ConfigError(f"objectives must be a dict of metric name -> 'minimize' or 'maximize', e.g. "
                          f"{{'accuracy': 'maximize', 'latency_ms': 'minimize'}}; got {objectives!r}")
    bad = {k: v for k, v in objectives.items() if v not in ("minimize", "maximize")}
    if bad:
        raise ConfigError(f"objective directions must be 'minimize' or 'maximize'; got {bad}")
    if len(objectives) < 2:
        raise ConfigError(f"objectives={dict(objectives)} names one objective: a multi-objective study needs two "
                          f"or more. For one, leave objectives out (the trainer's metric is the objective) and set "
                          f"direction= if needed")
    if len(objectives) > MAX_OBJECTIVES:
        raise ConfigError(f"at most {MAX_OBJECTIVES} objectives, got {len(objectives)}")
    metric = trainer.metric
    known = recorded_names(trainer)
    models = bool(getattr(trainer, "trains_models", False))
    for name in objectives:
        if name == LATENCY and not (models and hasattr(trainer, "latency_ms")):
            raise ConfigError(f"objectives name {LATENCY!r}, which tunelab times on the networks its trainer builds, "
                              f"but {trainer!r} builds none: report your own latency (run.report(latency=...) or "
                              f"the objective's returned mapping) and name that, e.g. objectives={{{metric!r}: ..., "
                              f"'latency': 'minimize'}}")
        if name in SIZES and not getattr(trainer, "measures_size", models):
            raise ConfigError(f"objectives name {name!r}, measured on the networks tunelab builds, but {trainer!r} "
                              f"builds none: report it yourself under another name")
        if known is not None and name not in known:
            raise ConfigError(f"objectives name {name!r}, which {trainer!r} does not record; it records "
                              f"{sorted(known)}")
    return Objectives(tuple(objectives), tuple(objectives.values()), metric)


def recorded_names(trainer: Any) -> set[str] | None:
    """Every measurement name the trainer records, or None when only its runs can tell (user code)."""
    base = {trainer.metric, "val_metric", "seconds", *PER_EPOCH}
    if not getattr(trainer, "trains_models", False):
        return None  # a Function or Objective reports what it likes
    names = base | set(SIZES)
    if hasattr(trainer, "latency_ms"):
        names.add(LATENCY)
    workload = getattr(trainer, "workload", None)
    named = getattr(workload, "metrics", None)
    if isinstance(named, Mapping):
        names |= set(named)
    return names


__all__ = ["CONSTRAINTS", "LATENCY", "METRIC_DIRECTION", "OBJECTIVES", "Constraints", "Objectives", "parse",
           "parse_constraints", "recorded_names", "violation"]
