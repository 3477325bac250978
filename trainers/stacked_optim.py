"""Optimizer updates over stacked parameters: K members in one update, each with its own hyperparameters.

A population (`trainers.Population`) keeps each parameter of its K members as one tensor of
shape `(K, *shape)`. The functions here apply one optimizer step to such tensors, with the
learning rate (already multiplied by each member's schedule), weight decay, momentum or betas
given per member as tensors of shape `(K,)`. They follow the update rules of the optimizers a
plain run uses, step for step, so a member trains as the plain run would, up to floating-point
rounding (the order of a few operations differs where a per-member tensor replaces a scalar):

- `sgd`: `torch.optim.SGD` (coupled weight decay, heavy-ball or Nesterov momentum; Sutskever
  et al. 2013).
- `adam`: `torch.optim.Adam` (coupled L2 weight decay; Kingma & Ba 2015).
- `adamw`: `torch.optim.AdamW` (decoupled weight decay; Loshchilov & Hutter 2019).
- `nadam`: `torch.optim.NAdam` with decoupled weight decay and momentum decay 4e-3 (Dozat 2016).
- `lion`: `pytorch_optimizer.Lion` (decoupled weight decay, sign update; Chen et al. 2023).

The parameters of a population are held flat: one tensor of shape `(K, N)` per dtype whose row
`i` holds every parameter of member `i` back to back (`layout` says where each one is), so an
update is one handful of tensor operations whatever the number of parameter tensors. Every
operation is elementwise, so the flat update computes what a per-parameter update computes, bit
for bit.

`StackedOptimizer.export` / `load` move a member's state to and from the state of the plain
`torch.optim` optimizer of its run, so a member's checkpoint is a plain run's checkpoint and a
plain checkpoint can join a population.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tunelab.spaces import optimizer_config
from tunelab.spaces.space import branch

VECTORISED = ("sgd", "adam", "adamw", "nadam", "lion")
BETA2 = {"adam": 0.999, "adamw": 0.999, "nadam": 0.999, "lion": 0.99}
EPS = 1e-8
MOMENTUM_DECAY = 4e-3  # torch.optim.NAdam's default


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _per(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A per-member `(K,)` tensor shaped to broadcast against the stacked `(K, ...)` tensor `p`."""
    return t.view(-1, *([1] * (p.dim() - 1)))


class StackedOptimizer:
    """One optimizer family applied to the flat parameters of some members of a population.

    Args:
        family: One of `VECTORISED`.
        configs: The members' configurations (their optimizer hyperparameters are read).
        params: The population's flat parameters, `(K_all, N)` each (one per dtype).
        layout: Where each parameter of a member's plain network lies: `(flat index, offset,
            shape)`, in the order of its plain optimizer's parameters.
        members: Which rows (members) of `params` this optimizer updates, in `configs` order;
            consecutive rows are updated in place through views, others through copies.
    """

    def __init__(self, family: str, configs: Sequence[Mapping[str, Any]], params: Sequence[torch.Tensor],
                 layout: Sequence[tuple[int, int, torch.Size]], members: Sequence[int]) -> None:
        if family not in VECTORISED:
            raise ValueError(f"no vectorised update for optimizer {family!r}; vectorised: {VECTORISED}")
        self.family = family
        self.params = list(params)
        self.layout = list(layout)
        self.members = list(members)
        like = self.params[0]
        hps = [branch(optimizer_config(c), family) for c in configs]
        self.base_lr = _column([float(h["lr"]) for h in hps], like)
        self.weight_decay = _column([float(h["weight_decay"]) for h in hps], like)
        if family == "sgd":
            self.momentum = _column([float(h["momentum"]) for h in hps], like)
            self.nesterov = torch.tensor([bool(h["nesterov"]) and float(h["momentum"]) > 0 for h in hps],
                                         device=like.device)
        else:
            self.beta1 = _column([float(h["beta1"]) for h in hps], like)
        first = self.members[0]
        contiguous = self.members == list(range(first, first + len(self.members)))
        self.rows: slice | None = slice(first, first + len(self.members)) if contiguous else None
        self.index = torch.tensor(self.members, device=like.device)
        self.everyone = self.members == list(range(like.shape[0]))
        self.step_count = torch.zeros(len(self.members), dtype=like.dtype, device=like.device)
        self.mu_product = torch.ones(len(self.members), dtype=like.dtype, device=like.device)
        k = len(self.members)
        self.state: list[dict[str, torch.Tensor]] = []
        for p in self.params:
            shape = (k, *p.shape[1:])
            zeros = {"buf": torch.zeros(shape, dtype=p.dtype, device=p.device)} if family == "sgd" else {
                "exp_avg": torch.zeros(shape, dtype=p.dtype, device=p.device)}
            if family in ("adam", "adamw", "nadam"):
                zeros["exp_avg_sq"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
            self.state.append(zeros)

    def own(self, values: torch.Tensor) -> torch.Tensor:
        """This optimizer's members' entries of a per-member tensor `(K_all,)`."""
        if self.everyone:
            return values
        return values[self.rows] if self.rows is not None else values.index_select(0, self.index)

    # ------------------------------------------------------------------ update
    @torch.no_grad()
    def step(self, lr: torch.Tensor, grads: Sequence[torch.Tensor]) -> None:
        """One update of this optimizer's members at learning rates `lr` (one per member of this optimizer).

        Args:
            lr: `(K,)` for this optimizer's K members (`own` picks them from all members').
            grads: The flat gradients, `(K_all, N)`, one per flat parameter.
        """
        self.step_count += 1
        nadam = None
        if self.family == "nadam":
            mu = self.beta1 * (1 - 0.5 * 0.96 ** (self.step_count * MOMENTUM_DECAY))
            mu_next = self.beta1 * (1 - 0.5 * 0.96 ** ((self.step_count + 1) * MOMENTUM_DECAY))
            self.mu_product *= mu
            nadam = (mu, mu_next, self.mu_product)
        for p, g, state in zip(self.params, grads, self.state, strict=True):
            if self.everyone:
                self._update(p, g, state, lr, nadam)
            elif self.rows is not None:  # a view: updated in place
                self._update(p[self.rows], g[self.rows], state, lr, nadam)
            else:
                rows = p.index_select(0, self.index)
                self._update(rows, g.index_select(0, self.index), state, lr, nadam)
                p.index_copy_(0, self.index, rows)

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor,
                nadam: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> None:
        lr_, wd = _per(lr, p), _per(self.weight_decay, p)
        family = self.family
        if family == "sgd":
            mu = _per(self.momentum, p)
            d = g.add(wd * p)
            buf = state["buf"]
            buf.mul_(mu).add_(d)  # at step 1 the buffer is d itself, as in torch
            d = torch.where(_per(self.nesterov, p), d + mu * buf, buf)
            p.sub_(lr_ * d)
            return
        b1 = _per(self.beta1, p)
        if family == "lion":
            p.mul_(1 - lr_ * wd)
            update = state["exp_avg"].lerp(g, 1 - b1).sign_()
            state["exp_avg"].lerp_(g, 1 - BETA2["lion"])
            p.sub_(lr_ * update)
            return
        b2 = BETA2[family]
        if family == "adam":
            g = g.add(wd * p)
        else:
            p.mul_(1 - lr_ * wd)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(g, 1 - b1)
        exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        step = _per(self.step_count, p)
        bias2 = 1 - b2**step
        if nadam is not None:
            mu, mu_next, product = (_per(t, p) for t in nadam)
            denom = (exp_avg_sq / bias2).sqrt().add_(EPS)
            p.add_((-lr_ * (1 - mu) / (1 - product)) * g / denom)
            p.add_((-lr_ * mu_next / (1 - product * mu_next)) * exp_avg / denom)
            return
        bias1 = 1 - b1**step
        denom = (exp_avg_sq.sqrt() / bias2.sqrt()).add_(EPS)
        p.add_((-lr_ / bias1) * exp_avg / denom)

    # ------------------------------------------------------------------ plain optimizers
    def _entries(self, optimizer: torch.optim.Optimizer) -> list[tuple[torch.Tensor, Any]]:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if len(params) != len(self.layout):
            raise ValueError(f"the plain optimizer has {len(params)} parameters, the population {len(self.layout)}")
        return list(zip(params, self.layout, strict=True))

    def export(self, row: int, optimizer: torch.optim.Optimizer) -> None:
        """Write the state of member `row` (its position in this optimizer) into its plain `optimizer`."""
        step = float(self.step_count[row])

        def part(name: str, where: tuple[int, int, torch.Size]) -> torch.Tensor:
            flat, offset, shape = where
            return self.state[flat][name][row, offset:offset + shape.numel()].view(shape).clone()

        for p, where in self._entries(optimizer):
            if self.family == "sgd":
                momentum = optimizer.param_groups[0]["momentum"]
                optimizer.state[p] = {"momentum_buffer": part("buf", where) if momentum and step else None}
            elif self.family == "lion":
                optimizer.state[p] = {"exp_avg": part("exp_avg", where)}
            else:
                entry = {"step": torch.tensor(step), "exp_avg": part("exp_avg", where),
                         "exp_avg_sq": part("exp_avg_sq", where)}
                if self.family == "nadam":
                    entry["mu_product"] = torch.tensor(float(self.mu_product[row]))
                optimizer.state[p] = entry
        if self.family == "lion":
            for group in optimizer.param_groups:
                group["step"] = int(step)

    def load(self, row: int, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Take member `row`'s state from its plain `optimizer` (a run at optimizer step `step`)."""
        self.step_count[row] = float(step)
        for p, (flat, offset, shape) in self._entries(optimizer):
            entry = optimizer.state.get(p) or {}
            state, span = self.state[flat], slice(offset, offset + shape.numel())
            names = ("buf",) if self.family == "sgd" else tuple(state)
            for name in names:
                value = entry.get("momentum_buffer" if name == "buf" else name)
                state[name][row, span] = 0.0 if value is None else value.reshape(-1)
            if self.family == "nadam" and "mu_product" in entry:
                self.mu_product[row] = float(entry["mu_product"])


Layout = list[tuple[int, int, torch.Size]]  # per parameter: (flat tensor, offset, shape)


def stack_flat(per_run: Sequence[Sequence[torch.Tensor]]) -> tuple[list[torch.Tensor], Layout, list[torch.Tensor]]:
    """Members' parameters (one list per member, in one order) as flat `(K, N)` tensors, one per dtype and device.

    Returns:
        The flat tensors; where each parameter lies in them (`(flat, offset, shape)`, the
        `layout` of `StackedOptimizer`); and the stacked parameters `(K, *shape)`: leaves that
        require grad and are views of the flat tensors, so that an update of a flat tensor in
        place updates them (gradients reach the leaves, `torch.cat` makes them flat again).
    """
    kinds: dict[tuple[torch.dtype, torch.device], int] = {}
    layout: Layout = []
    sizes: list[int] = []
    for p in per_run[0]:
        g = kinds.setdefault((p.dtype, p.device), len(kinds))
        if g == len(sizes):
            sizes.append(0)
        layout.append((g, sizes[g], p.shape))
        sizes[g] += p.numel()
    flats = [torch.stack([torch.cat([p.detach().reshape(-1) for p, (g, _, _) in zip(run, layout, strict=True)
                                     if g == group]) for run in per_run])
             for group in range(len(kinds))]
    k = len(per_run)
    params = [flats[g][:, offset:offset + shape.numel()].view(k, *shape).detach().requires_grad_(True)
              for g, offset, shape in layout]
    return flats, layout, params


def family_of(config: Mapping[str, Any]) -> str:
    """The optimizer family of a config (AdamW when it names none)."""
    return str(optimizer_config(config)["optimizer"])


__all__ = ["BETA2", "VECTORISED", "StackedOptimizer", "family_of", "stack_flat"]
