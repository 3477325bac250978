"""A throw-away PostgreSQL server for tests: initdb into a temporary folder, serve on a free local port, remove.

PostgreSQL refuses to run as root, so as root the server runs as the unprivileged user `nobody`
(through `runuser`). Tests that need it skip, naming the reason, only where no server binary is
installed (Debian: `apt-get install postgresql`; `.ci/run` installs it).
"""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid


def server_bin():
    """The folder of `initdb` / `pg_ctl`, or None where PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(versions[-1]) if versions else None


def _as_server_user(cmd):
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without runuser: PostgreSQL cannot be started as an unprivileged user")
    return [runuser, "-u", "nobody", "--", *cmd]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server():
    """Yield the base URL `postgresql+psycopg://tunelab@127.0.0.1:<port>` of a fresh server; remove it after."""
    bindir = server_bin()
    folder = tempfile.mkdtemp(prefix="tunelab-pg-")
    data = os.path.join(folder, "data")
    if os.geteuid() == 0:
        os.chmod(folder, 0o755)
        shutil.chown(folder, "nobody")
    port = _free_port()
    try:
        subprocess.run(_as_server_user([f"{bindir}/initdb", "-D", data, "-U", "tunelab", "--auth=trust", "-E",
                                        "UTF8", "--no-sync"]), check=True, capture_output=True)
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(_as_server_user([f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l",
                                        os.path.join(folder, "log"), "-w", "start"]), check=True, capture_output=True)
        yield f"postgresql+psycopg://tunelab@127.0.0.1:{port}"
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(_as_server_user([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(base_url):
    """A new, empty database on the server at `base_url`; its SQLAlchemy URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    for attempt in range(50):  # the server may still be starting its first connections
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            break
        except psycopg.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.1)
    return f"{base_url}/{name}"
