"""trainers.Population: members train as their sequential runs would, each its own run."""

import math

import pytest
import torch

from tunelab import spaces, trainers
from tunelab.trainers.population import Member, Population, architecture

TOL = 1e-4  # losses of a member vs its sequential run, over 3 epochs (measured: <= 2e-6 on this data)

MLP = {"model": "mlp", "model.width": 24, "model.depth": 2, "model.activation": "relu", "model.dropout": 0.0}
FAMILIES = {
    "sgd": {"sgd.lr": 0.05, "sgd.momentum": 0.9, "sgd.nesterov": False, "sgd.weight_decay": 1e-4},
    "sgd-nesterov": {"sgd.lr": 0.03, "sgd.momentum": 0.8, "sgd.nesterov": True, "sgd.weight_decay": 5e-4},
    "sgd-plain": {"sgd.lr": 0.1, "sgd.momentum": 0.0, "sgd.nesterov": False, "sgd.weight_decay": 1e-4},
    "adam": {"adam.lr": 3e-3, "adam.beta1": 0.9, "adam.weight_decay": 1e-5},
    "adamw": {"adamw.lr": 3e-3, "adamw.beta1": 0.85, "adamw.weight_decay": 1e-2},
    "nadam": {"nadam.lr": 2e-3, "nadam.beta1": 0.9, "nadam.weight_decay": 1e-2},
    "lion": {"lion.lr": 3e-4, "lion.beta1": 0.9, "lion.weight_decay": 0.1},
}


def _config(name, schedule="constant", **model):
    hp = FAMILIES[name]
    family = next(iter(hp)).split(".")[0]
    config = {"optimizer": family, **hp, **MLP, **model, "schedule": schedule}
    return spaces.schedules([schedule]).complete(config) | config


@pytest.fixture(scope="module")
def trainer():
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=3), epochs=3, seed=0)


def _close(a, b, tol=TOL):
    """Two runs' epochs agree: same epochs and learning rates, losses within `tol`."""
    assert len(a.epochs) == len(b.epochs)
    for x, y in zip(a.epochs, b.epochs, strict=True):
        assert x.epoch == y.epoch and x.lr == y.lr and x.grad_evals == y.grad_evals
        assert abs(x.train_loss - y.train_loss) <= tol and abs(x.val_loss - y.val_loss) <= tol, (x, y)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_every_vectorised_family_trains_each_member_as_its_sequential_run(trainer, schedule):
    configs = [_config(name, schedule) for name in FAMILIES]
    together = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    for i, (config, result) in enumerate(zip(configs, together, strict=True)):
        alone = trainer.fit(config, seed=i)
        assert result.status == alone.status == "complete"
        _close(result, alone)
        assert result.test_metric is not None and result.seed == i
        assert abs(result.test_metric - alone.test_metric) <= 0.003  # measured by the stack: within 3 examples
        assert result.epochs[0].val_loss < math.log(10) + 0.1  # it learned something, not a no-op


def test_a_member_that_diverges_stops_alone(trainer):
    bad = _config("sgd-plain") | {"sgd.lr": 1.0e4}
    good = [_config("adamw"), _config("sgd")]
    results = Population(trainer).fit([Member(bad), Member(good[0], seed=1), Member(good[1], seed=2)])
    alone = trainer.fit(bad)
    assert results[0].status == alone.status == "diverged" and math.isnan(results[0].val_metric)
    assert len(results[0].epochs) == len(alone.epochs) < 3
    for config, seed, result in zip(good, (1, 2), results[1:], strict=True):
        assert result.status == "complete"
        _close(result, trainer.fit(config, seed=seed))


def test_report_decides_per_member_and_a_paused_member_continues_alone_or_in_a_population(trainer, tmp_path):
    configs = [_config("adamw"), _config("nadam"), _config("sgd-nesterov")]
    paths = [tmp_path / f"m{i}.pt" for i in range(3)]

    def report(i, epoch):
        return {0: None, 1: "stop", 2: "pause"}[i] if epoch.epoch == 1 else None

    first = Population(trainer).fit([Member(c, seed=i, checkpoint=p) for i, (c, p) in
                                     enumerate(zip(configs, paths, strict=True))], report=report)
    assert [r.status for r in first] == ["complete", "stopped", "paused"]
    assert [len(r.epochs) for r in first] == [3, 1, 1]
    alone = trainer.fit(configs[2], seed=2, checkpoint=paths[2])  # the plain Trainer continues a member
    _close(alone, trainer.fit(configs[2], seed=2))
    # a plain checkpoint joins a population, and a population pause + resume is the uninterrupted population run
    plain = tmp_path / "plain.pt"
    trainer.fit(configs[1], seed=5, until_epoch=1, checkpoint=plain)
    members = [Member(configs[0], seed=4, checkpoint=tmp_path / "a.pt"), Member(configs[1], seed=5, checkpoint=plain)]
    paused = Population(trainer).fit(members, report=lambda i, e: "pause" if e.epoch == 2 else None)
    assert [r.status for r in paused] == ["paused", "paused"]
    resumed = Population(trainer).fit(members)
    straight = Population(trainer).fit([Member(configs[0], seed=4), Member(configs[1], seed=5)])
    for r, s in zip(resumed, straight, strict=True):
        assert r.status == "complete"
        _close(r, s, tol=1e-6)


def test_a_member_with_until_epoch_pauses_while_the_others_go_on(trainer, tmp_path):
    configs = [_config("adam"), _config("lion")]
    results = Population(trainer).fit([Member(configs[0], until_epoch=1, checkpoint=tmp_path / "a.pt"),
                                       Member(configs[1], seed=1)])
    assert [r.status for r in results] == ["paused", "complete"]
    assert results[0].checkpoint is not None
    _close(results[1], trainer.fit(configs[1], seed=1))


def test_a_cnn_with_batch_norm_trains_through_vmap(trainer):
    model = {"model": "cnn", "model.dim": 1, "model.depth": 2, "model.channels": 8, "model.kernel": 5,
             "model.norm": "batch", "model.dropout": 0.0, "model.activation": "relu"}
    configs = [{k: v for k, v in _config(name).items() if not k.startswith("model")} | model
               for name in ("sgd", "adamw")]
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    for i, (config, result) in enumerate(zip(configs, results, strict=True)):
        _close(result, trainer.fit(config, seed=i), tol=2e-3)  # batch statistics under vmap round differently


def test_members_with_dropout_train_with_their_own_draws(trainer):
    configs = [_config("adamw", **{"model.dropout": 0.3}) for _ in range(2)]
    results = Population(trainer).fit([Member(c, seed=0) for c in configs])  # same seed, same init
    assert results[0].epochs[0].train_loss != results[1].epochs[0].train_loss  # different dropout masks
    alone = trainer.fit(configs[0], seed=0)
    assert abs(results[0].epochs[-1].val_loss - alone.epochs[-1].val_loss) < 0.2  # same run, other masks


def test_bad_input_names_the_problem(trainer):
    with pytest.raises(spaces.ConfigError, match="at least one member"):
        Population(trainer).fit([])
    wide = _config("adamw", **{"model.width": 32})
    with pytest.raises(spaces.ConfigError, match=r"share an architecture.*model.width"):
        Population(trainer).fit([_config("adamw"), wide])
    with pytest.raises(spaces.ConfigError, match="until_epoch"):
        Population(trainer).fit([Member(_config("adamw"), until_epoch=0), _config("sgd")])
    with pytest.raises(spaces.ConfigError, match=r"trainers\.Trainer"):
        Population("not a trainer")
    assert architecture(_config("adamw"), trainer) == architecture(_config("lion"), trainer)


def test_an_optimizer_without_a_vectorised_update_trains_alone_with_a_warning(trainer):
    radam = {"optimizer": "radam", "radam.lr": 1e-3, "radam.beta1": 0.9, "radam.weight_decay": 1e-2,
             "schedule": "constant", **MLP}
    configs = [radam, _config("adamw"), _config("sgd")]
    with pytest.warns(UserWarning, match="1 of 3 members train one after another.*'radam'"):
        results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    plain = trainer.fit(radam, seed=0)
    assert [e.val_loss for e in results[0].epochs] == [e.val_loss for e in plain.epochs]  # it is Trainer.fit
    _close(results[1], trainer.fit(configs[1], seed=1))


def test_members_keep_their_own_data_order(trainer):
    """Two members of one config and seed are one run twice; another seed is another run."""
    config = _config("sgd")
    before = torch.get_rng_state()
    results = Population(trainer).fit([Member(config, seed=3), Member(config, seed=3), Member(config, seed=4)])
    assert [e.train_loss for e in results[0].epochs] == [e.train_loss for e in results[1].epochs]
    assert results[0].epochs[0].train_loss != results[2].epochs[0].train_loss
    assert torch.get_rng_state().equal(before)  # the global generator is neither reseeded nor advanced


def test_a_regression_population_evaluates_each_member_as_its_sequential_run():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=gen)
    y = torch.stack([x[:, 0] - 2 * x[:, 1], x[:, 2] * x[:, 3]], 1) + 0.1 * torch.randn(300, 2, generator=gen)
    workload = trainers.Workload.from_tensors(x, y, task="regression", name="toy-regression", batch_size=32)
    trainer = trainers.Trainer(workload, epochs=3, seed=0)
    configs = [_config("adamw"), _config("sgd", **{"model.activation": "gelu"})]
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    for i, (config, result) in enumerate(zip(configs, results, strict=True)):
        alone = trainer.fit(config, seed=i)
        _close(result, alone)
        assert abs(result.val_metric - alone.val_metric) <= TOL
