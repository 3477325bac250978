"""Tests for the ACProp optimizer (spaces._acprop)."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from tunelab.spaces._acprop import ACProp

# Hand-chosen gradients for four steps on a 3-element parameter (including a sign flip and a zero).
_X0 = [1.0, -2.0, 0.5]
_GRADS = [
    [0.5, -1.0, 2.0],
    [0.3, -0.5, -1.0],
    [-0.2, 0.0, 1.5],
    [0.4, 0.25, -0.5],
]


def _hand_acprop(
    x0: list[float],
    grads: list[list[float]],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    wd: float,
    decouple: bool,
    momentum_update: bool,
) -> tuple[list[float], list[float], list[float]]:
    """ACProp written out element by element in plain Python floats (paper + official code)."""
    x = list(x0)
    m = [0.0] * len(x)
    s = [0.0] * len(x)
    for t, g_t in enumerate(grads, start=1):
        for i in range(len(x)):
            g = g_t[i]
            if decouple:
                x[i] = x[i] * (1.0 - lr * wd)
            else:
                g = g + wd * x[i]
            m[i] = beta1 * m[i] + (1.0 - beta1) * g
            if t == 1:
                # No s_0 information yet: a plain SGD step.
                x[i] = x[i] - lr * g
            else:
                s[i] = s[i] + eps
                d = math.sqrt(s[i]) / math.sqrt(1.0 - beta2 ** (t - 1)) + eps
                num = m[i] / (1.0 - beta1**t) if momentum_update else g
                x[i] = x[i] - lr * num / d
            s[i] = beta2 * s[i] + (1.0 - beta2) * (g - m[i]) ** 2
    return x, m, s


@pytest.mark.parametrize("momentum_update", [False, True])
@pytest.mark.parametrize("decouple", [True, False])
def test_matches_hand_computation(decouple: bool, momentum_update: bool) -> None:
    lr, beta1, beta2, eps, wd = 0.1, 0.9, 0.99, 1e-3, 0.1
    p = torch.tensor(_X0, dtype=torch.float64, requires_grad=True)
    opt = ACProp(
        [p],
        lr=lr,
        betas=(beta1, beta2),
        eps=eps,
        weight_decay=wd,
        weight_decouple=decouple,
        momentum_update=momentum_update,
    )
    for g in _GRADS:
        grad = torch.tensor(g, dtype=torch.float64)
        p.grad = grad.clone()
        opt.step()
        assert torch.equal(p.grad, grad), "step() must not modify p.grad"

    x, m, s = _hand_acprop(_X0, _GRADS, lr, beta1, beta2, eps, wd, decouple, momentum_update)
    expected = torch.tensor(x, dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-12)
    state = opt.state[p]
    assert int(state["step"]) == len(_GRADS)
    torch.testing.assert_close(state["exp_avg"], torch.tensor(m, dtype=torch.float64), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(state["exp_avg_var"], torch.tensor(s, dtype=torch.float64), rtol=1e-12, atol=1e-14)
    # Sanity: the update actually moved the parameter.
    assert not torch.allclose(expected, torch.tensor(_X0, dtype=torch.float64))


def test_first_step_is_sgd_step() -> None:
    p = torch.tensor([3.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = ACProp([p], lr=0.5, betas=(0.8, 0.999))
    p.grad = torch.tensor([2.0, 4.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([2.0, -3.0], dtype=torch.float64))


def test_minimises_logistic_regression() -> None:
    gen = torch.Generator().manual_seed(0)
    n, d = 256, 5
    w_true = torch.randn(d, generator=gen)
    features = torch.randn(n, d, generator=gen)
    labels = (features @ w_true + 0.1 * torch.randn(n, generator=gen) > 0).float()
    model = nn.Linear(d, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    opt = ACProp(model.parameters(), lr=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model(features).squeeze(1), labels)
        loss.backward()
        return loss

    initial = float(closure().detach())
    for _ in range(300):
        opt.step(closure)
    final = float(closure().detach())
    assert initial == pytest.approx(math.log(2.0))
    assert final < 0.3 * initial


def test_minimises_quadratic() -> None:
    scales = torch.tensor([1.0, 10.0, 100.0])
    x = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    opt = ACProp([x], lr=1e-2)
    initial = float((scales * x.detach() ** 2).sum())
    for _ in range(500):
        opt.zero_grad()
        (scales * x**2).sum().backward()
        opt.step()
    final = float((scales * x.detach() ** 2).sum())
    assert final < 1e-3 * initial


def _make_model() -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


def _make_opt(model: nn.Module) -> ACProp:
    first, second = model[0], model[2]
    return ACProp(
        [
            {"params": first.parameters(), "weight_decouple": False},
            {"params": second.parameters(), "lr": 3e-3, "momentum_update": True},
        ],
        lr=1e-2,
        weight_decay=1e-2,
    )


def _train(model: nn.Module, opt: ACProp, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for inputs, targets in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(inputs), targets).backward()
        opt.step()


@pytest.mark.parametrize("split", [1, 4])
def test_state_dict_round_trip_is_bit_exact(split: int) -> None:
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(16, 4, generator=gen), torch.randn(16, 2, generator=gen)) for _ in range(9)]

    ref_model = _make_model()
    ref_opt = _make_opt(ref_model)
    _train(ref_model, ref_opt, batches)

    model = _make_model()
    opt = _make_opt(model)
    _train(model, opt, batches[:split])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    del model, opt

    new_model = _make_model()
    new_model.load_state_dict(checkpoint["model"])
    new_opt = _make_opt(new_model)
    new_opt.load_state_dict(copy.deepcopy(checkpoint["opt"]))
    _train(new_model, new_opt, batches[split:])

    for p_ref, p_new in zip(ref_model.parameters(), new_model.parameters(), strict=True):
        assert torch.equal(p_ref, p_new)
    for p_ref, p_new in zip(ref_model.parameters(), new_model.parameters(), strict=True):
        s_ref, s_new = ref_opt.state[p_ref], new_opt.state[p_new]
        assert int(s_ref["step"]) == int(s_new["step"]) == len(batches)
        assert torch.equal(s_ref["exp_avg"], s_new["exp_avg"])
        assert torch.equal(s_ref["exp_avg_var"], s_new["exp_avg_var"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"betas": (1.0, 0.999)}, "betas[0]"),
        ({"betas": (-0.1, 0.999)}, "betas[0]"),
        ({"betas": (0.9, 1.0)}, "betas[1]"),
        ({"betas": (0.9,)}, "betas"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_invalid_hyperparameters_raise(kwargs: dict[str, object], name: str) -> None:
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="Invalid " + name.replace("[", r"\[").replace("]", r"\]")) as info:
        ACProp([p], **kwargs)  # type: ignore[arg-type]
    assert "expected" in str(info.value)


def test_skips_params_without_grad_and_rejects_sparse() -> None:
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    opt = ACProp([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3))
    assert len(opt.state[b]) == 0

    emb = nn.Embedding(4, 2, sparse=True)
    sparse_opt = ACProp(emb.parameters())
    emb(torch.tensor([0, 1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        sparse_opt.step()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu() -> None:
    results = []
    for device in ("cpu", "cuda"):
        p = torch.tensor(_X0, dtype=torch.float64, device=device, requires_grad=True)
        opt = ACProp([p], lr=0.1, eps=1e-3, weight_decay=0.1)
        for g in _GRADS:
            p.grad = torch.tensor(g, dtype=torch.float64, device=device)
            opt.step()
        results.append(p.detach().cpu())
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)
