"""search.SelfTuning: hyperlayers, the best-response gradient, tuning that helps, replay, resume, bad input."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from freezing import FREEZE, run_until_frozen

from tunelab import search, spaces, studies, trainers
from tunelab.search.stn_routine import StnSettings, run_schedule, run_stn, schedule_at, to_value
from tunelab.spaces import ConfigError
from tunelab.spaces.stn import HyperConv, HyperLinear, build_stn_model, expand
from tunelab.trainers.routines import RunRequest


def reg_space(dropout=0.05, **extra):
    opt = spaces.Space(optimizer=spaces.Fixed("adam"), schedule=spaces.Fixed("constant"),
                       **{"adam.lr": spaces.Fixed(3e-3)})
    return opt | spaces.mlp(depth=2, width=32, activation="relu", dropout=spaces.Float(0.0, 0.9, default=dropout),
                            input_noise=spaces.Float(0.0, 1.0, default=0.05), shift=spaces.Int(0, 8, default=1),
                            **extra)


@pytest.fixture(scope="module")
def small():
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=4), epochs=4, seed=0)


def test_hyperlayers_equal_plain_layers_when_their_scaling_is_zero():
    torch.manual_seed(0)
    h = torch.randn(5, 3)
    lin = HyperLinear(7, 4, 3, zero_init=True)
    x = torch.randn(5, 7)
    torch.testing.assert_close(lin(x, h), F.linear(x, lin.elem.weight, lin.elem.bias))
    for dim, shape in ((1, (5, 2, 9)), (2, (5, 2, 6, 7))):
        conv = HyperConv(dim, 2, 4, 3, 3, padding=1, zero_init=True)
        x = torch.randn(*shape)
        torch.testing.assert_close(conv(x, h), conv.elem(x))
    # and with a scaling, each output unit's response is its own: y = W_e x + b_e + (U h) * (W_h x) + (U h) * b_h
    lin = HyperLinear(7, 4, 3)
    x = torch.randn(5, 7)
    s = h @ lin.scale.weight.T
    expected = lin.elem(x) + s[:, :4] * (x @ lin.hyper.weight.T) + s[:, 4:] * lin.hyper_bias
    torch.testing.assert_close(lin(x, h), expected)


def test_the_best_response_gradient_matches_finite_differences():
    torch.manual_seed(0)
    config = {**spaces.mlp(depth=2, width=8).default(), "model.dropout": 0.2}
    names = expand(config, ["model.dropout"])
    model = build_stn_model(config, (6,), 3, names).double().eval()
    for m in model.modules():  # a visible response: larger scalings than the N(0, 0.01) start
        if isinstance(m, HyperLinear):
            torch.nn.init.normal_(m.scale.weight, std=0.5)
    x, y = torch.randn(10, 6, dtype=torch.float64), torch.randint(0, 3, (10,))
    low, high = torch.zeros(2, dtype=torch.float64), torch.full((2,), 0.9, dtype=torch.float64)

    def loss(lam):
        h = lam.expand(10, 2)
        model.set_hyper(h, to_value(h, low, high))
        return F.cross_entropy(model(x), y)

    lam = torch.tensor([-1.0, 0.5], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(lam), lam)
    eps = 1e-6
    fd = torch.stack([(loss(lam.detach() + eps * e) - loss(lam.detach() - eps * e)) / (2 * eps)
                      for e in torch.eye(2, dtype=torch.float64)])
    assert grad.abs().max() > 1e-4
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-8)


def test_stn_lowers_validation_loss_over_a_deliberately_bad_fixed_dropout(tmp_path):
    # 512 examples, a 128-wide MLP and almost no regularisation: it overfits within a few epochs
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=512, max_epochs=24), epochs=24, batch_size=32,
                               seed=0)
    opt = spaces.Space(optimizer=spaces.Fixed("adam"), schedule=spaces.Fixed("constant"),
                       **{"adam.lr": spaces.Fixed(3e-3)})
    space = opt | spaces.mlp(depth=2, width=128, activation="relu", dropout=spaces.Float(0.0, 0.9, default=0.02),
                             input_noise=spaces.Float(0.0, 1.0, default=0.02), shift=spaces.Int(0, 8, default=0))
    common = {"tune": ["model.dropout", "model.input_noise", "model.shift"], "hyper_lr": 0.01, "replay": False}
    url = f"sqlite:///{tmp_path / 'b.db'}"
    tuned = studies.create("tuned", url, space=space, trainer=trainer,
                           strategy=search.SelfTuning(seed=0, warmup=1, **common))
    fixed = studies.create("fixed", url, space=space, trainer=trainer,  # the same network, never tuned
                           strategy=search.SelfTuning(seed=0, warmup=24, **common))
    tuned.optimize(trials=1, progress=False)
    fixed.optimize(trials=1, progress=False)
    t, f = tuned.trials[0], fixed.trials[0]
    assert f.results["schedule"]["model.dropout.1"][-1] == pytest.approx(0.02, abs=1e-6)
    assert t.results["schedule"]["model.dropout.1"][-1] > 0.08  # the tuned rate rose as the network overfit
    assert t.metrics["val_loss"][-1] < 0.75 * f.metrics["val_loss"][-1]
    assert t.value > f.value


def test_a_self_tuning_study_runs_then_replays_its_schedule(tmp_path, small, capsys):
    from tunelab.studies.cli import main as cli

    url = f"sqlite:///{tmp_path / 's.db'}"
    strategy = search.SelfTuning(seed=0, tune=["model.dropout", "model.input_noise", "model.shift"], warmup=1)
    study = studies.create("s", url, space=reg_space(), trainer=small, strategy=strategy)
    study.optimize(trials=3, progress=False)  # the run and its replay; then nothing more to do
    run, replay = study.trials
    assert (run.routine, replay.routine) == ("stn", "schedule") and run.state == replay.state == "complete"
    schedule = run.results["schedule"]
    assert set(schedule) == {"model.dropout.1", "model.dropout.2", "model.input_noise", "model.shift"}
    assert all(len(v) == 4 for v in schedule.values()) and run.test_metric is not None
    assert "model.dropout" not in run.config and run.config["model.width"] == 32  # learned, not configured
    assert replay.results["replayed"] == schedule and replay.attrs["stn"]["run"] == 0
    assert cli(["report", "--storage", url, "--study", "s", "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "schedule-0.png").exists()


def test_the_replay_sets_each_epochs_values_in_the_plain_network(small):
    schedule = {"model.dropout.1": [0.1, 0.3, 0.5, 0.7], "model.dropout.2": [0.2, 0.2, 0.2, 0.2],
                "model.shift": [0.4, 1.7, 2.2, 3.9]}
    assert schedule_at(schedule, {"model.shift": True}, 3) == {"model.dropout.1": 0.5, "model.dropout.2": 0.2,
                                                              "model.shift": 2}
    assert schedule_at(schedule, {}, 9)["model.dropout.1"] == 0.7  # past its end: the last values
    seen = []
    fit = small.fit

    def spy(config, *, before_epoch=None, **kw):
        def hook(model, epoch):
            before_epoch(model, epoch)
            mods = spaces.regularizers.regularization_modules(model)
            seen.append((mods["model.dropout.1"].p, mods["model.shift"].max_shift))
        return fit(config, before_epoch=hook, **kw)

    small.fit = spy
    try:
        config = {k: v for k, v in reg_space().default().items() if k not in ("model.dropout", "model.shift")}
        options = {"tune": ["model.dropout", "model.shift"], "schedule": schedule, "integer": {"model.shift": True}}
        result = run_schedule(small, RunRequest(config, options=options))
    finally:
        del small.fit
    assert result.status == "complete"
    assert seen == [(0.1, 0.0), (0.3, 1.0), (0.5, 2.0), (0.7, 3.0)]


@pytest.mark.parametrize("delta", [False, True])
def test_an_stn_run_continues_bit_for_bit_after_pauses(tmp_path, small, delta):
    strategy = search.SelfTuning(seed=0, tune=["model.dropout", "model.input_noise", "model.shift"], delta=delta,
                                 warmup=1)
    settings, config = strategy.settings(reg_space())
    options = settings.to_options()
    straight = run_stn(small, RunRequest(config, checkpoint=tmp_path / "a.pt", seed=3, options=options))
    for until in (1, 2, 4):
        stepped = run_stn(small, RunRequest(config, until_epoch=until, checkpoint=tmp_path / "b.pt", seed=3,
                                            options=options))
    assert straight.status == stepped.status == "complete"
    assert stepped.attrs["schedule"] == straight.attrs["schedule"]
    assert [e.val_loss for e in stepped.epochs] == [e.val_loss for e in straight.epochs]
    assert stepped.test_metric == straight.test_metric
    moved = [v[-1] != v[0] for v in straight.attrs["schedule"].values()]
    assert any(moved)  # the hyperparameters did move in these 4 epochs


SCRIPT = FREEZE + textwrap.dedent(
    """
    import sys
    from tunelab import search, spaces, studies, trainers

    url = sys.argv[1]
    trainer = freeze_at(trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=6), epochs=6, seed=0))
    space = (spaces.Space(optimizer=spaces.Fixed("adam"), schedule=spaces.Fixed("constant"))
             | spaces.mlp(depth=2, width=32, dropout=spaces.Float(0.0, 0.9, default=0.05),
                          shift=spaces.Int(0, 8, default=1)))
    strategy = search.SelfTuning(seed=0, tune=["model.dropout", "model.shift"], delta=True, warmup=1)
    study = studies.create("k", url, space=space, trainer=trainer, strategy=strategy)
    study.optimize(trials=2, progress=False, flush_seconds=0.0, checkpoint_seconds=0.0)
    """
)


@pytest.mark.slow  # three study processes (~30 s quiet); the pause/resume test above runs by default
def test_sigkill_mid_run_then_resume_ends_with_the_same_schedule(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    ref_url = f"sqlite:///{tmp_path / 'ref.db'}"
    subprocess.run([sys.executable, str(script), ref_url], check=True, timeout=1200)
    reference = studies.load("k", ref_url, read_only=True).trials
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = run_until_frozen(script, [url], tmp_path / "frozen", 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr
    trials = studies.load("k", url, read_only=True).trials
    assert [(t.routine, t.state) for t in trials] == [("stn", "complete"), ("schedule", "complete")]
    assert trials[0].results == reference[0].results and trials[0].curve == reference[0].curve
    assert trials[1].value == reference[1].value


def test_bad_input_is_refused_with_what_it_can_tune(tmp_path, small):
    with pytest.raises(ConfigError, match=r"cannot tune \['model.width'\]"):
        search.SelfTuning(tune=["model.width"])
    with pytest.raises(ConfigError, match=r"cannot tune \['adam.lr'\]"):
        search.SelfTuning(tune=["adam.lr", "model.dropout"])
    with pytest.raises(ConfigError, match="warmup"):
        search.SelfTuning(warmup=-1)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(ConfigError, match="does not have"):
        studies.create("no", url, space=spaces.mlp(), trainer=small,
                       strategy=search.SelfTuning(tune=["model.input_dropout"]))
    with pytest.raises(ConfigError, match="fixes it"):
        studies.create("fixed", url, space=spaces.mlp(dropout=0.3), trainer=small, strategy=search.SelfTuning())
    with pytest.raises(ConfigError, match="self-tuning networks exist"):
        studies.create("cells", url, space=spaces.cells(dim=1, channels=4) | spaces.Space(x=spaces.Float(0, 1)),
                       trainer=small, strategy=search.SelfTuning(tune=["model.dropout"]))
    with pytest.raises(ConfigError, match="incomplete"):
        StnSettings.from_options({"tune": ["model.dropout"]})


def test_a_diverging_stn_run_is_recorded_and_the_study_goes_on(tmp_path, small):
    space = (spaces.Space(optimizer=spaces.Fixed("sgd"), schedule=spaces.Fixed("constant"),
                          **{"sgd.lr": spaces.Float(1e-3, 1e9, log=True, default=1e8)})
             | spaces.mlp(depth=1, width=16, dropout=spaces.Float(0.0, 0.9, default=0.1)))
    study = studies.create("div", f"sqlite:///{tmp_path / 'd.db'}", space=space, trainer=small,
                           strategy=search.SelfTuning(seed=0, runs=2, warmup=1))
    study.optimize(trials=2, progress=False)
    trials = study.trials
    assert [t.state for t in trials] == ["failed", "failed"] and all("diverged" in t.error for t in trials)
