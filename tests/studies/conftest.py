import pytest

import spaces
import trainers


@pytest.fixture(scope="session")
def small_trainer():
    """MNIST-1D with 256 training examples, 2 epochs: a trial takes ~0.1 s."""
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)


def small_space():
    return spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)


# Code that kill-and-resume test scripts paste in: with TUNELAB_TEST_FREEZE=<file>:<n> in the environment,
# the process writes <file> right after its n-th epoch result is in the database and then waits to be
# killed there. The test waits for the file (a state), never for a guessed moment.
FREEZE = '''
import os as _os
import time as _time


def freeze_at(trainer):
    spec = _os.environ.get("TUNELAB_TEST_FREEZE")
    if not spec:
        return trainer
    marker, n = spec.rsplit(":", 1)
    fit, count = trainer.fit, [0]

    def frozen_fit(config, *, report=None, **kwargs):
        def hook(epoch):
            decision = report(epoch)  # written to the database before it returns (flush_seconds=0)
            count[0] += 1
            if count[0] == int(n):
                open(marker, "w").close()
                while True:
                    _time.sleep(1)
            return decision

        return fit(config, report=hook, **kwargs)

    trainer.fit = frozen_fit
    return trainer
'''


def run_until_frozen(script, args, marker, n):
    """Start `script` with `args`, frozen after its `n`-th epoch result; return the process once it is frozen."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "TUNELAB_TEST_FREEZE": f"{marker}:{n}"}
    proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stderr=subprocess.PIPE, text=True, env=env)
    while not os.path.exists(marker):  # a state, bounded only by pytest's hang guard
        if proc.poll() is not None:
            raise AssertionError(f"the script ended before its epoch {n}: {proc.stderr.read()}")
        time.sleep(0.05)
    return proc
