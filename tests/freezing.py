"""Kill-and-resume tests: freeze a study process at a known state, then SIGKILL it."""

# Code that kill-and-resume test scripts paste in: with TUNELAB_TEST_FREEZE=<file>:<n> in the environment,
# the process writes <file> right after its n-th epoch result (of any routine) is in the database and then
# waits to be killed there. The test waits for the file (a state), never for a guessed moment.
FREEZE = '''
import dataclasses as _dataclasses
import os as _os
import time as _time


def freeze_at(trainer):
    spec = _os.environ.get("TUNELAB_TEST_FREEZE")
    if not spec:
        return trainer
    from search.routines import routines

    marker, n = spec.rsplit(":", 1)
    count = [0]

    def frozen(run):
        def frozen_run(trainer, config, *, report=None, **kwargs):
            def hook(epoch):
                decision = report(epoch)  # written to the database before it returns (flush_seconds=0)
                count[0] += 1
                if count[0] == int(n):
                    open(marker, "w").close()
                    while True:
                        _time.sleep(1)
                return decision

            return run(trainer, config, report=hook, **kwargs)

        return frozen_run

    for name in routines.names():
        routine = routines.get(name)
        routines.register(name, _dataclasses.replace(routine, run=frozen(routine.run)), replace=True)
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
