import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"',
                    (HERE / "bn_decay_probe" / "__init__.py").read_text(), re.M).group(1)

setup(
    name="bn-decay-probe",
    version=VERSION,
    description="Measure what batch norm's decay does to moving_mean / moving_variance in "
                "TensorFlow 1.x graphs",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["bn_decay_probe", "bn_decay_probe.*"]),
    python_requires=">=3.7",
    # TensorFlow is not required here so that either backend (and the -gpu or CPU wheel) can
    # be chosen; requirements.txt / requirements-tf2.txt pin the tested sets. tqdm: the progress
    # bar of long sweeps (`delay` needs >= 4.60).
    install_requires=["numpy>=1.16", "tqdm>=4.60"],
    extras_require={
        "tf1": ['tensorflow-gpu==1.15.5; python_version == "3.7"',
                'protobuf==3.20.3; python_version == "3.7"', 'numpy<1.19'],
        "tf2": ['tensorflow-cpu>=2.12,<2.15; python_version >= "3.8"', "tf-slim==1.1.0"],
        # sweep plots (Figure.subplots, log scales' `nonpositive`)
        "plot": ["matplotlib>=3.3"],
    },
    entry_points={
        "console_scripts": ["bn-decay-probe = bn_decay_probe.cli:main"],
        "pytest11": ["bn_decay_probe = bn_decay_probe.pytest_plugin"],
    },
    classifiers=["Programming Language :: Python :: 3.7", "Programming Language :: Python :: 3.8",
                 "Programming Language :: Python :: 3.9", "Programming Language :: Python :: 3.10",
                 "Programming Language :: Python :: 3.11", "Framework :: Pytest"],
)
