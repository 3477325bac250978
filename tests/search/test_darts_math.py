"""DARTS' pieces against exact references: the supernet relaxation, the architecture gradients, DARTS-PT's choice."""

import torch
import torch.nn.functional as F
from torch.func import functional_call

from tunelab.search.architect import first_order, hessian_vector, second_order, unrolled_weights, weight_names
from tunelab.search.darts_routine import choose
from tunelab.search.supernet import Supernet
from tunelab.spaces import CellNetwork, Genotype

OPS = ("none", "skip", "conv1x1", "conv3x3", "avgpool3x3")


def tiny_supernet(seed=0):
    torch.manual_seed(seed)
    model = Supernet(OPS, channels=3, cells_per_stage=1, input_shape=(8,), n_outputs=3, dim=1).double()
    model.train()
    return model


def batch(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def test_the_supernet_is_a_cell_network_with_shared_alphas_and_affine_free_cell_norms():
    model = tiny_supernet()
    assert isinstance(model.network, CellNetwork)
    assert model.alphas.shape == (6, 5) and float(model.alphas.detach().abs().max()) < 0.01  # 1e-3 * N(0, 1)
    cells = [m for m in model.modules() if type(m).__name__ == "MixedCell"]
    assert len(cells) == 3 and all(c._arch is model._arch for c in cells)  # one set of weights for every cell
    norms = [m for c in cells for m in c.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.affine for m in norms)
    assert all(p is not model.alphas for p in model.weight_parameters())


def test_a_one_hot_supernet_computes_exactly_the_selected_cell():
    model = tiny_supernet().eval()
    genotype = Genotype(("conv3x3", "skip", "conv1x1", "none", "avgpool3x3", "conv3x3"))
    for e, op in enumerate(genotype.ops):
        model.fix(e, OPS.index(op))
    x, _ = batch(1)
    out = model(x)
    # the same network by hand: a mixture with weight one on the chosen op and nothing else
    with torch.no_grad():
        model.fixed = {}
        model.alphas.copy_(torch.full((6, 5), -1e9, dtype=torch.float64))
        for e, op in enumerate(genotype.ops):
            model.alphas[e, OPS.index(op)] = 0.0
    torch.testing.assert_close(model(x), out)
    assert model.argmax_genotype() == Genotype(("conv3x3", "skip", "conv1x1", "skip", "avgpool3x3", "conv3x3"))


def test_masking_an_op_zeroes_its_weight_and_leaves_the_others():
    model = tiny_supernet()
    before = model.mixing_weights().detach()
    with model.without(2, 3):
        w = model.mixing_weights().detach()
    assert float(w[2, 3]) == 0.0
    w[2, 3] = before[2, 3]
    torch.testing.assert_close(w, before)
    assert model.masked is None


def loss_fn(out, y):
    return F.cross_entropy(out, y)


def test_first_order_gradient_is_autograds_and_leaves_batch_norm_statistics_alone():
    model = tiny_supernet()
    x, y = batch(2)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    grad, _ = first_order(model, x, y, loss_fn)
    after = {k: v for k, v in model.state_dict().items() if k in stats}
    assert len(after) > 10
    for k, v in after.items():  # the architecture pass moved no running average
        torch.testing.assert_close(v, stats[k])
    (expected,) = torch.autograd.grad(loss_fn(model(x), y), [model.alphas])
    torch.testing.assert_close(grad, expected)


def exact_hvp(model, vector, x, y):
    """grad_a (grad_w L(w, a) . v) by double backward."""
    names = weight_names(model)
    params = dict(model.named_parameters())
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
    dot = sum((g * vector[n]).sum() for g, n in zip(grads, names, strict=True))
    return torch.autograd.grad(dot, [model.alphas])[0]


def test_finite_difference_hessian_vector_product_matches_the_exact_one():
    model = tiny_supernet()
    x, y = batch(3)
    g = torch.Generator().manual_seed(9)
    vector = {n: torch.randn(p.shape, generator=g, dtype=torch.float64)
              for n, p in model.named_parameters() if n != "alphas"}
    from tunelab.trainers import frozen_bn_stats

    with frozen_bn_stats(model):
        approx = hessian_vector(model, vector, x, y, loss_fn, r=1e-4)
        exact = exact_hvp(model, vector, x, y)
    assert exact.abs().max() > 1e-4  # not trivially zero
    torch.testing.assert_close(approx, exact, rtol=1e-5, atol=1e-7)


def test_second_order_gradient_matches_autograd_through_the_unrolled_step():
    model = tiny_supernet()
    names = weight_names(model)
    params = dict(model.named_parameters())
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    xt, yt = batch(4)
    xv, yv = batch(5)
    loss_fn(model(xt), yt).backward()  # one real step, so momentum buffers exist
    optimizer.step()
    optimizer.zero_grad()
    eta = 0.05
    from tunelab.trainers import frozen_bn_stats

    with frozen_bn_stats(model):
        # exact: differentiate L_val(w - eta * (m * buf + grad L_train(w, a) + wd * w), a) with respect to a
        grads = torch.autograd.grad(loss_fn(model(xt), yt), [params[n] for n in names], create_graph=True)
        unrolled = {}
        for n, gr in zip(names, grads, strict=True):
            w = params[n]
            buf = optimizer.state[w]["momentum_buffer"]
            unrolled[n] = w - eta * (0.9 * buf + gr + 3e-4 * w)
        exact = torch.autograd.grad(loss_fn(functional_call(model, unrolled, (xv,)), yv), [model.alphas])[0]
        # the unrolled weights themselves are the optimizer's next step
        step = unrolled_weights(model, optimizer, dict(zip(names, [g.detach() for g in grads], strict=True)), eta)
        for n in names:
            torch.testing.assert_close(step[n], unrolled[n].detach())
    approx, _ = second_order(model, optimizer, xt, yt, xv, yv, loss_fn, eta, r=1e-4)
    direct, _ = first_order(model, xv, yv, loss_fn)
    assert (exact - direct).abs().max() > 1e-6  # the second-order term matters here
    torch.testing.assert_close(approx, exact, rtol=1e-4, atol=1e-6)


def test_darts_pt_keeps_the_op_whose_removal_hurts_most():
    # accuracy after removing each op: removing op 3 drops it most, so op 3 is kept
    assert choose([0.90, 0.89, 0.85, 0.40, 0.88], "maximize") == 3
    # a loss-like metric: removing op 1 raises it most
    assert choose([0.3, 0.9, 0.4], "minimize") == 1
    # nothing hurts: the first op ('none', whose removal changes nothing) is kept, i.e. the edge is dropped
    assert choose([0.9, 0.95, 0.9, 0.91, 0.9], "maximize") == 0
