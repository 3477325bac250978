"""One optimisation step for each optimizer `style` (see `spaces.optimizers`).

`make_step` builds, once per run, a function `step(x, y) -> loss` that runs the forward and
backward passes and the update exactly as the optimizer family needs them: plain, with the
graph of the gradient kept (AdaHessian), or with a closure that re-evaluates the gradient at
perturbed weights (SAM, GSAM). The returned loss is the one at the current weights, detached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _freeze_bn_stats(model: nn.Module) -> list[tuple[nn.Module, float | None]]:
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    return saved


def _restore_bn_stats(saved: list[tuple[nn.Module, float | None]]) -> None:
    for m, momentum in saved:
        m.momentum = momentum


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside leave the running statistics of `model`'s batch norms unchanged.

    Training-mode passes that are not weight steps (SAM's second pass, DARTS' architecture steps
    and its selection scores) still normalise with batch statistics, but do not move the
    running averages that evaluation uses.
    """
    saved = _freeze_bn_stats(model)
    try:
        yield
    finally:
        _restore_bn_stats(saved)


def make_step(
    style: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> StepFn:
    """Build the training step of one run.

    Args:
        style: "standard", "create_graph", "sam" or "gsam" (`OptimizerSpec.style`).
        model: The network (called as `model(x)`; may be a compiled wrapper).
        optimizer: The optimizer built for `model`.
        loss_fn: `loss_fn(outputs, y)`, a scalar mean loss.
        autocast: A factory of the autocast context (mixed precision), or `nullcontext`.

    Returns:
        `step(x, y) -> loss`, the detached loss at the weights before the update.

    Raises:
        ValueError: Unknown style.
    """
    if style == "standard":

        def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast():
                loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        return step

    if style == "create_graph":
        params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]

        def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast():
                loss = loss_fn(model(x), y)
            # Gradients that keep their graph, so the optimizer's Hutchinson probe can differentiate
            # them (Hessian-vector products); autograd.grad avoids backward()'s reference cycle.
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        return step

    if style == "sam":

        def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast():
                loss = loss_fn(model(x), y)
            loss.backward()

            def closure() -> torch.Tensor:
                with autocast():
                    perturbed = loss_fn(model(x), y)
                perturbed.backward()
                return perturbed

            saved = _freeze_bn_stats(model)  # the second pass must not move BN running statistics
            try:
                optimizer.step(closure)
            finally:
                _restore_bn_stats(saved)
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        return step

    if style == "gsam":

        def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            def closure() -> tuple[torch.Tensor, torch.Tensor]:
                optimizer.zero_grad(set_to_none=True)
                with torch.enable_grad(), autocast():
                    outputs = model(x)
                    loss = loss_fn(outputs, y)
                loss.backward()
                return outputs, loss.detach()

            _, loss = optimizer.step(closure)
            optimizer.zero_grad(set_to_none=True)
            return loss

        return step

    raise ValueError(f"unknown optimizer style {style!r}; expected standard, create_graph, sam or gsam")


__all__ = ["LossFn", "StepFn", "frozen_bn_stats", "make_step"]
