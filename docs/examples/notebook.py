from bn_decay_probe import probe

# The blog experiment's layer and input, trained 60 steps at decay 0.9:
r = probe(0.9, steps=60)
r
r.after["train"]["moving_variance"]
r.trajectory["gap"][[0, 9, 59]]
r.steps_to_converge(0.01)
# With n = N*H*W = 256 values per channel the fused floor is below tol:
probe(0.9, steps=60, shape=(4, 8, 8, 3)).steps_to_converge(0.01)
