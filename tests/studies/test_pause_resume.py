"""Pause and thaw through the study's artifact store: exact state, retention, and SIGKILL + resume."""

import os
import signal
import subprocess
import sys
import textwrap

import optuna
import pytest
import torch
from conftest import small_space
from freezing import FREEZE, run_until_frozen

from tunelab import search, studies, trainers
from tunelab.search import Request, Strategy


class PauseThenThaw(Strategy):
    """Starts one config for 2 epochs, then resumes it to 5 (a scripted multi-fidelity strategy)."""

    name = "test_pause_then_thaw"

    def ask(self, history):
        if not history.trials:
            return Request.start(history.space.sample(self.rng(history)), epochs=2)
        t = history.trials[0]
        if t.state == "paused":
            return Request.resume(t.number, until_epoch=5, attrs={"thawed": True})
        return None


@pytest.fixture(scope="module")
def trainer5():
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=512, max_epochs=5), epochs=5, seed=0)


def test_a_paused_trial_resumes_with_exactly_the_state_it_paused_with(tmp_path, trainer5):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = studies.create("p", url, space=small_space(), trainer=trainer5, strategy=PauseThenThaw(seed=0))
    study.optimize(epochs=2, progress=False)
    (paused,) = study.trials
    assert paused.state == "paused" and paused.epochs == 2
    assert studies.load("p", url).trials[0].state == "paused"  # visible from the database
    ckpt = study.checkpoint(0)
    assert ckpt is not None and ckpt.parent == study.artifacts / study.folder  # the study's own folder
    at_pause = trainers.load_checkpoint(ckpt)

    # the same config trained straight to epoch 2 has the same weights, optimizer and RNG state
    straight = trainer5.fit(paused.config, until_epoch=2, checkpoint=tmp_path / "straight.pt")
    ref = trainers.load_checkpoint(tmp_path / "straight.pt")
    for key in ("model", "optimizer"):
        flat_a, flat_b = _tensors(at_pause[key]), _tensors(ref[key])
        assert len(flat_a) == len(flat_b) and all(torch.equal(a, b) for a, b in zip(flat_a, flat_b, strict=True))
    assert at_pause["step"] == ref["step"] and at_pause["epoch"] == 2 == straight.epochs[-1].epoch

    study.optimize(epochs=5, progress=False)  # thaw: 3 more epochs from the checkpoint
    (thawed,) = study.trials
    assert thawed.state == "complete" and thawed.epochs == 5 and thawed.attrs == {"thawed": True}
    whole = trainer5.fit(paused.config)  # never paused
    assert thawed.curve == [e.val_metric for e in whole.epochs]
    assert thawed.metrics["train_loss"] == [e.train_loss for e in whole.epochs]
    assert thawed.value == whole.val_metric
    assert sum(t.epochs for t in study.trials) == 5  # the thaw trained 3 epochs, not 5


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for k in sorted(tree, key=str) for t in _tensors(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []


def test_a_resume_of_a_trial_whose_checkpoint_is_gone_fails_it_and_the_study_goes_on(tmp_path, trainer5):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = studies.create("p", url, space=small_space(), trainer=trainer5, strategy=PauseThenThaw(seed=0))
    study.optimize(epochs=2, progress=False)
    study.checkpoint(0).unlink()
    study.optimize(epochs=5, progress=False)
    (t,) = study.trials
    assert t.state == "failed" and "checkpoint" in t.error and "missing" in t.error


def test_hyperband_retires_the_rung_losers_and_frees_their_checkpoints(tmp_path, trainer5):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = studies.create("hb", url, space=small_space(), trainer=trainer5, strategy=search.Hyperband(seed=0))
    # bracket 0 (R=5, eta=3): 3 configs x 2 epochs, best one to 5
    study.optimize(epochs=12, progress=False, keep_checkpoints="best")
    states = [t.state for t in study.trials]
    assert states.count("complete") == 1 and states.count("pruned") == 2
    best = study.best
    assert best.epochs == 5
    on_disk = sorted(p.name for p in (study.artifacts / study.folder).glob("*.pt"))
    assert len(on_disk) == 1  # only the best complete trial keeps its checkpoint
    pruned = [t for t in study.trials if t.state == "pruned"]
    assert all(t.epochs == 2 and t.value == t.curve[-1] and t.attrs == {"bracket": 0} for t in pruned)
    assert all(t.curve[1] <= best.curve[1] for t in pruned)  # the losers had lower accuracy at epoch 2


SCRIPT = FREEZE + textwrap.dedent(
    """
    import sys
    from tunelab import search, spaces, studies, trainers

    url = sys.argv[1]
    trainer = freeze_at(trainers.Trainer(trainers.workloads.mnist1d(n_train=1000), epochs=8, seed=0))
    space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(16, 64, log=True), depth=1)
    strategy = search.FreezeThaw(seed=0, n_initial=3, candidates=64)
    study = studies.create("ft", url, space=space, trainer=trainer, strategy=strategy)
    study.optimize(epochs=36, progress=False, flush_seconds=0.0)
    """
)


@pytest.mark.slow  # about 20 s: three study processes
def test_sigkill_a_freeze_thaw_study_then_resume_continues_every_paused_trial(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    ref_url = f"sqlite:///{tmp_path / 'ref.db'}"
    subprocess.run([sys.executable, str(script), ref_url], check=True, timeout=600)
    reference = studies.load("ft", ref_url).history()

    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = run_until_frozen(script, [url], tmp_path / "frozen", 17)  # mid-increment, after 17 epochs trained
    trials = optuna.load_study(study_name="ft", storage=url).get_trials()
    paused = [t for t in trials if t.system_attrs.get("tunelab:state") == "paused"]
    running = [t for t in trials if t.system_attrs.get("tunelab:state") == "running"]
    assert sum(len(t.intermediate_values) for t in trials) == 17 and len(paused) >= 2 and running
    before = {t.number: list(t.intermediate_values.values()) for t in paused}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    resumed = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    study = studies.load("ft", url)
    after = {t.number: t for t in study.trials}
    for number, curve in before.items():  # every trial paused at the kill kept its epochs
        assert after[number].curve[: len(curve)] == curve
    # the budget holds, and the study is the one that never stopped: same proposals, same curves
    assert sum(t.epochs for t in study.history().trials) <= 36
    got = study.history()
    assert [(t.config, t.curve) for t in got.trials] == [(t.config, t.curve) for t in reference.trials]
