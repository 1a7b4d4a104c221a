"""Measure what batch norm's decay does to its moving statistics in TensorFlow 1.x graphs.

Importing this package does not import TensorFlow; the first probe does.
"""
from . import interrupts as _interrupts

_interrupts.while_loading()  # first: Ctrl-C while a command line loads (interrupts.py)

from ._version import __version__  # noqa: E402
from .doctor import Diagnosis, Finding, diagnose_checkpoint, diagnose_graph  # noqa: E402
from .errors import (BackendUnavailableError, BnDecayProbeError, CheckpointError,  # noqa: E402
                     DataError, DeviceFallbackWarning, FrameworkError, GraphStructureError,
                     PlotUnavailableError, ProbeConfigError, UnsharedVariablesError)
from .port import PortCheck, check_port  # noqa: E402
from .probe.api import probe, sweep  # noqa: E402
from .probe.config import ProbeConfig  # noqa: E402
from .probe.matrix import SemanticsMatrix, semantics_matrix  # noqa: E402
from .probe.result import Convergence, DeviceReport, ProbeResult, VariableInfo  # noqa: E402
from .probe.sweep_result import SweepResult  # noqa: E402
from .repair import RepairResult, recalibrate, recalibrate_checkpoint  # noqa: E402
from .verbosity import set_verbosity  # noqa: E402

__all__ = ["probe", "ProbeConfig", "ProbeConfigError", "ProbeResult", "DeviceReport",
           "VariableInfo", "Convergence", "DeviceFallbackWarning", "semantics_matrix",
           "SemanticsMatrix", "diagnose_checkpoint", "diagnose_graph", "Diagnosis", "Finding",
           "sweep", "SweepResult", "recalibrate", "recalibrate_checkpoint", "RepairResult",
           "set_verbosity", "__version__", "BnDecayProbeError", "CheckpointError", "DataError",
           "BackendUnavailableError", "PlotUnavailableError", "GraphStructureError",
           "UnsharedVariablesError", "FrameworkError", "check_port", "PortCheck"]
