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
    from tunelab.trainers.routines import routines

    marker, n = spec.rsplit(":", 1)
    count = [0]

    def frozen(run):
        def frozen_run(trainer, request):
            report = request.report

            def hook(epoch):
                decision = report(epoch)  # written to the database before it returns (flush_seconds=0)
                count[0] += 1
                if count[0] == int(n):
                    open(marker, "w").close()
                    _time.sleep(600)  # held until the test kills this process (it gives up after 10 min)
                    raise SystemExit("held 600 s and nobody killed this process")
                return decision

            return run(trainer, _dataclasses.replace(request, report=hook))

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

    env = {**os.environ, "TUNELAB_TEST_FREEZE": f"{marker}:{n}"}
    proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stderr=subprocess.PIPE, text=True, env=env)
    from waiting import wait_for

    def frozen() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the script ended before its epoch {n}: {proc.stderr.read()}")
        return os.path.exists(marker)

    wait_for(frozen, f"the script to freeze after its epoch {n}")
    return proc
