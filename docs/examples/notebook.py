from bn_decay_probe import probe

r = probe(0.9, steps=60, shape=(4, 8, 8, 3))  # uniform(0, 255) input, seed 0
r
r.after["train"]["moving_mean"]  # measured, float32
r.predicted_trajectory()["moving_mean"][-1]  # the update rule in numpy, float64
r.trajectory["gap"][[0, 9, 59]]  # max |test output - train output| after steps 1, 10, 60
r.steps_to_converge(0.01)
