"""One batch-norm branch per TF1 API, written the way a user of that API writes it.

Each builder's ``branch(x, phase)`` adds one call of the layer and returns its output and the
update ops that call created. Whether those updates run (in place, through UPDATE_OPS, or never)
is decided by graph.py, the same way for every API.
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional

from .. import backend
from .config import ProbeConfig

SCOPE = "probe"


class Branch(NamedTuple):
    output: Any
    updates: List[Any]  # the update ops this call created that the probe may attach itself


def _axis(config: ProbeConfig) -> int:
    return 1 if config.data_format == "NCHW" else -1


def _scope(tf1: Any, config: ProbeConfig, phase: str) -> Any:
    """Shared: one scope with AUTO_REUSE (the blog experiment). Unshared: a scope per branch, the
    usual way two branches end up with two sets of variables."""
    if config.share_variables:
        return tf1.variable_scope(SCOPE, reuse=tf1.AUTO_REUSE)
    return tf1.variable_scope("%s_%s" % (SCOPE, phase))


def _new(items: List[Any], before: List[Any]) -> List[Any]:
    # By identity: TF 2.x tensors are not hashable and compare elementwise.
    seen = {id(item) for item in before}
    return [item for item in items if id(item) not in seen]


class ContribBuilder:
    """tf.contrib.layers.batch_norm(decay=...): in place with updates_collections=None,
    otherwise into UPDATE_OPS (contrib then delegates to the tf.layers class)."""

    def __init__(self, tf1: Any, config: ProbeConfig):
        self.tf1, self.config = tf1, config

    def branch(self, x: Any, phase: str) -> Branch:
        c, tf1 = self.config, self.tf1
        with _scope(tf1, c, phase):
            output = backend.batch_norm()(
                x, decay=c.decay, epsilon=c.epsilon, fused=c.fused,
                is_training=(phase == "train"), data_format=c.data_format,
                zero_debias_moving_mean=c.zero_debias, trainable=c.trainable,
                updates_collections=None if c.updates == "inplace" else tf1.GraphKeys.UPDATE_OPS)
        return Branch(output, [])


class LayersBuilder:
    """tf.layers.batch_normalization(momentum=decay): updates go to UPDATE_OPS. The branches
    share variables only when both calls get the same ``name`` (with reuse)."""

    def __init__(self, tf1: Any, config: ProbeConfig):
        self.tf1, self.config = tf1, config

    def branch(self, x: Any, phase: str) -> Branch:
        c, tf1 = self.config, self.tf1
        before = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        # No enclosing scope: without a name, tf.layers uniquifies the second call's name
        # (batch_normalization_1) only against the enclosing name scope.
        output = backend.layers_batch_normalization()(
            x, axis=_axis(c), momentum=c.decay, epsilon=c.epsilon, fused=c.fused,
            training=(phase == "train"), trainable=c.trainable,
            name="batch_normalization" if c.share_variables else None,
            reuse=tf1.AUTO_REUSE if c.share_variables else None)
        return Branch(output, _new(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS), before))


class KerasBuilder:
    """One tf.keras.layers.BatchNormalization(momentum=decay) object called with training=True
    and False; its updates are in ``layer.updates``, which TF1 graphs do not put in UPDATE_OPS.
    Unshared: a layer object per branch."""

    def __init__(self, tf1: Any, config: ProbeConfig):
        self.tf1, self.config = tf1, config
        self.layer: Optional[Any] = None

    def branch(self, x: Any, phase: str) -> Branch:
        c = self.config
        if self.layer is None or not c.share_variables:
            # trainable=False: in TF 2.x Keras this also means inference mode (its own matrix row).
            self.layer = backend.keras_batch_normalization()(
                axis=_axis(c), momentum=c.decay, epsilon=c.epsilon, fused=c.fused,
                trainable=c.trainable)
        before = list(self.layer.updates)
        output = self.layer(x, training=(phase == "train"))
        return Branch(output, _new(list(self.layer.updates), before))


class NnBuilder:
    """tf.nn.fused_batch_norm (fused None or True) or tf.nn.moments + tf.nn.batch_normalization
    (fused False), with variables and assign_moving_average written by hand, as a user of the
    low-level API does. Its updates go to UPDATE_OPS unless they are attached in place."""

    def __init__(self, tf1: Any, config: ProbeConfig):
        self.tf1, self.config = tf1, config
        self.variables: Dict[str, Any] = {}

    def _variables(self, phase: str) -> Dict[str, Any]:
        if self.variables and self.config.share_variables:
            return self.variables
        tf1, channels = self.tf1, self.config.channels
        with _scope(tf1, self.config, phase):
            self.variables = {
                "beta": tf1.get_variable("beta", [channels], initializer=tf1.zeros_initializer()),
                "moving_mean": tf1.get_variable("moving_mean", [channels], trainable=False,
                                                initializer=tf1.zeros_initializer()),
                "moving_variance": tf1.get_variable("moving_variance", [channels],
                                                    trainable=False,
                                                    initializer=tf1.ones_initializer())}
        return self.variables

    def _per_channel(self, vector: Any) -> Any:
        """Broadcasts a [C] vector against the input in either data format."""
        if self.config.data_format == "NCHW":
            return self.tf1.reshape(vector, [1, -1, 1, 1])
        return vector

    def branch(self, x: Any, phase: str) -> Branch:
        c, tf1 = self.config, self.tf1
        v = self._variables(phase)
        fused = c.fused is not False
        gamma = tf1.ones([c.channels])
        if phase == "test":
            if fused:
                output = tf1.nn.fused_batch_norm(
                    x, gamma, v["beta"], mean=v["moving_mean"], variance=v["moving_variance"],
                    epsilon=c.epsilon, data_format=c.data_format, is_training=False)[0]
            else:
                output = tf1.nn.batch_normalization(
                    x, self._per_channel(v["moving_mean"]), self._per_channel(v["moving_variance"]),
                    self._per_channel(v["beta"]), None, c.epsilon)
            return Branch(output, [])
        if fused:
            output, mean, variance = tf1.nn.fused_batch_norm(
                x, gamma, v["beta"], epsilon=c.epsilon, data_format=c.data_format,
                is_training=True)
        else:
            mean, variance = tf1.nn.moments(x, [0, 2, 3] if c.data_format == "NCHW" else [0, 1, 2])
            output = tf1.nn.batch_normalization(x, self._per_channel(mean),
                                                self._per_channel(variance),
                                                self._per_channel(v["beta"]), None, c.epsilon)
        assign = backend.assign_moving_average()
        updates = [assign(v["moving_mean"], mean, c.decay, zero_debias=False),
                   assign(v["moving_variance"], variance, c.decay, zero_debias=False)]
        if c.updates != "inplace":
            for update in updates:
                tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, update)
        return Branch(output, updates)


BUILDERS = {"contrib": ContribBuilder, "layers": LayersBuilder, "keras": KerasBuilder,
            "nn": NnBuilder}


def builder(tf1: Any, config: ProbeConfig) -> Any:
    return BUILDERS[config.api](tf1, config)


def decay_in_float32(config: ProbeConfig, fused: bool) -> bool:
    """Whether the layer of ``config``, given a Python float decay, computes 1 - decay in
    float32 rather than in Python (float64, then cast): Keras's BatchNormalization class (api
    "keras", "layers", and "contrib" when it hands UPDATE_OPS over to tf.layers) converts its
    momentum to a float32 tensor on the fused path; assign_moving_average (contrib's own paths,
    "nn") and Keras's non-fused path subtract the Python float. The sweep, which feeds the decay
    as a float64 tensor, rounds it to float32 first on that path, so 1 - decay is the same
    float32 number as in probe()'s graph (tests compare update_factor on both backends)."""
    keras_class = config.api in ("layers", "keras") or (
        config.api == "contrib" and config.updates != "inplace" and not config.zero_debias)
    return keras_class and fused
