from bn_decay_probe import probe

r = probe(0.5, steps=3, shape=(2, 2, 2, 2))
r.before["train"]["moving_mean"], r.after["train"]["moving_mean"]
r.trajectory["moving_variance"]
r.predicted_trajectory()["moving_variance"]
r.batch_statistics["moving_variance"]
r.fused, r.epsilon["train"], r.update_factor
r.branches_share_variables, r.shared_variables
r.device.ran_on, r.notes
