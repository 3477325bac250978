"""The Ray executor: units of work on a Ray cluster, with the driver still the only database writer.

Size: over 500 lines: the actor, its slots, checkpoints sent as bytes, and lost nodes are one
protocol between the driver and its workers (joining a cluster is `ray_setup`'s).

Built on Ray Core (Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI
Applications", OSDI), not on Ray Tune's Tuner: tunelab's driver keeps deciding, recovering and
writing, and Ray places and runs the work.

- One long-lived actor per worker slot (`_Worker`), placed by Ray with the resources asked for
  each trial (`{"num_cpus": 1}` by default; `{"num_cpus": 1, "num_gpus": 0.25}` lets four trials
  share a GPU). An actor keeps the trainers it was sent: a trainer is `ray.put` once per executor
  and fetched once per actor, so the data are not sent again for every trial.
- A unit of work is a streaming-generator call of the actor's `run` (`num_returns="streaming"`):
  it yields one message per epoch while the trial trains and its `Outcome` last, and the driver
  `ray.wait`s on all running generators at once, so epoch results and leases flow as they do
  with the local pool.
- Pause: the actors are threaded (`max_concurrency=2`), so `pause(token)` reaches a running unit
  of work at once and it stops at the end of its epoch, with a checkpoint.
- Checkpoints: a worker that sees the study's artifact folder (a probe file the driver writes
  there, or `shared_artifacts=True`) reads and writes checkpoints in place. Otherwise its units of
  work run on a scratch copy: the driver sends the checkpoint's bytes with the work, and every new
  checkpoint the worker writes comes back as bytes with the next message and is written by the
  driver into the artifact folder (replaced atomically).
- Faults: `max_restarts=0` and `max_task_retries=0`, so Ray never trains a unit of work again
  behind the driver's back. A worker process or node that dies makes the unit of work come back
  `lost`; the driver continues the trial from the last checkpoint it holds, and a fresh actor
  takes the slot.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunelab.spaces import ConfigError
from tunelab.studies.executors.base import EpochCallback, Flag, Outcome, Unit, Work, resolve_routine, run_unit, works_of
from tunelab.studies.executors.ray_setup import (
    AUTH_FIX,
    AUTH_MODE_VAR,
    STANDARD_RESOURCES,
    check_address,
    check_resources,
    import_ray,
    joined_address,
    refused_for_token,
    slots_on,
    warn_if_unauthenticated,
)
from tunelab.trainers import Trainer

TRAINERS_KEPT = 4  # trainers an executor (and each actor) keeps at once
SHRINK_CHECK_S = 1.0  # while a replacement actor starts, how often the driver asks whether the cluster still holds it


class _Paused:
    """The stop flag `run_work` polls: set once the driver asked this unit of work (`token`) to pause."""

    def __init__(self, paused: set[str], token: str) -> None:
        self.paused, self.token = paused, token

    def is_set(self) -> bool:
        return self.token in self.paused


def _checkpoint_bytes(path: str | None, seen: list[tuple[int, int] | None]) -> bytes | None:
    """The checkpoint at `path` if it changed since `seen[0]` (its mtime and size), else None."""
    if path is None:
        return None
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == seen[0]:
            return None
        data = Path(path).read_bytes()
    except OSError:
        return None
    seen[0] = stamp
    return data


class _Worker:
    """One worker slot on the cluster: keeps trainers, runs units of work, takes pause requests."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.trainers: dict[str, Trainer] = {}
        self.paused: set[str] = set()
        self.scratch = tempfile.mkdtemp(prefix="tunelab-ray-")

    def ping(self) -> str:
        """This worker's node id (also proves the actor started)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def sees(self, path: str, token: str) -> bool:
        """Whether the file `path` holds `token` here (the artifact folder is shared with the driver)."""
        try:
            return Path(path).read_text() == token
        except OSError:
            return False

    def pause(self, token: str) -> None:
        """Ask the unit of work `token` to pause at the end of its epoch (before it starts: at its first)."""
        self.paused.add(token)

    def _trainer(self, key: str, refs: list[Any]) -> Trainer:
        import ray

        if key not in self.trainers:
            if len(self.trainers) >= TRAINERS_KEPT:
                self.trainers.pop(next(iter(self.trainers)))
            self.trainers[key] = ray.get(refs[0])
        return self.trainers[key]

    def run(self, token: str, work: Unit, key: str, refs: list[Any], routine: Any, shared: bool,
            blobs: dict[int, bytes]) -> Iterator[tuple[str, Any, Any, bytes | None]]:
        """Train a unit of work (one work, or a population): its epochs, then one outcome per work.

        Yields `("epoch", trial_id, EpochResult, bytes)` after every epoch of each of its works, and
        `("end", Outcome, None, bytes)` once per work. With `shared=False` each work runs on a
        scratch copy of its checkpoint (`blobs[trial_id]`), and each new checkpoint it writes
        travels back as bytes (None when unchanged).
        """
        trainer = self._trainer(key, refs)
        works = works_of(work)
        paths: dict[int, str | None] = {w.trial_id: w.checkpoint for w in works}
        local = list(works)
        if not shared:
            for i, w in enumerate(works):
                path = os.path.join(self.scratch, Path(w.checkpoint).name) if w.checkpoint else None
                paths[w.trial_id] = path
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    if w.trial_id in blobs:
                        Path(path).write_bytes(blobs[w.trial_id])
                local[i] = replace(w, checkpoint=path)
        seen: dict[int, list[tuple[int, int] | None]] = {w.trial_id: [None] for w in works}
        if not shared:
            for tid in blobs:  # the copies the driver already has
                _checkpoint_bytes(paths.get(tid), seen[tid])
        messages: queue.Queue = queue.Queue()

        def changed(trial_id: int) -> bytes | None:
            return None if shared else _checkpoint_bytes(paths.get(trial_id), seen[trial_id])

        def send(trial_id: int, epoch: Any) -> None:
            messages.put(("epoch", trial_id, epoch, changed(trial_id)))

        def train() -> None:
            unit: Unit = local[0] if isinstance(work, Work) else tuple(local)
            try:
                outcomes = [o.portable() for o in run_unit(trainer, unit, send, _Paused(self.paused, token), routine)]
            except BaseException as err:  # run_work records errors itself; this is a last resort
                outcomes = [Outcome(w, error=f"{type(err).__name__}: {err}") for w in local]
            for outcome in outcomes:
                messages.put(("end", outcome, None, changed(outcome.work.trial_id)))

        thread = threading.Thread(target=train, name=f"tunelab-unit-{works[0].number}", daemon=True)
        thread.start()
        try:
            ended = 0
            while ended < len(works):
                message = messages.get()
                yield message
                ended += message[0] == "end"
            thread.join()
        finally:
            self.paused.discard(token)
            if not shared:
                for path in paths.values():
                    if path is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)


@dataclass
class _Slot:
    actor: Any
    starting: Any = None
    since: float = 0.0
    node: str | None = None
    sees: dict[str, bool] | None = None
    token: str | None = None
    work: Unit | None = None
    pending: dict[int, Work] = field(default_factory=dict)  # the unit's works that have not ended yet
    shared: bool = True
    generator: Any = None
    pause_sent: bool = False


_LOST_ERRORS = (
    "ActorDiedError",
    "ActorUnavailableError",
    "RayActorError",
    "WorkerCrashedError",
    "NodeDiedError",
    "ObjectLostError",
    "OwnerDiedError",
    "LocalRayletDiedError",
)


class RayExecutor:
    """Trains units of work on a Ray cluster: one actor per worker slot, the driver the only database writer.

    Size: about 300 lines: the executor protocol plus replacing dead actors and shrinking with the cluster.

    Args:
        n_workers: Worker slots (actors), i.e. trials trained at once.
        address: None starts a Ray instance on this machine (or uses the one `ray.init` already
            connected this process to); `"auto"` joins the cluster this machine belongs to;
            `"host:port"` (the head's GCS port) or `"ray://host:10001"` joins that cluster.
        resources: What each worker slot reserves: `num_cpus` (default 1; also its torch
            threads), `num_gpus` (fractions share a GPU), `memory` (bytes), or custom resources.
        shared_artifacts: Whether workers see the study's artifact folder (a shared filesystem).
            None (default) checks each worker with a probe file; False always copies checkpoints
            through the object store.
        init_kwargs: Extra `ray.init` arguments (e.g. `runtime_env`, `num_cpus` of a local instance).

    Raises:
        ConfigError: Ray is not installed, the address cannot be reached, the cluster refuses
            this process's token (missing or wrong), or no node of the cluster has the
            resources one worker slot asks for.

    Warns:
        UnauthenticatedClusterWarning: Once per process, where this executor joins a cluster
            on another machine without token authentication (see `warn_if_unauthenticated`).
    """

    populations = True  # a population is one unit of work on one actor, as on the local executors

    def __init__(
        self,
        n_workers: int = 1,
        *,
        address: str | None = None,
        resources: Mapping[str, float] | None = None,
        shared_artifacts: bool | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise ConfigError(f"n_workers must be an int >= 1, got {n_workers!r}")
        if address is not None and not isinstance(address, str):
            raise ConfigError(f"ray_address must be None, 'auto' or 'host:port', got {address!r}")
        if shared_artifacts not in (None, True, False):
            raise ConfigError(f"shared_artifacts must be None, True or False, got {shared_artifacts!r}")
        self.capacity = n_workers
        self.resources = check_resources(resources)
        self.shared_artifacts = shared_artifacts
        ray = import_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address is not None:
                check_address(address)
            kwargs = {"include_dashboard": False, "log_to_driver": False, **dict(init_kwargs or {})}
            refused = getattr(getattr(ray, "exceptions", None), "AuthenticationError", ConnectionError)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, refused) as err:
                if refused_for_token(err):
                    mode = os.environ.get(AUTH_MODE_VAR)
                    raise ConfigError(f"cannot join the Ray cluster at {address!r}: it uses token authentication "
                                      f"and this process has no token or the wrong one ({AUTH_MODE_VAR} is "
                                      f"{'unset' if mode is None else repr(mode)} here); {AUTH_FIX}") from err
                raise ConfigError(f"cannot join a Ray cluster at {address!r} ({err}); start one with `ray start "
                                  f"--head`, or pass ray_address=None to start Ray on this machine") from err
            self._owns_ray = True
            if address is not None:
                warn_if_unauthenticated(address, joined=joined_address(ray) if address == "auto" else None)
        self._check_cluster()
        self._pause = Flag()
        self._trainers: dict[int, tuple[Trainer, str, Any]] = {}
        self._actor_class = ray.remote(_Worker)
        self._slots = [_Slot(actor=self._new_actor()) for _ in range(self.capacity)]
        self.started_s = self._await_actors()

    # ------------------------------------------------------------------ cluster
    def _check_cluster(self) -> None:
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        slots = self._fitting_slots()
        if slots == 0:
            have = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(n.items()) if not k.startswith("node:"))
                             for n in nodes) or "no live node"
            raise ConfigError(
                f"no node of the Ray cluster has the resources one worker slot asks for ({self.resources}); the "
                f"nodes have: {have}. Ask for less (resources={{'num_cpus': 1}}), or add a node that has them"
            )
        if slots < self.capacity:
            warnings.warn(f"the Ray cluster fits {slots} worker slots of {self.resources} at once, fewer than "
                          f"n_workers={self.capacity}: trains {slots} trials at once", stacklevel=3)
            self.capacity = slots

    def _new_actor(self) -> Any:
        r = self.resources
        custom = {k: v for k, v in r.items() if k not in STANDARD_RESOURCES}
        options: dict[str, Any] = {"num_cpus": r["num_cpus"], "max_concurrency": 2, "max_restarts": 0,
                                   "max_task_retries": 0}
        if r.get("num_gpus"):
            options["num_gpus"] = r["num_gpus"]
        if r.get("memory"):
            options["memory"] = r["memory"]
        if custom:
            options["resources"] = custom
        threads = max(1, math.floor(r["num_cpus"]))
        return self._actor_class.options(**options).remote(threads)

    def _await_actors(self) -> float:
        """Wait until every actor has started; seconds it took."""
        t0 = time.monotonic()
        pings = [s.actor.ping.remote() for s in self._slots]
        for slot, node in zip(self._slots, self._ray.get(pings), strict=True):
            slot.node = node
        return time.monotonic() - t0

    def _replace(self, slot: _Slot) -> None:
        """Give the slot a fresh actor (its old one died, or its node did); it starts while work goes on."""
        with contextlib.suppress(Exception):
            self._ray.kill(slot.actor, no_restart=True)
        slot.actor, slot.node, slot.sees = self._new_actor(), None, None
        slot.starting, slot.since = slot.actor.ping.remote(), time.monotonic()

    def _check_starting(self) -> list[Outcome]:
        """Note replacement actors that started; give up slots whose actor the shrunk cluster cannot place."""
        lost = []
        for slot in [s for s in self._slots if s.starting is not None]:
            if self._ray.wait([slot.starting], timeout=0)[0]:
                with contextlib.suppress(Exception):
                    slot.node = self._ray.get(slot.starting)
                slot.starting = None
            elif time.monotonic() - slot.since >= SHRINK_CHECK_S:
                slot.since = time.monotonic()  # ask the cluster at most once a second per starting slot
                if self._fitting_slots() < len(self._slots):
                    if slot.work is not None:
                        lost += [Outcome(w, error="no node of the Ray cluster could take its worker slot any more",
                                         lost=True) for w in slot.pending.values()]
                        self._finish_slot(slot)
                    self._drop(slot)
        return lost

    # ------------------------------------------------------------------ protocol
    @property
    def busy(self) -> int:
        """Units of work submitted and not yet returned."""
        return sum(s.work is not None for s in self._slots)

    def _trainer_ref(self, trainer: Trainer) -> tuple[str, Any]:
        entry = self._trainers.get(id(trainer))
        if entry is None or entry[0] is not trainer:
            entry = (trainer, uuid.uuid4().hex, self._ray.put(trainer))
            if len(self._trainers) >= TRAINERS_KEPT:  # a comparison moves on from study to study; free the old
                self._trainers.pop(next(iter(self._trainers)))
            self._trainers[id(trainer)] = entry
        return entry[1], entry[2]

    def _shared(self, slot: _Slot, folder: str) -> bool:
        """Whether `slot`'s worker sees `folder` (the driver writes a probe file there and asks)."""
        if self.shared_artifacts is not None:
            return self.shared_artifacts
        slot.sees = slot.sees or {}
        if folder not in slot.sees:
            token = uuid.uuid4().hex
            probe = Path(folder) / f".tunelab-ray-probe-{token}"
            try:
                probe.write_text(token)
                slot.sees[folder] = bool(self._ray.get(slot.actor.sees.remote(str(probe), token)))
            except OSError:
                slot.sees[folder] = False
            finally:
                with contextlib.suppress(OSError):
                    probe.unlink()
        return slot.sees[folder]

    def submit(self, work: Unit, trainer: Trainer) -> None:
        """Start a unit of work (one work, or a population) on a free worker slot."""
        free = [s for s in self._slots if s.work is None]
        slot = next((s for s in free if s.starting is None), free[0] if free else None)  # a started actor first
        if slot is None:
            raise RuntimeError("submit with every worker slot busy; wait for an outcome first")
        if self.busy == 0:
            self._pause.clear()
        key, ref = self._trainer_ref(trainer)
        works = works_of(work)
        folder = next((str(Path(w.checkpoint).parent) for w in works if w.checkpoint is not None), None)
        shared = True if folder is None else self._shared(slot, folder)
        blobs: dict[int, bytes] = {}
        if not shared:
            for w in works:
                if w.checkpoint is not None:
                    with contextlib.suppress(FileNotFoundError):
                        blobs[w.trial_id] = Path(w.checkpoint).read_bytes()
        slot.token, slot.work, slot.shared, slot.pause_sent = uuid.uuid4().hex, work, shared, False
        slot.pending = {w.trial_id: w for w in works}
        slot.generator = slot.actor.run.options(num_returns="streaming").remote(
            slot.token, work, key, [ref], resolve_routine(works[0].routine), shared, blobs)

    def pause(self) -> None:
        """Pause the running units of work at the end of their epoch (safe in a signal handler)."""
        self._pause.set()

    def _forward_pause(self) -> None:
        if not self._pause.is_set():
            return
        for slot in self._slots:
            if slot.work is not None and not slot.pause_sent:
                slot.actor.pause.remote(slot.token)
                slot.pause_sent = True

    def _store_checkpoint(self, work: Work, blob: bytes | None) -> str | None:
        """Write checkpoint bytes that came back from a worker into the artifact folder; the error, if any."""
        if blob is None or work.checkpoint is None:
            return None
        path = Path(work.checkpoint)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return f"the checkpoint from the Ray worker could not be written to {str(path)!r}: {err}"
        return None

    def _next_message(self, slot: _Slot) -> list[Outcome] | tuple[int, Any]:
        """Read one message of `slot`'s running unit of work: an epoch, or the outcomes it ends with."""
        try:
            ref = next(slot.generator)
            kind, a, b, blob = self._ray.get(ref)
        except StopIteration:
            return self._lost(slot, "the Ray worker ended the unit of work without an outcome")
        except Exception as err:
            if type(err).__name__ in _LOST_ERRORS or any(c.__name__ in _LOST_ERRORS for c in type(err).__mro__):
                return self._lost(slot, f"the Ray worker died ({type(err).__name__}: {str(err).splitlines()[0]})")
            outcomes = [Outcome(w, error=f"{type(err).__name__}: {err}") for w in slot.pending.values()]
            self._finish_slot(slot)
            return outcomes
        if kind == "epoch":
            if not slot.shared and a in slot.pending:
                self._store_checkpoint(slot.pending[a], blob)
            return a, b
        outcome: Outcome = a
        work = slot.pending.pop(outcome.work.trial_id, outcome.work)
        problem = None if slot.shared else self._store_checkpoint(work, blob)
        outcome = replace(outcome, work=work)
        if problem is not None and outcome.result is not None and outcome.result.checkpoint_error is None:
            outcome = replace(outcome, result=replace(outcome.result, checkpoint_error=problem))
        if not slot.pending:
            self._finish_slot(slot)
        return [outcome]

    def _finish_slot(self, slot: _Slot) -> None:
        slot.work, slot.generator, slot.token, slot.pause_sent = None, None, None, False
        slot.pending = {}

    def _lost(self, slot: _Slot, why: str) -> list[Outcome]:
        outcomes = [Outcome(w, error=why, lost=True) for w in slot.pending.values()]
        self._finish_slot(slot)
        if self._fitting_slots() < len(self._slots):  # its node is gone (as far as Ray knows yet): the cluster shrank
            self._drop(slot)
        else:
            self._replace(slot)
        return outcomes

    def _fitting_slots(self) -> int:
        """Worker slots the live nodes of the cluster can hold."""
        return sum(slots_on(n.get("Resources", {}), self.resources) for n in self._ray.nodes() if n.get("Alive"))

    def _drop(self, slot: _Slot) -> None:
        """Give up a worker slot the cluster cannot hold any more (its node left); the executor shrinks."""
        with contextlib.suppress(Exception):
            self._ray.kill(slot.actor, no_restart=True)
        self._slots.remove(slot)
        self.capacity = len(self._slots)
        warnings.warn(f"a node of the Ray cluster left: {self.capacity} worker slots remain", stacklevel=2)

    def wait(self, on_epoch: EpochCallback, timeout: float | None = None) -> list[Outcome]:
        """Relay epoch results until a unit of work has ended (or `timeout` passed); return the ended ones."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._forward_pause()
            dropped = self._check_starting()
            if dropped:
                return dropped
            running = {s.generator: s for s in self._slots if s.work is not None}
            if not running:
                return []
            ready, _ = self._ray.wait(list(running), num_returns=1, timeout=0.1)
            outcomes: list[Outcome] = []
            while ready:
                for generator in ready:
                    message = self._next_message(running[generator])
                    if isinstance(message, list):
                        outcomes += message
                    else:
                        on_epoch(*message)
                running = {s.generator: s for s in self._slots if s.work is not None}
                ready = self._ray.wait(list(running), num_returns=len(running), timeout=0)[0] if running else []
            if outcomes:
                return outcomes
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def close(self) -> None:
        """End the actors (and the Ray instance this executor started)."""
        for slot in self._slots:
            with contextlib.suppress(Exception):
                self._ray.kill(slot.actor, no_restart=True)
        self._slots = []
        self._trainers.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
