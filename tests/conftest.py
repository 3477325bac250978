from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import spaces
import trainers

REGISTRIES = (spaces.optimizers, spaces.schedules, spaces.models, spaces.cell_ops)


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


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """`ray start --head --num-cpus 2` on a free port, this process connected to it; stopped after the session.

    One cluster serves every test that uses Ray (joining takes seconds; a second in-process
    `ray.init` after a `ray.shutdown` can leave the process unable to start actors). None where
    Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        yield None
        return
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # token auth rejects a client that joins by address
    temp = tmp_path_factory.mktemp("ray")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port",
         str(port), "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        while True:  # the head's port opens once it serves (a state; pytest's timeout guards a hang)
            if head.poll() is not None:
                raise RuntimeError("ray start --head exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        head.send_signal(signal.SIGTERM)
        head.wait(120)
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous
