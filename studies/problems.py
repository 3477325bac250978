"""`Problem`: a workload, its trainer and the fixed network that optimizers are compared on.

An optimizer comparison holds the model fixed and tunes only the optimizer and its schedule
(Choi et al. 2019; Schmidt et al. 2021). Built-in problems, by name (`studies.problems`):

| name          | data                                   | network                                     | epochs |
|---------------|----------------------------------------|---------------------------------------------|-------:|
| `mnist1d_mlp` | MNIST-1D, 3200 train / 800 validation  | MLP, 2 hidden layers of 128 ReLU units      | 20     |
| `mnist1d_cnn` | MNIST-1D, 3200 train / 800 validation  | the published MNIST-1D CNN (3 conv layers)  | 20     |
| `digits_cnn`  | scikit-learn digits, 1077 / 360 / 360  | 2-D CNN, 2 blocks of 32 channels, kernel 3  | 20     |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelab.spaces import Config, ConfigError, Space, build_model, mlp
from tunelab.spaces.registry import Registry
from tunelab.studies.recipes import identity
from tunelab.trainers import Trainer, Workload, workloads
from tunelab.trainers.protocol import Trainable, is_trainable


def _model_config(model: Space | Mapping[str, Any] | None) -> Config:
    if model is None:
        return dict(mlp().default())
    if isinstance(model, Space):
        return dict(model.default())
    if isinstance(model, Mapping) and "model" in model:
        return dict(model)
    raise ConfigError(
        f"a problem's model must be a model space (e.g. spaces.cnn(dim=1); its defaults are used) or a config "
        f"with a 'model' entry, got {model!r}"
    )


@dataclass(frozen=True)
class Problem:
    """What optimizers compete on: a trainer (workload, run length, seed) and a fixed network.

    Args:
        name: A short name, unique in a comparison (letters, digits, `_`, `-`).
        trainer: Trains every run; its `epochs` is the length of a run of a one-pass optimizer.
            The shared trainer (`trainers.Trainer`), or your own training loop
            (`trainers.Function`, whose `fn` builds its optimizer with
            `spaces.build_optimizer(config, model)` and its schedule with `spaces.build_schedule`).
        model: The network: a model space (its defaults are used, nothing is searched) or a
            model config; None for `spaces.mlp()`'s defaults. Ignored for a `Function`, whose
            `fn` builds its own network.

    Raises:
        ConfigError: A bad name, trainer or model, or a model the workload cannot build.
    """

    name: str
    trainer: Trainable
    model: Config = field(default_factory=dict)

    def __init__(self, name: str, trainer: Trainable, model: Space | Mapping[str, Any] | None = None) -> None:
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
            raise ConfigError(f"a problem's name must be letters, digits, '_' or '-', got {name!r}")
        if not is_trainable(trainer) or (trainer.epochs < 2 and not trainer.trains_models):
            raise ConfigError(f"a problem needs a trainers.Trainer, or a trainers.Function of at least 2 epochs that "
                              f"builds its optimizer with spaces.build_optimizer (an optimizer comparison tunes and "
                              f"reruns training runs), got {trainer!r}")
        config: Config = {}
        if trainer.trains_models:
            config = _model_config(model)
            try:
                build_model(config, trainer.input_shape, trainer.n_outputs)
            except Exception as err:
                raise ConfigError(
                    f"problem {name!r}: the model {config} cannot take the workload {trainer.name!r}'s examples of "
                    f"shape {trainer.input_shape}: {err}"
                ) from err
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "trainer", trainer)
        object.__setattr__(self, "model", config)

    def spec(self) -> dict[str, Any]:
        """What defines the problem's measurements (device and precision excluded), JSON-ready."""
        return {"name": self.name, "trainer": identity(self.trainer.spec()), "model": dict(self.model)}

    @property
    def space(self) -> Space:
        """The model config as a space of fixed values."""
        from tunelab.spaces import Fixed

        return Space(**{k: Fixed(v) for k, v in self.model.items()})


problems: Registry[Callable[..., Problem]] = Registry("problem")


def _trainer(workload: Workload, epochs: int, device: str, seed: int) -> Trainer:
    return Trainer(workload, epochs=epochs, device=device, seed=seed)


def mnist1d_mlp(*, epochs: int = 20, device: str = "auto", seed: int = 0, **workload_args: Any) -> Problem:
    """MNIST-1D with an MLP of 2 hidden layers of 128 ReLU units (`workload_args` go to `workloads.mnist1d`)."""
    trainer = _trainer(workloads.mnist1d(**workload_args), epochs, device, seed)
    return Problem("mnist1d_mlp", trainer, mlp(depth=2, width=128, dropout=0.0, activation="relu"))


def mnist1d_cnn(*, epochs: int = 20, device: str = "auto", seed: int = 0, **workload_args: Any) -> Problem:
    """MNIST-1D with the published CNN of Greydanus & Kobak 2024 (3 stride-2 conv layers of 25 channels)."""
    trainer = _trainer(workloads.mnist1d(**workload_args), epochs, device, seed)
    return Problem("mnist1d_cnn", trainer, {"model": "mnist1d_cnn"})


def digits_cnn(*, epochs: int = 20, device: str = "auto", seed: int = 0, **workload_args: Any) -> Problem:
    """scikit-learn's 8x8 digits with a 2-D CNN: 2 blocks of 32 channels, kernel 3, batch norm."""
    from tunelab.spaces import cnn

    trainer = _trainer(workloads.digits(**workload_args), epochs, device, seed)
    model = cnn(dim=2, depth=2, channels=32, kernel=3, norm="batch", dropout=0.0)
    return Problem("digits_cnn", trainer, model)


for _factory in (mnist1d_mlp, mnist1d_cnn, digits_cnn):
    problems.register(_factory.__name__, _factory)


def as_problem(x: Problem | Trainer | Workload | str, *, device: str = "auto") -> Problem:
    """A `Problem` from a built-in name, a trainer (MLP defaults), a workload, or a problem."""
    if isinstance(x, Problem):
        return x
    if isinstance(x, str):
        return problems.get(x)(device=device)
    if isinstance(x, Workload):
        x = Trainer(x, device=device)
    if is_trainable(x):
        return Problem(x.name.replace(".", "_"), x)
    raise ConfigError(
        f"compare takes problems: a built-in name ({', '.join(problems)}), a studies.Problem, a trainers.Trainer "
        f"or a trainers.Workload; got {type(x).__name__}"
    )


__all__ = ["Problem", "as_problem", "digits_cnn", "mnist1d_cnn", "mnist1d_mlp", "problems"]
