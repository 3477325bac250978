"""The driver loop: failures, divergence, budgets in every unit, Ctrl-C, worker pools, CLI."""

import os
import signal

import pytest
import torch
from conftest import small_space
from torch import nn

from tunelab import search, spaces, studies, trainers
from tunelab.studies.cli import main


class Flaky(nn.Module):
    """An MLP that, in training mode only, raises or returns NaN depending on its `mode`."""

    def __init__(self, mode, input_shape, n_outputs):
        super().__init__()
        self.mode = mode
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), n_outputs))

    def forward(self, x):
        out = self.net(x)
        if self.training and self.mode.startswith("raise"):
            raise RuntimeError("boom in user code")
        if self.training and self.mode == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        if self.training and self.mode == "nan":
            return out * float("nan")
        return out


@pytest.fixture
def flaky():
    spaces.models.register(
        "flaky", spaces.ModelSpec(lambda hp, shape, n: Flaky(hp["mode"], shape, n), reference="test")
    )

    def space(modes):
        return spaces.optimizers(["adamw"]) | spaces.model_space("flaky", mode=spaces.Categorical(modes))

    return space


def test_failing_and_diverging_trials_are_recorded_and_the_study_goes_on(tmp_path, small_trainer, flaky):
    study = studies.create("f", f"sqlite:///{tmp_path / 'f.db'}", space=flaky(("ok", "raise", "nan", "oom")),
                           trainer=small_trainer, strategy=search.Random(seed=0))
    study.optimize(trials=16, progress=False)
    trials = study.trials
    assert len(trials) == 16
    by_mode = {m: [t for t in trials if t.config["model.mode"] == m] for m in ("ok", "raise", "nan", "oom")}
    assert all(by_mode.values()), "seed 0 should draw every mode"
    assert all(t.state == "complete" and t.error is None for t in by_mode["ok"])
    assert all(t.state == "failed" and "RuntimeError: boom in user code" in t.error for t in by_mode["raise"])
    assert all(t.state == "failed" and t.error.startswith("diverged") for t in by_mode["nan"])
    assert all(t.state == "failed" and t.error.startswith("out of memory") for t in by_mode["oom"])
    assert study.best.config["model.mode"] == "ok"
    # the strategy sees failed trials (so model-based strategies can treat them as bad)
    assert {t.state for t in study.history().trials} == {"complete", "failed"}


def test_a_bug_that_fails_every_trial_stops_the_study(tmp_path, small_trainer, flaky):
    study = studies.create("b", f"sqlite:///{tmp_path / 'b.db'}", space=flaky(("raise", "raise2")),
                           trainer=small_trainer)
    with pytest.raises(studies.TrialError, match=r"last 3 trials all raised.*boom in user code"):
        study.optimize(trials=20, progress=False)
    assert len(study.trials) == 3 and all(t.state == "failed" for t in study.trials)


@pytest.mark.parametrize(("unit", "amount", "trials"), [("epochs", 7, 3), ("grad_evals", 13, 2)])
def test_epoch_and_grad_eval_budgets_are_study_totals(tmp_path, small_trainer, unit, amount, trials):
    study = studies.create("e", f"sqlite:///{tmp_path / 'e.db'}", space=small_space(), trainer=small_trainer)
    study.optimize(**{unit: amount}, progress=False)
    # 2 epochs x 3 steps = 6 grad evals per trial: 7 epochs fit 3 trials, 13 grad evals fit 2
    assert len(study.trials) == trials
    assert sum(getattr(t, unit) for t in study.trials) <= amount
    study.optimize(**{unit: amount}, progress=False)
    assert len(study.trials) == trials


def test_grad_eval_budget_charges_sams_second_pass(tmp_path, small_trainer):
    space = spaces.optimizers(["sam"]) | spaces.mlp(width=16, depth=1)
    study = studies.create("g", f"sqlite:///{tmp_path / 'g.db'}", space=space, trainer=small_trainer)
    study.optimize(grad_evals=24, progress=False)
    assert [t.grad_evals for t in study.trials] == [12, 12]  # 2 epochs x 3 steps x 2 passes


class CtrlCAt(trainers.Trainer):
    """Presses Ctrl-C (SIGINT to this process) at the end of epoch `at` of its first run."""

    at = 3
    pressed = False

    def fit(self, config, *, report=None, **kwargs):
        def press(epoch):
            if epoch.epoch == self.at and not CtrlCAt.pressed:
                CtrlCAt.pressed = True
                os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next bytecode
            return report(epoch)

        return super().fit(config, report=press, **kwargs)


def test_ctrl_c_pauses_the_running_trial_raises_and_optimize_continues_it(tmp_path):
    CtrlCAt.pressed = False
    trainer = CtrlCAt(trainers.workloads.mnist1d(n_train=512, max_epochs=8), epochs=8, seed=0)
    space = spaces.optimizers(["adamw"]) | spaces.mlp(width=64, depth=1)
    ref = trainers.Trainer(trainer.workload, epochs=8, seed=0).fit(space.default())

    study = studies.create("c", f"sqlite:///{tmp_path / 'c.db'}", space=space, trainer=trainer,
                           strategy=search.Enqueue([space.default()]))
    after = []
    with pytest.raises(KeyboardInterrupt):
        study.optimize(trials=1, progress=False, checkpoint_seconds=None)
        after.append("the script went on")  # must not run: the study did not finish
    assert after == []
    (paused,) = study.trials
    assert paused.state == "paused" and paused.epochs == 3
    assert study.checkpoint(0) is not None
    study.optimize(trials=1, progress=False)
    (done,) = study.trials
    assert done.state == "complete" and done.epochs == 8
    assert done.curve == [e.val_metric for e in ref.epochs]  # continued bit for bit from the checkpoint


def test_a_local_process_pool_runs_trials_in_parallel(tmp_path, small_trainer):
    serial = studies.create("s", f"sqlite:///{tmp_path / 's.db'}", space=small_space(), trainer=small_trainer,
                            strategy=search.Random(seed=5))
    serial.optimize(trials=4, progress=False)
    pool = studies.create("p", f"sqlite:///{tmp_path / 'p.db'}", space=small_space(), trainer=small_trainer,
                          strategy=search.Random(seed=5))
    pool.optimize(trials=4, n_workers=2, progress=False)
    assert [t.state for t in pool.trials] == ["complete"] * 4
    assert [t.config for t in pool.trials] == [t.config for t in serial.trials]
    for a, b in zip(pool.trials, serial.trials, strict=True):
        assert len(a.curve) == 2 and a.value == pytest.approx(b.value, abs=0.02)


def test_bad_optimize_settings(tmp_path, small_trainer):
    study = studies.create("o", f"sqlite:///{tmp_path / 'o.db'}", space=small_space(), trainer=small_trainer)
    with pytest.raises(studies.ConfigError, match="n_workers"):
        study.optimize(trials=1, n_workers=0)
    with pytest.raises(studies.ConfigError, match="executor must be one of"):
        study.optimize(trials=1, executor="cluster", progress=False)
    with pytest.raises(studies.ConfigError, match="apply to executor='ray' only"):
        study.optimize(trials=1, ray_address="auto", progress=False)
    with pytest.raises(studies.ConfigError, match="2 worker slots"):
        study.optimize(trials=1, n_workers=3, executor=studies.ProcessExecutor(2), progress=False)


def test_cli_list_show_resume_report(tmp_path, small_trainer, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    study = studies.create("cli", url, space=small_space(), trainer=small_trainer, strategy=search.Random(seed=0))
    study.optimize(trials=2, progress=False)
    assert main(["list", "--storage", url]) == 0
    assert "cli" in capsys.readouterr().out
    assert main(["resume", "--storage", url, "--trials", "4", "--quiet"]) == 0
    assert len(studies.load("cli", url).trials) == 4
    capsys.readouterr()
    assert main(["show", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "best: trial" in out and out.count("complete") >= 4
    assert main(["report", "--storage", url, "--study", "cli", "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "README.md").read_text()
    assert "## Best trial" in md and "history.png" in md and "curves.png" in md
    assert (tmp_path / "rep" / "history.png").stat().st_size > 1000
    assert main(["show", "--storage", url, "--study", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_a_strategy_chosen_seed_is_used_recorded_and_kept_when_an_interrupted_trial_is_requeued(tmp_path,
                                                                                                 small_trainer):
    from tunelab.studies.driver import Budget, Driver
    from tunelab.studies.records import TrialState

    space = small_space()
    config = space.default()
    study = studies.create("seeded", f"sqlite:///{tmp_path / 's.db'}", space=space, trainer=small_trainer,
                           strategy=search.Enqueue([config, config], seeds=[7, 8]))
    driver = Driver(study, Budget(trials=2), n_workers=1, executor="local", progress=False, checkpoint_seconds=None,
                    max_failures=1, flush_seconds=0.0)
    driver.load()
    # a trial left running by a driver that died before its first checkpoint
    driver.recorder.create_trial(config, proposal=0, target=small_trainer.epochs, attrs={}, state=TrialState.RUNNING,
                                 seed=7)
    study.optimize(trials=2, progress=False)
    trials = study.trials
    assert [t.state for t in trials] == ["failed", "complete", "complete"]
    retry, second = trials[1], trials[2]
    assert retry.retry_of == 0 and retry.seed == 7 and second.seed == 8
    assert retry.value == pytest.approx(small_trainer.fit(config, seed=7).val_metric)
    assert second.value == pytest.approx(small_trainer.fit(config, seed=8).val_metric)
    assert retry.metrics["train_loss"] != second.metrics["train_loss"]  # another seed, another run
