"""tf.keras BatchNormalization in a TF1 graph, trained 100 steps with the usual TF1 train op
(under UPDATE_OPS, which tf.keras leaves empty), then with the layer's own updates: what
diagnose_graph finds in each. Seeded: the same numbers on every run (TF 1.15, CPU)."""
import numpy as np
import tensorflow as tf

from bn_decay_probe.doctor import diagnose_graph, render_diagnosis

tf1 = tf.compat.v1


def train(updates_of_the_layer):
    with tf1.Graph().as_default() as graph:
        tf1.set_random_seed(0)  # the Conv2D's initial weights
        x = tf1.constant(np.random.RandomState(0).normal(2.0, 3.0, (8, 6, 6, 3)), tf1.float32)
        bn = tf.keras.layers.BatchNormalization(momentum=0.99)
        y = bn(tf.keras.layers.Conv2D(4, 3)(x), training=True)
        step = tf1.train.get_or_create_global_step()
        updates = bn.updates if updates_of_the_layer else tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf1.control_dependencies(updates):
            train_op = tf1.train.AdamOptimizer(0.01).minimize(tf1.reduce_mean(y ** 2),
                                                               global_step=step)
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(100):
                session.run(train_op)
            return diagnose_graph(graph, train_op, session=session)


print("# train op under UPDATE_OPS:")
print(render_diagnosis(train(updates_of_the_layer=False)))
print()
print("# train op under bn.updates:")
print(render_diagnosis(train(updates_of_the_layer=True)))
