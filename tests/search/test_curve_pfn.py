"""The learning-curve prior, the PFN trained on it, the weights that ship, and the strategies that use them."""

from __future__ import annotations

import math
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab import search, spaces, studies, trainers
from tunelab.search import curve_prior, pfn
from tunelab.spaces import ConfigError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def prior_tasks():
    return curve_prior.sample(512, 16, 20, torch.Generator().manual_seed(3))


def test_prior_curves_rise_in_expectation_and_saturate(prior_tasks):
    mean = prior_tasks.clean.mean((0, 1))
    assert torch.all(mean[1:] >= mean[:-1] - 1e-6)  # monotone in expectation
    first, second = mean[9] - mean[0], mean[19] - mean[9]
    assert first > 2 * second > 0  # saturating: the second half of training gains less than the first
    assert (prior_tasks.y >= 0).all() and (prior_tasks.y <= 1).all()


def test_prior_curves_depend_on_the_hyperparameters(prior_tasks):
    x, final = prior_tasks.x, prior_tasks.clean[..., -1]
    near, far = [], []
    for b in range(x.shape[0]):
        d = torch.cdist(x[b], x[b])
        gap = (final[b].unsqueeze(0) - final[b].unsqueeze(1)).abs()
        off = ~torch.eye(x.shape[1], dtype=torch.bool)
        near.append(gap[off & (d < d[off].quantile(0.2))].mean())
        far.append(gap[off & (d > d[off].quantile(0.8))].mean())
    assert torch.stack(near).mean() < 0.8 * torch.stack(far).mean()  # similar configurations, similar curves


def test_the_query_path_equals_the_masked_forward_pass():
    torch.manual_seed(0)
    net = pfn.CurvePFN(d_model=32, layers=2, heads=2, ff=64).eval()
    cx, ct, cy = torch.rand(40, pfn.D_MAX), torch.rand(40), torch.rand(40)
    qx, qt = torch.rand(9, pfn.D_MAX), torch.rand(9)
    context = torch.zeros(1, 49, dtype=torch.bool)
    context[0, :40] = True
    full = net(torch.cat([cx, qx])[None], torch.cat([ct, qt])[None], torch.cat([cy, torch.zeros(9)])[None], context)
    assert torch.allclose(net.predict(cx, ct, cy, qx, qt), full[0, 40:], atol=1e-5)


def test_a_pfn_trained_for_a_few_steps_beats_a_constant_predictor_on_held_out_prior_curves():
    import train_pfn

    net, curve = train_pfn.train(150, seed=7, batch=8, lr=2e-3, log_every=50, quiet=True,
                                 net_config={"d_model": 32, "layers": 2, "heads": 2, "ff": 64})
    held = pfn.held_out(11, tasks=128)
    with torch.inference_mode():
        learned = float(pfn.batch_loss(net, held))
    # the best constant predictor: the histogram of the held-out targets themselves (an oracle marginal)
    target = held.y[held.query]
    counts = torch.bincount(pfn.bucket_of(target), minlength=pfn.BUCKETS).double() + 1e-3
    probs = counts / counts.sum()
    constant = float(-(probs.log()[pfn.bucket_of(target)]).mean() - math.log(pfn.BUCKETS))
    assert curve[-1] < curve[0]
    assert learned < constant - 0.1, (learned, constant)


def test_the_shipped_weights_load_offline_and_reproduce_the_manifests_held_out_loss(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    manifest = pfn.manifest()
    assert pfn.WEIGHTS.stat().st_size <= 5_000_000 and manifest["bytes"] == pfn.WEIGHTS.stat().st_size
    assert manifest["prior_version"] == curve_prior.PRIOR_VERSION and manifest["steps"] > 0
    assert len(manifest["loss_curve"]) >= 2
    net = pfn.load()
    with torch.inference_mode():
        loss = float(pfn.batch_loss(net, pfn.held_out(manifest["held_out_seed"])))
    assert loss == pytest.approx(manifest["held_out_loss"], abs=1e-3)


def test_missing_weights_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train_pfn\.py"):
        pfn.load(tmp_path / "none.pt")


def test_the_context_is_thinned_keeping_each_curves_last_point():
    idx, ep = pfn.thin([20, 3, 0, 50], 30)
    assert len(idx) <= 30
    for i, k in ((0, 20), (1, 3), (3, 50)):
        assert k in set(ep[idx == i].tolist())  # where each curve stands now is always read
    idx, ep = pfn.thin([2, 3], 30)
    assert list(zip(idx.tolist(), ep.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]


def _replay():
    return trainers.Replay(ROOT / "benchmarks" / "tables" / "mnist1d_mlp.json.gz")


def test_freeze_thaw_with_the_pfn_decides_the_same_after_a_restart(tmp_path):
    from tunelab.trainers.replay import table_space

    replay = _replay()
    url = f"sqlite:///{tmp_path / 'ft.db'}"
    study = studies.create("ft", url, space=table_space(replay), trainer=replay,
                           strategy=search.FreezeThaw(seed=0, surrogate="pfn", candidates=64))
    study.optimize(epochs=60, executor="simulated", progress=False)
    before = study.strategy.ask(study.history())
    again = studies.load("ft", url, trainer=replay)
    after = again.strategy.ask(again.history())
    assert (after.kind, after.config, after.trial, after.until_epoch) == (
        before.kind, before.config, before.trial, before.until_epoch)
    assert any("ft_cost_s" in t.attrs for t in study.trials)  # the PFN decided, not only the initial design


def test_the_pruner_wraps_full_run_strategies_and_refuses_the_rest():
    assert search.CurvePruner(search.Bayesian(seed=3)).seed == 3
    spec = search.CurvePruner(search.Random(seed=2), threshold=0.1).spec()
    assert search.Strategy.from_spec(spec) == search.CurvePruner(search.Random(seed=2), threshold=0.1)
    with pytest.raises(ConfigError, match="pauses and stops trials itself"):
        search.CurvePruner(search.ASHA(seed=0))
    with pytest.raises(ConfigError, match="threshold"):
        search.CurvePruner(threshold=1.5)
    with pytest.raises(ConfigError, match="built-in"):
        search.CurvePruner({"name": "mypkg:Mine", "args": {}})
    with pytest.raises(ConfigError, match="name no code"):  # a stored sampler naming code needs the object itself
        search.CurvePruner({"name": "optuna", "args": {"sampler": "mypkg:Sampler"}})


def test_the_pruner_stops_curves_that_cannot_win_and_keeps_the_best(tmp_path):
    from tunelab.trainers.replay import table_space

    replay = _replay()
    url = f"sqlite:///{tmp_path / 'p.db'}"
    plain = studies.create("plain", url, space=table_space(replay), trainer=replay, strategy=search.Random(seed=4))
    plain.optimize(trials=12, executor="simulated", progress=False)
    plain = plain.trials
    pruned = studies.create("pruned", url, space=table_space(replay), trainer=replay,
                            strategy=search.CurvePruner(search.Random(seed=4)))
    pruned.optimize(epochs=sum(t.epochs for t in plain), executor="simulated", progress=False)  # the same epochs
    pruned = pruned.trials
    assert [t.config for t in pruned[:12]] == [t.config for t in plain]  # the wrapped strategy chose the same
    assert len(pruned) > 1.5 * len(plain)  # stopping losers early bought more configurations
    assert any(t.state == "pruned" for t in pruned) and {t.state for t in pruned} <= {"complete", "pruned", "paused"}
    best = max(plain, key=lambda t: max(t.curve))
    assert next(t for t in pruned if t.config == best.config).state == "complete"  # the winner was not stopped
    assert max(max(t.curve) for t in pruned) >= max(best.curve)


def test_features_are_unit_columns_padded_to_the_network_width():
    space = spaces.Space(lr=spaces.Float(1e-4, 1.0, log=True), opt=spaces.Categorical(["a", "b", "c"]),
                         depth=spaces.Int(1, 4))
    X = pfn.features(space, [{"lr": 1e-4, "opt": "c", "depth": 4}, {"lr": 1.0, "opt": "a", "depth": 1}])
    assert X.shape == (2, pfn.D_MAX) and X.min() >= 0 and X.max() <= 1
    assert np.allclose(X[:, :2], [[0, 1], [1, 0]]) and X[0, 2] > 0.5 > X[1, 2] and not X[:, 3:].any()


def test_the_value_scale_maps_worst_or_median_to_zero_and_the_best_below_one(monkeypatch):
    values = [7.0, 5.0, 4.0, 3.5, 3.0]  # lower is better (bits per character, say)
    worst = pfn.Scale.of(values)
    assert worst.to_pfn(7.0) == 0.0 and math.isclose(float(worst.to_pfn(3.0)), 1 / (1 + pfn.HEADROOM))
    assert np.allclose(worst.from_pfn(worst.to_pfn(np.array(values))), values)
    monkeypatch.setattr(pfn, "SCALE_ANCHOR", "median")
    median = pfn.Scale.of(values)
    assert median.to_pfn(4.0) == 0.0 and median.to_pfn(7.0) == 0.0  # worse than the median: clipped to 0
    assert math.isclose(float(median.to_pfn(3.0)), 1 / (1 + pfn.HEADROOM))
    gap = [float(s.to_pfn(3.0) - s.to_pfn(3.5)) for s in (worst, median)]
    assert gap[1] > 3 * gap[0]  # the good values spread over more of the scale
