"""A comparison's manifest: its checked arguments, stored once in the database, and the names they give.

The manifest is the comparison's identity: a study named after the comparison holds it (one
transaction), and every later call with the same name must give the same arguments, so an
interrupted comparison is continued, never mixed with another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab import search
from tunelab.spaces import ConfigError, optimizer_spec
from tunelab.studies.driver import Budget
from tunelab.studies.errors import BudgetError, StudyConflictError, StudyNotFoundError
from tunelab.studies.problems import Problem
from tunelab.studies.recipes import MANIFEST  # the attribute's key: defined with the study's other keys
from tunelab.studies.storage import writer
from tunelab.studies.storage.reader import read_studies, read_study_attrs

EQUALIZE = ("grad_evals", "epochs")
KS = (1, 5, 20)
RERUN_SEED_STRIDE = 10_000
BOUNDARY = 0.05


@dataclass(frozen=True)
class Arm:
    """One competitor on one problem: an optimizer family with a schedule."""

    problem: str
    optimizer: str
    schedule: str

    def label(self, schedules: Sequence[str]) -> str:
        """`optimizer`, or `optimizer+schedule` when a comparison has several schedules."""
        return self.optimizer if len(schedules) == 1 else f"{self.optimizer}+{self.schedule}"


def check_names(kind: str, registry: Any, names: Any) -> list[str]:
    """Registered names of `registry` (optimizers, schedules), checked and resolved.

    Raises:
        ConfigError: An unknown name (the message lists the valid ones), or not a list of names.
    """
    if isinstance(names, str):
        names = [names]
    try:
        return list(registry.resolve(list(names)))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    except TypeError:
        raise ConfigError(f"{kind}s must be a list of names ({', '.join(registry.names())}), got {names!r}") from None


def check_budget(budget: Any) -> dict[str, int]:
    """`{"trials": n}` or `{"grad_evals": n}`: the budget of every tuning study.

    Raises:
        BudgetError: Another unit (epochs and seconds would favour cheap or fast updates), or not positive.
    """
    if isinstance(budget, bool):
        raise BudgetError(f"budget must be trials per study (an int) or trials=/grad_evals=, got {budget!r}")
    if isinstance(budget, (int, np.integer)):
        budget = {"trials": int(budget)}
    elif isinstance(budget, Budget):
        budget = {k: v for k, v in budget.as_dict().items() if v is not None}
    elif not isinstance(budget, Mapping):
        raise BudgetError(f"budget must be trials per study (an int), a dict or a studies.Budget, got {budget!r}")
    given = {k: v for k, v in dict(budget).items() if v is not None}
    if set(given) - {"trials", "grad_evals"} or len(given) != 1:
        raise BudgetError(
            f"a comparison's budget is counted in one unit that is the same compute for every optimizer: trials "
            f"(of equal length in gradient evaluations) or grad_evals, e.g. budget=20 or budget={{'grad_evals': "
            f"100000}}; got {dict(budget)!r} (epochs and seconds would favour cheap or fast updates)"
        )
    (unit, value), = given.items()
    Budget(**{unit: value})  # the study's own checks
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise BudgetError(f"budget {unit}={value!r} must be a positive int")
    return {unit: int(value)}


def check_seeds(seeds: Any) -> list[int]:
    """Study seeds: a count (0..n-1) or a list of distinct ints >= 0.

    Raises:
        ConfigError: Anything else.
    """
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"seeds must be >= 1 (the number of independent studies per arm), got {seeds!r}")
        return list(range(int(seeds)))
    if isinstance(seeds, Sequence) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                     for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"study seeds must not repeat, got {list(seeds)}")
        return [int(s) for s in seeds]
    raise ConfigError(f"seeds must be a number of studies (int >= 1) or a list of distinct ints >= 0, got {seeds!r}")


def pauses_trials(strategy: search.Strategy) -> bool:
    """Whether `strategy` pauses or shortens trials (then trials are not of equal length)."""
    return strategy.pauses_trials or isinstance(strategy, search.Enqueue) or bool(getattr(strategy, "short_epochs",
                                                                                              None))


def seeded(strategy: search.Strategy, seed: int) -> search.Strategy:
    """The template strategy with its seed offset by the study seed."""
    spec = json.loads(json.dumps(strategy.spec()))
    spec["args"]["seed"] = int(spec["args"].get("seed", 0)) + seed
    return type(strategy)(**spec["args"])  # the class is already imported: nothing to trust


def check_epochs(problems: Sequence[Problem], optimizers: Sequence[str], equalize: str) -> None:
    """Refuse a problem whose runs are shorter than an optimizer's gradient evaluations per step.

    Raises:
        ConfigError: Naming the problem, the optimizer and the epochs it needs.
    """
    for p in problems:
        for opt in optimizers:
            g = optimizer_spec({"optimizer": opt}).grad_evals
            if equalize == "grad_evals" and p.trainer.epochs < g:
                raise ConfigError(f"problem {p.name!r} trains {p.trainer.epochs} epochs per run, fewer than the "
                                  f"{g} gradient evaluations per step of {opt!r}; give it at least {g} epochs")


def make(problems: list[Problem], optimizers: list[str], schedules: list[str], budget: dict[str, int],
         strategy: search.Strategy, seeds: list[int], reruns: int, equalize: str, one_shot: bool) -> dict[str, Any]:
    """The manifest of checked arguments, as stored (JSON-ready)."""
    return json.loads(json.dumps({
        "problems": [p.spec() for p in problems],
        "optimizers": optimizers,
        "schedules": schedules,
        "budget": budget,
        "strategy": strategy.spec(),
        "seeds": seeds,
        "reruns": reruns,
        "equalize": equalize,
        "one_shot": one_shot,
    }))


def store(storage: Any, url: str, name: str, manifest: Mapping[str, Any]) -> None:
    """Store `manifest` as comparison `name`, or check it against the one stored.

    Raises:
        StudyConflictError: `name` is a study, or a comparison with other arguments.
    """
    found = next((s for s in read_studies(storage) if s.name == name), None)
    if found is None:
        writer.create_study(storage, name, "maximize", {MANIFEST: dict(manifest)})  # a kill leaves all of it or none
        return
    stored = read_study_attrs(storage, found.study_id).get(MANIFEST)
    if stored is None:
        raise StudyConflictError(f"{name!r} in {url} is a study, not a comparison; choose another name")
    if stored != manifest:
        diff = [k for k in manifest if stored.get(k) != manifest[k]]
        shown = "; ".join(f"{k}: stored {stored.get(k)!r}, given {manifest[k]!r}" for k in diff)
        raise StudyConflictError(
            f"the comparison {name!r} in {url} was started with other arguments ({shown}). Rerun it with the stored "
            f"arguments to continue it (studies.Comparison.load({name!r}, {url!r})), or give the new comparison "
            f"another name"
        )


def read(storage: Any, url: str, name: str) -> dict[str, Any]:
    """The stored manifest of comparison `name`.

    Raises:
        StudyNotFoundError: No comparison of that name (the message lists those there are).
    """
    studies = read_studies(storage)
    found = next((s for s in studies if s.name == name), None)
    manifest = read_study_attrs(storage, found.study_id).get(MANIFEST) if found is not None else None
    if not isinstance(manifest, dict):
        names = [s.name for s in studies if MANIFEST in read_study_attrs(storage, s.study_id)]
        raise StudyNotFoundError(f"no comparison named {name!r} in {url}; it holds "
                                 f"{names if names else 'no comparisons'} (run one with studies.compare)")
    return manifest
