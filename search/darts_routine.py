"""The `"darts"` routine: DARTS' bilevel search of a cell, then argmax or DARTS-PT selection.

Size: about 500 lines: the search, DARTS-PT's selection and the settings' checks belong to one
run and one checkpoint format.

References:
- Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search", ICLR (algorithm 1;
  reference code quark0/darts `cnn/train_search.py`, `cnn/architect.py`).
- Wang, Cheng, Chen, Tang & Hsieh 2021, "Rethinking Architecture Selection in Differentiable
  NAS", ICLR (DARTS-PT; reference code ruocwang/darts-pt `nasbench201/projection.py`).

The search splits the workload's training split in two halves (the paper's `train_portion`
0.5), drawn from the run's seed: weights train on the first, architecture parameters on the
second. The workload's own validation split is never seen, so the value of the ordinary trial
that retrains the found genotype stays an honest validation result. Every step takes one
architecture step on a batch of the search-validation half, then one weight step on a batch of
the search-training half (quark0's order). An epoch is one pass over the search-training half;
its `EpochResult` reports the weights' training loss and the supernet's loss and accuracy on
the search-validation half (evaluation mode).

Selection, once the search epochs are done:
- `"argmax"`: the strongest operation other than `none` on each edge (one operation per edge,
  NAS-Bench-201 style).
- `"pt"` (DARTS-PT): edges in a random order; for each, the supernet is scored on the whole
  search-validation half with each operation of the edge removed in turn (training-mode batch
  statistics, as the reference), the operation whose removal lowers accuracy most is kept
  (`none` included: if no removal hurts, the edge is dropped), the edge is fixed to it, and
  the supernet is fine-tuned for `pt_interval` epochs before the next decision: weights by SGD at
  a tenth of the search learning rate with fresh momentum, architecture steps as before.

Defaults follow the papers (weights: SGD 0.025 cosine to 0.001, momentum 0.9, weight decay
3e-4, gradient clip 5, batch 64; alphas: Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3;
DARTS-PT: 5 fine-tuning epochs between decisions), except where MNIST-1D's size needs them
scaled, and the strategy (`search.Darts`) says which.

Everything the run carries (weights, alphas and batch-norm statistics, both optimizers, both
data-order generators, the global RNG it forked, the alphas' history, the decided edges and
their scores) is in its checkpoint, so a paused or killed search continues bit for bit on the
CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from tunelab.search.architect import first_order, second_order
from tunelab.search.base import check_int
from tunelab.search.op_costs import KINDS, cost_gradient, cost_table, expected_cost
from tunelab.search.supernet import N_EDGES, Supernet, parameter_free
from tunelab.spaces import EDGES, ConfigError, Genotype, Space, cell_ops
from tunelab.spaces.cells import edge_name
from tunelab.spaces.errors import CheckpointError
from tunelab.trainers import (
    EpochResult,
    TensorSplit,
    Trainer,
    TrainResult,
    batches,
    evaluate,
    frozen_bn_stats,
    load_checkpoint,
)
from tunelab.trainers.routines import Routine, RunRequest, routines, run_epochs, started

SELECTIONS = ("argmax", "pt")


@dataclass(frozen=True)
class DartsSettings:
    """The routine's options (stored with the trial; see `search.Darts` for their meaning).

    Raises:
        ConfigError: A value is out of its range (raised by `from_options` and the constructor).
    """

    ops: tuple[str, ...] = ("none", "skip", "conv1x1", "conv3x3", "avgpool3x3")
    epochs: int = 50
    order: int = 1
    selection: str = "pt"
    pt_interval: int = 5
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    collapse_threshold: float = 0.5
    channels: int | None = None
    cost: str | None = None
    cost_weight: float = 0.0

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            check_int("Darts", name, value, minimum, 4_096 if name == "channels" else 1_000_000)

        def number(name: str, value: Any, low: float, high: float, open_low: bool = False) -> None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value > high or value < low or (open_low and value == low):
                side = "(" if open_low else "["
                raise ConfigError(f"Darts: {name} must be a number in {side}{low}, {high}], got {value!r}")

        if self.order not in (1, 2) or isinstance(self.order, bool):
            raise ConfigError(f"Darts: order must be 1 (first order) or 2 (second order, unrolled), got {self.order!r}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"Darts: selection must be one of {SELECTIONS}, got {self.selection!r}")
        positive_int("epochs", self.epochs)
        positive_int("pt_interval", self.pt_interval)
        positive_int("batch_size", self.batch_size)
        if self.channels is not None:
            positive_int("channels", self.channels)
        number("lr", self.lr, 0.0, 10.0, open_low=True)
        number("lr_min", self.lr_min, 0.0, self.lr)
        number("momentum", self.momentum, 0.0, 0.999)
        number("weight_decay", self.weight_decay, 0.0, 1.0)
        number("grad_clip", self.grad_clip, 0.0, 1e6, open_low=True)
        number("arch_lr", self.arch_lr, 0.0, 10.0, open_low=True)
        if not (isinstance(self.arch_betas, (tuple, list)) and len(self.arch_betas) == 2):
            raise ConfigError(f"Darts: arch_betas must be two numbers in [0, 1), got {self.arch_betas!r}")
        for b in self.arch_betas:
            number("arch_betas", b, 0.0, 0.9999)
        number("arch_weight_decay", self.arch_weight_decay, 0.0, 1.0)
        number("collapse_threshold", self.collapse_threshold, 0.0, 1.0)
        if self.cost is not None and self.cost not in KINDS:
            raise ConfigError(f"Darts: cost must be one of {KINDS} or None, got {self.cost!r}")
        number("cost_weight", self.cost_weight, 0.0, 1e3)
        if self.cost_weight > 0 and self.cost is None:
            raise ConfigError("Darts: cost_weight > 0 needs cost='latency' or cost='flops' (what the weight prices)")
        ops = tuple(self.ops)
        if len(ops) < 2 or len(set(ops)) != len(ops) or not all(isinstance(o, str) for o in ops):
            raise ConfigError(f"Darts: ops must be at least two distinct operation names, got {list(ops)}")
        for op in ops:
            cell_ops.get(op)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> DartsSettings:
        """Settings from stored options (unknown keys refused, lists turned into tuples)."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown DARTS options {unknown}; known: {sorted(known)}")
        for key in ("ops", "arch_betas"):
            if key in options and isinstance(options[key], list):
                options[key] = tuple(options[key])
        return cls(**options)

    def to_options(self) -> dict[str, Any]:
        """JSON-ready options (what a request stores)."""
        out = asdict(self)
        out["ops"], out["arch_betas"] = list(self.ops), list(self.arch_betas)
        return out

    @property
    def selection_epochs(self) -> int:
        """Epochs of DARTS-PT fine-tuning after the search (one interval per edge; 0 for argmax)."""
        return self.pt_interval * N_EDGES if self.selection == "pt" else 0

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run: search, then selection."""
        return self.epochs + self.selection_epochs

    def grad_evals_per_step(self) -> int:
        """Gradient evaluations of one step: architecture (1, or 4 unrolled) plus the weight step."""
        return 2 if self.order == 1 else 5


def cell_ops_of(space: Space) -> tuple[str, ...]:
    """The operations every edge of a cell space chooses from.

    Raises:
        ConfigError: The space has no cell architecture, an edge is fixed, or edges differ.
    """
    from tunelab.spaces.params import Categorical

    names = [edge_name(i, j) for i, j in EDGES]
    missing = [n for n in names if n not in space]
    if missing:
        raise ConfigError(
            f"Darts searches a cell architecture, but the space has no {missing[0]}: add spaces.cells(dim=1) (or "
            f"dim=2) to the space, e.g. space = spaces.optimizers(['sgd']) | spaces.cells(dim=1)"
        )
    choices = []
    for n in names:
        param = space[n]
        if not isinstance(param, Categorical) or len(param.choices) < 2:
            raise ConfigError(
                f"Darts chooses each edge's operation, but {n} is {param.describe()}: give every edge a choice of "
                f"operations (spaces.cells(ops=[...]) with at least two)"
            )
        choices.append(tuple(param.choices))
    if any(c != choices[0] for c in choices):
        raise ConfigError("Darts needs the same operations on every edge (one row of alphas per edge); the space's "
                          "edges offer different ones: build it with spaces.cells(ops=[...])")
    return choices[0]


def _free(space: Space, options: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(edge_name(i, j) for i, j in EDGES)


def cosine_lr(settings: DartsSettings, epoch: int) -> float:
    """The weights' learning rate in (1-based) `epoch`: cosine from `lr` to `lr_min` over the search, then lr/10."""
    if epoch > settings.epochs:
        return settings.lr / 10.0  # DARTS-PT fine-tunes at a tenth of the search learning rate
    t = (epoch - 1) / settings.epochs
    return settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (1.0 + math.cos(math.pi * t))


def search_halves(trainer: Trainer, seed: int, batch_size: int) -> tuple[Any, Any]:
    """The training split cut in two halves of equal size, by a permutation drawn from `seed`.

    Raises:
        ConfigError: A half would hold less than one batch.
    """
    train = trainer.split("train")
    n = len(train)
    half = n // 2
    if half < batch_size:
        raise ConfigError(
            f"DARTS splits the training split in two halves (weights / architecture), but {n} training examples give "
            f"halves of {half}, fewer than one batch of {batch_size}; use more data or Darts(batch_size={max(1, half)})"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    first, second = perm[:half], perm[half : 2 * half]
    if isinstance(train, TensorSplit):
        first, second = first.to(train.x.device), second.to(train.x.device)
        return TensorSplit(train.x[first], train.y[first]), TensorSplit(train.x[second], train.y[second])
    return Subset(train, first.tolist()), Subset(train, second.tolist())


@dataclass
class _Run:
    """Everything one search carries between epochs (and into its checkpoint)."""

    config: dict[str, Any]
    seed: int
    model: Supernet
    w_opt: torch.optim.SGD
    a_opt: torch.optim.Adam
    train_gen: torch.Generator
    val_gen: torch.Generator
    edge_order: list[int]
    epoch: int = 0
    step: int = 0
    grad_evals: int = 0
    history: list[EpochResult] = field(default_factory=list)
    alphas: list[list[list[float]]] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    base_scores: dict[str, float] = field(default_factory=dict)
    costs: torch.Tensor | None = None  # hardware-aware DARTS: each operation's cost, measured once per run
    # what the run trains with (not its state: rebuilt from the trainer, the settings and the seed)
    settings: DartsSettings = field(default_factory=DartsSettings, repr=False)
    trainer: Any = field(default=None, repr=False)
    train_half: Any = field(default=None, repr=False)
    val_half: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ `trainers.routines.EpochRun`
    def train_epoch(self) -> tuple[float, float]:
        """One epoch: the DARTS-PT decision it opens (if due), then architecture and weight steps in turn."""
        settings, trainer, model = self.settings, self.trainer, self.model
        loss_fn, autocast = trainer.workload.loss, trainer.autocast
        weights = model.weight_parameters()
        _decide(self, settings, self.val_half, trainer)
        lr = cosine_lr(settings, self.epoch)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        model.train()
        losses = []
        bs = settings.batch_size
        pairs = zip(batches(self.train_half, bs, shuffle=True, generator=self.train_gen, device=trainer.device),
                    batches(self.val_half, bs, shuffle=True, generator=self.val_gen, device=trainer.device),
                    strict=False)
        for (xt, yt), (xv, yv) in pairs:
            if len(model.fixed) < N_EDGES:  # an architecture step, while any edge is undecided
                if settings.order == 1:
                    grad, _ = first_order(model, xv, yv, loss_fn, autocast)
                else:
                    grad, _ = second_order(model, self.w_opt, xt, yt, xv, yv, loss_fn, lr, autocast=autocast)
                if self.costs is not None and settings.cost_weight > 0:  # FBNet / ProxylessNAS: + weight * E[cost]
                    grad = grad + settings.cost_weight * cost_gradient(model.alphas, self.costs)[0]
                model.alphas.grad = grad
                self.a_opt.step()
                self.a_opt.zero_grad(set_to_none=True)
            with autocast():
                out = model(xt)
            loss = loss_fn(out.float(), yt)
            loss.backward(inputs=weights)
            torch.nn.utils.clip_grad_norm_(weights, settings.grad_clip)
            self.w_opt.step()
            self.w_opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        self.step += len(losses)
        self.grad_evals += len(losses) * settings.grad_evals_per_step()
        self.alphas.append([[round(v, 5) for v in row] for row in torch.softmax(model.alphas.detach(), -1).tolist()])
        return (torch.stack(losses).mean().item() if losses else math.nan), lr

    def validate(self) -> tuple[float, float]:
        """The supernet's loss and metric on the search-validation half (evaluation mode)."""
        trainer = self.trainer
        return evaluate(self.model, batches(self.val_half, 2048, device=trainer.device), trainer.workload,
                        trainer.autocast)

    def state(self) -> dict[str, Any]:
        """The run's checkpoint."""
        return _state(self, self.trainer.device)

    def test(self) -> float | None:
        """None: a supernet is not a result; the retrained genotype's trial has the test metric."""
        return None

    def results(self) -> dict[str, Any]:
        """The alphas per epoch, the genotype, the selection's scores and the collapse check."""
        return _results(self, self.settings, int(self.config["model.dim"]))


def _edge_key(e: int) -> str:
    i, j = EDGES[e]
    return f"{i}_{j}"


def _build(trainer: Trainer, config: Mapping[str, Any], settings: DartsSettings, seed: int) -> _Run:
    w = trainer.workload
    try:
        channels, cells, dim = int(config["model.channels"]), int(config["model.cells_per_stage"]), int(
            config["model.dim"])
        channels = settings.channels or channels  # a narrower proxy supernet, if asked
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"a DARTS search config needs model.channels, model.cells_per_stage and model.dim of a "
                          f"spaces.cells() space; got {dict(config)} ({exc})") from None
    model = Supernet(settings.ops, channels, cells, w.input_shape, w.n_outputs, dim).to(trainer.device)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=settings.lr, momentum=settings.momentum,
                            weight_decay=settings.weight_decay)
    a_opt = torch.optim.Adam([model.alphas], lr=settings.arch_lr, betas=tuple(settings.arch_betas),
                             weight_decay=settings.arch_weight_decay)
    order = np.random.default_rng([seed, 7]).permutation(N_EDGES).tolist()  # DARTS-PT's random edge order
    costs = None
    if settings.cost is not None:  # measured at the first stage's shape (a checkpoint keeps it: a resume reuses it)
        costs = cost_table(settings.ops, channels, dim, int(w.input_shape[-1]), trainer.device, settings.cost)
    return _Run(dict(config), seed, model, w_opt, a_opt, trainer.generator(seed), trainer.generator(seed + 1), order,
                settings=settings, trainer=trainer, costs=costs)


def _state(run: _Run, device: torch.device) -> dict[str, Any]:
    rng = {"cpu": torch.get_rng_state(), "data": run.train_gen.get_state(), "val": run.val_gen.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "routine": "darts",
        "config": run.config,
        "seed": run.seed,
        "epoch": run.epoch,
        "step": run.step,
        "grad_evals": run.grad_evals,
        "model": run.model.state_dict(),
        "fixed": {str(e): k for e, k in run.model.fixed.items()},
        "w_opt": run.w_opt.state_dict(),
        "a_opt": run.a_opt.state_dict(),
        "rng": rng,
        "history": [asdict(e) for e in run.history],
        "alphas": run.alphas,
        "scores": run.scores,
        "base_scores": run.base_scores,
        "costs": run.costs,
    }


def _restore(run: _Run, path: Path, device: torch.device) -> None:
    state = load_checkpoint(path)
    if state.get("routine") != "darts" or state.get("config") != run.config or state.get("seed") != run.seed:
        raise CheckpointError(f"checkpoint {path} belongs to another run (not this DARTS search's config and seed); "
                              f"delete the file to start the search over")
    run.model.load_state_dict(state["model"])
    run.model.fixed = {int(e): int(k) for e, k in state["fixed"].items()}
    run.w_opt.load_state_dict(state["w_opt"])
    run.a_opt.load_state_dict(state["a_opt"])
    rng = state["rng"]
    torch.set_rng_state(rng["cpu"])
    run.train_gen.set_state(rng["data"])
    run.val_gen.set_state(rng["val"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
    run.epoch, run.step, run.grad_evals = state["epoch"], state["step"], state["grad_evals"]
    run.history = [EpochResult(**e) for e in state["history"]]
    run.alphas, run.scores, run.base_scores = state["alphas"], state["scores"], state["base_scores"]
    if state.get("costs") is not None:
        run.costs = state["costs"]


@torch.no_grad()
def _accuracy(model: Supernet, data: Any, trainer: Trainer, batch_size: int) -> float:
    """Supernet metric on a split in training mode (batch statistics, running averages untouched)."""
    model.train()
    total, n = None, 0
    with frozen_bn_stats(model):
        for x, y in batches(data, batch_size, device=trainer.device):
            with trainer.autocast():
                out = model(x)
            part = trainer.workload.metric_sum(out.float(), y)
            total = part if total is None else total + part
            n += int(y.shape[0])
    return float(total) / n


def score_edge(model: Supernet, edge: int, data: Any, trainer: Trainer, batch_size: int) -> tuple[float, list[float]]:
    """DARTS-PT's scores of one edge: `(metric of the supernet, [its metric with op k removed] per op)`."""
    base = _accuracy(model, data, trainer, batch_size)
    scores = []
    for k, op in enumerate(model.ops):
        if op == "none":  # removing an operation that outputs zeros changes nothing
            scores.append(base)
            continue
        with model.without(edge, k):
            scores.append(_accuracy(model, data, trainer, batch_size))
    return base, scores


def choose(scores: Sequence[float], direction: str) -> int:
    """The operation whose removal hurts most: lowest metric (maximised metrics), first one on ties."""
    sign = 1.0 if direction == "maximize" else -1.0
    return min(range(len(scores)), key=lambda k: sign * scores[k])


def _decide(run: _Run, settings: DartsSettings, val_half: Any, trainer: Trainer) -> None:
    """Take the DARTS-PT decision that opens the current selection epoch, if one is due."""
    t = run.epoch - settings.epochs - 1  # 0-based selection epoch
    if settings.selection != "pt" or t < 0 or t % settings.pt_interval != 0:
        return
    edge = run.edge_order[t // settings.pt_interval]
    base, scores = score_edge(run.model, edge, val_half, trainer, settings.batch_size)
    run.model.fix(edge, choose(scores, trainer.workload.direction))
    run.scores[_edge_key(edge)] = {op: round(s, 6) for op, s in zip(settings.ops, scores, strict=True)}
    run.base_scores[_edge_key(edge)] = round(base, 6)
    if t == 0:  # DARTS-PT fine-tunes with a fresh weight optimizer state (momentum restarts)
        run.w_opt.state.clear()


def _genotype(run: _Run, settings: DartsSettings) -> Genotype | None:
    if settings.selection == "argmax":
        return run.model.argmax_genotype() if run.epoch >= settings.epochs else None
    if len(run.model.fixed) < N_EDGES:
        return None
    return Genotype(tuple(settings.ops[run.model.fixed[e]] for e in range(N_EDGES)))


def _results(run: _Run, settings: DartsSettings, dim: int) -> dict[str, Any]:
    genotype = _genotype(run, settings)
    out: dict[str, Any] = {
        "selection": settings.selection,
        "order": settings.order,
        "ops": list(settings.ops),
        "edges": [_edge_key(e) for e in range(N_EDGES)],
        "alphas": run.alphas,
        "argmax_genotype": str(run.model.argmax_genotype()),
        "genotype": str(genotype) if genotype is not None else None,
    }
    if settings.selection == "pt":
        out["scores"] = run.scores
        out["base_scores"] = run.base_scores
        out["edge_order"] = [_edge_key(e) for e in run.edge_order]
    if run.costs is not None:
        table = run.costs
        out["cost"] = {"kind": settings.cost, "weight": settings.cost_weight,
                       "table": [round(float(c), 6) for c in table],
                       "expected": round(float(expected_cost(run.model.alphas.detach(), table)), 6)}
        if genotype is not None:
            out["cost"]["genotype"] = round(sum(float(table[settings.ops.index(op)]) for op in genotype.ops), 6)
    if genotype is not None:
        free = sum(parameter_free(op, dim) for op in genotype.ops)
        share = free / N_EDGES
        out["parameter_free_share"] = round(share, 4)
        out["collapsed"] = share > settings.collapse_threshold
        if out["collapsed"]:
            out["warning"] = (
                f"the DARTS search collapsed: {free} of {N_EDGES} edges of its genotype {genotype} are parameter-free "
                f"operations (skip, none, pooling), above collapse_threshold={settings.collapse_threshold}. This is "
                f"DARTS' known failure mode (NAS-Bench-201 reports 54.3% CIFAR-10 test for it); use "
                f"selection='pt', fewer search epochs or a larger arch_weight_decay"
                + (f", or a smaller cost_weight (its {settings.cost} term favours cheap operations)"
                   if settings.cost_weight > 0 else "")
            )
    return out


def run_darts(trainer: Trainer, request: RunRequest) -> TrainResult:
    """Run (or continue, from its checkpoint) one DARTS search; `fit`'s contract (see `trainers.routines`).

    Args:
        trainer: The study's trainer: its workload, device and precision (its optimizer settings
            are not used; the search has its own).
        request: The run: `config` holds the cell space's non-operation values (`model.channels`,
            `model.cells_per_stage`, `model.dim`, ...), `until_epoch` counts the whole run
            (search, then selection), `seed` draws the split, initialisation, data orders and
            edge order, and `options` are the `DartsSettings`.

    Returns:
        A `TrainResult` whose `attrs` hold the alphas per epoch, the genotype, the selection's scores
        and the collapse check.
    """
    settings = DartsSettings.from_options(request.options)
    total = settings.total_epochs
    with started(trainer, request, total) as (seed, until, path):
        train_half, val_half = search_halves(trainer, seed, settings.batch_size)
        run = _build(trainer, request.config, settings, seed)
        run.train_half, run.val_half = train_half, val_half
        if path is not None and path.exists():
            _restore(run, path, trainer.device)
        return run_epochs(run, trainer.workload, total=total, until=until, path=path, request=request)


routines.register("darts", Routine(
    run_darts,
    free=_free,
    comparable=False,
    doc="DARTS bilevel search of a cell (Liu et al. 2019), argmax or DARTS-PT selection (Wang et al. 2021)",
))


__all__ = ["SELECTIONS", "DartsSettings", "cell_ops_of", "choose", "cosine_lr", "run_darts", "score_edge",
           "search_halves"]
