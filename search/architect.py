"""The architecture gradient of DARTS, first and second order.

Reference: Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search", ICLR,
section 2.3 (equations 6-8; reference code quark0/darts `cnn/architect.py`).

DARTS solves the bilevel problem `min_a L_val(w*(a), a)` s.t. `w*(a) = argmin_w L_train(w, a)`
by approximating `w*(a)` with one step of the weight optimizer:

- first order (`order=1`): `grad_a L_val(w, a)`, the current weights taken as optimal;
- second order (`order=2`): the gradient at the unrolled weights `w' = w - eta * step(w)`, where
  `step` is the weight optimizer's own next step (SGD with momentum and weight decay, as the
  reference unrolls it), by the chain rule

      grad_a L_val(w', a) - eta * grad2_{a,w} L_train(w, a) . grad_w' L_val(w', a),

  whose Hessian-vector product is a central finite difference with `w+- = w +- eps * v`,
  `v = grad_w' L_val(w', a)` and `eps = 0.01 / ||v||` (equation 8).

Both are functions of a `Supernet` and batches; they run the network in training mode (batch
statistics, as the paper does) without moving its batch-norm running averages, which only the
weight steps update. Extra passes are evaluated with `torch.func.functional_call` on the
perturbed weights, so the model's own parameters are never overwritten.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.func import functional_call

from tunelab.search.supernet import Supernet
from tunelab.trainers import frozen_bn_stats

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Autocast = Callable[[], contextlib.AbstractContextManager]


def _grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of `loss`, zeros for inputs it does not depend on."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


def weight_names(model: Supernet) -> list[str]:
    """Names of the supernet's weights (every parameter but `alphas`), in parameter order."""
    return [name for name, _ in model.named_parameters() if name != "alphas"]


def _forward(model: Supernet, x: torch.Tensor, autocast: Autocast, weights: dict[str, torch.Tensor] | None = None
             ) -> torch.Tensor:
    with autocast():
        out = model(x) if weights is None else functional_call(model, weights, (x,))
    return out if out.dtype in (torch.float32, torch.float64) else out.float()  # autocast's half precision


def first_order(model: Supernet, x_val: torch.Tensor, y_val: torch.Tensor, loss_fn: LossFn,
                autocast: Autocast = contextlib.nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
    """`(grad_a L_val(w, a), L_val)` at the current weights (DARTS' first-order approximation).

    `loss_fn(outputs, y)` is the workload's mean loss; `autocast` a mixed-precision context factory.
    """
    with frozen_bn_stats(model):
        loss = loss_fn(_forward(model, x_val, autocast), y_val)
    (grad,) = torch.autograd.grad(loss, [model.alphas])
    return grad, loss.detach()


def unrolled_weights(model: Supernet, optimizer: torch.optim.Optimizer, grads: dict[str, torch.Tensor],
                     eta: float) -> dict[str, torch.Tensor]:
    """`w' = w - eta * (momentum * buffer + grad + weight_decay * w)`: the SGD step the optimizer would take.

    Args:
        model: The supernet.
        optimizer: Its weight optimizer (`torch.optim.SGD`; momentum buffers are read, not changed).
        grads: `grad_w L_train(w, a)` by weight name.
        eta: The weights' current learning rate.
    """
    group = optimizer.param_groups[0]
    momentum, decay = float(group.get("momentum", 0.0)), float(group.get("weight_decay", 0.0))
    params = dict(model.named_parameters())
    out = {}
    for name, g in grads.items():
        w = params[name].detach()
        step = g + decay * w
        buffer = optimizer.state.get(params[name], {}).get("momentum_buffer")
        if buffer is not None and momentum:
            step = step + momentum * buffer
        out[name] = (w - eta * step).requires_grad_(True)
    return out


def hessian_vector(model: Supernet, vector: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   loss_fn: LossFn, r: float = 0.01, autocast: Autocast = contextlib.nullcontext) -> torch.Tensor:
    """Finite-difference `grad2_{a,w} L(w, a) . v` (equation 8): central difference at `w +- (r / ||v||) v`."""
    norm = torch.sqrt(sum((v * v).sum() for v in vector.values()))
    if not torch.isfinite(norm) or float(norm) == 0.0:
        return torch.zeros_like(model.alphas)
    eps = r / norm
    params = dict(model.named_parameters())
    grads = []
    for sign in (1.0, -1.0):
        moved = {name: params[name].detach() + sign * eps * v for name, v in vector.items()}
        loss = loss_fn(_forward(model, x, autocast, moved), y)
        grads.append(torch.autograd.grad(loss, [model.alphas])[0])
    return (grads[0] - grads[1]) / (2 * eps)


def second_order(model: Supernet, optimizer: torch.optim.Optimizer, x_train: torch.Tensor, y_train: torch.Tensor,
                 x_val: torch.Tensor, y_val: torch.Tensor, loss_fn: LossFn, eta: float,
                 r: float = 0.01, autocast: Autocast = contextlib.nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
    """`(DARTS' second-order architecture gradient, L_val(w', a))` (equation 7 with equation 8's product)."""
    names = weight_names(model)
    params = dict(model.named_parameters())
    with frozen_bn_stats(model):
        loss_train = loss_fn(_forward(model, x_train, autocast), y_train)
        # weights of operations not computed (edges DARTS-PT has fixed) get no gradient: zero
        grads = _grads(loss_train, [params[n] for n in names])
        unrolled = unrolled_weights(model, optimizer, dict(zip(names, grads, strict=True)), eta)
        loss_val = loss_fn(_forward(model, x_val, autocast, unrolled), y_val)
        out = _grads(loss_val, [model.alphas, *unrolled.values()])
        direct, vector = out[0], dict(zip(names, out[1:], strict=True))
        implicit = hessian_vector(model, vector, x_train, y_train, loss_fn, r, autocast)
    return direct - eta * implicit, loss_val.detach()


__all__ = ["first_order", "hessian_vector", "second_order", "unrolled_weights", "weight_names"]
