"""`Strategy`, `Request` and the read-only `History` a strategy decides from.

A strategy is a function of the study's history and its own seed. It keeps no state that it
cannot rebuild from those two, so a study resumed from its database, or driven by several
workers, asks exactly the same questions as one that never stopped. Randomness is drawn from
a generator derived from `(seed, number of proposals so far)`: the k-th proposal of a seeded
strategy is the same whatever happened to the process in between.

Histories are normalised to minimisation: `TrialView.value` and `TrialView.curve` are the
study's objective, negated when the study maximises. Strategies never branch on direction.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from tunelab.spaces import ConfigError, Registry, Space
from tunelab.spaces.space import config_key
from tunelab.spaces.trust import Trust, check, current_path, resolve

RequestKind = Literal["start", "resume"]
STATES = ("pending", "running", "paused", "complete", "pruned", "failed")


@dataclass(frozen=True)
class Request:
    """One unit of work a strategy asks for: start a configuration, or resume a paused trial.

    Build requests with `Request.start(...)` and `Request.resume(...)`.

    Attributes:
        kind: "start" or "resume".
        config: The configuration to start (kind "start").
        epochs: Train until this epoch of the full schedule, then pause (None: the full run).
        warm_start: Number of a trial whose weights initialise the new one (None: from scratch).
        trial: Number of the paused trial to continue (kind "resume").
        until_epoch: For "resume": continue until this epoch (None: to the end of the run).
        routine: "train" for the standard loop, or a strategy's own routine name.
        attrs: Extra JSON-ready data the strategy wants stored with the trial (returned to it
            in `TrialView.attrs`); a resume merges them into the trial's.
        seed: The run's seed (kind "start"; None: the trainer's seed, which every trial of a
            study shares). Reruns of one configuration on fresh seeds set it.
        options: The routine's own settings (kind "start"; JSON-ready, stored with the trial so
            that a resumed run uses the same ones). The "train" routine takes none.
    """

    kind: RequestKind
    config: dict[str, Any] | None = None
    epochs: int | None = None
    warm_start: int | None = None
    trial: int | None = None
    until_epoch: int | None = None
    routine: str = "train"
    attrs: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        config: Mapping[str, Any],
        *,
        epochs: int | None = None,
        warm_start: int | None = None,
        routine: str = "train",
        attrs: Mapping[str, Any] | None = None,
        seed: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Request:
        """Start a new trial with `config` (on `seed`, or the trainer's seed when None).

        `routine` names the loop that trains it (`search.routines`) and `options` are that
        routine's settings.
        """
        if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
            raise ConfigError(f"Request.start: epochs must be a positive int or None, got {epochs!r}")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)):
            raise ConfigError(f"Request.start: seed must be an int or None, got {seed!r}")
        if not isinstance(routine, str) or not routine:
            raise ConfigError(f"Request.start: routine must be a registered routine's name, got {routine!r}")
        return cls("start", config=dict(config), epochs=epochs, warm_start=warm_start, routine=routine,
                   attrs=dict(attrs or {}), seed=None if seed is None else int(seed), options=dict(options or {}))

    @classmethod
    def resume(
        cls,
        trial: int,
        *,
        until_epoch: int | None = None,
        routine: str = "train",
        attrs: Mapping[str, Any] | None = None,
    ) -> Request:
        """Continue the paused trial number `trial` from its checkpoint (`attrs` update the trial's).

        The trial continues with the routine and options it started with; `routine` is kept for
        the signature's symmetry and ignored.
        """
        if until_epoch is not None and (not isinstance(until_epoch, int) or until_epoch < 1):
            raise ConfigError(f"Request.resume: until_epoch must be a positive int or None, got {until_epoch!r}")
        return cls("resume", trial=int(trial), until_epoch=until_epoch, routine=routine, attrs=dict(attrs or {}))


@dataclass(frozen=True)
class TrialView:
    """A trial as strategies see it (normalised to minimisation).

    Attributes:
        number: The trial's number in the study.
        state: One of pending, running, paused, complete, pruned, failed.
        config: Its configuration.
        value: The objective (last epoch's validation metric) for complete and pruned trials,
            negated when the study maximises; None otherwise.
        curve: The per-epoch objective, normalised the same way.
        epochs: Epochs trained so far.
        target_epochs: The epoch the trial was asked to reach.
        error: Why it failed, or None.
        attrs: What the strategy stored with the request that created it.
        routine: The routine that trained it ("train" for the standard loop).
        results: What its routine learned (`TrainResult.attrs`: a DARTS genotype, ...); empty
            for "train" (except a replay's `{"replay": {"nearest": ...}}` label) and before the
            run ends or pauses.
        seconds: Training seconds recorded so far (the sum of its epochs' times).
        values: A multi-objective study's objective values of a complete trial, each normalised
            to minimisation (negated where the objective is maximised); None otherwise.
        vectors: A multi-objective study's objective values after each epoch, normalised the
            same way (NaN where one is unknown): what MO-ASHA ranks a rung by. Empty otherwise.
        violation: A constrained study's total violation of its outcome constraints by a
            complete trial (0.0: feasible, or no constraints).
    """

    number: int
    state: str
    config: dict[str, Any]
    value: float | None = None
    curve: tuple[float, ...] = ()
    epochs: int = 0
    target_epochs: int | None = None
    error: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    routine: str = "train"
    results: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    values: tuple[float, ...] | None = None
    vectors: tuple[tuple[float, ...], ...] = ()
    violation: float = 0.0

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ConfigError(f"TrialView.state must be one of {STATES}, got {self.state!r}")

    @property
    def finished(self) -> bool:
        """Complete, pruned or failed."""
        return self.state in ("complete", "pruned", "failed")


@dataclass(frozen=True)
class History:
    """A read-only view of a study for `Strategy.ask`.

    Attributes:
        space: The study's search space.
        trials: Every trial the strategy proposed, in order of proposal. A trial interrupted by
            a crash and re-queued appears once, as its re-run.
        max_epochs: Length of a full training run (the trainer's epochs).
        direction: Always "minimize" (values are normalised).
        input_shape: One example's shape in the study's workload (None outside a study), for
            strategies that measure the networks they propose (`spaces.model_size`).
        n_outputs: The workload's number of outputs (None outside a study).
        objectives: The names of a multi-objective study's objectives (values normalised to
            minimisation, in `TrialView.values`); empty for a study with one objective.
        device: The device the study's trainer runs on ("cpu", "cuda:0"; None outside a study),
            for strategies that time the networks they propose (`max_latency_ms`).
    """

    space: Space
    trials: tuple[TrialView, ...] = ()
    max_epochs: int = 1
    direction: str = "minimize"
    input_shape: tuple[int, ...] | None = None
    n_outputs: int | None = None
    objectives: tuple[str, ...] = ()
    device: str | None = None

    @property
    def multi_objective(self) -> bool:
        """Whether the study has several objectives."""
        return len(self.objectives) > 1

    def where(self, *states: str) -> list[TrialView]:
        """The trials in any of `states`."""
        return [t for t in self.trials if t.state in states]

    @property
    def complete(self) -> list[TrialView]:
        """Trials that finished their run."""
        return self.where("complete")

    @property
    def in_flight(self) -> list[TrialView]:
        """Trials being trained or queued to be (pending and running)."""
        return self.where("pending", "running")

    @property
    def paused(self) -> list[TrialView]:
        """Trials paused with a checkpoint."""
        return self.where("paused")

    @property
    def failed(self) -> list[TrialView]:
        """Trials that raised, diverged or ran out of memory."""
        return self.where("failed")

    def best(self) -> TrialView | None:
        """The complete trial of lowest (normalised) value, among trials whose value is comparable.

        A routine whose value is not a trained network's validation metric (a DARTS search's
        supernet) never counts as best; see `search.routines.Routine.comparable`.
        """
        from tunelab.trainers.routines import is_comparable

        done = [t for t in self.complete
                if t.value is not None and math.isfinite(t.value) and is_comparable(t.routine) and t.violation <= 0]
        return min(done, key=lambda t: t.value) if done else None


strategies: Registry[type[Strategy]] = Registry("strategy")


class Strategy(abc.ABC):
    """Chooses the next unit of work from the study's history.

    Subclasses implement `ask`. Their constructor arguments must be JSON-ready values stored as
    attributes of the same name (as `seed` is), so that `spec()` records them and
    `Strategy.from_spec` rebuilds an equal strategy when a study is loaded from its database.
    Registering the class (`search.strategies.register(name, cls)`) makes it loadable by name;
    subclasses get registered automatically under `name`.

    Args:
        seed: The strategy's seed; every random choice derives from it.
    """

    name: ClassVar[str] = ""
    pauses_trials: ClassVar[bool] = False  # multi-fidelity: it pauses trials and resumes them with more epochs
    multi_objective: ClassVar[bool] = False  # it can search a study with several objectives

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name and not inspect.isabstract(cls):
            strategies.register(cls.name, cls, replace=True)

    @abc.abstractmethod
    def ask(self, history: History) -> Request | None:
        """The next unit of work, or None to wait until an in-flight trial finishes."""

    def check(self, space: Space, trainer: Any) -> None:
        """Refuse (or warn about) a space or trainer this strategy cannot search; `studies.create` calls it.

        The default accepts everything, except that a strategy which pauses trials
        (`pauses_trials`) needs runs of several epochs. Strategies with requirements (DARTS needs
        a cell space and a training split it can halve) raise `ConfigError` naming the fix.
        """
        if self.pauses_trials:
            needs_curves(self, trainer)

    def check_objectives(self, objectives: Sequence[str]) -> None:
        """Refuse several objectives unless this strategy searches them (`multi_objective`); `studies.create` calls it.

        Raises:
            ConfigError: Naming the strategies that take several objectives.
        """
        if len(objectives) > 1 and not self.multi_objective:
            raise ConfigError(
                f"{type(self).__name__} optimises one objective, but the study has {len(objectives)} "
                f"({', '.join(objectives)}); search several objectives with search.Random, "
                f"search.Evolution(method='nsga2'), search.Bayesian (qLogNEHVI) or search.ASHA (MO-ASHA), or "
                f"leave objectives out")

    @staticmethod
    def needs_models(strategy: Strategy, trainer: Any) -> None:
        """Refuse a trainer that does not train tunelab's networks (user code: `trainers.Function`, `Objective`).

        Raises:
            ConfigError: Naming the strategy, the trainer and what it needs.
        """
        if not getattr(trainer, "trains_models", False):
            raise ConfigError(
                f"{type(strategy).__name__} trains tunelab's networks itself (it differentiates through the model "
                f"and the data of a trainers.Trainer), so it cannot tune {trainer!r}; use it with the shared "
                f"trainer, or tune user code with Random, Bayesian, OptunaSampler, Evolution, ASHA or FreezeThaw")

    def retire(self, history: History) -> list[int]:
        """Numbers of paused trials this strategy will never resume.

        The study prunes them and deletes their checkpoints. The default retires nothing.
        """
        return []

    def rng(self, history: History, salt: int = 0) -> np.random.Generator:
        """The generator of the next proposal: derived from `(seed, proposals so far, salt)`."""
        return np.random.default_rng([self.seed, len(history.trials), salt])

    def spec(self) -> dict[str, Any]:
        """`{"name": ..., "args": {...}}`: what the study stores to rebuild this strategy."""
        params = inspect.signature(type(self).__init__).parameters
        args = {k: getattr(self, k) for k in params if k != "self" and hasattr(self, k)}
        return {"name": self.name or type(self).__name__, "args": args}

    @classmethod
    def stored_imports(cls, args: Mapping[str, Any]) -> list[str]:
        """Import paths (`"module:attr"`) that building this class from stored `args` would import.

        `from_spec` checks them against the caller's trust before constructing anything. A
        strategy whose arguments name code to import (as `OptunaSampler("mypkg:MySampler")`
        does) overrides this; the default names none.
        """
        return []

    @staticmethod
    def from_spec(spec: Mapping[str, Any], *, trust: Trust = None) -> Strategy:
        """Rebuild a strategy from `spec()` output (a registered name, or `module:Class`).

        Registered strategies (every built-in one, and subclasses whose module the caller has
        imported) load by name. A `module:Class` name, or an argument naming code to import, is
        imported only when its package is in `trust` (see `spaces.trust`).

        Raises:
            UntrustedImportError: The spec names code that is not built in and not trusted.
            ConfigError: The spec is malformed or names an unknown strategy.
        """
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"a strategy spec is {{'name': ..., 'args': {{...}}}}, got {spec!r}")
        name = spec["name"]
        args = spec.get("args", {})
        if not isinstance(args, Mapping):
            raise ConfigError(f"the arguments of strategy {name!r} must be a mapping, got {args!r}")
        if ":" in name:
            path = current_path(name)  # 0.3.0 stored tunelab's own classes as "search.x:Class"
            own = {path} if path.startswith("tunelab.") else set()  # tunelab's own classes need no trust
            cls = resolve(path, what="strategy class", trust=trust, builtins=own)
            if not (isinstance(cls, type) and issubclass(cls, Strategy)):
                raise ConfigError(f"{name!r} is not a search.Strategy subclass")
        else:
            cls = strategies.get(name)
        for path in cls.stored_imports(args):
            check(path, what=f"{name} strategy argument", trust=trust)
        try:
            return cls(**cls.stored_args(dict(args)))
        except TypeError as err:  # an argument this version does not take (a damaged or foreign spec)
            params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise ConfigError(f"the stored arguments of strategy {name!r} do not fit it ({err}); it takes "
                              f"{params}. The database was edited, or written by another version") from err

    @classmethod
    def stored_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        """Stored arguments as this version takes them (a strategy whose defaults changed pins the old ones)."""
        return args

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Strategy) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self.spec()))

    def __repr__(self) -> str:
        spec = self.spec()
        args = ", ".join(f"{k}={v!r}" for k, v in spec["args"].items())
        return f"{type(self).__name__}({args})"


LIMIT = 100_000  # the default upper bound of a strategy's whole-number arguments (sizes of loops and arrays)


def check_int(owner: str, name: str, value: Any, low: int = 1, high: int = LIMIT, *, optional: bool = False) -> Any:
    """Check a strategy's whole-number argument: an int in `[low, high]` (or None when `optional`).

    A stored study rebuilds its strategy from the database (`Strategy.from_spec`), which is
    untrusted input: every argument that sizes an allocation or a loop has an upper bound, so a
    damaged spec (`sample=10**9`) is a `ConfigError`, not a memory or time exhaustion.

    Returns:
        `value` as an int (None when optional and None).

    Raises:
        ConfigError: Not an int, or out of range; the message names `owner(name=...)` and the range.
    """
    if value is None and optional:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        extra = " or None" if optional else ""
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{owner}({name}=...) must be an int from {low} to {high:,}{extra}, got {shown}")
    return int(value)


def needs_curves(strategy: Strategy, trainer: Any) -> None:
    """Refuse a trainer whose runs have one epoch (an `Objective`) for a strategy that pauses and resumes runs.

    Raises:
        ConfigError: Naming the strategy and what it needs.
    """
    if getattr(trainer, "epochs", 2) < 2:
        raise ConfigError(
            f"{type(strategy).__name__} pauses runs and continues the promising ones with more epochs, but "
            f"{trainer!r} evaluates a configuration once (epochs=1); give it a trainer with learning curves "
            f"(trainers.Function(fn, epochs=...) or trainers.Trainer), or search with Random, Bayesian, "
            f"OptunaSampler or Evolution")


def seen_configs(trials: Sequence[TrialView]) -> set[str]:
    """Canonical keys of the configs in `trials` (to avoid proposing a duplicate)."""
    return {config_key(t.config) for t in trials}
