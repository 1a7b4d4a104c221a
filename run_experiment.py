#!/usr/bin/env python
"""The blog experiment (docs/blog-experiment/) as a script:
``python run_experiment.py --decay 0 --decay 1``.

A thin wrapper over ``bn_decay_probe.cli``; ``--help`` lists every option.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # runs from a plain checkout too

from bn_decay_probe.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="run_experiment.py"))
