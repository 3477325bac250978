"""Your own code tuned: `trainers.Objective` (a black box) and `trainers.Function` (your training loop)."""

import functools
import math
import re
import sqlite3
import sys
from pathlib import Path

import pytest
import torch

from tunelab import search, spaces, studies, trainers
from tunelab.studies.cli import main
from tunelab.trainers.function import RunStopped

SPACE = spaces.Space(x=spaces.Float(-2.0, 2.0), y=spaces.Float(-2.0, 2.0))
LR_SPACE = spaces.Space(lr=spaces.Float(0.05, 0.5, log=True), noise=spaces.Float(0.0, 0.1))


def bowl(config):
    """A black box: a value to minimise, and another result recorded with it."""
    value = (config["x"] - 0.5) ** 2 + (config["y"] + 1.0) ** 2
    return {"value": value, "radius": math.hypot(config["x"], config["y"])}


def returns_nan(config):
    return math.nan


def returns_text(config):
    return {"value": "low"}


def forgets_the_metric(config):
    return {"score": 1.0}


def raises_for_large_x(config):
    if config["x"] > 0:
        raise RuntimeError(f"x={config['x']:.2f} is not supported")
    return config["x"] ** 2


def descent(config, run):
    """A small training loop: gradient steps on a noisy quadratic, its state saved every epoch (global RNG used)."""
    state = run.load()
    w = torch.tensor([3.0]) if state is None else state["w"]
    for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
        for _ in range(5):
            w = w - config["lr"] * 2 * w + config["noise"] * torch.randn(1)
        decision = run.report(loss=float(w.pow(2).item()), grad_evals=5, norm=float(w.abs().item()))
        run.save({"w": w, "epoch": epoch})
        if decision != "continue":
            return


def _url(tmp_path, name="u.db"):
    return f"sqlite:///{tmp_path / name}"


# ------------------------------------------------------------------------------------------ Objective
@pytest.mark.parametrize("strategy", [search.Random(seed=0), search.OptunaSampler("tpe", seed=0),
                                      search.Evolution(population=4, sample=2, seed=0), search.Bayesian(seed=0)],
                         ids=["random", "tpe", "evolution", "bayesian"])
def test_an_objective_is_tuned_and_every_value_it_returns_is_recorded(tmp_path, strategy):
    study = studies.create("o", _url(tmp_path), space=SPACE, trainer=trainers.Objective(bowl), strategy=strategy)
    best = study.optimize(trials=7, progress=False)
    trials = study.trials
    assert len(trials) == 7 and all(t.state == "complete" and t.epochs == 1 for t in trials)
    assert best.value == min(t.value for t in trials)
    assert all(t.metrics["radius"] == [pytest.approx(math.hypot(t.config["x"], t.config["y"]))] for t in trials)
    assert study.dataframe()["value"].notna().all()


def test_an_objective_runs_enqueued_configurations_and_a_budget_in_seconds(tmp_path):
    configs = [{"x": 0.5, "y": -1.0}, {"x": 0.0, "y": 0.0}]
    study = studies.create("e", _url(tmp_path), space=SPACE, trainer=trainers.Objective(bowl),
                           strategy=search.Enqueue(configs))
    assert study.optimize(trials=2, progress=False).value == 0.0
    timed = studies.create("t", _url(tmp_path), space=SPACE, trainer=trainers.Objective(bowl))
    timed.optimize(seconds=0.5, progress=False)
    assert len(timed.trials) >= 1


def test_an_objective_that_fails_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path):
    url = _url(tmp_path)
    flaky = studies.create("r", url, space=SPACE, trainer=trainers.Objective(raises_for_large_x),
                           strategy=search.Random(seed=0))
    flaky.optimize(trials=8, progress=False, max_failures=8)
    failed = [t for t in flaky.trials if t.state == "failed"]
    assert failed and all("RuntimeError: x=" in t.error for t in failed)
    assert any(t.state == "complete" for t in flaky.trials)
    for fn, message in ((returns_nan, "diverged: the objective 'value' was nan in epoch 1"),
                        (returns_text, "reported value='low', which is not a number"),
                        (forgets_the_metric, "without 'value', the metric it optimises")):
        study = studies.create(fn.__name__, url, space=SPACE, trainer=trainers.Objective(fn))
        study.optimize(trials=1, progress=False)
        (t,) = study.trials
        assert t.state == "failed" and message in t.error, t.error


def test_strategies_that_need_curves_or_networks_refuse_user_code_naming_why(tmp_path):
    url = _url(tmp_path)
    objective = trainers.Objective(bowl)
    for strategy in (search.FreezeThaw(seed=0), search.ASHA(seed=0), search.Hyperband(seed=0),
                     search.Evolution(seed=0, short_epochs=1)):
        with pytest.raises(studies.ConfigError, match=r"evaluates a configuration once \(epochs=1\).*"
                                                      r"trainers.Function"):
            studies.create(f"mf-{strategy.name}", url, space=SPACE, trainer=objective, strategy=strategy)
    function = trainers.Function(descent, epochs=4, metric="loss", direction="minimize")
    cells = spaces.optimizers(["adamw"]) | spaces.cells(dim=1)
    for strategy in (search.Darts(seed=0), search.SelfTuning(seed=0)):
        with pytest.raises(studies.ConfigError, match=r"trains tunelab's networks itself.*cannot tune Function"):
            studies.create(f"r-{strategy.name}", url, space=cells, trainer=function, strategy=strategy)
    study = studies.create("pop", url, space=LR_SPACE, trainer=function)
    with pytest.raises(studies.ConfigError, match=r"population=4 .*cannot be vectorised"):
        study.optimize(trials=4, population=4, progress=False)
    with pytest.raises(studies.ConfigError, match=r"a function defined at the top level"):
        trainers.Objective(lambda config: 1.0)
    with pytest.raises(studies.ConfigError, match=r"direction=\.\.\.\) must be 'minimize' or 'maximize'"):
        trainers.Function(descent, epochs=3, metric="loss", direction="down")


def shifted_bowl(config, centre, scale=1.0):
    """One objective of a family, told apart by the arguments a functools.partial binds."""
    return scale * ((config["x"] - centre) ** 2 + config["y"] ** 2)


def test_a_partial_of_a_top_level_function_is_stored_with_its_arguments_and_reopens_with_trust(tmp_path):
    url = _url(tmp_path)
    objective = trainers.Objective(functools.partial(shifted_bowl, centre=0.5, scale=2.0), name="bowl-0.5")
    study = studies.create("p", url, space=SPACE, trainer=objective, strategy=search.Random(seed=0))
    study.optimize(trials=3, progress=False)
    assert study.stored_trainer["workload"]["bound"] == {"args": [], "kwargs": {"centre": 0.5, "scale": 2.0}}
    reopened = studies.load("p", url, trust=["test_user_code"])
    reopened.optimize(trials=4, progress=False)
    (t,) = [t for t in reopened.trials if t.number == 3]
    assert t.value == pytest.approx(2.0 * ((t.config["x"] - 0.5) ** 2 + t.config["y"] ** 2))
    other = trainers.Objective(functools.partial(shifted_bowl, centre=-0.5), name="bowl-0.5")
    with pytest.raises(studies.StudyConflictError):  # other bound arguments are another objective
        studies.create("p", url, space=SPACE, trainer=other)
    with pytest.raises(studies.ConfigError, match=r"binds .*which a study cannot store"):
        trainers.Objective(functools.partial(shifted_bowl, centre=object()))


# ------------------------------------------------------------------------------------------ Function
def test_a_function_paused_and_continued_gives_the_values_of_an_uninterrupted_run(tmp_path):
    fn = trainers.Function(descent, epochs=6, metric="loss", direction="minimize", seed=3)
    config = {"lr": 0.1, "noise": 0.05}
    straight = fn.fit(config, checkpoint=tmp_path / "a.pt")
    for until in (2, 3, 6):
        stepped = fn.fit(config, until_epoch=until, checkpoint=tmp_path / "b.pt")
        assert stepped.status == ("complete" if until == 6 else "paused")
    assert [e.val_metric for e in stepped.epochs] == [e.val_metric for e in straight.epochs]
    assert [e.extra["norm"] for e in stepped.epochs] == [e.extra["norm"] for e in straight.epochs]
    assert stepped.grad_evals == straight.grad_evals == 30


@pytest.mark.parametrize("strategy", [search.ASHA(seed=0, min_epochs=1), search.FreezeThaw(seed=0, candidates=16,
                                                                                            fit_maxiter=10)],
                         ids=["asha", "freeze_thaw"])
def test_multi_fidelity_strategies_pause_and_continue_a_function_exactly(tmp_path, strategy):
    fn = trainers.Function(descent, epochs=9, metric="loss", direction="minimize")
    study = studies.create("mf", _url(tmp_path), space=LR_SPACE, trainer=fn, strategy=strategy)
    study.optimize(epochs=30, progress=False)
    trials = study.trials
    assert sum(t.epochs for t in trials) <= 30 and any(t.epochs > 1 for t in trials)
    continued = [t for t in trials if t.epochs > 1]
    for t in continued[:3]:  # a trial continued from its saves has the curve of one run
        straight = fn.fit(t.config, seed=t.seed, until_epoch=t.epochs)
        assert t.curve == [e.val_metric for e in straight.epochs]
    assert all(t.grad_evals == 5 * t.epochs for t in trials)


def test_budgets_in_epochs_and_in_reported_gradient_evaluations(tmp_path):
    fn = trainers.Function(descent, epochs=4, metric="loss", direction="minimize")
    study = studies.create("b", _url(tmp_path), space=LR_SPACE, trainer=fn)
    study.optimize(epochs=10, progress=False)
    assert sum(t.epochs for t in study.trials) <= 10
    evals = studies.create("g", _url(tmp_path), space=LR_SPACE, trainer=fn)
    evals.optimize(grad_evals=45, progress=False)
    assert sum(t.grad_evals for t in evals.trials) == 40  # what was reported: two full runs of 20


def misuses_report(config, run):
    run.report(loss=1.0)
    run.report(loss=0.5)  # the run has one epoch: tunelab answered "stop"


def saves_a_module(config, run):
    run.report(loss=1.0)
    run.save({"model": torch.nn.Linear(2, 2)})


def never_reports(config, run):
    return None


def pauses_without_saving(config, run):
    for _ in range(run.start_epoch + 1, run.until_epoch + 1):
        if run.report(loss=1.0) != "continue":
            return


def test_a_function_that_misuses_run_fails_its_trial_with_the_fix(tmp_path):
    url = _url(tmp_path)
    cases = [(misuses_report, 1, "run.report was called after tunelab answered 'stop'"),
             (saves_a_module, 1, r"state\['model'\] is a torch.nn.modules.linear.Linear.*call \.state_dict\(\)"),
             (never_reports, 2, r"returned without reporting an epoch; call run\.report\(loss=\.\.\.\)")]
    for fn, epochs, message in cases:
        study = studies.create(fn.__name__, url, space=LR_SPACE,
                               trainer=trainers.Function(fn, epochs=epochs, metric="loss", direction="minimize"))
        study.optimize(trials=1, progress=False)
        (t,) = study.trials
        assert t.state == "failed" and re.search(message, t.error), t.error
    with pytest.raises(RunStopped):
        trainers.Function(misuses_report, epochs=1, metric="loss", direction="minimize").fit({"lr": 0.1})
    paused = studies.create("p", url, space=LR_SPACE, strategy=search.ASHA(seed=0, min_epochs=1),
                            trainer=trainers.Function(pauses_without_saving, epochs=3, metric="loss",
                                                      direction="minimize"))
    paused.optimize(epochs=2, progress=False)
    assert all(t.state == "failed" and "without run.save(...)" in t.error for t in paused.trials)


def fails_once(config, run):
    marker = Path(config["marker"])
    state = run.load()
    w = 0.0 if state is None else state["w"]
    for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
        if epoch == 3 and not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("a transient fault")
        w += 1.0
        decision = run.report(loss=10.0 - w)
        run.save({"w": w})
        if decision != "continue":
            return


def test_a_retried_function_continues_from_its_last_save(tmp_path):
    space = spaces.Space(marker=spaces.Fixed(str(tmp_path / "failed")))
    study = studies.create("retry", _url(tmp_path), space=space,
                           trainer=trainers.Function(fails_once, epochs=5, metric="loss", direction="minimize"))
    study.optimize(trials=1, max_retries=1, progress=False)
    (t,) = study.trials
    assert t.state == "complete" and t.curve == [9.0, 8.0, 7.0, 6.0, 5.0]  # epochs 1-2 kept, 3-5 after the retry


def test_a_function_trains_in_a_process_pool_and_a_lambda_is_refused_before_anything_starts(tmp_path):
    fn = trainers.Function(descent, epochs=3, metric="loss", direction="minimize")
    study = studies.create("pool", _url(tmp_path), space=LR_SPACE, trainer=fn)
    study.optimize(trials=4, n_workers=2, progress=False)
    assert [t.state for t in study.trials] == ["complete"] * 4
    unpicklable = trainers.Function(descent, epochs=3, metric="loss", direction="minimize")
    unpicklable.fn = lambda config, run: None  # as if the function could not be imported by a worker
    refused = studies.create("lam", _url(tmp_path, "l.db"), space=LR_SPACE, trainer=fn)
    refused.trainer = unpicklable
    with pytest.raises(studies.ConfigError, match=r"cannot be sent to worker processes"):
        refused.optimize(trials=2, n_workers=2, progress=False)
    assert refused.trials == []


def test_a_stored_function_reopens_only_with_trust_and_a_scripts_function_says_how(tmp_path, capsys, monkeypatch):
    url = _url(tmp_path)
    fn = trainers.Function(descent, epochs=3, metric="loss", direction="minimize")
    studies.create("s", url, space=LR_SPACE, trainer=fn).optimize(trials=2, progress=False)
    assert main(["show", "--storage", url, "--study", "s"]) == 0  # reading imports nothing
    assert main(["list", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "untrusted code: test_user_code:descent" in out
    assert main(["resume", "--storage", url, "--study", "s", "--trials", "3", "--quiet"]) == 2
    assert "--trust test_user_code" in capsys.readouterr().err
    assert main(["resume", "--storage", url, "--study", "s", "--trials", "3", "--quiet", "--trust",
                 "test_user_code"]) == 0
    assert len(studies.load("s", url, read_only=True).trials) == 3
    with sqlite3.connect(tmp_path / "u.db") as conn:  # as if the study were run from a script
        conn.execute("UPDATE study_user_attributes SET value_json = replace(value_json, 'test_user_code:descent', "
                     "'__main__:descent') WHERE key = 'tunelab:trainer'")
    assert main(["resume", "--storage", url, "--study", "s", "--trials", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a function of the script that ran it; rerun that script" in err and "--function module:descent" in err
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert main(["resume", "--storage", url, "--study", "s", "--trials", "4", "--quiet", "--function",
                 "test_user_code:descent"]) == 0
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the shared trainer
class Jittered(torch.utils.data.Dataset):
    """Examples with random noise added each time they are read (augmentation); it keeps every noise it drew."""

    def __init__(self, x, y):
        self.x, self.y, self.drawn = x, y, []

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        noise = 0.5 * torch.randn_like(self.x[i])
        self.drawn.append((i, noise))
        return self.x[i] + noise, self.y[i]


def f1(outputs, y):
    pred = outputs.argmax(1)
    tp = ((pred == 1) & (y == 1)).sum().item()
    fp = ((pred == 1) & (y == 0)).sum().item()
    fn = ((pred == 0) & (y == 1)).sum().item()
    return 2 * tp / max(1, 2 * tp + fp + fn)


def smoothed(outputs, y):
    return torch.nn.functional.cross_entropy(outputs, y, label_smoothing=0.1)


def test_random_augmentation_is_drawn_anew_every_epoch_and_named_metrics_are_recorded(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = (x[:, 0] > 0).long()
    train = Jittered(x, y)
    workload = trainers.Workload.from_datasets(train, torch.utils.data.TensorDataset(x, y), n_outputs=2,
                                               metrics={"f1": f1}, objective="f1", direction="maximize",
                                               loss=smoothed)
    assert not isinstance(workload.train, trainers.TensorSplit)  # random items are never read once into memory
    train.drawn.clear()  # from_datasets read a few items to learn their shape and whether they vary
    trainer = trainers.Trainer(workload, epochs=2, batch_size=32, seed=0)
    result = trainer.fit(spaces.mlp(depth=1, width=8).default())
    assert len(train.drawn) == 2 * 128  # every example read once per epoch
    first = dict((i, n) for i, n in train.drawn[:128])
    second = dict((i, n) for i, n in train.drawn[128:])
    assert sorted(first) == sorted(second) == list(range(128))
    assert not any(torch.equal(first[i], second[i]) for i in range(128))  # new noise each epoch
    assert result.status == "complete" and 0.0 <= result.val_metric <= 1.0
    assert trainer.metric == "f1" and trainer.direction == "maximize" and not trainer.vectorises
    study = studies.create("aug", _url(tmp_path), space=spaces.optimizers(["adamw"]) | spaces.mlp(depth=1, width=8),
                           trainer=trainer)
    assert study.direction == "maximize"
    study.optimize(trials=2, progress=False)
    assert all(len(t.curve) == 2 and 0.0 <= t.value <= 1.0 for t in study.trials)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
