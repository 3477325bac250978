"""The Ray executor on a real local Ray cluster (started once for this module, stopped afterwards)."""

import dataclasses
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from waiting import wait_for

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'tunelab[ray]' (CI installs it)")

from tunelab import search, spaces, studies, trainers  # noqa: E402
from tunelab.studies.executors import ray_cluster as ray_executor  # noqa: E402
from tunelab.studies.executors import ray_setup  # noqa: E402
from tunelab.studies.executors.ray_cluster import RayExecutor  # noqa: E402
from tunelab.trainers.routines import routines  # noqa: E402


def _space():
    return spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)


def _trainer(epochs):
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=epochs), epochs=epochs, seed=0)


def _study(tmp_path, name, epochs=2, strategy=None):
    return studies.create(name, f"sqlite:///{tmp_path / 'ray.db'}", space=_space(), trainer=_trainer(epochs),
                          strategy=strategy or search.Random(seed=3))


def _same(a, b):
    """The trials of two studies hold the same configs, values and curves, bit for bit."""
    assert [t.config for t in a.trials] == [t.config for t in b.trials]
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert [t.curve for t in a.trials] == [t.curve for t in b.trials]


@pytest.fixture
def gate(tmp_path):
    """Hold every run of the "train" routine at the end of epoch `at` until the test releases it.

    A run writes `at-<pid>-<n>` (holding the worker's pid) when it reaches the gate and waits there
    until `<folder>/go` exists. The wrapper is a closure, so Ray ships it to the workers by value.
    """
    base = routines.get("train")
    folder = tmp_path / "gate"
    folder.mkdir()

    def install(at):
        def run(trainer, request):
            report = request.report

            def hook(epoch):
                if epoch.epoch == at and not (folder / "go").exists():
                    marker = folder / f"at-{os.getpid()}-{time.monotonic_ns()}"
                    marker.write_text(str(os.getpid()))
                    deadline = time.monotonic() + 120
                    while not (folder / "go").exists():  # the test says "go" once it has looked
                        assert time.monotonic() < deadline, "waited 120 s for the test's go"
                        time.sleep(0.02)
                return report(epoch)

            return base.run(trainer, dataclasses.replace(request, report=hook))

        routines.register("train", dataclasses.replace(base, run=run), replace=True)
        return folder

    yield install
    routines.register("train", base, replace=True)


def _wait_for(predicate, what="a trial to hold at its epoch"):
    wait_for(predicate, what)


def test_a_study_on_ray_equals_the_in_process_study_bit_for_bit(tmp_path, ray_cluster):
    local = _study(tmp_path, "local")
    local.optimize(trials=4, progress=False)
    on_ray = _study(tmp_path, "ray")
    on_ray.optimize(trials=4, n_workers=2, executor="ray", progress=False)
    assert [t.state for t in on_ray.trials] == ["complete"] * 4
    _same(on_ray, local)
    assert on_ray.optuna.trials[0].user_attrs["device"] == "cpu"  # the device the worker trained on


def test_ctrl_c_pauses_the_clusters_trials_and_checkpoints_travel_without_a_shared_folder(tmp_path, ray_cluster, gate):
    reference = _study(tmp_path, "reference", epochs=3)
    reference.optimize(trials=2, progress=False)
    study = _study(tmp_path, "paused", epochs=3)
    executor = RayExecutor(2, shared_artifacts=False)  # workers write scratch copies; bytes come back
    folder = gate(1)

    def interrupt():
        _wait_for(lambda: len(list(folder.glob("at-*"))) == 2 or ended.is_set())  # both trials hold at epoch 1
        if ended.is_set():
            return
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for(lambda: all(s.pause_sent for s in executor._slots if s.work is not None))
        ray.get([s.actor.pause.remote(s.token) for s in executor._slots if s.work is not None])  # arrived
        (folder / "go").touch()

    ended = threading.Event()
    thread = threading.Thread(target=interrupt)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            study.optimize(trials=2, executor=executor, progress=False, checkpoint_seconds=0, flush_seconds=0)
    finally:
        ended.set()  # a study that ended without reaching the gate fails its assertions instead of hanging
        thread.join()
    paused = study.trials
    assert [t.state for t in paused] == ["paused", "paused"]
    assert [len(t.curve) for t in paused] == [1, 1]
    for t in paused:  # written by the driver from the bytes the workers sent back
        assert study.checkpoint(t.number) is not None and Path(study.checkpoint(t.number)).exists()
    study.optimize(trials=2, executor=executor, progress=False)
    executor.close()
    _same(study, reference)


@pytest.mark.slow  # ~14 s; the local kill tests cover recovery by default
def test_a_killed_ray_worker_is_replaced_and_its_trial_continues_from_its_checkpoint(tmp_path, ray_cluster, gate,
                                                                                     caplog):
    reference = _study(tmp_path, "reference", epochs=4)
    reference.optimize(trials=3, progress=False)
    study = _study(tmp_path, "killed", epochs=4)
    folder = gate(2)

    def kill():
        _wait_for(lambda: len(list(folder.glob("at-*"))) >= 1 or ended.is_set())
        if ended.is_set():
            return
        victim = int(next(iter(folder.glob("at-*"))).read_text())
        (folder / "go").touch()  # the other worker goes on; the victim dies at its gate
        os.kill(victim, signal.SIGKILL)

    ended = threading.Event()
    thread = threading.Thread(target=kill)
    thread.start()
    try:
        study.optimize(trials=3, n_workers=2, executor="ray", progress=False, checkpoint_seconds=0, flush_seconds=0)
    finally:
        ended.set()  # a study that ended without reaching the gate fails its assertions instead of hanging
        thread.join()
    trials = study.trials
    assert [t.state for t in trials] == ["complete"] * 3  # none lost, none re-queued, no fourth trial
    _same(study, reference)
    lost = [r.getMessage() for r in caplog.records if "the Ray worker died" in r.getMessage()]
    assert len(lost) == 1  # the kill was seen as a lost worker, and the trial went on from its checkpoint
    assert all(t.error is None and "restarted" not in t.attrs for t in trials)


@pytest.mark.filterwarnings("ignore:trial 0. the DARTS search collapsed")  # two epochs on 256 signals: expected
def test_a_darts_search_and_its_retraining_run_on_ray(tmp_path, ray_cluster):
    fixed = spaces.Space(optimizer=spaces.Fixed("adamw"), schedule=spaces.Fixed("cosine"),
                         **{"adamw.lr": spaces.Fixed(3e-3), "adamw.weight_decay": spaces.Fixed(1e-4)})
    space = fixed | spaces.cells(dim=1, channels=4, cells_per_stage=1)
    study = studies.create("darts", f"sqlite:///{tmp_path / 'd.db'}", space=space, trainer=_trainer(2),
                           strategy=search.Darts(seed=0, epochs=2, pt_interval=1, batch_size=32, channels=4))
    study.optimize(trials=3, executor="ray", progress=False)
    search_trial, retrained = study.trials
    assert search_trial.routine == "darts" and search_trial.state == "complete"
    assert "genotype" in search_trial.results and len(search_trial.curve) == search_trial.epochs > 2
    assert retrained.routine == "train" and retrained.state == "complete"
    assert study.best.number == retrained.number


def test_populations_train_on_ray_and_their_checkpoints_travel(tmp_path, ray_cluster):
    """A population is one unit of work on one actor; with no shared folder every member's checkpoint comes back."""
    space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=16, depth=1, dropout=0.0, activation="relu")

    def make(name):
        return studies.create(name, f"sqlite:///{tmp_path / 'pop.db'}", space=space, trainer=_trainer(2),
                              strategy=search.Random(seed=3))

    local = make("local")
    local.optimize(trials=6, population=3, progress=False)
    executor = RayExecutor(2, shared_artifacts=False)
    try:
        on_ray = make("ray")
        on_ray.optimize(trials=6, population=3, executor=executor, progress=False, keep_checkpoints="all",
                        checkpoint_seconds=0)
    finally:
        executor.close()
    assert [t.config for t in on_ray.trials] == [t.config for t in local.trials]
    assert [t.state for t in on_ray.trials] == ["complete"] * 6
    assert all(abs(a.value - b.value) <= 0.02 for a, b in zip(on_ray.trials, local.trials, strict=True))
    for t in on_ray.trials:  # written by the driver from the bytes each member's worker sent back
        assert Path(on_ray.checkpoint(t.number)).exists()


def test_bad_ray_input_names_the_problem_and_the_fix(tmp_path, ray_cluster, monkeypatch):
    study = _study(tmp_path, "bad")
    with pytest.raises(studies.ConfigError, match="no node of the Ray cluster has the resources"):
        study.optimize(trials=1, executor="ray", resources={"num_gpus": 1}, progress=False)
    with pytest.raises(studies.ConfigError, match="resources"):
        study.optimize(trials=1, executor="ray", resources={"num_cpus": -1}, progress=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a process that has not joined a cluster
    with _closed_port() as port, pytest.raises(studies.ConfigError, match="cannot reach a Ray cluster"):
        study.optimize(trials=1, executor="ray", ray_address=f"127.0.0.1:{port}", progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed
    with pytest.raises(studies.ConfigError, match=r"pip install 'tunelab\[ray\]'"):
        study.optimize(trials=1, executor="ray", progress=False)
    assert study.trials == []


class _closed_port:
    """A local port nothing listens on, while the context lasts."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


DRIVER_SCRIPT = '''
import dataclasses, json, os, sys, time
from pathlib import Path

from tunelab import search, spaces, studies, trainers
from tunelab.trainers.routines import routines

folder, address, freeze = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "freeze"
space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)
trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=4), epochs=4, seed=0)
study = studies.create("driver-killed", f"sqlite:///{folder / 'k.db'}", space=space, trainer=trainer,
                       strategy=search.Random(seed=3), load_if_exists=True)
if freeze:  # the first run to reach epoch 2 leaves its worker's pid and holds there; the driver is killed
    base = routines.get("train")

    def run(trainer, request):
        report = request.report

        def hook(epoch):
            decision = report(epoch)
            if epoch.epoch == 2 and not list(folder.glob("held-*")):
                (folder / f"held-{os.getpid()}").touch()
                time.sleep(600)  # held until the test kills the driver (gives up after 10 min)
                raise SystemExit("held 600 s and nobody killed this process")
            return decision

        return base.run(trainer, dataclasses.replace(request, report=hook))

    routines.register("train", dataclasses.replace(base, run=run), replace=True)
study.optimize(trials=3, n_workers=2, executor="ray", ray_address=address, progress=False, checkpoint_seconds=0,
               flush_seconds=0)
print(json.dumps([(t.config, t.value, t.curve, t.state) for t in study.trials]))
'''


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow  # ~26 s
def test_a_killed_driver_leaves_no_actor_training_and_a_new_driver_resumes(tmp_path, ray_cluster):
    reference = _study(tmp_path, "reference", epochs=4)
    reference.optimize(trials=3, progress=False)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT)
    env = dict(os.environ)  # the session cluster's token settings (see `ray_cluster`)
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path), ray_cluster, "freeze"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    def held() -> bool:
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        return bool(list(tmp_path.glob("held-*")))

    wait_for(held, "a worker of the killed driver to hold its trial")
    worker = int(next(tmp_path.glob("held-*")).name.split("-")[1])
    driver.kill()
    driver.wait()
    _wait_for(lambda: not _alive(worker))  # Ray ends the actors of a driver that died: nothing trains on
    done = subprocess.run([sys.executable, str(script), str(tmp_path), ray_cluster, "go"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = [r for r in json.loads(done.stdout.strip().splitlines()[-1]) if r[3] != "failed"]
    # a trial killed in its first epoch (no checkpoint yet) is recorded failed and re-queued, as after any crash;
    # the held one continues from its checkpoint: every proposal completes once, with the uninterrupted values
    assert [r[3] for r in resumed] == ["complete"] * 3
    assert sorted(json.dumps(r[:3]) for r in resumed) == sorted(
        json.dumps([t.config, t.value, t.curve]) for t in reference.trials)


NODE_SCRIPT = '''
import dataclasses, json, os, sys, threading, time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from tunelab import search, spaces, studies, trainers
from tunelab.trainers.routines import routines

folder = Path(sys.argv[1])
space = spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)


def make(name):
    trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=4), epochs=4, seed=0)
    return studies.create(name, f"sqlite:///{folder / 'n.db'}", space=space, trainer=trainer,
                          strategy=search.Random(seed=3))


reference = make("reference")
reference.optimize(trials=3, progress=False)

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
doomed = cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
base = routines.get("train")


def run(trainer, request):  # holds every first run at epoch 2 until "go"
    report = request.report

    def hook(epoch):
        if epoch.epoch == 2 and not (folder / "go").exists():
            node = ray.get_runtime_context().get_node_id()
            (folder / f"at-{node}-{time.monotonic_ns()}").touch()
            deadline = time.monotonic() + 120
            while not (folder / "go").exists():  # the test says "go" once the node is gone
                assert time.monotonic() < deadline, "waited 120 s for the test's go"
                time.sleep(0.02)
        return report(epoch)

    return base.run(trainer, dataclasses.replace(request, report=hook))


routines.register("train", dataclasses.replace(base, run=run), replace=True)


def remove_node():
    deadline = time.monotonic() + 120
    while not list(folder.glob(f"at-{doomed.node_id}-*")):  # the doomed node's trial holds at epoch 2
        assert time.monotonic() < deadline, "waited 120 s for a trial on the doomed node"
        time.sleep(0.05)
    cluster.remove_node(doomed)  # the node leaves while its trial holds at epoch 2
    (folder / "go").touch()


thread = threading.Thread(target=remove_node)
thread.start()
study = make("two-nodes")
study.optimize(trials=3, n_workers=2, executor="ray", progress=False, checkpoint_seconds=0, flush_seconds=0)
thread.join()
print(json.dumps({
    "addresses": sorted({n["NodeManagerAddress"] for n in ray.nodes()}),
    "states": [t.state for t in study.trials],
    "same": [(t.config, t.value, t.curve) for t in study.trials]
    == [(t.config, t.value, t.curve) for t in reference.trials],
}))
ray.shutdown()
cluster.shutdown()
'''


@pytest.mark.slow  # a second cluster of two nodes in a subprocess: ~20 s
def test_a_node_that_leaves_mid_trial_loses_no_trial_and_the_executor_shrinks(tmp_path):
    """Two 1-CPU nodes (ray.cluster_utils.Cluster in a process of its own, loopback, token); one leaves mid-trial."""
    script = tmp_path / "nodes.py"
    script.write_text(NODE_SCRIPT)
    token = tmp_path / "auth_token"  # a token of its own; on the loopback only, as the session's cluster
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_AUTH_TOKEN", None)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["addresses"] == ["127.0.0.1"]  # both nodes on the loopback
    assert result["states"] == ["complete"] * 3  # none lost or repeated; the lost one continued on the other node
    assert result["same"]  # from its checkpoint: the values of an uninterrupted run, bit for bit


def _loopback(ip):
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # "::ffff:127.0.0.1", as a dual-stack socket shows it
    return (mapped or address).is_loopback


def test_the_test_cluster_listens_on_the_loopback_only(ray_cluster):
    """Every socket the session cluster's processes (head, workers, this driver) listen on is a loopback one."""
    psutil = pytest.importorskip("psutil")  # ships with Ray
    worker = ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker process is up, with its listener
    port = int(ray_cluster.rpartition(":")[2])
    gcs = [c.pid for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert gcs and all(gcs), f"no process of this user listens on the head's port {port}"
    session = os.getsid(gcs[0])  # the head runs in a session of its own (start_new_session)
    pids = {os.getpid(), worker}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == session:
                pids |= {proc.pid} | {child.pid for child in proc.children(recursive=True)}
        except (OSError, psutil.Error):
            continue  # gone meanwhile
    listening = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening += [(proc.name(), c.laddr.ip, c.laddr.port) for c in connections
                      if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr)]
    assert any(p == port for _, _, p in listening), listening
    assert [entry for entry in listening if not _loopback(entry[1])] == [], "a cluster process listens beyond 127.0.0.1"


def test_joining_a_cluster_on_another_machine_without_a_token_warns_once(monkeypatch, tmp_path):
    monkeypatch.setattr(ray_setup, "_warned_unauthenticated", False)  # as in a fresh process
    home = tmp_path / "home"  # no .ray/auth_token in it
    (tmp_path / "with-token" / ".ray").mkdir(parents=True)
    (tmp_path / "with-token" / ".ray" / "auth_token").write_text("f" * 64)
    none: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these warns
        for address in (None, "local", "127.0.0.1:6379", "127.4.5.6:6379", "localhost:6379", "[::1]:6379",
                        "ray://localhost:10001"):
            assert not ray_setup.warn_if_unauthenticated(address, environ=none, home=home), address
        assert not ray_setup.warn_if_unauthenticated("auto", joined=None, environ=none, home=home)  # unknown
        assert not ray_setup.warn_if_unauthenticated("auto", joined="127.0.0.1:6379", environ=none, home=home)
        assert not ray_setup.warn_if_unauthenticated("10.0.0.5:6379", environ={"RAY_AUTH_MODE": "token"}, home=home)
        assert not ray_setup.warn_if_unauthenticated("10.0.0.5:6379", environ={"RAY_AUTH_MODE": " Token "},
                                                        home=home)
        # "auto" with RAY_AUTH_MODE unset: Ray turns token mode on by itself where a token is at hand
        assert not ray_setup.warn_if_unauthenticated("auto", joined="10.0.0.5:6379", environ=none,
                                                        home=tmp_path / "with-token")
        assert not ray_setup.warn_if_unauthenticated("auto", joined="10.0.0.5:6379",
                                                        environ={"RAY_AUTH_TOKEN": "f" * 64}, home=home)
    # an explicit address never turns token mode on, whatever token lies around
    with pytest.warns(ray_setup.UnauthenticatedClusterWarning,
                      match=r"10\.0\.0\.5:6379 without token authentication.*arbitrary code.*RAY_AUTH_MODE=token"):
        assert ray_setup.warn_if_unauthenticated("10.0.0.5:6379", environ={"RAY_AUTH_TOKEN": "f" * 64},
                                                    home=tmp_path / "with-token")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not ray_setup.warn_if_unauthenticated("head-host:6379", environ=none, home=home)  # once a process
    monkeypatch.setattr(ray_setup, "_warned_unauthenticated", False)
    with pytest.warns(ray_setup.UnauthenticatedClusterWarning, match=r"auto \(192\.0\.2\.7:6379\)"):
        assert ray_setup.warn_if_unauthenticated("auto", joined="192.0.2.7:6379",
                                                    environ={"RAY_AUTH_MODE": "disabled"}, home=tmp_path / "with-token")


def test_the_executor_warns_after_joining_without_a_token_and_names_a_refused_token(monkeypatch):
    """The executor's own calls, with `ray.init` faked: nothing here joins or leaves the session's cluster."""
    monkeypatch.setattr(ray_setup, "_warned_unauthenticated", False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a process that has not joined a cluster
    monkeypatch.setattr(ray_executor, "check_address", lambda address: None)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")

    def stop(self):
        raise studies.ConfigError("stopped after joining")

    monkeypatch.setattr(RayExecutor, "_check_cluster", stop)
    monkeypatch.setattr(ray, "init", lambda **kw: None)
    with pytest.warns(ray_setup.UnauthenticatedClusterWarning, match="head-host:6379"), \
            pytest.raises(studies.ConfigError, match="stopped after joining"):
        RayExecutor(1, address="head-host:6379")

    def refused(**kw):
        try:
            raise ray.exceptions.AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing")
        except ray.exceptions.AuthenticationError as err:
            raise ConnectionError("Failed to connect to Ray cluster at head-host:6379") from err

    monkeypatch.setattr(ray, "init", refused)
    with pytest.raises(studies.ConfigError, match=r"uses token authentication.*RAY_AUTH_MODE is 'disabled' here.*"
                                                  r"ray get-auth-token --generate"):
        RayExecutor(1, address="head-host:6379")
