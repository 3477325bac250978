"""search.Darts in studies: search then retrain, the routine's pause/resume, selection on a planted op, bad input."""

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import optuna
import pytest
import torch
from freezing import FREEZE, run_until_frozen
from torch import nn

from tunelab import search, spaces, studies, trainers
from tunelab.search.darts_routine import DartsSettings, choose, run_darts, score_edge
from tunelab.spaces import ConfigError, Genotype
from tunelab.studies.cli import main as cli
from tunelab.trainers.routines import RunRequest

FAST = {"epochs": 2, "pt_interval": 1, "batch_size": 32, "channels": 4, "arch_lr": 3e-3}


@pytest.fixture(scope="module")
def tiny():
    """MNIST-1D with 256 training examples (halves of 128 for the search), 2-epoch retraining."""
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)


def cell_space(ops=spaces.DEFAULT_OPS):
    fixed = spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"),
                         **{"adamw.lr": spaces.Fixed(3e-3), "adamw.weight_decay": spaces.Fixed(1e-4)})
    return fixed | spaces.cells(dim=1, ops=ops, channels=4, cells_per_stage=1)


def test_a_darts_study_searches_then_retrains_and_only_the_retrained_trial_can_be_best(tmp_path, tiny, capsys):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    study = studies.create("d", url, space=cell_space(), trainer=tiny, strategy=search.Darts(seed=0, **FAST))
    study.optimize(trials=3, progress=False)  # one search, one retraining, then the strategy has nothing more
    trials = study.trials
    assert [(t.routine, t.state) for t in trials] == [("darts", "complete"), ("train", "complete")]
    searched, retrained = trials
    settings = DartsSettings(**FAST)
    assert searched.epochs == len(searched.curve) == settings.total_epochs == 2 + 6
    assert "model.op_0_1" not in searched.config and searched.config["model.channels"] == 4  # the routine chose the ops
    res = searched.results
    assert len(res["alphas"]) == searched.epochs and len(res["alphas"][0]) == 6 and len(res["alphas"][0][0]) == 5
    assert all(abs(sum(row) - 1) < 1e-3 for row in res["alphas"][-1])
    assert set(res["scores"]) == {"0_1", "0_2", "1_2", "0_3", "1_3", "2_3"} and res["selection"] == "pt"
    genotype = Genotype.from_string(res["genotype"])
    assert searched.genotype == str(genotype) and 0.0 <= res["parameter_free_share"] <= 1.0
    # the retraining is an ordinary trial of the genotype, linked to its search, on the trainer's seed
    assert Genotype.from_config(retrained.config) == genotype and retrained.attrs["darts"]["search"] == 0
    assert retrained.seed == tiny.seed and retrained.test_metric is not None
    assert study.best.number == 1  # the supernet's value never competes
    # optuna and optuna-dashboard see the search's results as a user attribute
    frozen = optuna.load_study(study_name="d", storage=url).trials[0]
    assert frozen.user_attrs["darts"]["genotype"] == res["genotype"] and frozen.user_attrs["routine"] == "darts"
    assert "genotype" in study.dataframe().columns
    assert cli(["show", "--storage", url, "--study", "d"]) == 0
    assert res["genotype"] in capsys.readouterr().out
    page = study.report(tmp_path / "report")
    assert (tmp_path / "report" / "alphas-0.png").exists() and "Architecture searches" in page.read_text()


@pytest.mark.parametrize("order", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_the_routine_continues_bit_for_bit_after_pauses_in_search_and_selection(tmp_path, tiny, order):
    options = DartsSettings(order=order, **FAST).to_options()
    config = search.Darts(seed=0, **FAST).base_config(cell_space())
    config = {k: v for k, v in config.items() if not k.startswith("model.op_")}
    straight = run_darts(tiny, RunRequest(config, checkpoint=tmp_path / "a.pt", seed=5, options=options))
    path = tmp_path / "b.pt"
    for until in (1, 2, 3, 5, 8):  # pauses at the end of the search and between DARTS-PT decisions
        stepped = run_darts(tiny, RunRequest(config, until_epoch=until, checkpoint=path, seed=5, options=options))
    assert straight.status == stepped.status == "complete"
    assert [e.val_metric for e in stepped.epochs] == [e.val_metric for e in straight.epochs]
    assert [e.train_loss for e in stepped.epochs] == [e.train_loss for e in straight.epochs]
    assert stepped.attrs["alphas"] == straight.attrs["alphas"] and stepped.attrs["scores"] == straight.attrs["scores"]
    a, b = trainers.load_checkpoint(tmp_path / "a.pt"), trainers.load_checkpoint(path)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


class Garbage(nn.Module):
    """A planted bad operation: a deterministic, information-destroying function of its input."""

    def forward(self, x):
        return torch.sin(997.0 * x).detach()


@pytest.fixture(scope="module")
def easy():
    """A task a clean signal path solves at once: is the sum of the first 8 of 16 features positive?"""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(768, 16, generator=g)
    y = (x[:, :8].sum(1) > 0).long()
    workload = trainers.Workload.from_tensors(x[:512], y[:512], x_val=x[512:], y_val=y[512:], name="easy")
    return trainers.Trainer(workload, epochs=2, seed=0)


OPS3 = ("none", "skip", "garbage")


def test_darts_pt_keeps_the_planted_op_whose_removal_hurts(easy):
    spaces.cell_ops.register("garbage", spaces.CellOp(lambda c, dim: Garbage()))
    torch.manual_seed(0)
    model = search.Supernet(OPS3, channels=4, cells_per_stage=1, input_shape=(16,), n_outputs=2, dim=1)
    for e in (0, 1, 2, 4, 5):  # every edge but 0 -> 3 is absent: that edge carries all the signal
        model.fix(e, OPS3.index("none"))
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(8):  # the supernet's weights learn with both ops mixed on the edge (alphas uniform)
        for x, y in trainers.batches(easy.split("train"), 32, shuffle=True, generator=g):
            easy.workload.loss(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    base, scores = score_edge(model, 3, easy.split("val"), easy, 32)
    assert scores[OPS3.index("skip")] < 0.65 < base < scores[OPS3.index("garbage")]  # without skip: chance
    assert scores[OPS3.index("none")] == base
    assert choose(scores, "maximize") == OPS3.index("skip")


def test_alphas_learn_to_avoid_a_planted_bad_op(easy):
    spaces.cell_ops.register("garbage", spaces.CellOp(lambda c, dim: Garbage()))
    settings = DartsSettings(ops=OPS3, epochs=6, selection="argmax", batch_size=32, channels=4, arch_lr=1e-2)
    config = {"model": "cells", "model.dim": 1, "model.channels": 4, "model.cells_per_stage": 1}
    result = run_darts(easy, RunRequest(config, seed=0, options=settings.to_options()))
    first, last = result.attrs["alphas"][0], result.attrs["alphas"][-1]
    bad, good = OPS3.index("garbage"), OPS3.index("skip")
    assert sum(row[bad] - row[good] for row in last) < sum(row[bad] - row[good] for row in first) - 0.1
    assert Genotype.from_string(result.attrs["genotype"]).ops.count("skip") >= 5


def test_a_collapsed_search_says_so_in_its_attrs_and_warns(tmp_path, tiny):
    space = cell_space(ops=("none", "skip", "avgpool3x3"))  # every candidate is parameter-free
    study = studies.create("c", f"sqlite:///{tmp_path / 'c.db'}", space=space, trainer=tiny,
                           strategy=search.Darts(seed=0, selection="argmax", **FAST))
    with pytest.warns(UserWarning, match="collapsed"):
        study.optimize(trials=1, progress=False)
    res = study.trials[0].results
    assert res["collapsed"] is True and res["parameter_free_share"] == 1.0


def test_two_searches_run_in_parallel_workers_and_each_is_retrained(tmp_path, tiny):
    study = studies.create("w", f"sqlite:///{tmp_path / 'w.db'}", space=cell_space(), trainer=tiny,
                           strategy=search.Darts(seed=1, searches=2, selection="argmax", **FAST))
    study.optimize(trials=4, n_workers=2, progress=False)
    trials = study.trials
    searches = [t for t in trials if t.routine == "darts"]
    retrains = [t for t in trials if t.routine == "train"]
    assert len(searches) == len(retrains) == 2 and all(t.state == "complete" for t in trials)
    assert sorted(t.attrs["darts"]["search"] for t in retrains) == sorted(t.number for t in searches)
    assert {t.seed for t in searches} == {search.Darts(seed=1).run_seed(0), search.Darts(seed=1).run_seed(1)}


SCRIPT = FREEZE + textwrap.dedent(
    """
    import sys
    from tunelab import search, spaces, studies, trainers

    url = sys.argv[1]
    trainer = freeze_at(trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0))
    space = (spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"))
             | spaces.cells(dim=1, channels=4, cells_per_stage=1))
    strategy = search.Darts(seed=0, epochs=3, pt_interval=1, batch_size=32, channels=4, arch_lr=3e-3)
    study = studies.create("k", url, space=space, trainer=trainer, strategy=strategy)
    study.optimize(trials=2, progress=False, flush_seconds=0.0, checkpoint_seconds=0.0)
    """
)


@pytest.mark.slow  # three study processes (~30 s quiet); the pause/resume test above runs by default
def test_sigkill_mid_search_then_resume_ends_with_the_same_alphas_bit_for_bit(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    ref_url = f"sqlite:///{tmp_path / 'ref.db'}"
    subprocess.run([sys.executable, str(script), ref_url], check=True, timeout=1200)
    reference = studies.load("k", ref_url, read_only=True).trials

    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = run_until_frozen(script, [url], tmp_path / "frozen", 5)  # the search, 2 epochs into DARTS-PT
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr
    trials = studies.load("k", url, read_only=True).trials
    assert [(t.routine, t.state) for t in trials] == [("darts", "complete"), ("train", "complete")]
    assert trials[0].results == reference[0].results  # alphas per epoch, scores, genotype
    assert trials[0].curve == reference[0].curve and trials[1].value == reference[1].value


def test_bad_input_is_refused_with_the_fix(tmp_path, tiny):
    for kwargs, match in [({"order": 3}, "order must be 1"), ({"selection": "best"}, "selection must be"),
                          ({"epochs": 0}, r"epochs=\.\.\.\) must be"), ({"searches": 0}, r"searches=\.\.\.\) must be"),
                          ({"arch_betas": (0.5,)}, "arch_betas"), ({"config": {"model.op_0_1": "skip"}}, None)]:
        if match is None:
            strategy = search.Darts(**kwargs)
            with pytest.raises(ConfigError, match="leave them out"):
                strategy.base_config(cell_space())
            continue
        with pytest.raises(ConfigError, match=match):
            search.Darts(**kwargs)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(ConfigError, match=r"add spaces.cells\(dim=1\)"):
        studies.create("mlp", url, space=spaces.optimizers(["adamw"]) | spaces.mlp(), trainer=tiny,
                       strategy=search.Darts())
    fixed_op = cell_space().replace(**{"model.op_0_1": spaces.Fixed("conv3x3")})
    with pytest.raises(ConfigError, match="give every edge a choice"):
        studies.create("fixed", url, space=fixed_op, trainer=tiny, strategy=search.Darts())
    mixed = cell_space().replace(**{"model.op_0_1": spaces.Categorical(("skip", "conv1x1"))})
    with pytest.raises(ConfigError, match="same operations on every edge"):
        studies.create("mixed", url, space=mixed, trainer=tiny, strategy=search.Darts())
    small = trainers.Trainer(trainers.workloads.mnist1d(n_train=100, max_epochs=2), epochs=2)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        studies.create("small", url, space=cell_space(), trainer=small, strategy=search.Darts())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        studies.create("free", url, space=spaces.optimizers(["adamw"]) | spaces.cells(dim=1, channels=4),
                       trainer=tiny, strategy=search.Darts(**FAST))
    assert any("held at their defaults" in str(w.message) for w in caught)
    assert studies.load("free", url).trials == []


def test_routines_are_pluggable_and_a_request_is_checked_against_its_routine(tmp_path, tiny):
    from tunelab.trainers.routines import Routine, routines

    def halved(trainer, request):
        result = trainer.fit(request.config, until_epoch=request.until_epoch, checkpoint=request.checkpoint,
                             report=request.report, seed=request.seed, checkpoint_seconds=request.checkpoint_seconds)
        return trainers.TrainResult(**{**result.__dict__, "attrs": {"note": request.options["note"]}})

    routines.register("halved", Routine(halved, doc="a test routine"))
    try:
        class Once(search.Strategy):
            name = ""

            def ask(self, history):
                if history.trials:
                    return None
                config = history.space.complete({})
                return search.Request.start(config, routine="halved", options={"note": "hello"})

        study = studies.create("p", f"sqlite:///{tmp_path / 'p.db'}", space=cell_space(), trainer=tiny,
                               strategy=Once(seed=0))
        study.optimize(trials=1, progress=False)
        (trial,) = study.trials
        assert trial.routine == "halved" and trial.results == {"note": "hello"} and trial.state == "complete"
    finally:
        routines.unregister("halved")
    # an unknown routine, or options for the standard loop, are refused when the strategy asks
    driver_study = studies.create("q", f"sqlite:///{tmp_path / 'q.db'}", space=cell_space(), trainer=tiny,
                                  strategy=search.Random(seed=0))
    from tunelab.studies.driver import Budget, Driver

    driver = Driver(driver_study, Budget(trials=1), n_workers=1, executor="local", progress=False,
                    checkpoint_seconds=None, max_failures=3, flush_seconds=0.0)
    config = cell_space().complete({})
    with pytest.raises(ConfigError, match="unknown routine"):
        driver.planner.from_request(search.Request.start(config, routine="nope"))
    with pytest.raises(ConfigError, match="takes no options"):
        driver.planner.from_request(search.Request.start(config, options={"x": 1}))


def test_the_flops_cost_table_orders_the_operations_and_its_expected_cost_is_differentiable():
    from tunelab.search.op_costs import cost_gradient, cost_table, expected_cost

    ops = ("none", "skip", "conv1x1", "conv3x3", "avgpool3x3")
    table = cost_table(ops, 8, 1, 40, torch.device("cpu"), "flops")
    none, skip, c1, c3, _ = table.tolist()
    assert c3 == 1.0 and c1 < c3 and none == skip == 0.0
    alphas = torch.zeros(6, len(ops))
    assert float(expected_cost(alphas, table)) == pytest.approx(6 * float(table.mean()))
    grad, _ = cost_gradient(alphas, table)
    assert grad[0, 3] > 0 > grad[0, 1]  # raising conv3x3's weight costs, raising skip's saves


def test_a_cost_weight_makes_darts_choose_a_cheaper_cell(tmp_path, tiny):
    costs = {}
    for weight in (0.0, 10.0):
        study = studies.create(f"hw{weight}", f"sqlite:///{tmp_path / 'hw.db'}", space=cell_space(), trainer=tiny,
                               strategy=search.Darts(seed=0, selection="argmax", cost="flops", cost_weight=weight,
                                                     **{**FAST, "arch_lr": 0.05}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cheap cell is parameter-free: "collapsed" is expected here
            study.optimize(trials=1, progress=False)
        costs[weight] = study.trials[0].results["cost"]["genotype"]
    assert costs[10.0] < costs[0.0]
    with pytest.raises(ConfigError, match="cost_weight > 0 needs cost"):
        search.Darts(cost_weight=1.0)
