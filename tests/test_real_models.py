"""The planted problems of tests/real_models.py are what they claim, read straight from the
checkpoints with TF's reader (not with the doctor): the doctor's and the repair's real-model tests
build on these cases."""
import numpy as np
import pytest

from bn_decay_probe import backend
from real_models import CASES, CI_MODELS, CONVERGED_STEPS, FEW_STEPS, SPECS


def read(prefix, names):
    with backend.quiet() as tf1:
        reader = tf1.train.NewCheckpointReader(prefix)
        return {name: reader.get_tensor(name) for name in names}


def statistics(prefix, layers):
    values = read(prefix, [layer + suffix for layer in layers
                           for suffix in ("/moving_mean", "/moving_variance")])
    return [(values[layer + "/moving_mean"], values[layer + "/moving_variance"])
            for layer in layers]


def initial(mean, variance):
    return bool(np.all(mean == 0) and np.all(variance == 1))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", CI_MODELS)
def test_planted_problem(real_model, model, case):
    trained = real_model(model, case)
    assert len(trained.bn_layers) == SPECS[model][2]
    steps = CONVERGED_STEPS if case in ("correct", "unshared_copy") else FEW_STEPS
    assert trained.steps == steps
    assert read(trained.saver_prefix, [trained.step_variable])[trained.step_variable] == steps
    stats = statistics(trained.saver_prefix, trained.bn_layers)
    moved = [not initial(m, v) and np.all(np.isfinite(m)) and np.all(np.isfinite(v))
             for m, v in stats]
    if case in ("correct", "too_few_steps", "unshared_copy"):
        assert all(moved)
    elif case == "forgot_update_ops" or model.startswith("slim"):
        assert not any(moved) and all(initial(m, v) for m, v in stats)
    else:
        # Learning phase never set: the updates ran with momentum 1, so nothing moved, except
        # that TF 1.15's CPU fused kernel feeds uninitialized batch statistics in inference
        # mode and (v - garbage) * 0 can be NaN (measured: 51 of 52 layers NaN on TF 1.15).
        assert not any(moved)
        assert all(initial(m, v) or np.isnan(m).any() or np.isnan(v).any() for m, v in stats)
    if case == "unshared_copy":
        assert len(trained.copy_layers) == len(trained.bn_layers)
        assert all(initial(m, v) for m, v in statistics(trained.saver_prefix,
                                                         trained.copy_layers))
    else:
        assert trained.copy_layers == ()
    if trained.weights_prefix is not None:
        with backend.quiet() as tf1:
            keys = tf1.train.NewCheckpointReader(trained.weights_prefix
                                                 ).get_variable_to_shape_map()
        assert sum(key.endswith("/moving_mean/.ATTRIBUTES/VARIABLE_VALUE")
                   for key in keys) == len(trained.bn_layers)
