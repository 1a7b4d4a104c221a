# `make run`:  set everything up (first time only) and run the seed experiment.
# `make test`: set everything up (first time only) and run the test suite.
# BACKEND=tf1 (default): TensorFlow 1.15 on Python 3.7, in .venv (requirements.txt).
# BACKEND=tf2: TensorFlow 2.13 + tf-slim through tf.compat.v1, on Python 3.8-3.11, in .venv-tf2
#              (requirements-tf2.txt).
# `make cross`: the cross-backend test (needs both set up; `make test` for each does that).
BACKEND ?= tf1
ifeq ($(BACKEND),tf1)
  VENV := .venv
  REQUIREMENTS := requirements.txt
  PYTHON_VAR := PYTHON37
  VERSIONS := 3.7
else ifeq ($(BACKEND),tf2)
  VENV := .venv-tf2
  REQUIREMENTS := requirements-tf2.txt
  PYTHON_VAR := PYTHON_TF2
  VERSIONS := 3.11 3.10 3.9 3.8
else
  $(error BACKEND must be tf1 or tf2, got '$(BACKEND)')
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?= --decay 0 --decay 1
PYTEST_ARGS ?=

.PHONY: setup run test cross clean

setup: $(STAMP)

$(STAMP): $(REQUIREMENTS) setup.py
	@if ! $(PY) -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] not in '$(VERSIONS)'.split())" 2>/dev/null; then \
	  python="$$(scripts/find-python $(PYTHON_VAR) $(VERSIONS))" || exit 1; \
	  echo "creating $(VENV) with $$python"; \
	  rm -rf $(VENV) && "$$python" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

run: setup
	$(PY) run_experiment.py $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

cross:
	$(MAKE) setup BACKEND=tf1
	$(MAKE) setup BACKEND=tf2
	BN_DECAY_PROBE_OTHER_PYTHON=$(CURDIR)/.venv-tf2/bin/python .venv/bin/python -m pytest tests/test_cross_backend.py $(PYTEST_ARGS)

clean:
	rm -rf .venv .venv-tf2 *.egg-info

# `make docs`: regenerate every command output shown in README.md and docs/*.md from the
# <!-- make-docs: ... --> markers (scripts/make_docs.py; docs/internals.md says how).
# `make docs-check`: write nothing, fail with a diff when a committed output is stale (CI).
.PHONY: docs docs-check
docs docs-check:
	@$(MAKE) --no-print-directory setup BACKEND=tf1
	@$(MAKE) --no-print-directory setup BACKEND=tf2
	.venv/bin/python scripts/make_docs.py $(if $(filter docs-check,$@),--check) $(DOCS_ARGS)
