"""Hyperparameter importance of a stored study, computed by Optuna's own evaluators.

`study.importance()` (and `tunelab importance`) ranks the hyperparameters of a study by how
much they matter for its objective, with `optuna.importance.get_param_importances`:

- `method="ped_anova"` (the default): `PedAnovaImportanceEvaluator` (Watanabe et al. 2023,
  "PED-ANOVA: Efficiently Quantifying Hyperparameter Importance in Arbitrary Subspaces"): how
  much each parameter's distribution among the best trials differs from its distribution over
  all of them. Fast, deterministic, and (Optuna >= 5.0) it assesses conditional parameters too.
- `method="fanova"`: `FanovaImportanceEvaluator` (Hutter, Hoos, Leyton-Brown 2014, "An
  Efficient Approach for Assessing Hyperparameter Importance"): the share of the variance of a
  random forest's prediction of the objective that each parameter explains on its own. Slower,
  seeded, and only over the parameters every considered trial has.

The evaluators run on an in-memory Optuna copy of the study built from the trial records
tunelab read and checked through its storage boundary (`studies.storage`), never by Optuna
reading the database itself (a database is untrusted input). Considered trials: complete ones
with a finite value of the objective (failed, pruned, running and diverged trials are left
out, as are a DARTS search's supernet trials, whose value is another kind of number).

Conditional parameters (`adamw.lr if optimizer=adamw`): PED-ANOVA assesses each one over the
trials where it is active and where it is not (Conditional PED-ANOVA, Optuna >= 5.0); fANOVA
(and PED-ANOVA of older Optuna releases) assess only the parameters every considered trial has,
and the result names the others in `left_out`. To rank the parameters of one branch, restrict
the trials with `where={"optimizer": "adamw"}`. Parameters that cannot vary (a space's fixed
values, the ones `where` fixes) are left out too.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunelab.spaces.errors import ConfigError
from tunelab.studies.errors import TooFewTrialsError
from tunelab.studies.records import TrialRecord, TrialState

METHODS = ("ped_anova", "fanova")
MIN_TRIALS = 10  # below this, either evaluator ranks noise
TOP_TRIALS = 5  # PED-ANOVA's top quantile holds at least this many trials (Optuna's advice), up to half of them
NAMES = {"ped_anova": "PED-ANOVA", "fanova": "fANOVA"}
MEANING = {
    "ped_anova": "how much a parameter's values among the best {top} of the trials differ from its values over all "
                 "of them (Pearson divergence of their densities; Optuna's PedAnovaImportanceEvaluator, Watanabe et "
                 "al. 2023)",
    "fanova": "the share of the variance of the objective, as a random forest fitted to the trials predicts it, that "
              "a parameter explains on its own (Optuna's FanovaImportanceEvaluator, Hutter et al. 2014)",
}


class Study(Protocol):
    """What importance reads of a study (`studies.Study` is one; a study opened read-only is enough)."""

    name: str
    space: Any
    direction: str
    metric: str
    objectives: Any  # studies.objectives.Objectives | None

    def records(self, *, curves: bool = True) -> list[TrialRecord]:
        """Every trial, by number (`curves=False`: a summary)."""
        ...


@dataclass(frozen=True)
class Importance:
    """The hyperparameter importance of a study's objective.

    Attributes:
        scores: Parameter name -> importance, largest first; the scores sum to 1 (all equal when
            no parameter made a difference).
        method: "ped_anova" or "fanova".
        objective: The objective assessed (the study's metric, or one of its objectives).
        n_trials: Complete trials with a finite objective value that the evaluator used.
        left_out: Parameter name -> why it was not assessed ("fixed", "conditional: ...").
        evaluator: The Optuna evaluator and its settings, as called.
        meaning: One sentence: what the numbers mean and which evaluator made them.
        notes: What else the reader should know (trials left out, the evaluator's warnings).
    """

    scores: dict[str, float]
    method: str
    objective: str
    n_trials: int
    left_out: dict[str, str] = field(default_factory=dict)
    evaluator: str = ""
    meaning: str = ""
    notes: tuple[str, ...] = ()

    def table(self) -> str:
        """The scores as a plain-text table (one line per parameter, with a bar), then what was left out."""
        width = max([9, *(len(k) for k in self.scores)])
        lines = [textwrap.fill(self.meaning, 100), "", f"{'parameter':{width}s}  importance"]
        lines += [f"{k:{width}s}  {v:10.3f}  {'#' * round(30 * v)}".rstrip() for k, v in self.scores.items()]
        if not self.scores:
            lines.append("(no parameter to assess)")
        if self.left_out:
            lines += ["", "left out: " + "; ".join(f"{k} ({why})" for k, why in self.left_out.items())]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> list[str]:
        """The scores as Markdown lines: a table, then what was left out (for reports)."""
        lines = ["| parameter | importance |", "|---|---:|", *(f"| `{k}` | {v:.3f} |" for k, v in self.scores.items())]
        if self.left_out:
            lines += ["", "Left out: " + "; ".join(f"`{k}` ({why})" for k, why in self.left_out.items()) + "."]
        for note in self.notes:
            lines += ["", f"_{note}_"]
        return lines

    def __str__(self) -> str:
        return self.table()


def importance(study: Study, method: str = "ped_anova", *, objective: str | None = None,
               where: Mapping[str, Any] | None = None, seed: int = 0, min_trials: int = MIN_TRIALS,
               trials: Sequence[TrialRecord] | None = None) -> Importance:
    """The hyperparameter importance of a study's objective (what `Study.importance` returns).

    Args:
        study: The study (opened read-only is enough: only its stored trials are read).
        method: "ped_anova" (default: fast, assesses conditional parameters) or "fanova".
        objective: Which objective, by name: required for a multi-objective study (one of
            `study.objectives.names`); with one objective, None or the study's metric.
        where: Only the trials whose configuration has these values, e.g. `{"optimizer": "sgd"}`
            (the parameters of one branch of a conditional space).
        seed: The seed of fANOVA's random forest (PED-ANOVA is deterministic).
        min_trials: The fewest considered trials to compute on.
        trials: The study's trial records when the caller has read them (default: read a summary).

    Returns:
        The `Importance`: scores largest first, what was left out and why.

    Raises:
        ConfigError: An unknown method, a missing or unknown objective, or `where` naming a
            parameter the space does not have.
        TooFewTrialsError: Fewer than `min_trials` complete trials with a finite objective value.
    """
    goals = study.objectives
    if goals is None:
        if objective not in (None, study.metric):
            raise ConfigError(f"study {study.name!r} has one objective, {study.metric!r}; objective={objective!r} is "
                              f"not it (leave objective out)")
        directions, index, name = (study.direction,), None, study.metric
    else:
        if objective not in goals.names:
            raise ConfigError(f"study {study.name!r} has {len(goals.names)} objectives ({', '.join(goals.names)}); "
                              f"importance is of one of them: pass objective=NAME (CLI: --objective NAME), got "
                              f"{objective!r}")
        directions, index, name = tuple(goals.directions), goals.names.index(objective), objective
    trials = study.records(curves=False) if trials is None else trials
    return importance_of(trials, study.space, directions=directions, objective=name,
                         index=index, method=method, where=where, seed=seed, min_trials=min_trials,
                         what=f"study {study.name!r}")


def importance_of(trials: Sequence[TrialRecord], space: Any, *, directions: Sequence[str], objective: str,
                  index: int | None = None, method: str = "ped_anova", where: Mapping[str, Any] | None = None,
                  seed: int = 0, min_trials: int = MIN_TRIALS, what: str = "these trials") -> Importance:
    """The hyperparameter importance of trial records of one space (several studies' trials may be pooled).

    Args:
        trials: The trial records (any states: only complete ones with a finite value count).
        space: Their `spaces.Space`.
        directions: "minimize" / "maximize" per objective (one for a study with one objective).
        objective: The objective's name (for the result and messages).
        index: Which of a multi-objective trial's `values` is the objective; None: `value`.
        method: "ped_anova" or "fanova".
        where: Only the trials whose configuration has these values.
        seed: The seed of fANOVA's random forest.
        min_trials: The fewest considered trials to compute on.
        what: What the trials are of, for messages (e.g. "study 'mnist'").

    Returns:
        The `Importance`.

    Raises:
        ConfigError: An unknown method, or `where` naming a parameter the space does not have.
        TooFewTrialsError: Fewer than `min_trials` considered trials.
    """
    method = str(method).lower().replace("-", "_")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    where = dict(where or {})
    if unknown := sorted(set(where) - set(space.names)):
        raise ConfigError(f"where names parameters the space does not have: {unknown} (it has {list(space.names)})")
    frozen, skipped = _frozen_trials(trials, space, directions, index, where)
    need = max(2, min_trials)  # Optuna's evaluators return equal scores for fewer than 2
    if len(frozen) < need:
        subset = f" with {where}" if where else ""
        raise TooFewTrialsError(
            f"hyperparameter importance of {what} needs at least {need} complete trials{subset} with a finite "
            f"{objective}, and it has {len(frozen)}{_skipped_text(skipped)}; run more trials, at least "
            f"{need - len(frozen)} more")
    params, left_out = _assessed(frozen, space, where, method)
    evaluator, text, top = _evaluator(method, len(frozen), seed)
    notes = [f"Left out {n} {why}." for why, n in skipped.items() if n]
    scores = _evaluate(frozen, directions, index, params, evaluator, notes) if params else {}
    if method == "fanova" and params and len(frozen) < 10 * len(params):
        notes.append(f"{len(frozen)} trials over {len(params)} parameters is a rough guide: fANOVA's random forest "
                     f"needs many more trials than parameters to rank them reliably.")
    meaning = (f"{NAMES[method]} importance of {objective} over {len(frozen)} complete trials: "
               f"{MEANING[method].format(top=f'{top:.0%}')}; normalised to sum to 1.")
    return Importance(scores, method, objective, len(frozen), left_out, text, meaning, tuple(notes))


def report_section(study: Study, trials: Sequence[TrialRecord]) -> list[str]:
    """The "Hyperparameter importance" section of a study's report (PED-ANOVA: fast), as Markdown lines.

    One table per objective; a single line saying why when it cannot be computed (too few trials).

    Args:
        study: The study.
        trials: Its trial records, as the report read them.

    Returns:
        The section's lines.
    """
    lines = ["## Hyperparameter importance", ""]
    names = [None] if study.objectives is None else list(study.objectives.names)
    for name in names:
        lines += [f"### {name}", ""] if name is not None else []
        try:
            found = importance(study, objective=name, trials=trials)
        except TooFewTrialsError as err:  # the same count for every objective: one line says it
            return [*lines[:2], f"Skipped: {err}.", ""]
        except (ValueError, RuntimeError) as err:  # Optuna refusing unusual data must not cost the whole report
            lines += [f"Not available: {type(err).__name__}: {str(err)[:300]}", ""]
            continue
        lines += [found.meaning, "", *found.markdown(), ""]
    return lines


def _frozen_trials(trials: Sequence[TrialRecord], space: Any, directions: Sequence[str], index: int | None,
                   where: Mapping[str, Any]) -> tuple[list[Any], dict[str, int]]:
    """Optuna `FrozenTrial`s of the considered trials, and how many others were left out, by reason."""
    from optuna.trial import create_trial

    skipped = {"unfinished, failed or pruned trials": 0, "trials without a finite objective value": 0,
               "trials whose configuration the space does not describe": 0}
    reasons = list(skipped)
    frozen = []
    for t in trials:
        if any(t.config.get(k) != v for k, v in where.items()):
            continue
        if t.state != TrialState.COMPLETE or not t.comparable:
            skipped[reasons[0]] += 1
            continue
        values = [t.value] if index is None else list(t.values or ())
        if len(values) != len(directions) or not all(v is not None and math.isfinite(v) for v in values):
            skipped[reasons[1]] += 1
            continue
        try:
            dists = space.distributions(t.config)
            frozen.append(create_trial(params={k: t.config[k] for k in dists}, distributions=dists, values=values))
        except Exception:  # a stored config its space no longer describes (a value out of range): left out
            skipped[reasons[2]] += 1
    return frozen, skipped


def _skipped_text(skipped: Mapping[str, int]) -> str:
    left = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
    return f" (left out: {left})" if left else ""


def _assessed(frozen: list[Any], space: Any, where: Mapping[str, Any], method: str) -> tuple[list[str], dict[str, str]]:
    """The parameters to assess, in the space's order, and the others with the reason they are left out."""
    seen: dict[str, int] = {}
    for t in frozen:
        for k in t.distributions:
            seen[k] = seen.get(k, 0) + 1
    single = {k for t in frozen for k, d in t.distributions.items() if d.single()}
    conditional_ok = method == "ped_anova" and _conditional_ped_anova()
    params, left_out = [], {}
    for k in (k for k in space.names if k in seen):
        if k in single:
            left_out[k] = "fixed"
        elif k in where:
            left_out[k] = "fixed by where="
        elif seen[k] < len(frozen) and not conditional_ok:
            left_out[k] = (f"conditional: in {seen[k]} of {len(frozen)} trials; {NAMES[method]} needs it in every "
                           f"trial: pass where={{parent: value}} to rank one branch, or use ped_anova")
        else:
            params.append(k)
    return params, left_out


def _conditional_ped_anova() -> bool:
    """Whether Optuna's PED-ANOVA assesses conditional parameters (Conditional PED-ANOVA, Optuna >= 5.0)."""
    import optuna

    return int(optuna.__version__.split(".")[0]) >= 5


def _evaluator(method: str, n: int, seed: int) -> tuple[Any, str, float]:
    """Optuna's evaluator for `method` and `n` trials, its description, and PED-ANOVA's top quantile."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if method == "fanova":
        return FanovaImportanceEvaluator(seed=seed), f"optuna.importance.FanovaImportanceEvaluator(seed={seed})", 1.0
    # the top 10% (Optuna's default), but at least TOP_TRIALS trials: a density of one or two trials is noise
    quantile = round(min(0.5, max(0.1, TOP_TRIALS / n)), 3)
    return (PedAnovaImportanceEvaluator(target_quantile=quantile),
            f"optuna.importance.PedAnovaImportanceEvaluator(target_quantile={quantile})", quantile)


def in_memory_study(frozen: Sequence[Any], directions: Sequence[str]) -> Any:
    """An in-memory Optuna study holding `frozen` trials, created without Optuna's info log.

    Optuna's plots and importance evaluators read it; it is built from records tunelab read and
    checked, never by Optuna reading the database itself.
    """
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        copy = optuna.create_study(directions=list(directions))
    finally:
        optuna.logging.set_verbosity(level)
    copy.add_trials(list(frozen))
    return copy


def _evaluate(frozen: list[Any], directions: Sequence[str], index: int | None, params: list[str], evaluator: Any,
              notes: list[str]) -> dict[str, float]:
    """`optuna.importance.get_param_importances` on an in-memory copy of the trials; its warnings become notes."""
    import optuna

    copy = in_memory_study(frozen, directions)
    target = None
    if index is not None:  # one objective of several; PED-ANOVA ranks by low target values, so maximised ones negate
        sign = -1.0 if directions[index] == "maximize" else 1.0
        target = lambda t: sign * t.values[index]  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = optuna.importance.get_param_importances(copy, evaluator=evaluator, params=params, target=target)
    for w in caught:
        text = str(w.message)
        if "low `target` values" not in text and text not in notes:  # the negation above answers that one
            notes.append(text)
    return {k: float(v) for k, v in scores.items()}


__all__ = ["METHODS", "MIN_TRIALS", "Importance", "importance", "importance_of", "report_section"]
