from __future__ import annotations

import atexit
import inspect
import os
import shutil
import tempfile

# One torch thread per process: on a 2-core machine that is also running something else, torch's default
# (a thread per core) is 7-20x slower; subprocesses and pool workers inherit it through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Generated data (MNIST-1D) is cached on disk (`trainers.datacache`): one folder for the session, never the
# user's own cache; subprocesses the tests start inherit it and skip the seconds of generation.
if "TUNELAB_CACHE_DIR" not in os.environ:
    os.environ["TUNELAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="tunelab-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TUNELAB_CACHE_DIR"], True)
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_for

from tunelab import search, spaces, trainers
from tunelab.trainers.routines import routines

REGISTRIES = (spaces.optimizers, spaces.schedules, spaces.models, spaces.cell_ops, routines, search.strategies)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by what they start, from what they use, so the markers never go missing.

    `ray`: users of the session's Ray cluster; `subprocess`: tests that start Python processes;
    `kill`: tests that SIGKILL one. `pytest -m "not subprocess"` runs the in-process tests only.
    """
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
        try:
            source = inspect.getsource(item.function)  # type: ignore[attr-defined]
        except (AttributeError, OSError, TypeError):
            continue
        if any(s in source for s in ("subprocess.", "run_until_frozen(", "_run_script(", "ProcessExecutor(")):
            item.add_marker(pytest.mark.subprocess)
        if "SIGKILL" in source or ".kill()" in source:
            item.add_marker(pytest.mark.kill)


@pytest.fixture(autouse=True)
def restore_registries() -> Iterator[None]:
    """Every test leaves the registries as it found them (its own registrations are removed)."""
    before = [{name: registry.get(name) for name in registry.names()} for registry in REGISTRIES]
    yield
    for registry, entries in zip(REGISTRIES, before, strict=True):
        for name in set(registry.names()) - set(entries):
            registry.unregister(name)
        for name, entry in entries.items():
            if name not in registry or registry.get(name) is not entry:
                registry.register(name, entry, replace=True)


@pytest.fixture(scope="session")
def mnist1d() -> trainers.Workload:
    return trainers.workloads.mnist1d()


@pytest.fixture(scope="session")
def digits() -> trainers.Workload:
    return trainers.workloads.digits()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_environ(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _reread_ray_auth(ray) -> None:
    """Make Ray in this process read RAY_AUTH_MODE and the token again: it reads both once, at first use."""
    if hasattr(ray._raylet, "AuthenticationTokenLoader"):  # a Ray with token authentication
        ray._raylet.Config.initialize("")  # as ray does when it turns token mode on for itself
        ray._raylet.AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """`ray start --head --num-cpus 2` on the loopback with token authentication, this process connected to it.

    Every listener of the cluster is on 127.0.0.1: `--node-ip-address 127.0.0.1`, which Ray
    keeps only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (otherwise it swaps a loopback address
    for the machine's routable one, and the GCS and raylet listen on every interface). The token
    is a fresh one in the session's temp folder (RAY_AUTH_TOKEN_PATH), never ~/.ray/auth_token.
    These variables stay in os.environ for the session, so a driver a test starts as a subprocess
    joins with the same token; they are restored, and the head stopped, after the session.

    One cluster serves every test that uses Ray (joining takes seconds; a second in-process
    `ray.init` after a `ray.shutdown` can leave the process unable to start actors). Yields the
    head's address, or None where Ray is not installed.
    """
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        yield None
        return
    temp = tmp_path_factory.mktemp("ray")
    token = temp / "auth_token"
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(secrets.token_hex(32))
    settings = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_TOKEN": None,
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    if not hasattr(ray._raylet, "AuthenticationTokenLoader"):  # a Ray older than token authentication
        settings.update(RAY_AUTH_MODE=None, RAY_AUTH_TOKEN_PATH=None)
    previous = {key: os.environ.get(key) for key in settings}
    enable_cluster = ray_constants.ENABLE_RAY_CLUSTER  # read from the environment when Ray was imported
    port = _free_port()
    head = None
    try:
        _set_environ(settings)
        ray_constants.ENABLE_RAY_CLUSTER = False  # this process keeps 127.0.0.1 too (Ray may be imported already)
        _reread_ray_auth(ray)
        head = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port",
             str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
             "--temp-dir", str(temp)],
            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        def serving() -> bool:
            if head.poll() is not None:
                raise RuntimeError("ray start --head exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(serving, "the Ray head to serve its port", every=0.2)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if head is not None:
            head.send_signal(signal.SIGTERM)
            head.wait(120)
        _set_environ(previous)
        ray_constants.ENABLE_RAY_CLUSTER = enable_cluster
        _reread_ray_auth(ray)
