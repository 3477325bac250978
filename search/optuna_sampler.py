"""`search.OptunaSampler`: any Optuna sampler (TPE, GPSampler, CMA-ES, QMC, ...) as a tunelab strategy.

Optuna's samplers are themselves stateless over a study's storage (they rebuild what they need
from the trials, `optuna/samplers/_tpe/sampler.py`). This adapter keeps that property: on every
`ask` it brings an in-memory Optuna study in step with tunelab's history (finished trials with
their values, failed ones as FAIL, in-flight ones as RUNNING; only new and changed trials are
written, and the study is rebuilt when the history is not an extension of the one it mirrors),
asks the sampler for one trial through
Optuna's define-by-run API (so conditional spaces are sampled the way Optuna samples them), and
stores the sampler's per-trial system attributes with the request so that samplers that keep
state there (CMA-ES's generation and optimizer) find it again after a resume.

Samplers given by name or class are rebuilt for each proposal with a seed derived from
`(seed, number of proposals)`, which makes a killed-and-resumed study propose what an
uninterrupted one would. A sampler instance is used as it is (its own seed and state apply;
a study loaded from its database rebuilds it from its class with default arguments).

TPE: Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011, and Watanabe,
"Tree-Structured Parzen Estimator: Understanding Its Algorithm Components", 2023.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tunelab.search.base import History, Request, Strategy, TrialView, check_int
from tunelab.spaces import Categorical, ConfigError, Fixed, Float, Int, Space
from tunelab.spaces.trust import split_path

SAMPLERS = {
    "tpe": "TPESampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "random": "RandomSampler",
    "qmc": "QMCSampler",
    "nsgaii": "NSGAIISampler",
}


def _builtin_path(path: str) -> bool:
    """Whether a `module:Class` path is one of Optuna's own samplers (loadable from a database as a name)."""
    module = path.partition(":")[0]
    return module == "optuna.samplers" or module.startswith("optuna.samplers.")


def _sampler_class(sampler: str | type) -> type:
    import optuna

    cls: Any = None
    if isinstance(sampler, type):
        cls = sampler
    elif sampler in SAMPLERS:
        cls = getattr(optuna.samplers, SAMPLERS[sampler])
    elif ":" in sampler:
        module, qual = split_path(sampler, "Optuna sampler")
        cls = getattr(importlib.import_module(module), qual)
    elif hasattr(optuna.samplers, sampler):
        cls = getattr(optuna.samplers, sampler)
    if cls is not None:
        if not (isinstance(cls, type) and issubclass(cls, optuna.samplers.BaseSampler)):
            raise ConfigError(f"{sampler!r} is not an Optuna sampler class (a subclass of optuna.samplers.BaseSampler)")
        return cls
    raise ConfigError(
        f"unknown Optuna sampler {sampler!r}; use one of {sorted(SAMPLERS)}, a class of optuna.samplers, "
        f"or 'module:Class'"
    )


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """Sample a config of `space` through an `optuna.Trial` (define-by-run, choices first)."""
    config: dict[str, Any] = {}
    for e in space.entries:
        if not all(config.get(c) == b for c, b in e.when):
            continue
        p = e.param
        if isinstance(p, Float):
            config[e.name] = trial.suggest_float(e.name, p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            config[e.name] = trial.suggest_int(e.name, p.low, p.high, log=p.log)
        elif isinstance(p, Categorical):
            config[e.name] = trial.suggest_categorical(e.name, list(p.choices))
        elif isinstance(p, Fixed):
            config[e.name] = trial.suggest_categorical(e.name, [p.value])
        else:  # pragma: no cover - a new parameter type must be taught here
            raise ConfigError(f"{e.name}: OptunaSampler cannot sample a {type(p).__name__}")
    return config


class OptunaSampler(Strategy):
    """Run an Optuna sampler as a strategy.

    Args:
        sampler: A name ("tpe", "gp", "cmaes", "random", "qmc", "nsgaii"), a sampler class,
            "module:Class", or a sampler instance (used as it is).
        seed: Seed of the sampler (ignored for an instance).
        **kwargs: Arguments of the sampler class (JSON-ready values, stored with the study).

    Raises:
        ConfigError: An unknown sampler name.
    """

    name = "optuna"

    def __init__(self, sampler: Any = "tpe", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(seed)
        import optuna

        self._instance = sampler if isinstance(sampler, optuna.samplers.BaseSampler) else None
        if self._instance is not None:
            cls = type(sampler)
            self.sampler = f"{cls.__module__}:{cls.__qualname__}"
        else:
            cls = _sampler_class(sampler)
            self.sampler = sampler if isinstance(sampler, str) else f"{cls.__module__}:{cls.__qualname__}"
        if cls.__name__ == "CmaEsSampler":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                raise ConfigError("OptunaSampler('cmaes') needs the cmaes package: pip install cmaes") from None
        self._cls = cls
        for key, value in kwargs.items():  # sizes of the sampler's loops and arrays (a stored spec is untrusted)
            if isinstance(value, int) and not isinstance(value, bool):
                check_int(f"OptunaSampler({self.sampler!r}, ...)", key, value, -(10**6), 10**6)
        self.kwargs = dict(kwargs)
        self._study: Any = None  # the in-memory Optuna study mirroring the history (`_mirror`)
        self._space: Space | None = None
        self._signatures: list[tuple] = []

    @classmethod
    def stored_imports(cls, args: Mapping[str, Any]) -> list[str]:
        """The sampler's `module:Class` path when it is not one of Optuna's own (those load by name)."""
        sampler = args.get("sampler", "tpe")
        if isinstance(sampler, str) and ":" in sampler and not _builtin_path(sampler):
            return [sampler]
        if not isinstance(sampler, str):
            return [repr(sampler)]  # not a stored value tunelab writes: split_path refuses it
        return []

    def spec(self) -> dict[str, Any]:
        """Sampler, seed and the sampler's arguments."""
        return {"name": self.name, "args": {"sampler": self.sampler, "seed": self.seed, **self.kwargs}}

    def make_sampler(self, seed: int) -> Any:
        """The sampler of one proposal."""
        return self._instance if self._instance is not None else self._cls(seed=seed, **self.kwargs)

    def ask(self, history: History) -> Request:
        """Ask the sampler for one trial, on an in-memory Optuna study that mirrors `history`.

        The mirror is kept between asks and brought up to date incrementally (new trials added,
        trials that finished since updated), so an ask costs what the sampler costs, not a
        rebuild of the whole history. It holds exactly the trials a rebuild would (same params,
        values, curves and system attrs, in the same order), so proposals are the same; whenever
        it cannot be updated in place (a history that is not an extension of the mirrored one) it
        is rebuilt.
        """
        import optuna

        seed = int(np.random.default_rng([self.seed, len(history.trials)]).integers(2**31 - 1))
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = self._mirror(history)
            study.sampler = self.make_sampler(seed)
            trial = study.ask()
            config = suggest(trial, history.space)
            attrs: Mapping[str, Any] = study._storage.get_trial_system_attrs(trial._trial_id)
            # the asked trial stays in the mirror as the proposal it becomes (history's next trial)
            self._signatures.append(("asked", dict(config)))
        finally:
            optuna.logging.set_verbosity(level)
        return Request.start(config, attrs={"optuna_system_attrs": dict(attrs)} if attrs else None)

    @staticmethod
    def _frozen(t: TrialView, space: Space) -> Any:
        """`t` as the Optuna trial the sampler sees (a complete trial without a finite value counts as failed)."""
        from optuna.trial import TrialState as OTS
        from optuna.trial import create_trial

        state = {"complete": OTS.COMPLETE, "pruned": OTS.PRUNED, "failed": OTS.FAIL}.get(t.state, OTS.RUNNING)
        value = t.value if state == OTS.COMPLETE and t.value is not None and math.isfinite(t.value) else None
        if state == OTS.COMPLETE and value is None:
            state = OTS.FAIL
        return create_trial(
            state=state,
            value=value,
            params=dict(t.config),
            distributions=space.distributions(t.config),
            intermediate_values={i + 1: v for i, v in enumerate(t.curve) if math.isfinite(v)},
            system_attrs=dict(t.attrs.get("optuna_system_attrs", {})),
        )

    @staticmethod
    def _signature(t: TrialView) -> tuple:
        return (t.state, t.value, t.curve, t.config)

    def _mirror(self, history: History) -> Any:
        """The in-memory study holding `history`'s trials, updated in place when it can be."""
        import optuna

        mirror, signatures = self._study, self._signatures
        n = len(signatures)
        trials = history.trials
        if mirror is not None and self._space == history.space and n <= len(trials):
            stored = mirror._storage.get_all_trials(mirror._study_id, deepcopy=False)
            for i in range(n):
                old, t = signatures[i], trials[i]
                if old == self._signature(t):
                    continue
                new = self._frozen(t, history.space)
                before = stored[i]
                if (before.state.is_finished() or before.params != new.params
                        or any(new.intermediate_values.get(k) != v for k, v in before.intermediate_values.items())):
                    break  # a finished trial changed, another proposal, or a curve that shrank: rebuild
                self._replace(mirror, before, new)
                signatures[i] = self._signature(t)
            else:
                if n < len(trials):
                    mirror.add_trials([self._frozen(t, history.space) for t in trials[n:]])
                    signatures.extend(self._signature(t) for t in trials[n:])
                return mirror
        mirror = optuna.create_study(direction="minimize")
        mirror.add_trials([self._frozen(t, history.space) for t in trials])
        self._study, self._space = mirror, history.space
        self._signatures = [self._signature(t) for t in trials]
        return mirror

    @staticmethod
    def _replace(study: Any, old: Any, new: Any) -> None:
        """Bring the unfinished mirrored trial `old` to `new`'s params, curve, attrs and state."""
        storage, tid = study._storage, old._trial_id
        for key, value in new.system_attrs.items():
            storage.set_trial_system_attr(tid, key, value)
        for name, dist in new.distributions.items():
            if name not in old.params:
                storage.set_trial_param(tid, name, dist.to_internal_repr(new.params[name]), dist)
        for step, value in new.intermediate_values.items():
            storage.set_trial_intermediate_value(tid, step, value)
        if new.state.is_finished():
            storage.set_trial_state_values(tid, new.state, values=new.values)
