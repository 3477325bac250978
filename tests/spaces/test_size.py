import numpy as np
import pytest
import torch

from tunelab import spaces


def test_model_size_counts_parameters_and_forward_flops_of_a_known_network():
    config = spaces.mlp(depth=2, width=32, dropout=0.0, activation="relu").default()
    size = spaces.model_size(config, (40,), 10)
    assert size.params == (40 * 32 + 32) + (32 * 32 + 32) + (32 * 10 + 10)
    assert size.flops == 2 * (40 * 32 + 32 * 32 + 32 * 10)  # a multiply-add counts as two
    assert spaces.param_count(config, (40,), 10) == size.params


def test_cell_sizes_match_the_real_network_and_leave_the_global_rng_alone():
    space = spaces.cells(dim=1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        config = space.sample(rng)
        state = torch.get_rng_state()
        size = spaces.model_size(config, (40,), 10)
        assert torch.equal(torch.get_rng_state(), state)  # measuring draws no random numbers
        real = spaces.build_model(config, (40,), 10)
        assert size.params == sum(p.numel() for p in real.parameters())
    light = {**space.default(), **{f"model.op_{i}_{j}": "skip" for i, j in spaces.EDGES}}
    heavy = {**space.default(), **{f"model.op_{i}_{j}": "conv3x3" for i, j in spaces.EDGES}}
    a, b = spaces.model_size(light, (40,), 10), spaces.model_size(heavy, (40,), 10)
    assert a.params < b.params and a.flops < b.flops


def test_a_config_that_does_not_fit_the_input_is_a_config_error():
    with pytest.raises(spaces.ConfigError):
        spaces.model_size(spaces.cnn(dim=2).default(), (40,), 10)


def test_mutate_can_target_one_parameter():
    space = spaces.Space(a=spaces.Float(0.0, 1.0), b=spaces.Categorical(("x", "y", "z")))
    config = {"a": 0.5, "b": "x"}
    child = space.mutate(config, np.random.default_rng(0), name="b")
    assert child["a"] == 0.5 and child["b"] != "x"
    with pytest.raises(spaces.ConfigError, match="choose one of"):
        space.mutate(config, 0, name="c")
