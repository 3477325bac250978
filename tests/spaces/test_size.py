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


def test_sizes_are_cached_on_the_architecture_identity_not_on_dropout_or_activation(monkeypatch):
    import tunelab.spaces.size as size

    built = []  # measurements
    real_measure = size._SIZES.measure
    monkeypatch.setattr(size._SIZES, "measure", lambda *a: built.append(1) or real_measure(*a))
    space = spaces.mlp(depth=2, width=48, input_noise=spaces.Float(0.0, 1.0), input_dropout=spaces.Float(0.0, 0.5),
                       shift=spaces.Int(0, 4))
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(150)]
    assert len({(c["model.dropout"], c["model.activation"]) for c in configs}) == 150
    shape = (37,)  # measured by no other test: the cache starts without it
    before = size.cached_sizes()
    sizes = {spaces.model_size(c, shape, 7) for c in configs}
    assert len(sizes) == 1 and size.cached_sizes() == before + 1 and len(built) == 1  # 150 configs, 1 measurement
    assert sizes == {spaces.model_size({**configs[0], "model.dropout": 0.0, "model.input_noise": 0.0,
                                        "model.input_dropout": 0.0, "model.shift": 0}, shape, 7)}
    wider = spaces.model_size({**configs[0], "model.width": 49}, shape, 7)  # a shape parameter: another entry
    assert wider.params > sizes.pop().params and size.cached_sizes() == before + 2


def test_the_architecture_identity_leaves_out_only_what_a_family_declares_shape_free():
    from tunelab.spaces.models import shape_identity

    mlp = spaces.mlp(input_noise=0.1, shift=2, input_dropout=0.1).default()
    assert dict(shape_identity(mlp)) == {"model": "'mlp'", "model.depth": "2", "model.width": "128"}
    cnn = spaces.cnn(dim=1).default()
    assert {k for k, _ in shape_identity(cnn)} == {"model", "model.dim", "model.depth", "model.channels",
                                                   "model.kernel", "model.norm"}
    cells = spaces.cells(dim=1).default()
    assert len(shape_identity(cells)) == len([k for k in cells if k.startswith("model")])  # every cell choice
    spaces.models.register("own_net", spaces.ModelSpec(lambda hp, shape, n: torch.nn.Flatten(), reference="test"))
    try:  # a family that declares nothing: every model.* value, as before
        own = {"model": "own_net", "model.dropout": 0.1, "model.activation": "relu"}
        assert len(shape_identity(own)) == 3
        assert shape_identity(own) != shape_identity({**own, "model.dropout": 0.2})
    finally:
        spaces.models.unregister("own_net")
    assert shape_identity({"optimizer": "sgd"}) == ()  # no model part (the default MLP): nothing to tell apart



def test_the_mlps_size_without_building_it_equals_what_the_counter_finds_on_the_built_network():
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tunelab.spaces import size as size_module

    space = spaces.mlp(depth=spaces.Int(0, 4), width=spaces.Int(1, 300), input_noise=spaces.Float(0.0, 0.3),
                       input_dropout=spaces.Float(0.0, 0.3))
    for i in range(25):
        config = space.sample(np.random.default_rng(i))
        shape, outputs = [(40,), (3, 8, 8), (12,)][i % 3], 1 + i % 7
        model = size_module._meta_model(config, shape, outputs).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty((1, *shape), device="meta"))
        counted = spaces.ModelSize(sum(p.numel() for p in model.parameters()), counter.get_total_flops())
        assert size_module._analytic(config, shape, outputs) == counted, config
        assert spaces.model_size(config, shape, outputs) == counted
