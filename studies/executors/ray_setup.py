"""Joining a Ray cluster: Ray's import, the resources of a worker slot, the address, and authentication.

A cluster without authentication runs any code a client sends it; `warn_if_unauthenticated`
warns once per process when a study joins a cluster on another machine without Ray's token
authentication (`RAY_AUTH_MODE=token` and the cluster's token), naming the risk and the fix.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunelab.spaces import ConfigError

INSTALL_HINT = "pip install 'tunelab[ray]'"
CONNECT_TIMEOUT_S = 5.0
STANDARD_RESOURCES = ("num_cpus", "num_gpus", "memory")


def import_ray() -> Any:
    """The `ray` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(f"executor='ray' needs Ray, which is not installed here ({err}); install it with "
                          f"{INSTALL_HINT}, or use executor='local'") from err
    return ray


def check_resources(resources: Mapping[str, float] | None) -> dict[str, float]:
    """The resources of one worker slot, checked: `num_cpus` (default 1), `num_gpus`, `memory` (bytes), custom ones."""
    if resources is None:
        return {"num_cpus": 1.0}
    if not isinstance(resources, Mapping):
        raise ConfigError(f"resources must be a dict such as {{'num_cpus': 1, 'num_gpus': 0.25}}, got {resources!r}")
    out: dict[str, float] = {}
    for key, value in resources.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"resources maps names to numbers, got {key!r}: {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"resources[{key!r}] must be a finite number >= 0, got {value!r}")
        out[key] = float(value)
    out.setdefault("num_cpus", 1.0)
    if out["num_cpus"] <= 0 and out.get("num_gpus", 0.0) <= 0:
        raise ConfigError(f"a worker slot needs some CPU or GPU, got resources={dict(resources)!r}")
    return out


def ray_name(key: str) -> str:
    """Ray's name of a resource in `ray.nodes()` ("num_cpus" -> "CPU")."""
    return {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}.get(key, key)


def slots_on(node: Mapping[str, float], need: Mapping[str, float]) -> int:
    """How many worker slots needing `need` fit on a node with `node` resources."""
    fits = [math.floor(node.get(ray_name(k), 0.0) / v + 1e-9) for k, v in need.items() if v > 0]
    return min(fits) if fits else 0


AUTH_MODE_VAR = "RAY_AUTH_MODE"  # "token" turns Ray's token authentication on for a process; "disabled" turns it off
AUTH_FIX = ("generate a token on the head (`ray get-auth-token --generate` writes ~/.ray/auth_token), copy that file "
            "to every node and to this machine, and set RAY_AUTH_MODE=token for `ray start` on every node and for "
            "this process (see the README, \"Scaling out\")")
_warned_unauthenticated = False  # warn_if_unauthenticated warns once per process


class UnauthenticatedClusterWarning(UserWarning):
    """This process joined a Ray cluster on another machine without token authentication."""


def address_host(address: str | None) -> str | None:
    """The host of a Ray address (`"host:port"`, `"[::1]:port"`, `"ray://host:port"`); None for None, "auto", "local".

    Args:
        address: A Ray address as `ray.init` takes it.

    Returns:
        The host part, without brackets, or None where the address names no host.
    """
    if address is None or address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1:].partition("]")[0]
    return rest.rpartition(":")[0] if rest.count(":") == 1 else rest


def is_loopback(host: str | None) -> bool:
    """Whether `host` is this machine's loopback: None, "localhost", 127.x.x.x or ::1 (a name is not resolved)."""
    if host is None or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_auth_configured(address: str | None, environ: Mapping[str, str] | None = None,
                          home: Path | None = None) -> bool:
    """Whether a Ray client in a process with this environment sends a token when it joins `address`.

    `RAY_AUTH_MODE=token` does (Ray refuses to connect if it then finds no token). With
    `RAY_AUTH_MODE` unset, Ray turns token mode on by itself only for a cluster it finds on this
    machine (address None or "auto"), and only if a token is at hand: `RAY_AUTH_TOKEN`, the file
    `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`. An explicit address never turns it on.

    Args:
        address: The address the client joins (None, "auto", "host:port", "ray://host:port").
        environ: The environment to read (default: this process's).
        home: The home folder holding `.ray/auth_token` (default: the user's).

    Returns:
        True where the client authenticates with a token.
    """
    env = os.environ if environ is None else environ
    mode = env.get(AUTH_MODE_VAR)
    if mode is not None:
        return mode.strip().lower() == "token"
    if address not in (None, "auto"):
        return False
    if env.get("RAY_AUTH_TOKEN"):
        return True
    token_file = env.get("RAY_AUTH_TOKEN_PATH")
    default = (Path.home() if home is None else home) / ".ray" / "auth_token"
    return any(Path(f).is_file() for f in (token_file, default) if f)


def warn_if_unauthenticated(address: str | None, *, joined: str | None = None,
                            environ: Mapping[str, str] | None = None, home: Path | None = None) -> bool:
    """Warn once per process where this process joins a Ray cluster on another machine without a token.

    A Ray cluster without token authentication runs whatever any client that reaches its ports
    sends, as the user running Ray: such a cluster on a network is open to everyone on it. A
    loopback address (None, localhost, 127.x, ::1) is not warned about; for "auto" the address Ray
    resolved (`joined`) decides, and nothing is warned about while it is unknown.

    Args:
        address: The address given to `ray.init` (None, "auto", "host:port", "ray://host:port").
        joined: For "auto", the GCS address Ray joined ("host:port"), if known.
        environ: The environment to read (default: this process's).
        home: The home folder holding `.ray/auth_token` (default: the user's).

    Returns:
        Whether it warned (False after the first warning of this process).
    """
    global _warned_unauthenticated
    host = address_host(joined) if address == "auto" else address_host(address)
    if _warned_unauthenticated or is_loopback(host) or token_auth_configured(address, environ, home):
        return False
    _warned_unauthenticated = True
    shown = address if address != "auto" else f"auto ({joined})"
    warnings.warn(
        f"this process joined the Ray cluster at {shown} without token authentication (RAY_AUTH_MODE is not "
        f"'token' here): a cluster that accepts that runs arbitrary code for anyone who can reach its ports, as the "
        f"user running Ray on its machines. To require a token, {AUTH_FIX}",
        UnauthenticatedClusterWarning, stacklevel=2)
    return True


def refused_for_token(err: BaseException) -> bool:
    """Whether Ray's failure to join (or its causes) is the cluster refusing this process's missing or wrong token."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def joined_address(ray: Any) -> str | None:
    """The GCS address this process's Ray connection joined, or None if Ray does not say."""
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # an older Ray, or a Ray Client connection: no address to look at
        return None


def check_address(address: str) -> None:
    """Refuse an explicit `host:port` Ray address that nothing answers on, instead of letting Ray retry for minutes."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address must be 'auto', 'host:port' or 'ray://host:port', got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address!r} ({err}); start its head with `ray start --head --port "
            f"{port}` on {host}, or pass ray_address=None to start a Ray instance on this machine"
        ) from err
