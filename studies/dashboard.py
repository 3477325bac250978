"""`tunelab dashboard`: optuna-dashboard on a study database, bound to 127.0.0.1 only.

optuna-dashboard (an optional extra: `pip install 'tunelab[dashboard]'`) reads tunelab's
databases as it reads Optuna's: the same RDB schema, directions, values, intermediate values and
user attributes. It has no authentication, so the server listens on the loopback interface only,
and the way to reach it from another machine is an SSH tunnel, never binding to all interfaces.
"""

from __future__ import annotations

import getpass
import socket
from typing import Any

from tunelab.spaces.errors import ConfigError

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def instructions(port: int) -> str:
    """What `tunelab dashboard` prints: the address, and how to reach it safely from elsewhere.

    Args:
        port: The port the dashboard listens on (on 127.0.0.1).

    Returns:
        Three lines of text.
    """
    user, host = getpass.getuser(), socket.gethostname()
    return (f"optuna-dashboard: http://{HOST}:{port}/  (Ctrl-C stops it)\n"
            f"From another machine, tunnel over SSH and open the same address there:\n"
            f"    ssh -N -L {port}:{HOST}:{port} {user}@{host}\n"
            "The dashboard has no login: it listens on 127.0.0.1 only; do not expose it on all interfaces.")


def serve(url: str, port: int = 8080) -> None:
    """Serve optuna-dashboard for the studies of `url` on 127.0.0.1 until interrupted.

    Args:
        url: The study database, an SQLAlchemy URL (`sqlite:///tunelab.db`, `postgresql+psycopg://...`).
            It must exist: a mistyped SQLite path is an error, not a new empty database.
        port: The TCP port; 0 picks a free one.

    Raises:
        ConfigError: optuna-dashboard is not installed, or the port is out of range.
        StorageError: The database cannot be opened.
    """
    try:
        import optuna_dashboard
    except ImportError as err:
        raise ConfigError("tunelab dashboard needs optuna-dashboard: pip install 'tunelab[dashboard]' "
                          "(or pip install optuna-dashboard)") from err
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535 (0: any free port), got {port}")
    from tunelab.studies.storage.connect import open_storage

    storage: Any = open_storage(url, create=False)
    port = port or free_port()
    print(instructions(port), flush=True)
    optuna_dashboard.run_server(storage, host=HOST, port=port)
