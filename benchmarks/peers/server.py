"""A peer library's optimizer behind JSON lines on stdin/stdout (runs in that peer's own virtual environment).

tunelab's driver evaluates every proposal (`benchmarks/peers/strategy.py` relays them), so the
peer only asks and is told. This file imports nothing of tunelab: it runs in an environment
made by `make_envs.sh`, with the peer's own pins.

Protocol (one JSON object per line, one reply per request):
    {"op": "init", "peer": ..., "params": {name: [choices]}, "max_epochs": E, "seed": s,
     "space": {name: spec}, "budget": n}
        -> {"ok": true, "version": "..."}
    {"op": "ask"}
        -> {"kind": "start", "id": i, "config": {...}, "epochs": k}  (train a new run until epoch k)
        or {"kind": "resume", "id": i, "epochs": k}                  (continue run i until epoch k)
    {"op": "tell", "id": i, "curve": [loss per epoch so far], "failed": bool}
        -> {"ok": true}
Losses are minimised (the relay negates metrics that are maximised). A failed (diverged) run
is told with the worst loss seen so far, as SMAC's `crash_cost` does.

`space` and `budget` are optional. `space` gives each parameter its type, so that a peer searches
the space in its own natural form: `{"type": "float" | "int", "low": a, "high": b, "log": bool}`
(bounds inclusive) or `{"type": "categorical", "choices": [...]}`; without it every parameter of
`params` is categorical (what the replay leaderboard sends). `budget` is the number of
evaluations the study will ask for, for the peers that plan by it (NGOpt's choice of algorithm,
SMAC's initial design); without it they keep their open-ended settings.

Peers:
    optuna     TPE with the Hyperband pruner (Li et al. 2018), resumed rung to rung
    nevergrad  NGOpt at full fidelity (Rapin & Teytaud 2018)
    dehb       DEHB (Awad et al. 2021), each fidelity a fresh run, as DEHB defines it
    smac       SMAC3's MultiFidelityFacade (Hyperband intensifier + random forest; Lindauer et al. 2022);
               with max_epochs=1 (a black box) its HyperparameterOptimizationFacade (random-forest
               SMAC, n_trials = budget)
    syne_tune  Syne Tune's ASHA (Li et al. 2020): its scheduler's suggest / on_trial_result, rung to rung
    optuna_tpe_mv  Optuna's TPESampler(multivariate=True) at full fidelity (Falkner et al. 2018's
               multivariate kernel density; Watanabe 2023), in the optuna environment
    optuna_gp  Optuna's GPSampler (GP + log EI) at full fidelity, in the optuna environment
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

Spec = dict[str, Any]  # one parameter's type: see the module docstring


def typed(params: dict[str, list[Any]], space: dict[str, Spec] | None) -> dict[str, Spec]:
    """The typed space: `space` as given, or every parameter of `params` categorical."""
    if space is not None:
        return {k: dict(v) for k, v in space.items()}
    return {k: {"type": "categorical", "choices": list(v)} for k, v in params.items()}


def cast(spec: Spec, value: Any) -> Any:
    """A numeric value as the plain Python type of its parameter (libraries hand back numpy scalars)."""
    if spec["type"] == "int":
        return round(float(value))
    if spec["type"] == "float":
        return float(value)
    return value


def rungs(max_epochs: int, eta: int = 3, low: int = 1) -> list[int]:
    out, r = [], low
    while r < max_epochs:
        out.append(r)
        r *= eta
    return [*out, max_epochs]


class Peer:
    """Base: worst-loss bookkeeping and run ids.

    Args:
        params: Name -> choices (the untyped form).
        max_epochs: A full run's epochs (1 for a black box).
        seed: The peer's seed.
        space: Name -> typed spec; None makes every parameter of `params` categorical.
        budget: Evaluations the study will ask for (None: open-ended).
    """

    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, space: dict[str, Spec] | None = None,
                 budget: int | None = None) -> None:
        self.params, self.max_epochs, self.seed = params, max_epochs, seed
        self.space = typed(params, space)
        self.budget = budget
        self.worst = 1.0
        self.next_id = 0

    def loss_of(self, curve: list[float | None], failed: bool) -> float:
        finite = [v for v in curve if v is not None and math.isfinite(v)]
        if failed or not finite:
            return self.worst
        self.worst = max(self.worst, finite[-1])
        return finite[-1]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class RungPeer(Peer):
    """A peer that decides at rungs: a run trains to the first rung, then on rung by rung while the peer keeps it."""

    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, **kwargs: Any) -> None:
        super().__init__(params, max_epochs, seed, **kwargs)
        self.trials: dict[int, Any] = {}
        self.reported: dict[int, int] = {}  # epochs of each run the peer has been told
        self.queue: list[dict[str, Any]] = []
        self.rungs = rungs(max_epochs)

    def start(self, i: int) -> tuple[Any, dict[str, Any]]:
        """The peer's new trial (as run `i`) and its configuration."""
        raise NotImplementedError

    def ask(self) -> dict[str, Any]:
        if self.queue:
            return self.queue.pop(0)
        i = self.new_id()
        trial, config = self.start(i)
        self.trials[i], self.reported[i] = trial, 0
        return {"kind": "start", "id": i, "config": config, "epochs": self.rungs[0]}

    def go_on(self, i: int, epochs: int) -> None:
        """Queue run `i`, told up to `epochs`, to continue to its next rung."""
        self.reported[i] = epochs
        self.queue.append({"kind": "resume", "id": i, "epochs": next(r for r in self.rungs if r > epochs)})


def _suggest(trial: Any, space: dict[str, Spec]) -> dict[str, Any]:
    """An Optuna trial's values for a typed space (define-by-run, in the space's order)."""
    out: dict[str, Any] = {}
    for k, spec in space.items():
        if spec["type"] == "float":
            out[k] = trial.suggest_float(k, spec["low"], spec["high"], log=bool(spec.get("log")))
        elif spec["type"] == "int":
            out[k] = trial.suggest_int(k, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            out[k] = trial.suggest_categorical(k, spec["choices"])
    return out


class OptunaPeer(RungPeer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, **kwargs: Any) -> None:
        import optuna

        super().__init__(params, max_epochs, seed, **kwargs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
        self.study = optuna.create_study(study_name=f"peer-{seed}", sampler=optuna.samplers.TPESampler(seed=seed),
                                         pruner=pruner)

    def start(self, i: int) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask()
        return trial, _suggest(trial, self.space)

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        trial = self.trials[i]
        if failed:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            return
        for step in range(self.reported[i], len(curve)):
            trial.report(float(curve[step]), step + 1)
        if len(curve) >= self.max_epochs:
            self.study.tell(trial, self.loss_of(curve, False))
        elif trial.should_prune():
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
        else:
            self.go_on(i, len(curve))


def _nevergrad_param(spec: Spec) -> Any:
    import nevergrad as ng

    if spec["type"] == "categorical":
        return ng.p.Choice(spec["choices"])
    kind = ng.p.Log if spec.get("log") else ng.p.Scalar
    param = kind(lower=spec["low"], upper=spec["high"])
    return param.set_integer_casting() if spec["type"] == "int" else param


class NevergradPeer(Peer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, **kwargs: Any) -> None:
        import nevergrad as ng

        super().__init__(params, max_epochs, seed, **kwargs)
        space = ng.p.Dict(**{k: _nevergrad_param(spec) for k, spec in self.space.items()})
        space.random_state.seed(seed)
        # NGOpt picks its algorithm from the budget (and the space): the study's when it is known
        self.opt = ng.optimizers.NGOpt(parametrization=space, budget=self.budget or 10_000, num_workers=1)
        self.cands: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        cand = self.opt.ask()
        i = self.new_id()
        self.cands[i] = cand
        config = {k: cast(self.space[k], v) for k, v in dict(cand.value).items()}
        return {"kind": "start", "id": i, "config": config, "epochs": self.max_epochs}

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        self.opt.tell(self.cands.pop(i), self.loss_of(curve, failed))


def _configspace(space: dict[str, Spec], seed: int) -> Any:
    from ConfigSpace import (
        CategoricalHyperparameter,
        ConfigurationSpace,
        UniformFloatHyperparameter,
        UniformIntegerHyperparameter,
    )

    def hyperparameter(k: str, spec: Spec) -> Any:
        if spec["type"] == "float":
            return UniformFloatHyperparameter(k, spec["low"], spec["high"], log=bool(spec.get("log")))
        if spec["type"] == "int":
            return UniformIntegerHyperparameter(k, spec["low"], spec["high"], log=bool(spec.get("log")))
        # ConfigSpace wants str/number choices; values go through their JSON text so types come back intact
        return CategoricalHyperparameter(k, [json.dumps(c) for c in spec["choices"]])

    cs = ConfigurationSpace(seed=seed)
    cs.add([hyperparameter(k, spec) for k, spec in space.items()])
    return cs


def _values(config: Any, space: dict[str, Spec]) -> dict[str, Any]:
    return {k: json.loads(v) if space[k]["type"] == "categorical" else cast(space[k], v)
            for k, v in dict(config).items()}


class DehbPeer(Peer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, **kwargs: Any) -> None:
        from dehb import DEHB

        super().__init__(params, max_epochs, seed, **kwargs)
        self.cs = _configspace(self.space, seed)
        self.dehb = DEHB(f=None, cs=self.cs, dimensions=len(self.space), min_fidelity=1, max_fidelity=max_epochs, eta=3,
                         n_workers=1, seed=seed, output_path=f"/tmp/dehb-peer-{seed}", save_freq="end",
                         log_level="ERROR")
        self.jobs: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        job = self.dehb.ask()
        i = self.new_id()
        self.jobs[i] = job
        config = job["config"]  # a ConfigSpace Configuration (DEHB converts its vector when given a space)
        if not hasattr(config, "keys"):
            config = self.dehb.vector_to_configspace(config)
        return {"kind": "start", "id": i, "config": _values(config, self.space),
                "epochs": max(1, min(self.max_epochs, round(job["fidelity"])))}

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        self.dehb.tell(self.jobs.pop(i), {"fitness": self.loss_of(curve, failed), "cost": float(len(curve))})


class SmacPeer(Peer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, **kwargs: Any) -> None:
        import os

        from smac import HyperparameterOptimizationFacade, MultiFidelityFacade, Scenario

        super().__init__(params, max_epochs, seed, **kwargs)
        cs = _configspace(self.space, seed)
        if max_epochs == 1:  # a black box: no fidelity to race on, so random-forest SMAC itself
            # (one output folder per process: concurrent runs of the same seed must not share it)
            scenario = Scenario(cs, deterministic=True, n_trials=self.budget or 100_000, seed=seed,
                                output_directory=f"/tmp/smac-peer-hpo-{seed}-{os.getpid()}")
            self.smac = HyperparameterOptimizationFacade(scenario, lambda config, seed=0: 0.0, overwrite=True,
                                                         logging_level=40)
        else:
            scenario = Scenario(cs, deterministic=True, n_trials=100_000, min_budget=1, max_budget=max_epochs,
                                seed=seed, output_directory=f"/tmp/smac-peer-{seed}")
            intensifier = MultiFidelityFacade.get_intensifier(scenario, eta=3)
            self.smac = MultiFidelityFacade(scenario, lambda config, seed=0, budget=1: 0.0, intensifier=intensifier,
                                            overwrite=True, logging_level=40)
        self.infos: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        info = self.smac.ask()
        i = self.new_id()
        self.infos[i] = info
        return {"kind": "start", "id": i, "config": _values(info.config, self.space),
                "epochs": max(1, min(self.max_epochs, round(info.budget or self.max_epochs)))}

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        from smac.runhistory.dataclasses import TrialValue

        self.smac.tell(self.infos.pop(i), TrialValue(cost=self.loss_of(curve, failed), time=float(len(curve))))


def _syne_tune_domain(spec: Spec) -> Any:
    from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

    if spec["type"] == "categorical":
        return choice([json.dumps(c) for c in spec["choices"]])
    if spec["type"] == "int":
        return (lograndint if spec.get("log") else randint)(spec["low"], spec["high"])
    return (loguniform if spec.get("log") else uniform)(spec["low"], spec["high"])


class SyneTunePeer(RungPeer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, **kwargs: Any) -> None:
        from syne_tune.optimizer.baselines import ASHA

        super().__init__(params, max_epochs, seed, **kwargs)
        space = {k: _syne_tune_domain(spec) for k, spec in self.space.items()}
        self.asha = ASHA(space, metric="loss", time_attr="epoch", max_t=max_epochs, do_minimize=True,
                         random_seed=seed, grace_period=1, reduction_factor=3)

    def start(self, i: int) -> tuple[Any, dict[str, Any]]:
        from syne_tune.backend.trial_status import Trial

        suggestion = self.asha.suggest()
        trial = Trial(trial_id=i, config=suggestion.config, creation_time=None)
        self.asha.on_trial_add(trial)
        return trial, _values({k: v for k, v in suggestion.config.items() if k in self.space}, self.space)

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        trial = self.trials[i]
        if failed:
            self.asha.on_trial_error(trial)
            return
        for step in range(self.reported[i], len(curve)):
            loss = self.loss_of(curve[: step + 1], False)
            action = self.asha.on_trial_result(trial, {"epoch": step + 1, "loss": loss})
            if str(action).lower().endswith("stop"):
                return  # stopped by ASHA, or at max_t
        self.go_on(i, len(curve))


class OptunaFullPeer(Peer):
    """An Optuna sampler at full fidelity through ask / tell (no pruner): the sampler's own search."""

    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int, **kwargs: Any) -> None:
        import warnings

        import optuna

        super().__init__(params, max_epochs, seed, **kwargs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.study = optuna.create_study(study_name=f"peer-{seed}", sampler=self.sampler(optuna, seed))
        self.trials: dict[int, Any] = {}

    def sampler(self, optuna: Any, seed: int) -> Any:
        raise NotImplementedError

    def ask(self) -> dict[str, Any]:
        trial = self.study.ask()
        i = self.new_id()
        self.trials[i] = trial
        return {"kind": "start", "id": i, "config": _suggest(trial, self.space), "epochs": self.max_epochs}

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        self.study.tell(self.trials.pop(i), self.loss_of(curve, failed))


class OptunaTpeMultivariatePeer(OptunaFullPeer):
    def sampler(self, optuna: Any, seed: int) -> Any:
        return optuna.samplers.TPESampler(multivariate=True, seed=seed)


class OptunaGpPeer(OptunaFullPeer):
    def sampler(self, optuna: Any, seed: int) -> Any:
        return optuna.samplers.GPSampler(seed=seed)


PEERS = {"optuna": OptunaPeer, "nevergrad": NevergradPeer, "dehb": DehbPeer, "smac": SmacPeer,
         "syne_tune": SyneTunePeer, "optuna_tpe_mv": OptunaTpeMultivariatePeer, "optuna_gp": OptunaGpPeer}
PACKAGES = {"optuna_tpe_mv": "optuna", "optuna_gp": "optuna", "syne_tune": "syne-tune"}  # a peer's distribution


def main() -> None:
    out, sys.stdout = sys.stdout, sys.stderr  # what a library prints must not break the protocol
    peer: Peer | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            if msg["op"] == "init":
                budget = msg.get("budget")
                peer = PEERS[msg["peer"]](msg["params"], int(msg["max_epochs"]), int(msg["seed"]),
                                          space=msg.get("space"), budget=None if budget is None else int(budget))
                from importlib.metadata import version

                reply: dict[str, Any] = {"ok": True, "version": version(PACKAGES.get(msg["peer"], msg["peer"]))}
            elif msg["op"] == "ask":
                reply = peer.ask()  # type: ignore[union-attr]
            elif msg["op"] == "tell":
                peer.tell(int(msg["id"]), list(msg["curve"]), bool(msg.get("failed")))  # type: ignore[union-attr]
                reply = {"ok": True}
            else:
                reply = {"error": f"unknown op {msg['op']!r}"}
        except Exception as err:  # the relay raises it with the peer's own words
            import traceback

            reply = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
