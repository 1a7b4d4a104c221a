# `make run`: set everything up (first time only) and run the seed experiment.
# `make test`: set everything up (first time only) and run the test suite.
# The venv lives in .venv and uses a Python 3.7 found by scripts/find-python37.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?= --decay 0 --decay 1
PYTEST_ARGS ?=

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	@if ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 7))' 2>/dev/null; then \
	  py37="$$(scripts/find-python37)" || exit 1; \
	  echo "creating $(VENV) with $$py37"; \
	  rm -rf $(VENV) && "$$py37" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

run: setup
	$(PY) run_experiment.py $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
