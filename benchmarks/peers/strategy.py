"""The tunelab side of a peer library: a `search.Strategy` that relays asks and results to `server.py`.

The peer runs in its own virtual environment (`make_envs.sh`) as a subprocess speaking JSON
lines. tunelab's driver trains (or replays) what the peer asks for and records it like any
trial; this relay tells the peer each result once, from the study's history alone. Flat spaces
are sent to peers: every non-fixed parameter, typed (`Float` and `Int` as ranges with their
log flag, `Categorical` as its choices; the peer builds its library's own parameters from
them), and, for the peers of the replay leaderboard, the choices of the categorical ones; a
proposal is mapped back to a configuration by keeping the parameters its choices activate
(inactive ones are dummy dimensions to the peer).

The relay holds a subprocess, so a killed study continues with a fresh peer (benchmark use only;
it is not registered as a loadable strategy).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tunelab import search
from tunelab.search import History, Request
from tunelab.spaces import Categorical, ConfigError, Fixed, Float, Int

HERE = Path(__file__).resolve().parent
PEERS = ("optuna", "nevergrad", "dehb", "smac", "syne_tune", "optuna_tpe_mv", "optuna_gp")
ENVS = {"optuna_tpe_mv": "optuna", "optuna_gp": "optuna"}  # peers that share another's environment


def peer_env(peer: str) -> Path:
    """The virtual environment `make_envs.sh` makes for this peer."""
    return HERE / ".venvs" / ENVS.get(peer, peer)


def peer_python(peer: str) -> Path:
    return peer_env(peer) / "bin" / "python"


def available(peer: str) -> bool:
    """Whether `make_envs.sh` made this peer's environment."""
    return (peer_env(peer) / "ok.json").exists()


class PeerStrategy(search.Strategy):
    """Proposals of a peer library (see the module docstring).

    Args:
        peer: One of `PEERS`.
        seed: The peer's seed.
        budget: The trials the study will ask for, told to the peers that plan by it (NGOpt,
            SMAC's black-box facade); None leaves them open-ended.

    Raises:
        ConfigError: An unknown peer, or its environment is missing (run make_envs.sh).
    """

    def __init__(self, peer: str, seed: int = 0, budget: int | None = None) -> None:
        super().__init__(seed)
        if peer not in PEERS:
            raise ConfigError(f"peer must be one of {PEERS}, got {peer!r}")
        if not available(peer):
            env = ENVS.get(peer, peer)
            raise ConfigError(f"no environment for {peer}: run bash benchmarks/peers/make_envs.sh {env}")
        self.peer = peer
        self.budget = budget
        self._proc: subprocess.Popen | None = None
        self._numbers: dict[int, int] = {}  # peer id -> trial number
        self._told: dict[int, int] = {}  # peer id -> epochs told
        self._waiting: int | None = None  # peer id of the run in flight
        self._fixed: dict[str, Any] = {}

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(msg) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.peer} peer exited (see its stderr above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.peer}: {reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def _start(self, history: History) -> None:
        params, typed, fixed = {}, {}, {}
        for name in history.space:
            p = history.space[name]
            if isinstance(p, Fixed):
                fixed[name] = p.value
            elif isinstance(p, Categorical):
                params[name] = list(p.choices)
                typed[name] = {"type": "categorical", "choices": list(p.choices)}
            elif isinstance(p, (Float, Int)):
                typed[name] = {"type": p.kind, "low": p.low, "high": p.high, "log": bool(p.log)}
            else:
                raise ConfigError(f"the peer relay sends Float, Int and Categorical parameters; {name} is {p!r}")
        self._fixed = fixed
        # a fixed string hash: Optuna's Hyperband pruner assigns brackets by hash(study name, trial number)
        env = {**os.environ, "PYTHONHASHSEED": str(self.seed)}
        self._proc = subprocess.Popen([str(peer_python(self.peer)), str(HERE / "server.py")], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        init = {"op": "init", "peer": self.peer, "params": params, "space": typed, "max_epochs": history.max_epochs,
                "seed": self.seed}
        if self.budget is not None:
            init["budget"] = int(self.budget)
        self.version = self._call(init)["version"]

    def _config(self, history: History, flat: dict[str, Any]) -> dict[str, Any]:
        full = {**self._fixed, **flat}
        return {k: full[k] for k in history.space.active(full)}

    def ask(self, history: History) -> Request | None:
        if self._proc is None:
            self._start(history)
        by_number = {t.number: t for t in history.trials}
        if self._waiting is not None:
            t = by_number.get(self._numbers.get(self._waiting, -1))
            if t is None or t.state in ("pending", "running"):
                return None
            curve = [None if v is None else float(v) for v in t.curve]
            self._call({"op": "tell", "id": self._waiting, "curve": curve, "failed": t.state == "failed"})
            self._told[self._waiting] = len(curve)
            self._waiting = None
        reply = self._call({"op": "ask"})
        self._waiting = reply["id"]
        if reply["kind"] == "resume":
            return Request.resume(self._numbers[reply["id"]], until_epoch=int(reply["epochs"]))
        self._numbers[reply["id"]] = len(history.trials)
        return Request.start(self._config(history, reply["config"]), epochs=int(reply["epochs"]),
                             attrs={"peer": self.peer, "peer_id": reply["id"]})

    def retire(self, history: History) -> list[int]:
        """Paused runs the peer did not resume (pruned by it): every paused trial but the one in flight."""
        flight = self._numbers.get(self._waiting, -1) if self._waiting is not None else -1
        return [t.number for t in history.paused if t.number != flight]

    def close(self) -> None:
        """End the peer's process."""
        if self._proc is not None:
            self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait(timeout=30)
            self._proc = None
