"""Everything but the license is in pyproject.toml. The license is set here because its form
depends on setuptools: from 77 an SPDX expression (License-Expression, PEP 639), before that the
License field; setuptools 77 needs Python >= 3.9, and the TF 1.15 backend builds on Python 3.7."""
import setuptools
from setuptools import setup

LICENSE = "Apache-2.0"

if int(setuptools.__version__.split(".")[0]) >= 77:
    setup(license_expression=LICENSE)
else:
    setup(license=LICENSE)
