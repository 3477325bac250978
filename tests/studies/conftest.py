import pytest

import spaces
import trainers


@pytest.fixture(scope="session")
def small_trainer():
    """MNIST-1D with 256 training examples, 2 epochs: a trial takes ~0.1 s."""
    return trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=2), epochs=2, seed=0)


def small_space():
    return spaces.optimizers(["adamw", "sgd"]) | spaces.mlp(width=spaces.Int(8, 64, log=True), depth=1)
