# `make run`:  set everything up (first time only) and run the seed experiment.
# `make test`: set everything up (first time only) and run the test suite.
# BACKEND=tf1 (default): TensorFlow 1.15 on Python 3.7, in .venv (requirements.txt).
# BACKEND=tf2: TensorFlow 2.21 + tf-keras + tf-slim through tf.compat.v1, on Python 3.12 (else 3.13,
#              3.11, 3.10; PYTHON_TF2 names one), in .venv-tf2 (requirements-tf2.txt), with
#              PyTorch, JAX/Flax/Haiku and ONNX beside it (requirements-frameworks.txt).
# `make cross`: the cross-backend test (needs both set up; `make test` for each does that).
BACKEND ?= tf1
ifeq ($(BACKEND),tf1)
  VENV := .venv
  REQUIREMENTS := requirements.txt
  PYTHON_VAR := PYTHON37
  VERSIONS := 3.7
else ifeq ($(BACKEND),tf2)
  VENV := .venv-tf2
  # TF 2.21 and the other frameworks (PyTorch, JAX/Flax/Haiku, ONNX) beside it.
  REQUIREMENTS := requirements-tf2.txt requirements-frameworks.txt
  PYTHON_VAR := PYTHON_TF2
  VERSIONS := 3.12 3.13 3.11 3.10
else
  $(error BACKEND must be tf1 or tf2, got '$(BACKEND)')
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?= --decay 0 --decay 1
PYTEST_ARGS ?=

.PHONY: setup run test cross package clean

setup: $(STAMP)

# The venv is made anew when the interpreter find-python picks changed, or when the requirement
# files differ from the ones it was made from (so no package of an older set stays behind, e.g.
# tensorflow-cpu 2.13 next to tensorflow 2.21); otherwise only the package is reinstalled.
$(STAMP): $(REQUIREMENTS) pyproject.toml setup.py
	@python="$$(scripts/find-python $(PYTHON_VAR) $(VERSIONS))" || exit 1; \
	if ! cat $(REQUIREMENTS) | cmp -s - $(VENV)/requirements.txt || \
	   [ "$$($(PY) -c 'import sys; print(sys.version_info[:2])' 2>/dev/null)" != \
	     "$$("$$python" -c 'import sys; print(sys.version_info[:2])')" ]; then \
	  echo "creating $(VENV) with $$python"; \
	  rm -rf $(VENV) && "$$python" -m venv $(VENV) || exit 1; \
	  $(PY) -m pip install --quiet --disable-pip-version-check \
	    $(addprefix -r ,$(REQUIREMENTS)) || exit 1; \
	  cat $(REQUIREMENTS) > $(VENV)/requirements.txt; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

run: setup
	$(PY) run_experiment.py $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

cross:
	$(MAKE) setup BACKEND=tf1
	$(MAKE) setup BACKEND=tf2
	BN_DECAY_PROBE_OTHER_PYTHON=$(CURDIR)/.venv-tf2/bin/python .venv/bin/python -m pytest tests/test_cross_backend.py tests/test_repair_cross_backend.py tests/test_doctor_cross_backend.py $(PYTEST_ARGS)

# The sdist and the wheel, `twine check`, and `pip install .` into fresh venvs (scripts/check-package).
package:
	scripts/check-package

clean:
	rm -rf .venv .venv-tf2 *.egg-info build

# `make docs`: regenerate every command output shown in README.md and docs/*.md from the
# <!-- make-docs: ... --> markers (scripts/make_docs.py; docs/internals.md says how).
# `make docs-check`: write nothing, fail with a diff when a committed output is stale (CI).
.PHONY: docs docs-check
docs docs-check:
	@$(MAKE) --no-print-directory setup BACKEND=tf1
	@$(MAKE) --no-print-directory setup BACKEND=tf2
	.venv/bin/python scripts/make_docs.py $(if $(filter docs-check,$@),--check) $(DOCS_ARGS)
