"""The one kind of thing studies, executors and strategies train with: `Trainable`.

`Trainer` (the shared trainer), `Replay` (a recorded table), `Function` (the user's own
iterative training code) and `Objective` (a black-box function evaluated once) are all
`Trainable`s. The study layer talks to this protocol only: it never asks which one it holds,
and what only some can do is a capability they declare (`trains_models`, `vectorises`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from tunelab.trainers.run import Decision, EpochResult, TrainResult


@runtime_checkable
class Trainable(Protocol):
    """What a study needs of whatever trains its configurations.

    Attributes:
        epochs: Epochs of a full run (1 for an `Objective`: one evaluation is one epoch).
        seed: The default seed of runs.
        device: Where runs train (`torch.device`).
        name: The workload's name (stored with studies, shown in listings).
        metric: The objective's name (what `fit` reports as `val_metric`).
        direction: "minimize" or "maximize".
        input_shape: One example's shape, for strategies that size networks (None when unknown).
        n_outputs: The network's outputs (None when unknown).
        trains_models: Whether it builds and trains tunelab's models from `spaces` (the shared
            trainer): DARTS, STN, model sizes and latency need it.
        vectorises: Whether several trials can train as one vectorised population.
    """

    epochs: int
    seed: int
    device: Any
    trains_models: bool
    vectorises: bool

    @property
    def name(self) -> str: ...  # noqa: D102

    @property
    def metric(self) -> str: ...  # noqa: D102

    @property
    def direction(self) -> str: ...  # noqa: D102

    @property
    def input_shape(self) -> tuple[int, ...] | None: ...  # noqa: D102

    @property
    def n_outputs(self) -> int | None: ...  # noqa: D102

    def fit(self, config: Mapping[str, Any], *, until_epoch: int | None = None, checkpoint: Any = None,
            report: Callable[[EpochResult], Decision | None] | None = None, seed: int | None = None,
            checkpoint_seconds: float | None = None,
            keep_final: Callable[[EpochResult], bool] | None = None) -> TrainResult:
        """Train (or continue, from `checkpoint`) one configuration; `report` after every epoch.

        `keep_final(last_epoch)` says whether a run that ends writes its final checkpoint (None:
        always); checkpoints for a pause are always written.
        """
        ...

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description stored with studies (how to rebuild it, and what identifies it)."""
        ...

    def derive(self, *, epochs: int | None = None, seed: int | None = None) -> Trainable:
        """The same with another run length or seed."""
        ...

    def check(self, space: Any) -> None:
        """Refuse a space this trainable cannot train, before anything trains (a typed error naming the fix)."""
        ...

    def size(self, config: Mapping[str, Any]) -> dict[str, int]:
        """`{"n_params": ..., "flops": ...}` of the network `config` builds ({} when there is none)."""
        ...

    def planned_grad_evals(self, config: Mapping[str, Any], epochs: int) -> int | None:
        """Gradient evaluations `epochs` epochs of `config` will cost (None when only the run can tell)."""
        ...


def is_trainable(obj: Any) -> bool:
    """Whether `obj` is a `Trainable` (has every member the protocol names)."""
    return isinstance(obj, Trainable)


__all__ = ["Trainable", "is_trainable"]
