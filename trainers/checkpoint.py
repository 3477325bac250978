"""Checkpoints: one dict with everything a run needs to continue, written atomically.

Like minGPT / nanoGPT, a checkpoint bundles the model, optimizer and scheduler states, the
epoch and step, the random states (the run's torch generator state, the global CPU / CUDA
states the run forked, and its data-order generator), the config and the learning curve so far.
`save_checkpoint` writes to a temporary file in the same folder and renames it over the target,
so a crash leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tunelab.spaces.errors import CheckpointError

FORMAT = 1


def host_label() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def tmp_prefix(target: Path) -> str:
    """The prefix of the temporary file written on the way to `target`: `.<name>.<host>~<pid>.`.

    Naming the writer lets a later open remove what a killed process left behind
    (`studies.artifacts.sweep`) without touching a live writer's file.
    """
    return f".{target.name}.{host_label()}~{os.getpid()}."


def tmp_writer(name: str) -> tuple[str, int] | None:
    """`(host, pid)` of the process that wrote the temporary file `name` (None for another name)."""
    found = re.search(r"\.([A-Za-z0-9-]+)~(\d+)\.[^.]*\.tmp$", name)
    return (found.group(1), int(found.group(2))) if found else None


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any], *, durable: bool = True) -> Path:
    """Write `state` to `path` atomically (temporary file + fsync + rename).

    Args:
        path: Target file; its folder is created if missing.
        state: Tensors, numbers, strings, lists and dicts (what `torch.load(weights_only=True)` reads).
        durable: fsync the file before the rename. Only a replayed run, whose state can be
            recomputed from its table, turns it off (an fsync costs milliseconds).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: torch.device | str | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`.

    Args:
        path: The checkpoint file.
        map_location: Where tensors are loaded (CPU by default; the trainer moves states itself).

    Raises:
        CheckpointError: The file is missing, unreadable, or not a tunelab checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}; delete it to start the run over") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tunelab checkpoint (format {FORMAT})")
    return state


@contextlib.contextmanager
def run_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Inside, the global torch RNG (CPU and `device`) is the run's own, seeded from `seed`; restored on exit.

    Only the generators the run forks are seeded (`torch.manual_seed` would reseed every GPU),
    so nothing outside the run sees or disturbs its randomness.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(int(seed))
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(int(seed))
        yield


def capture_rng(device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The random states a run uses: global CPU (and CUDA device) state, and its data generator."""
    states = {"cpu": torch.get_rng_state(), "data": generator.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(states: dict[str, torch.Tensor], device: torch.device, generator: torch.Generator) -> None:
    """Restore what `capture_rng` captured (inside the run's forked RNG scope)."""
    torch.set_rng_state(states["cpu"])
    generator.set_state(states["data"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


__all__ = ["capture_rng", "load_checkpoint", "restore_rng", "run_rng", "save_checkpoint", "tmp_prefix", "tmp_writer"]
