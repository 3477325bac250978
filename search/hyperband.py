"""`search.Hyperband` and `search.ASHA`: bandit-based early stopping, promotion by resuming.

- Hyperband: Li, Jamieson, DeSalvo, Rostamizadeh & Talwalkar, "Hyperband: A Novel Bandit-Based
  Approach to Hyperparameter Optimization", JMLR 2018. Brackets s = s_max, ..., 0 cycle; bracket
  s starts `n = ceil((s_max + 1) / (s + 1) * eta^s)` random configurations for `R * eta^-s`
  epochs and runs successive halving: when every trial of a rung has finished it, the best
  `1/eta` continue to the next rung, `eta` times longer. Brackets do not wait for each other
  (a blocked bracket lets the next one start), as the paper suggests for parallel workers.
- ASHA: Li, Jamieson, Rostamizadeh, Gonina, Ben-tzur, Hardt, Recht & Talwalkar, "A System for
  Massively Parallel Hyperparameter Tuning", MLSys 2020 (asynchronous successive halving).
  Rungs at `min_epochs * eta^k` epochs and the full run. Whenever a worker is free, the
  highest rung with a trial in the top `1/eta` of its rung that has not been promoted yet
  promotes it; otherwise a new random configuration starts at the lowest rung. ASHA never waits.

- MO-ASHA: Schmucker, Donini, Zafar, Salinas & Archambeau, "Multi-objective Asynchronous
  Successive Halving", arXiv 2106.12639, 2021. ASHA on a study with several objectives: a rung
  is ranked by non-dominated sorting of the trials' objective vectors at the rung's epoch, ties
  within a front broken by NSGA-II's crowding distance (the paper's "NSGA-II" selection; its
  other, EpsNet, differs only in that tie-break), and the top 1/eta of that order are promoted.

Promotion resumes the paused trial from its checkpoint (`Request.resume`): a trial promoted
from 3 to 9 epochs trains 6 more epochs, never 9 from scratch. Both are stateless: rungs,
brackets and promotions are read back from the study's history (trial targets, curves and the
bracket number stored with each trial), so a resumed study continues where it stopped. Failed
trials stay in their rung with the worst value, so a crash never frees a promotion slot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tunelab.search.base import History, Request, Strategy, TrialView, check_int


def _rung_value(trial: TrialView, epochs: int) -> float:
    """The (normalised) objective of `trial` at `epochs`, +inf when it failed or diverged there."""
    if trial.epochs < epochs or (trial.state == "failed" and trial.epochs <= epochs):
        return math.inf
    v = trial.curve[epochs - 1]
    return v if math.isfinite(v) else math.inf


class _Halving(Strategy):
    """What Hyperband and ASHA share: a reduction factor and the fewest epochs of a rung.

    Args:
        seed: Seed of the random configurations.
        eta: Reduction factor: the top 1/eta of a rung is promoted to eta times more epochs.
        min_epochs: Epochs of the lowest rung.

    Raises:
        ConfigError: eta < 2 or min_epochs < 1.
    """

    pauses_trials = True

    def __init__(self, seed: int = 0, eta: int = 3, min_epochs: int = 1) -> None:
        super().__init__(seed)
        check_int(type(self).__name__, "eta", eta, 2, 1_000)  # the paper's default is 3
        check_int(type(self).__name__, "min_epochs", min_epochs)
        self.eta = eta
        self.min_epochs = min_epochs


def asha_rungs(max_epochs: int, min_epochs: int, eta: int) -> list[int]:
    """ASHA's rungs: `min_epochs * eta^k` below `max_epochs`, then `max_epochs`."""
    rungs, r = [], min_epochs
    while r < max_epochs:
        rungs.append(r)
        r *= eta
    return [*rungs, max_epochs]


def _rung_vector(trial: TrialView, epochs: int) -> tuple[float, ...] | None:
    """The (normalised) objective vector of `trial` at `epochs`, None when it failed, diverged or is unknown there."""
    if trial.epochs < epochs or (trial.state == "failed" and trial.epochs <= epochs) or len(trial.vectors) < epochs:
        return None
    v = trial.vectors[epochs - 1]
    return v if all(math.isfinite(x) for x in v) else None


def ranked_rung(members: Sequence[TrialView], epochs: int, history: History) -> list[TrialView]:
    """A rung's trials best first: by value, or (several objectives) by MO-ASHA's non-dominated order.

    Trials without a value at the rung (failed, diverged) come last, by number.
    """
    if not history.multi_objective:
        return sorted(members, key=lambda t: (_rung_value(t, epochs), t.number))
    import numpy as np

    from tunelab.spaces.pareto import rank_order

    ok = sorted((t for t in members if _rung_vector(t, epochs) is not None), key=lambda t: t.number)
    rest = sorted((t for t in members if _rung_vector(t, epochs) is None), key=lambda t: t.number)
    if not ok:
        return rest
    order = rank_order(np.array([_rung_vector(t, epochs) for t in ok]))
    return [ok[int(i)] for i in order] + rest


class ASHA(_Halving):
    """Asynchronous successive halving (Li et al. 2020) over random configurations; MO-ASHA with several objectives.

    Args:
        seed: Seed of the random configurations.
        eta: Reduction factor: the top 1/eta of a rung is promoted to eta times more epochs.
        min_epochs: Epochs of the lowest rung.
    """

    name = "asha"
    multi_objective = True  # MO-ASHA (Schmucker et al. 2021)

    def ask(self, history: History) -> Request:
        """Promote the best unpromoted trial of the highest rung that has one, else start a new config."""
        rungs = asha_rungs(history.max_epochs, min(self.min_epochs, history.max_epochs), self.eta)
        trials = [t for t in history.trials if t.target_epochs is not None]
        for k in range(len(rungs) - 2, -1, -1):
            r = rungs[k]
            members = [t for t in trials if t.target_epochs >= r and (t.epochs >= r or t.state == "failed")]
            ranked = ranked_rung(members, r, history)
            for t in ranked[: len(members) // self.eta]:
                if (t.state == "paused" and t.epochs == r and t.target_epochs == r and _rung_value(t, r) < math.inf
                        and (not history.multi_objective or _rung_vector(t, r) is not None)):
                    return Request.resume(t.number, until_epoch=rungs[k + 1])
        config = history.space.sample(self.rng(history))
        return Request.start(config, epochs=rungs[0], attrs={"rung": 0})


class Hyperband(_Halving):
    """Hyperband (Li et al. 2018): brackets of successive halving over random configurations.

    Args:
        seed: Seed of the random configurations.
        eta: Reduction factor of successive halving.
        min_epochs: Fewest epochs a configuration is trained (the paper's r); the full run is R.
    """

    name = "hyperband"

    def brackets(self, max_epochs: int) -> list[tuple[int, list[int], list[int]]]:
        """`(s, rung epochs, configs per rung)` for s = s_max, ..., 0 (one Hyperband iteration)."""
        ratio = max_epochs / min(self.min_epochs, max_epochs)
        s_max = math.floor(math.log(ratio, self.eta) + 1e-9)
        out = []
        for s in range(s_max, -1, -1):
            n = math.ceil((s_max + 1) / (s + 1) * self.eta**s)
            epochs = [max(1, min(max_epochs, round(max_epochs * self.eta ** (i - s)))) for i in range(s + 1)]
            counts = [max(1, math.floor(n * self.eta**-i)) for i in range(s + 1)]
            out.append((s, epochs, counts))
        return out

    def _bracket(self, max_epochs: int, b: int) -> tuple[list[int], list[int]]:
        table = self.brackets(max_epochs)
        _, epochs, counts = table[b % len(table)]
        return epochs, counts

    def _state(self, members: Sequence[TrialView], epochs: list[int], counts: list[int]
               ) -> tuple[str, list[TrialView]]:
        """What a bracket needs next: ("start", []), ("promote", trials), ("wait", []) or ("done", [])."""
        if len(members) < counts[0]:
            return "start", []
        for i in range(len(epochs) - 1):
            r = epochs[i]
            alive = [t for t in members if (t.target_epochs or 0) >= r]
            if any(t.state in ("pending", "running") and t.epochs < r for t in alive):
                return "wait", []
            ranked = sorted(alive, key=lambda t: (_rung_value(t, r), t.number))
            top = [t for t in ranked[: counts[i + 1]] if _rung_value(t, r) < math.inf]
            todo = [t for t in top if t.state == "paused" and (t.target_epochs or 0) <= r]
            if todo:
                return "promote", todo
        if any(t.state in ("pending", "running") for t in members):
            return "wait", []
        return "done", []

    def _groups(self, history: History) -> dict[int, list[TrialView]]:
        groups: dict[int, list[TrialView]] = {}
        for t in history.trials:
            if "bracket" in t.attrs:
                groups.setdefault(int(t.attrs["bracket"]), []).append(t)
        return groups

    def ask(self, history: History) -> Request | None:
        """The next start or promotion of the earliest bracket that is not waiting for running trials."""
        groups = self._groups(history)
        b = 0
        while True:
            epochs, counts = self._bracket(history.max_epochs, b)
            state, trials = self._state(groups.get(b, []), epochs, counts)
            if state == "start":
                config = history.space.sample(self.rng(history))
                return Request.start(config, epochs=epochs[0], attrs={"bracket": b})
            if state == "promote":
                t = trials[0]
                nxt = epochs[epochs.index(t.target_epochs) + 1] if t.target_epochs in epochs else epochs[-1]
                return Request.resume(t.number, until_epoch=nxt)
            b += 1
            if b > max(groups, default=-1) + 1:
                return None  # every bracket waits for its running trials

    def retire(self, history: History) -> list[int]:
        """Paused trials of rungs that are finished and did not make the cut: they are never resumed."""
        out: list[int] = []
        for b, members in self._groups(history).items():
            epochs, counts = self._bracket(history.max_epochs, b)
            losers: list[TrialView] = []
            for i in range(len(epochs) - 1):
                r = epochs[i]
                alive = [t for t in members if (t.target_epochs or 0) >= r]
                if len(members) < counts[0] or any(t.state in ("pending", "running") and t.epochs < r for t in alive):
                    break
                ranked = sorted(alive, key=lambda t: (_rung_value(t, r), t.number))
                keep = {t.number for t in ranked[: counts[i + 1]]}
                losers += [t for t in ranked if t.number not in keep and t.state == "paused"]
            out += [t.number for t in losers]
        return sorted(set(out))
