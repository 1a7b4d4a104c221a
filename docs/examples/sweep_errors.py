from bn_decay_probe import sweep

sweep([])
sweep([0.9, float("nan")])
