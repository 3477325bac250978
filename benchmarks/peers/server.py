"""A peer library's optimizer behind JSON lines on stdin/stdout (runs in that peer's own virtual environment).

tunelab's driver evaluates every proposal (`benchmarks/peers/strategy.py` relays them), so the
peer only asks and is told. This file imports nothing of tunelab: it runs in an environment
made by `make_envs.sh`, with the peer's own pins.

Protocol (one JSON object per line, one reply per request):
    {"op": "init", "peer": ..., "params": {name: [choices]}, "max_epochs": E, "seed": s}
        -> {"ok": true, "version": "..."}
    {"op": "ask"}
        -> {"kind": "start", "id": i, "config": {...}, "epochs": k}  (train a new run until epoch k)
        or {"kind": "resume", "id": i, "epochs": k}                  (continue run i until epoch k)
    {"op": "tell", "id": i, "curve": [loss per epoch so far], "failed": bool}
        -> {"ok": true}
Losses are minimised (the relay negates metrics that are maximised). A failed (diverged) run
is told with the worst loss seen so far, as SMAC's `crash_cost` does.

Peers:
    optuna     TPE with the Hyperband pruner (Li et al. 2018), resumed rung to rung
    nevergrad  NGOpt at full fidelity (Rapin & Teytaud 2018)
    dehb       DEHB (Awad et al. 2021), each fidelity a fresh run, as DEHB defines it
    smac       SMAC3's MultiFidelityFacade (Hyperband intensifier + random forest; Lindauer et al. 2022)
    syne_tune  Syne Tune's ASHA (Li et al. 2020): its scheduler's suggest / on_trial_result, rung to rung
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def rungs(max_epochs: int, eta: int = 3, low: int = 1) -> list[int]:
    out, r = [], low
    while r < max_epochs:
        out.append(r)
        r *= eta
    return [*out, max_epochs]


class Peer:
    """Base: worst-loss bookkeeping and run ids."""

    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int) -> None:
        self.params, self.max_epochs, self.seed = params, max_epochs, seed
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

    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int) -> None:
        super().__init__(params, max_epochs, seed)
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


class OptunaPeer(RungPeer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int) -> None:
        import optuna

        super().__init__(params, max_epochs, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
        self.study = optuna.create_study(study_name=f"peer-{seed}", sampler=optuna.samplers.TPESampler(seed=seed),
                                         pruner=pruner)

    def start(self, i: int) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask()
        return trial, {k: trial.suggest_categorical(k, v) for k, v in self.params.items()}

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


class NevergradPeer(Peer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int) -> None:
        import nevergrad as ng

        super().__init__(params, max_epochs, seed)
        space = ng.p.Dict(**{k: ng.p.Choice(v) for k, v in params.items()})
        space.random_state.seed(seed)
        self.opt = ng.optimizers.NGOpt(parametrization=space, budget=10_000)
        self.cands: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        cand = self.opt.ask()
        i = self.new_id()
        self.cands[i] = cand
        return {"kind": "start", "id": i, "config": dict(cand.value), "epochs": self.max_epochs}

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        self.opt.tell(self.cands.pop(i), self.loss_of(curve, failed))


def _configspace(params: dict[str, list[Any]], seed: int) -> Any:
    from ConfigSpace import CategoricalHyperparameter, ConfigurationSpace

    cs = ConfigurationSpace(seed=seed)
    # ConfigSpace wants str/number choices; values go through their JSON text so types come back intact
    cs.add([CategoricalHyperparameter(k, [json.dumps(c) for c in v]) for k, v in params.items()])
    return cs


def _values(config: Any) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in dict(config).items()}


class DehbPeer(Peer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int) -> None:
        from dehb import DEHB

        super().__init__(params, max_epochs, seed)
        self.cs = _configspace(params, seed)
        self.dehb = DEHB(f=None, cs=self.cs, dimensions=len(params), min_fidelity=1, max_fidelity=max_epochs, eta=3,
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
        return {"kind": "start", "id": i, "config": _values(config),
                "epochs": max(1, min(self.max_epochs, round(job["fidelity"])))}

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        self.dehb.tell(self.jobs.pop(i), {"fitness": self.loss_of(curve, failed), "cost": float(len(curve))})


class SmacPeer(Peer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int) -> None:
        from smac import MultiFidelityFacade, Scenario

        super().__init__(params, max_epochs, seed)
        cs = _configspace(params, seed)
        scenario = Scenario(cs, deterministic=True, n_trials=100_000, min_budget=1, max_budget=max_epochs, seed=seed,
                            output_directory=f"/tmp/smac-peer-{seed}")
        intensifier = MultiFidelityFacade.get_intensifier(scenario, eta=3)
        self.smac = MultiFidelityFacade(scenario, lambda config, seed=0, budget=1: 0.0, intensifier=intensifier,
                                        overwrite=True, logging_level=40)
        self.infos: dict[int, Any] = {}

    def ask(self) -> dict[str, Any]:
        info = self.smac.ask()
        i = self.new_id()
        self.infos[i] = info
        return {"kind": "start", "id": i, "config": _values(info.config),
                "epochs": max(1, min(self.max_epochs, round(info.budget or self.max_epochs)))}

    def tell(self, i: int, curve: list[float | None], failed: bool) -> None:
        from smac.runhistory.dataclasses import TrialValue

        self.smac.tell(self.infos.pop(i), TrialValue(cost=self.loss_of(curve, failed), time=float(len(curve))))


class SyneTunePeer(RungPeer):
    def __init__(self, params: dict[str, list[Any]], max_epochs: int, seed: int) -> None:
        from syne_tune.config_space import choice
        from syne_tune.optimizer.baselines import ASHA

        super().__init__(params, max_epochs, seed)
        space = {k: choice([json.dumps(c) for c in v]) for k, v in params.items()}
        self.asha = ASHA(space, metric="loss", time_attr="epoch", max_t=max_epochs, do_minimize=True,
                         random_seed=seed, grace_period=1, reduction_factor=3)

    def start(self, i: int) -> tuple[Any, dict[str, Any]]:
        from syne_tune.backend.trial_status import Trial

        suggestion = self.asha.suggest()
        trial = Trial(trial_id=i, config=suggestion.config, creation_time=None)
        self.asha.on_trial_add(trial)
        return trial, {k: json.loads(v) for k, v in suggestion.config.items() if k in self.params}

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


PEERS = {"optuna": OptunaPeer, "nevergrad": NevergradPeer, "dehb": DehbPeer, "smac": SmacPeer,
         "syne_tune": SyneTunePeer}


def main() -> None:
    out, sys.stdout = sys.stdout, sys.stderr  # what a library prints must not break the protocol
    peer: Peer | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            if msg["op"] == "init":
                peer = PEERS[msg["peer"]](msg["params"], int(msg["max_epochs"]), int(msg["seed"]))
                from importlib.metadata import version

                reply: dict[str, Any] = {"ok": True, "version": version(msg["peer"].replace("_", "-"))}
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
