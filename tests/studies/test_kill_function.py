"""SIGKILL a study of a user's `trainers.Function` mid-trial (pool and Ray), resume it: nothing lost or repeated."""

import json
import os
import signal
import subprocess
import sys

import pytest
from waiting import wait_for

SCRIPT = '''
import json, os, sys, time
import torch
from tunelab import search, spaces, studies, trainers

HOLD = os.environ.get("HOLD")  # a global: Ray ships its value with the function; pool workers read it again

def descent(config, run):
    state = run.load()
    w = torch.tensor([3.0]) if state is None else state["w"]
    for epoch in range(run.start_epoch + 1, run.until_epoch + 1):
        for _ in range(5):
            w = w - config["lr"] * 2 * w + config["noise"] * torch.randn(1)
        decision = run.report(loss=float(w.pow(2).item()), grad_evals=5)
        run.save({"w": w})
        if HOLD and epoch == 2:  # the first run to save its epoch 2 leaves its pid and holds there
            try:
                fd = os.open(HOLD, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                time.sleep(600)  # held until the test kills the driver (gives up after 10 min)
                raise SystemExit("held 600 s and nobody killed the driver")
        if decision != "continue":
            return


if __name__ == "__main__":
    url, executor, address = sys.argv[1], sys.argv[2], sys.argv[3]
    space = spaces.Space(lr=spaces.Float(0.05, 0.5, log=True), noise=spaces.Float(0.0, 0.1))
    fn = trainers.Function(descent, epochs=4, metric="loss", direction="minimize")
    study = studies.create("fn-kill", url, space=space, trainer=fn, strategy=search.Random(seed=0))
    options = {"executor": "ray", "ray_address": address} if executor == "ray" else {}
    study.optimize(trials=4, n_workers=2, progress=False, checkpoint_seconds=0, flush_seconds=0, **options)
    print(json.dumps([[t.config, t.value, t.curve, t.state, t.grad_evals] for t in study.trials]))
'''


def _run(script, url, executor, address, env=None):
    return subprocess.Popen([sys.executable, str(script), url, executor, address or "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or dict(os.environ))


def _rows(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fn-reference")
    script = folder / "fn.py"
    script.write_text(SCRIPT)
    return _rows(_run(script, f"sqlite:///{folder / 'ref.db'}", "local", None))


@pytest.mark.slow  # ~21 s; tests/studies/test_kill.py kills a study mid-trial by default
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_sigkill_of_a_function_study_mid_trial_then_resume(tmp_path, reference, executor, request):
    address = request.getfixturevalue("ray_cluster") if executor == "ray" else None
    if executor == "ray" and address is None:
        pytest.skip("Ray is not installed")
    script = tmp_path / "fn.py"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    marker = tmp_path / "held"
    driver = _run(script, url, executor, address, env={**os.environ, "HOLD": str(marker)})

    def held() -> bool:
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        return marker.exists() and marker.read_text() != ""

    wait_for(held, "a worker to hold its trial after saving epoch 2")
    worker = int(marker.read_text())
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=60)

    def gone() -> bool:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, "the held worker to end with its killed driver")
    resumed = [r for r in _rows(_run(script, url, executor, address)) if r[3] != "failed"]
    # every proposal completes once (a trial killed before its first save is failed and re-queued), with the
    # values, curves and gradient evaluations of an uninterrupted study: the held trial went on from its save
    assert [r[3] for r in resumed] == ["complete"] * 4
    assert sorted(json.dumps(r) for r in resumed) == sorted(json.dumps(r) for r in reference)
