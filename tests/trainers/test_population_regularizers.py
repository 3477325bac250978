"""Populations of members with their own dropout rates, input noise and activations (one stacked model)."""

import math

import pytest
import torch
from torch import nn

import tunelab.trainers.population as population
from tunelab import spaces, trainers
from tunelab.trainers.population import Member, Population, architecture, member_dropout, member_noise

TOL = 1e-4  # as in test_population.py: losses of a member vs its sequential run over 3 epochs

MLP = {"model": "mlp", "model.width": 24, "model.depth": 2, "model.activation": "relu", "model.dropout": 0.0}
CNN = {"model": "cnn", "model.dim": 1, "model.depth": 2, "model.channels": 8, "model.kernel": 5, "model.norm": "none",
       "model.dropout": 0.0, "model.activation": "relu"}
ADAMW = {"optimizer": "adamw", "adamw.lr": 3e-3, "adamw.beta1": 0.85, "adamw.weight_decay": 1e-2,
         "schedule": "constant"}
SGD = {"optimizer": "sgd", "sgd.lr": 0.05, "sgd.momentum": 0.9, "sgd.nesterov": False, "sgd.weight_decay": 1e-4,
       "schedule": "constant"}


def _config(optimizer=ADAMW, model=MLP, **changes):
    return {**optimizer, **model, **changes}


@pytest.fixture(scope="module")
def trainer():
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=3), epochs=3, seed=0)


def _losses(result):
    return [(e.train_loss, e.val_loss) for e in result.epochs]


def _close(a, b, tol=TOL):
    """Two runs' epochs agree: same epochs and learning rates, losses within `tol`."""
    assert [e.epoch for e in a.epochs] == [e.epoch for e in b.epochs]
    for x, y in zip(a.epochs, b.epochs, strict=True):
        assert x.lr == y.lr and x.grad_evals == y.grad_evals
        assert abs(x.train_loss - y.train_loss) <= tol and abs(x.val_loss - y.val_loss) <= tol, (x, y)


# ---------------------------------------------------------------------------- the per-member operations


def test_member_dropout_drops_each_member_at_its_own_rate_and_rescales_what_it_keeps():
    torch.manual_seed(0)
    rates = torch.tensor([0.0, 0.1, 0.3, 0.5, 1.0])
    x = torch.rand(5, 400, 100) + 0.5  # no zeros of its own
    out = member_dropout(x, (1 - rates).view(-1, 1, 1))
    n = x[0].numel()
    for i, p in enumerate(rates.tolist()):
        dropped = (out[i] == 0).float().mean().item()
        assert abs(dropped - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9, (p, dropped)  # a binomial's 5 sigma
        kept = out[i] != 0
        if p < 1:
            assert torch.allclose(out[i][kept], x[i][kept] / (1 - p))  # inverted dropout: the mean is kept
    assert torch.equal(out[0], x[0])  # p = 0: untouched, bit for bit
    assert not out[4].any()  # p = 1: nothing kept, as nn.Dropout(1.0)
    # the same law as nn.Dropout: per-member means of a large constant input stay at the input
    ones = torch.ones(3, 200_000)
    means = member_dropout(ones, torch.tensor([[1.0], [0.8], [0.5]])).mean(1)
    assert torch.allclose(means, torch.ones(3), atol=0.02)


def test_member_noise_adds_each_members_own_standard_deviation():
    torch.manual_seed(0)
    x = torch.rand(3, 1000, 50)
    out = member_noise(x, torch.tensor([0.0, 0.1, 1.0]).view(-1, 1, 1))
    assert torch.equal(out[0], x[0])
    stds = (out - x).flatten(1).std(1)
    assert abs(stds[1].item() - 0.1) < 0.005 and abs(stds[2].item() - 1.0) < 0.05


# ---------------------------------------------------------------------------- populations


class Spy:
    """Wraps `member_dropout` / `member_noise` in trainers.population and records what each member got."""

    def __init__(self, monkeypatch):
        self.dropout: dict[float, list[float]] = {}  # keep -> [dropped, seen]
        self.noise: dict[float, list[float]] = {}  # std -> [sum of squares, count]
        self.calls = 0
        original_dropout, original_noise = population.member_dropout, population.member_noise

        def dropout(x, keep, scale=None, **kwargs):
            out = original_dropout(x, keep, scale, **kwargs)
            self.calls += 1
            if x.dim() == 3:  # an MLP's stacked (K, B, width): one row of keep per member
                for row, q in enumerate(keep.flatten().tolist()):
                    seen = x[row] != 0
                    tally = self.dropout.setdefault(round(q, 6), [0.0, 0.0])
                    tally[0] += float(((out[row] == 0) & seen).sum())
                    tally[1] += float(seen.sum())
            return out

        def noise(x, std):
            out = original_noise(x, std)
            if x.dim() == 3:
                for row, s in enumerate(std.flatten().tolist()):
                    tally = self.noise.setdefault(round(s, 6), [0.0, 0.0])
                    tally[0] += float(((out[row] - x[row]) ** 2).sum())
                    tally[1] += x[row].numel()
            return out

        monkeypatch.setattr(population, "member_dropout", dropout)
        monkeypatch.setattr(population, "member_noise", noise)


def test_each_member_of_a_stacked_mlp_drops_at_its_own_rate_in_training_only(trainer, monkeypatch):
    spy = Spy(monkeypatch)
    rates = [0.0, 0.1, 0.3, 0.5]
    configs = [_config(SGD if i % 2 else ADAMW, **{"model.dropout": p}) for i, p in enumerate(rates)]
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    assert [r.status for r in results] == ["complete"] * 4
    steps = trainer.epochs * trainer.steps_per_epoch(trainer.batch_size)
    assert spy.calls == 2 * steps  # two dropout layers, every training step, never in evaluation
    assert sorted(spy.dropout) == sorted(round(1 - p, 6) for p in rates)
    for keep, (dropped, seen) in spy.dropout.items():
        p = 1 - keep
        assert abs(dropped / seen - p) <= 5 * math.sqrt(p * (1 - p) / seen) + 1e-9, (p, dropped / seen)


def test_each_member_gets_its_own_input_noise(trainer, monkeypatch):
    spy = Spy(monkeypatch)
    levels = [0.0, 0.05, 0.5]
    configs = [_config(**{"model.input_noise": s}) for s in levels]
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    assert sorted(spy.noise) == sorted(levels)
    for std, (squares, count) in spy.noise.items():
        assert abs(math.sqrt(squares / count) - std) <= 0.02 * std + 1e-12, std
    _close(results[0], trainer.fit(configs[0], seed=0))  # no noise: its sequential run


def test_members_without_dropout_or_noise_train_as_alone_whatever_the_others_use(trainer):
    plain = [_config(), _config(SGD, **{"model.input_noise": 0.0, "model.input_dropout": 0.0})]
    plain[0] = plain[0] | {"model.input_noise": 0.0, "model.input_dropout": 0.0}
    others = [_config(**{"model.dropout": 0.4, "model.input_noise": 0.3, "model.input_dropout": 0.0}),
              _config(SGD, **{"model.dropout": 0.0, "model.input_noise": 0.0, "model.input_dropout": 0.2})]
    assert len({architecture(c, trainer) for c in plain + others}) == 1  # one population
    mixed = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(plain + others)])
    pure = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(plain)])
    for i, config in enumerate(plain):
        assert _losses(mixed[i]) == _losses(pure[i])  # the others' masks and noise never reach it: bit for bit
        _close(mixed[i], trainer.fit(config, seed=i))  # and it is its sequential run, up to rounding
    for i, config in enumerate(others, start=2):  # the regularised members: other draws, the same run in law
        alone = trainer.fit(config, seed=i)
        assert abs(mixed[i].epochs[-1].val_loss - alone.epochs[-1].val_loss) < 0.2
        assert mixed[i].epochs[0].train_loss != alone.epochs[0].train_loss  # not the dropout-free computation


def test_one_regularised_member_among_plain_ones_stays_close_to_its_sequential_run(trainer):
    configs = [_config(), _config(SGD), _config(**{"model.dropout": 0.2})]
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    for i, config in enumerate(configs[:2]):
        _close(results[i], trainer.fit(config, seed=i))
    alone = trainer.fit(configs[2], seed=2)
    for a, b in zip(results[2].epochs, alone.epochs, strict=True):  # other masks: close in law, not equal
        assert abs(a.train_loss - b.train_loss) < 0.15 and abs(a.val_loss - b.val_loss) < 0.15


def test_the_global_generator_is_untouched_by_dropout_draws(trainer):
    before = torch.get_rng_state()
    first = Population(trainer).fit([Member(_config(**{"model.dropout": 0.3}), seed=1), Member(_config(), seed=2)])
    assert torch.get_rng_state().equal(before)
    again = Population(trainer).fit([Member(_config(**{"model.dropout": 0.3}), seed=1), Member(_config(), seed=2)])
    assert [_losses(r) for r in first] == [_losses(r) for r in again]  # the population's own stream: reproducible


@pytest.mark.parametrize(("model", "tol"), [(MLP, TOL), (CNN, TOL), (CNN | {"model.norm": "batch"}, 2e-3)],
                         ids=["mlp", "cnn-vmap", "cnn-batchnorm"])  # batch statistics round differently under vmap
def test_members_with_different_activations_share_one_population_and_each_is_its_sequential_run(trainer, model, tol):
    configs = [_config(opt, model, **{"model.activation": act})
               for opt, act in ((ADAMW, "relu"), (SGD, "gelu"), (ADAMW, "silu"), (SGD, "relu"), (ADAMW, "gelu"))]
    assert len({architecture(c, trainer) for c in configs}) == 1
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    for i, config in enumerate(configs):
        assert results[i].status == "complete"
        _close(results[i], trainer.fit(config, seed=i), tol)


def test_a_cnn_population_through_vmap_gives_each_member_its_own_dropout(trainer):
    configs = [_config(model=CNN), _config(SGD, CNN), _config(model=CNN, **{"model.dropout": 0.3,
                                                                            "model.activation": "gelu"})]
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    for i, config in enumerate(configs[:2]):
        _close(results[i], trainer.fit(config, seed=i))
    alone = trainer.fit(configs[2], seed=2)
    assert results[2].epochs[0].train_loss != alone.epochs[0].train_loss  # its own masks
    assert abs(results[2].epochs[-1].val_loss - alone.epochs[-1].val_loss) < 0.2


def test_members_with_and_without_a_random_shift_train_together(trainer):
    configs = [_config(**{"model.shift": 0}), _config(SGD, **{"model.shift": 0}), _config(**{"model.shift": 3}),
               _config(SGD, **{"model.shift": 2})]
    results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
    assert [r.status for r in results] == ["complete"] * 4
    for i, config in enumerate(configs[:2]):
        _close(results[i], trainer.fit(config, seed=i))
    shifted = trainer.fit(configs[2], seed=2)
    assert abs(results[2].epochs[-1].val_loss - shifted.epochs[-1].val_loss) < 0.2


def test_a_family_whose_shape_free_declaration_does_not_hold_still_trains_each_member_as_itself(trainer):
    """A user family that builds a plain nn.Dropout from a parameter it declares shape-free: stacks of equal nets."""

    def build(hp, shape, n_outputs):
        layers = [nn.Flatten(), nn.Linear(math.prod(shape), 16), nn.ReLU()]
        if hp["dropout"] > 0:
            layers.append(nn.Dropout(hp["dropout"]))
        return nn.Sequential(*layers, nn.Linear(16, n_outputs))

    spaces.models.register("declared_mlp", spaces.ModelSpec(build, reference="test", shape_free=("dropout",)))
    try:
        model = {"model": "declared_mlp", "model.dropout": 0.0}
        configs = [_config(model=model), _config(SGD, model), _config(model=model | {"model.dropout": 0.3}),
                   _config(SGD, model | {"model.dropout": 0.5})]
        assert len({architecture(c, trainer) for c in configs}) == 1
        results = Population(trainer).fit([Member(c, seed=i) for i, c in enumerate(configs)])
        assert [r.status for r in results] == ["complete"] * 4
        for i, config in enumerate(configs):
            alone = trainer.fit(config, seed=i)
            if config["model.dropout"] == 0:
                _close(results[i], alone)
            else:
                assert abs(results[i].epochs[-1].val_loss - alone.epochs[-1].val_loss) < 0.2
    finally:
        spaces.models.unregister("declared_mlp")


def test_a_paused_member_with_dropout_continues_alone_and_joins_again(trainer, tmp_path):
    configs = [_config(**{"model.dropout": 0.25}), _config(SGD, **{"model.activation": "gelu"})]
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    members = [Member(c, seed=i, checkpoint=p) for i, (c, p) in enumerate(zip(configs, paths, strict=True))]
    paused = Population(trainer).fit(members, report=lambda i, e: "pause" if e.epoch == 1 else None)
    assert [r.status for r in paused] == ["paused", "paused"]
    alone = trainer.fit(configs[1], seed=1, checkpoint=paths[1])  # a plain run continues the member
    _close(alone, trainer.fit(configs[1], seed=1))
    resumed = Population(trainer).fit(members[:1])  # and a member continues (alone: too few to stack)
    assert resumed[0].status == "complete" and len(resumed[0].epochs) == 3
