"""How far sweep()'s results are from probe()'s on this backend, as a markdown table (for
docs/sweeps.md): per API, fused or not, and input, over nine decays and three train steps, how
many decays are bit-identical and the largest deviations (bn_decay_probe.testing.deviation)
next to the bound the tests hold (testing.sweep_bound)."""
import numpy as np

from bn_decay_probe import backend, probe, sweep
from bn_decay_probe.testing import deviation, sweep_bound

DECAYS = (0.0, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999, 1.0)  # 9: C = 1 fills a vector register
SHAPES = ((1, 4, 4, 1), (4, 8, 8, 3), (16, 16, 16, 3), (2, 8, 8, 16))
APIS = ("contrib", "keras", "nn")

print("TensorFlow %s, oneDNN %s, CPU; steps 3, decays %s:"
      % (backend.tensorflow().__version__, "on" if backend.onednn() else "off",
         ", ".join(map(str, DECAYS))))
print()
print("| api | fused | input | bit-identical | statistics | outputs | gap | bound |")
print("|---|---|---|---|---|---|---|---|")
for api in APIS:
    for fused in (True, False):
        for shape in SHAPES:
            options = dict(api=api, fused=fused, shape=shape, steps=3, device="cpu")
            found = [deviation(swept, probe(decay=decay, **options))
                     for decay, swept in zip(DECAYS, sweep(DECAYS, **options))]
            worst = [max(getattr(f, field) for f in found)
                     for field in ("statistics", "outputs", "gap")]
            print("| %s | %s | %s | %d of %d | %s | %s | %s | %.0f |"
                  % (api, "yes" if fused else "no", list(shape),
                     sum(f.identical for f in found), len(found),
                     *("%.3g" % w if w else "0" for w in worst),
                     sweep_bound(probe(decay=0.0, **dict(options, steps=1)))))
print()
print("statistics: every variable at every step and the batch statistics, in float32 ulps of "
      "their value; outputs and gap: in float32 ulps of M = max (|x| + |mean|) / "
      "sqrt(variance + epsilon); bound: 2 + sqrt(N*H*W) ulps (twice that for the gap).")
assert np.isfinite(worst).all()
