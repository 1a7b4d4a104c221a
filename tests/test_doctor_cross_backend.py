"""TF 1.15's and TF 2.x's doctors give the same verdict on every checkpoint of the real-model
suite (tests/real_models.py: each CI model and case, its tf.train.Saver checkpoint and, for Keras,
its save_weights one) and of the cases users hit (tests/pattern_models.py), whichever of them
wrote it: this side (TF 1.15) writes all of them, the other side (TF 2.x) the cases whose graphs
differ most between the two (control flow v2 conds, stateless initializers TF 1.15 lacks).

The verdict compared is what a user acts on: the status, each finding's layer, code and
severity, what was not checked, and which layers are frozen. `make cross` runs this with
BN_DECAY_PROBE_OTHER_PYTHON naming the other backend's interpreter."""
import json
import os
import subprocess

import pytest

OTHER = os.environ.get("BN_DECAY_PROBE_OTHER_PYTHON")
pytestmark = pytest.mark.skipif(not OTHER, reason="needs BN_DECAY_PROBE_OTHER_PYTHON: `make cross`")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

REAL = [(model, case) for model in ("slim_resnet_v1_50", "keras_mobilenet_v2")
        for case in ("correct", "forgot_update_ops", "too_few_steps", "inference_mode",
                     "unshared_copy")]
# (Each backend's suite checks each case's verdict on its own checkpoints; these are the ones
# whose files differ most between writers, as many as `make cross` has time for.)
PATTERNS = (["blog-%s" % api for api in ("contrib", "slim", "layers", "keras")] +
            ["blog-keras-shared", "frozen-slim_resnet_v1_50", "two_train_ops",
             "planted-keras_mobilenet_v2", "estimator", "estimator-forgot"])
MINE = (["%s-%s-%s" % (model, case, kind) for model, case in REAL
         for kind in (("saver", "weights") if model.startswith("keras") else ("saver",))] +
        PATTERNS)
THEIRS = ["blog-keras", "blog-slim", "two_train_ops", "keras_mobilenet_v2-inference_mode-saver"]


def build(names, directory):
    """name -> the prefix of the checkpoint this backend writes for it (in ``directory``)."""
    import math

    import pattern_models
    import real_models

    cache = real_models.Cache(os.path.join(directory, "real"))
    built = {}
    for name in names:
        where = os.path.join(directory, name)
        parts = name.split("-")
        if parts[0] in real_models.MODELS:
            trained = cache(parts[0], parts[1])
            built[name] = trained.saver_prefix if parts[2] == "saver" else \
                trained.weights_prefix
        elif parts[0] == "blog":
            built[name] = pattern_models.blog(parts[1], where, share=name.endswith(
                "shared")).prefix
        elif parts[0] == "frozen":
            built[name] = pattern_models.frozen(parts[1], cache(parts[1], "correct"), where)
        elif parts[0] == "planted":
            built[name] = pattern_models.plant(
                cache(parts[1], "correct").saver_prefix, where,
                {"bn_Conv1/moving_variance": {0: math.nan}})
        elif parts[0] == "estimator":  # (TF 1.15 only: TF 2.16 removed tf.estimator)
            built[name] = pattern_models.estimator(where, forgot=name.endswith("forgot"))
        else:
            built[name] = getattr(pattern_models, name)(where)
    return built


def verdicts(prefixes):
    """prefix -> the verdict a user acts on, as JSON values."""
    from bn_decay_probe import diagnose_checkpoint

    found = {}
    for prefix in prefixes:
        d = diagnose_checkpoint(prefix).to_dict()
        found[prefix] = {"status": d["status"], "not_checked": d["not_checked"],
                         "findings": [[f["layer"], f["code"], f["severity"]]
                                      for f in d["findings"]],
                         "frozen": [layer["name"] for layer in d["layers"] if layer["frozen"]],
                         "graph": d["graph_source"] is not None}
    return found


def _other(code, payload):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([OTHER, "-c", code], input=json.dumps(payload), env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from bn_decay_probe import backend

    assert backend.name() == "tf1", "run this side on TF 1.15 (`make cross`)"
    mine = build(MINE, str(tmp_path_factory.mktemp("tf1")))
    theirs = _other("import json, sys; from test_doctor_cross_backend import build; "
                    "print(json.dumps(build(%r, %r)))"
                    % (THEIRS, str(tmp_path_factory.mktemp("tf2"))), None)
    written = {("tf1", name): prefix for name, prefix in mine.items()}
    written.update((("tf2", name), prefix) for name, prefix in theirs.items())
    prefixes = sorted(set(written.values()))
    here = verdicts(prefixes)
    there = _other("import json, sys; from test_doctor_cross_backend import verdicts; "
                   "print(json.dumps(verdicts(json.load(sys.stdin))))", prefixes)
    return written, here, there


CASES = [("tf1", name) for name in MINE] + [("tf2", name) for name in THEIRS]


@pytest.mark.parametrize("writer, name", CASES, ids=["%s-wrote-%s" % case for case in CASES])
def test_both_doctors_give_the_same_verdict(checkpoints, writer, name):
    written, here, there = checkpoints
    prefix = written[writer, name]
    assert here[prefix]["graph"] == (not name.endswith("-weights"))  # both read the .meta
    assert there[prefix] == here[prefix]

