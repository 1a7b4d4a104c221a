"""Usage: python docs/examples/forgotten_update_ops.py DIR

Trains a small model (conv + tf.contrib.layers.batch_norm, twice, decay 0.999) for 200 Adam
steps with a train op that does not depend on UPDATE_OPS, the classic mistake, and saves it as
DIR/model.ckpt-200. Seeded (TF 1.15): the doctor's README example runs on it."""
import os
import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def main(directory):
    with tf1.Graph().as_default():
        tf1.set_random_seed(0)
        images = tf1.constant(np.random.RandomState(0).uniform(0, 1, (16, 8, 8, 3)), tf1.float32)
        net = images
        for block, channels in enumerate((4, 6)):
            with tf1.variable_scope("block%d" % block):
                net = tf1.layers.conv2d(net, channels, 3, padding="same", use_bias=False)
                net = tf.contrib.layers.batch_norm(net, decay=0.999, is_training=True,
                                                   scope="bn")
                net = tf.nn.relu(net)
        loss = tf1.reduce_mean(tf1.square(tf1.reduce_mean(net, axis=[1, 2, 3]) - 1.0))
        step = tf1.train.get_or_create_global_step()
        train_op = tf1.train.AdamOptimizer(0.01).minimize(loss, global_step=step)  # no UPDATE_OPS
        saver = tf1.train.Saver()
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(200):
                session.run(train_op)
            os.makedirs(directory, exist_ok=True)
            print(saver.save(session, os.path.join(directory, "model.ckpt"), global_step=step))


if __name__ == "__main__":
    main(sys.argv[1])
