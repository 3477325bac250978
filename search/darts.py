"""`search.Darts`: differentiable architecture search of a cell space, then an ordinary retraining.

References:
- Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search", ICLR.
- Wang, Cheng, Chen, Tang & Hsieh 2021, "Rethinking Architecture Selection in Differentiable
  NAS", ICLR (DARTS-PT, the default selection).
- Wu et al. 2019, "FBNet", CVPR, and Cai, Zhu & Han 2019, "ProxylessNAS", ICLR (the optional
  expected-cost term of hardware-aware search: `cost`, `cost_weight`, `search.op_costs`).

A DARTS study alternates two kinds of trials:

1. a search trial (routine `"darts"`, see `search.darts_search`): the supernet of the space's
   cell is trained by DARTS' bilevel loop on the two halves of the training split, and a genotype
   is selected (argmax of the alphas, or DARTS-PT's perturbation scores). It records the alphas
   per epoch, the genotype and the scores; its value (the supernet's accuracy on the
   search-validation half) is not comparable with ordinary trials and never counts as best;
2. a retraining trial (routine `"train"`): the found genotype, with every other parameter of
   the space at its default (or at the value given in `config`), trained from scratch by the
   study's own trainer on the trainer's seed, like any other strategy's trial. Its value is
   what a user compares with Evolution's or Random's.

`searches` searches run this way (each on its own seed), so several can live in one study and
run in parallel on workers. The strategy keeps no state: who searched and what was found is
read back from the trials, so a resumed study continues where it stopped.

Scaled for small workloads (MNIST-1D): the paper searches 50 epochs over 25,000 CIFAR-10
images per half, about 19,500 steps of batch 64. `epochs` defaults to the paper's 50, and the
other defaults are the papers'. On MNIST-1D's 1,600 examples per half an epoch is 25 steps, so
`benchmarks/darts.py` passes fewer epochs and a proportionally larger `arch_lr` (Adam's step is
about `arch_lr` per step, so the total movement of the alphas is kept); the README states the
values it ran.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunelab.search.base import History, Request, Strategy, TrialView, check_int
from tunelab.search.darts_routine import DartsSettings, cell_ops_of
from tunelab.spaces import EDGES, ConfigError, Genotype, Space
from tunelab.spaces.cells import edge_name

ROLE = "darts"


class Darts(Strategy):
    """DARTS search of a `spaces.cells` space, each search followed by a retraining of its genotype.

    Args:
        seed: The strategy's seed (each search's run seed derives from it).
        order: 1 (first-order architecture gradient) or 2 (the unrolled, second-order one).
        selection: "pt" (DARTS-PT: perturbation scores, edge by edge with fine-tuning) or
            "argmax" (strongest operation other than `none` per edge).
        epochs: Search epochs (passes over the search-training half).
        pt_interval: DARTS-PT fine-tuning epochs after each edge decision (6 edges).
        searches: Searches in the study (None: as many as the budget allows).
        retrain: Train each found genotype from scratch as an ordinary trial.
        batch_size: Search batch size (each step: one batch of each half).
        lr: Weights' initial learning rate (SGD, cosine to `lr_min` over the search).
        lr_min: Weights' final learning rate.
        momentum: Weights' SGD momentum.
        weight_decay: Weights' weight decay.
        grad_clip: Weights' gradient-norm clip.
        arch_lr: Adam learning rate of the alphas.
        arch_betas: Adam betas of the alphas.
        arch_weight_decay: Weight decay of the alphas.
        collapse_threshold: A genotype whose share of parameter-free operations is above this
            is flagged as collapsed (trial attribute and a warning).
        channels: Channels of the supernet's first stage, when the search should run on a
            narrower proxy than the network it selects (DARTS searches 8 cells of 16 channels
            and trains 20 cells of 36); None: the config's `model.channels`. The retraining
            always uses the config's.
        config: Values of the space's other parameters for the search config and the retraining
            (optimizer, learning rate, channels, ...); left out ones take the space's defaults.
        cost: Hardware-aware DARTS (`search.op_costs`, as FBNet and ProxylessNAS): "latency"
            (each operation timed on the study's device) or "flops"; None: accuracy alone.
        cost_weight: The weight of the architecture's expected cost (the cost table divided by
            its largest entry, summed over edges) in the architecture loss; sweeping it trades
            accuracy for cost.

    Raises:
        ConfigError: A setting is out of range (`order=3`, an unknown selection, ...).
    """

    name = "darts"

    def __init__(
        self,
        seed: int = 0,
        *,
        order: int = 1,
        selection: str = "pt",
        epochs: int = 50,
        pt_interval: int = 5,
        searches: int | None = 1,
        retrain: bool = True,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        arch_lr: float = 3e-4,
        arch_betas: Sequence[float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        collapse_threshold: float = 0.5,
        channels: int | None = None,
        config: Mapping[str, Any] | None = None,
        cost: str | None = None,
        cost_weight: float = 0.0,
    ) -> None:
        super().__init__(seed)
        self.order, self.selection, self.epochs, self.pt_interval = order, selection, epochs, pt_interval
        self.batch_size, self.lr, self.lr_min, self.momentum = batch_size, lr, lr_min, momentum
        self.weight_decay, self.grad_clip, self.arch_lr = weight_decay, grad_clip, arch_lr
        self.arch_betas = tuple(arch_betas) if isinstance(arch_betas, (list, tuple)) else arch_betas
        self.arch_weight_decay, self.collapse_threshold = arch_weight_decay, collapse_threshold
        self.channels = channels
        self.cost, self.cost_weight = cost, cost_weight
        self.settings()  # every setting is checked now, not at the first trial
        check_int("Darts", "searches", searches, optional=True)  # None: as many as the budget allows
        if not isinstance(retrain, bool):
            raise ConfigError(f"Darts: retrain must be True or False, got {retrain!r}")
        if config is not None and not isinstance(config, Mapping):
            raise ConfigError(f"Darts: config must be a dict of parameter values, got {config!r}")
        self.searches, self.retrain = searches, retrain
        self.config = dict(config) if config is not None else None

    # ------------------------------------------------------------------ settings and configs
    def settings(self, ops: Sequence[str] = DartsSettings.ops) -> DartsSettings:
        """The routine's settings for candidate operations `ops`."""
        return DartsSettings(ops=tuple(ops), epochs=self.epochs, order=self.order, selection=self.selection,
                             pt_interval=self.pt_interval, batch_size=self.batch_size, lr=self.lr, lr_min=self.lr_min,
                             momentum=self.momentum, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                             arch_lr=self.arch_lr, arch_betas=self.arch_betas,
                             arch_weight_decay=self.arch_weight_decay, collapse_threshold=self.collapse_threshold,
                             channels=self.channels, cost=self.cost, cost_weight=self.cost_weight)

    def base_config(self, space: Space) -> dict[str, Any]:
        """The space's defaults updated with `config`: every value but the cell's operations.

        Raises:
            ConfigError: The space has no cell architecture, or `config` does not fit it.
        """
        cell_ops_of(space)
        edges = [edge_name(i, j) for i, j in EDGES]
        given = [k for k in (self.config or {}) if k in edges]
        if given:
            raise ConfigError(f"Darts(config=...) sets {given}, the operations Darts searches; leave them out")
        full = space.complete(self.config or {})
        inactive = [e for e in edges if e not in full]
        if inactive:
            raise ConfigError("Darts searches the cells model, but the space's default model is another one: pass "
                              "Darts(config={'model': 'cells'})")
        return space.validate(full)

    def check(self, space: Space, trainer: Any) -> None:
        """Refuse a space or workload DARTS cannot search, before anything trains (called by `studies.create`).

        Raises:
            ConfigError: No cell architecture, fixed operations, a `config` that does not fit the
                space, or a training split too small to cut in two halves of one batch each.
        """
        Strategy.needs_models(self, trainer)
        base = self.base_config(space)
        n = len(trainer.workload.train)
        if n // 2 < self.batch_size:
            raise ConfigError(
                f"DARTS splits the training split in two halves (weights / architecture), but {n} training examples "
                f"give halves of {n // 2}, fewer than one batch of {self.batch_size}; use more data or "
                f"Darts(batch_size={max(1, n // 2)})"
            )
        edges = {edge_name(i, j) for i, j in EDGES}
        searched = [k for k in space.active(base) if k not in edges and k not in (self.config or {})
                    and not _fixed(space, k)]
        if searched:
            warnings.warn(
                f"Darts searches the cell's operations only; the space's other searchable parameters {searched} are "
                f"held at their defaults. Fix them with Darts(config={{...}}), or search them with another strategy",
                stacklevel=3,
            )

    def run_seed(self, index: int) -> int:
        """The run seed of search number `index` (the split, initialisation and data orders draw from it)."""
        return int(np.random.default_rng([self.seed, index, 0xDA27]).integers(2**31 - 1))

    # ------------------------------------------------------------------ ask
    def ask(self, history: History) -> Request | None:
        """Retrain a finished search's genotype, else start the next search, else wait (None)."""
        ops = cell_ops_of(history.space)
        base = self.base_config(history.space)
        searches = [t for t in history.trials if _role(t) == "search"]
        retrained = {t.attrs[ROLE].get("search") for t in history.trials if _role(t) == "retrain"}
        if self.retrain:
            for t in searches:
                found = t.results.get("genotype") if t.state == "complete" else None
                if found and t.number not in retrained:
                    genotype = Genotype.from_string(found)
                    link = {"role": "retrain", "search": t.number, "genotype": str(genotype)}
                    return Request.start({**base, **genotype.to_config()}, attrs={ROLE: link})
        if self.searches is None or len(searches) < self.searches:
            index = len(searches)
            edges = {edge_name(i, j) for i, j in EDGES}
            settings = self.settings(ops)
            return Request.start({k: v for k, v in base.items() if k not in edges}, epochs=settings.total_epochs,
                                 routine="darts", options=settings.to_options(), seed=self.run_seed(index),
                                 attrs={ROLE: {"role": "search", "index": index}})
        return None


def _role(trial: TrialView) -> str | None:
    data = trial.attrs.get(ROLE)
    return data.get("role") if isinstance(data, Mapping) else None


def _fixed(space: Space, name: str) -> bool:
    from tunelab.spaces.params import Fixed

    return isinstance(space[name], Fixed)


__all__ = ["Darts"]
