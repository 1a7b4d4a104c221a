"""Usage: python docs/examples/across_frameworks.py

Prints docs/semantics.md's "Across frameworks" table, every row measured in this run: each
framework's batch norm (the probe's api) trained at decay 0.9 on two seeded batches (4, 8, 8, 3),
two passes, then compared with its own rule in numpy (bn_decay_probe.probe.theory), and, in
brackets, with the same rule fed the other variance (biased <-> n/(n-1)): what the check tells
apart. The variance fed is the one the layer fed its average, measured and told apart from
numpy's biased and n/(n-1) values. A framework that is not installed gets the line naming its
extra."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bn_decay_probe import probe, set_verbosity  # noqa: E402
from bn_decay_probe.probe import theory  # noqa: E402
from bn_decay_probe.probe.frameworks import FRAMEWORKS, average_of  # noqa: E402
from bn_decay_probe.probe.matrix import variance_kind  # noqa: E402

DECAY = 0.9
BATCHES = [np.random.RandomState(seed).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
           for seed in (1, 2)]
# (row, api, fused, how the layer is built, its rule)
TENSORFLOW = [
    ("TF 1.x `tf.contrib.layers.batch_norm` / tf-slim, fused (TF >= 1.4 default)", "contrib",
     None, "`decay=0.9`"),
    ("TF 1.x `tf.contrib.layers.batch_norm`, `fused=False`", "contrib", False, "`decay=0.9`"),
    ("TF 1.x `tf.layers`, `tf.keras` (Keras 2), fused", "keras", None, "`momentum=0.9`"),
    ("Keras 3 on TensorFlow (`tf.keras` from TF 2.16)", "keras3", None, "`momentum=0.9`"),
]
SPELLED = {"torch": "`momentum=0.1` (1 - decay)", "torch-cumulative": "`momentum=None`",
           "flax": "`momentum=0.9`", "haiku": "`decay_rate=0.9`",
           "keras3-jax": "`momentum=0.9`", "keras3-torch": "`momentum=0.9`"}
RULES = {"ema": "`moving = d * moving + (1 - d) * batch`",
         "debiased": "`hidden = d * hidden + (1 - d) * batch` from 0, used as "
                     "`hidden / (1 - d**k)` (zero-debiased)",
         "cumulative": "mean of every step's batch statistics (no decay)"}


def measured(api, fused):
    """The probe's result, its variance fed, and its largest relative difference from the rule
    over every step: "d (d with the other variance)"."""
    r = probe(DECAY, api=api, fused=fused, batches=BATCHES, steps=2, device="cpu")
    other = theory.predicted_trajectory(r.config.train_inputs(), r.before["train"], DECAY,
                                        not r.unbiased_variance, average=average_of(api))
    differences = [max(np.max(np.abs(r.trajectory[n] - rule[n]) / np.abs(rule[n]))
                       for n in ("moving_mean", "moving_variance"))
                   for rule in (r.predicted_trajectory(), other)]
    kind = variance_kind(r.batch_statistics["moving_variance"], BATCHES[-1])
    return (r, {"biased": "biased", "n/(n-1)": "n/(n-1) (unbiased)"}[kind],
            "%.1e (%.1e)" % tuple(differences))


def main():
    set_verbosity("quiet")
    print("| framework and layer | decay 0.9 spelled | rule | variance fed (measured) "
          "| measured vs rule (other variance) | version |")
    print("|---|---|---|---|---|---|")
    for row, api, fused, spelled in TENSORFLOW:
        r, variance, difference = measured(api, fused)
        version = "TensorFlow %s" % r.versions["tensorflow"]
        if api == "keras3":
            version = "Keras %s" % r.versions["keras3"]
        print("| %s | %s | %s | %s | %s | %s |" % (row, spelled, RULES["ema"], variance,
                                                    difference, version))
    for api, framework in FRAMEWORKS.items():
        missing = framework.unavailable()
        if missing:
            print("| %s (api `%s`) | %s | %s | not measured: %s | | |"
                  % (framework.layer, api, SPELLED[api], RULES[framework.average], missing))
            continue
        r, variance, difference = measured(api, None)
        print("| `%s` (api `%s`) | %s | %s | %s | %s | %s |"
              % (framework.layer, api, SPELLED[api], RULES[framework.average], variance,
                 difference, r.versions["framework"]))


if __name__ == "__main__":
    main()
