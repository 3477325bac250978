"""SIGKILL a study process mid-trial, resume it, and check nothing finished is lost or repeated."""

import os
import signal
import subprocess
import sys
import textwrap

import optuna
import pytest
from freezing import FREEZE, run_until_frozen

from tunelab import studies

SCRIPT = FREEZE + textwrap.dedent(
    """
    import sys
    from tunelab import search, spaces, studies, trainers

    url, checkpoint_seconds = sys.argv[1], float(sys.argv[2])
    trainer = freeze_at(trainers.Trainer(trainers.workloads.mnist1d(), epochs=25, seed=0))
    space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(16, 64, log=True), depth=1)
    study = studies.create("kill", url, space=space, trainer=trainer, strategy=search.Random(seed=0))
    study.optimize(trials=5, progress=False, checkpoint_seconds=checkpoint_seconds, flush_seconds=0.0)
    """
)


def run(script, url, ckpt):
    return subprocess.Popen([sys.executable, str(script), url, str(ckpt)], stderr=subprocess.PIPE, text=True)


def kill_mid_trial(script, url, ckpt, marker):
    """SIGKILL the study once 2 trials are complete and a third has trained 3 epochs."""
    proc = run_until_frozen(script, [url, ckpt], marker, 2 * 25 + 3)
    trials = optuna.load_study(study_name="kill", storage=url).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(done) == 2 and len(running) == 1 and len(running[0].intermediate_values) == 3
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return {t.number: t.value for t in done}, running[0].number


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref")
    (path / "s.py").write_text(SCRIPT)
    url = f"sqlite:///{path / 'ref.db'}"
    subprocess.run([sys.executable, str(path / "s.py"), url, "30"], check=True)
    return studies.load("kill", url).trials


@pytest.mark.parametrize(
    ("checkpoint_seconds", "path"),
    [(0.0, "continued from its checkpoint"), pytest.param(1000.0, "re-queued", marks=pytest.mark.slow)],
)
def test_sigkill_mid_trial_then_resume(tmp_path, reference, checkpoint_seconds, path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    before, interrupted = kill_mid_trial(script, url, checkpoint_seconds, tmp_path / "frozen")

    resumed = run(script, url, checkpoint_seconds)
    assert resumed.wait(timeout=1200) == 0, resumed.stderr.read()
    trials = studies.load("kill", url).trials
    complete = [t for t in trials if t.state == "complete"]
    # the budget total holds: 5 proposals, each complete exactly once
    assert len(complete) == 5
    assert len({str(sorted(t.config.items())) for t in complete}) == 5
    # finished trials are kept as they were, never rerun
    for number, value in before.items():
        assert trials[number].state == "complete" and trials[number].value == value
    if path == "re-queued":
        failed = [t for t in trials if t.state == "failed"]
        assert [t.number for t in failed] == [interrupted] and failed[0].error.startswith("interrupted")
        assert [t.number for t in trials if t.retry_of == interrupted] == [interrupted + 1]
    else:
        assert len(trials) == 5 and trials[interrupted].state == "complete"
    # and the result is the one an uninterrupted study gets: same configs, same values
    assert [t.config for t in complete] == [t.config for t in reference]
    assert [t.value for t in complete] == [t.value for t in reference]
