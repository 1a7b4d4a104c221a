"""Measure what batch norm's decay does to its moving statistics in TensorFlow 1.x graphs.

Importing this package does not import TensorFlow; the first probe does.
"""
from ._version import __version__
from .doctor import Diagnosis, Finding, diagnose_checkpoint, diagnose_graph
from .errors import (BackendUnavailableError, BnDecayProbeError, CheckpointError, DataError,
                     DeviceFallbackWarning, FrameworkError, GraphStructureError,
                     PlotUnavailableError, ProbeConfigError, UnsharedVariablesError)
from .port import PortCheck, check_port
from .probe.api import probe, sweep
from .probe.config import ProbeConfig
from .probe.matrix import SemanticsMatrix, semantics_matrix
from .probe.result import Convergence, DeviceReport, ProbeResult, VariableInfo
from .probe.sweep_result import SweepResult
from .repair import RepairResult, recalibrate, recalibrate_checkpoint
from .verbosity import set_verbosity

__all__ = ["probe", "ProbeConfig", "ProbeConfigError", "ProbeResult", "DeviceReport",
           "VariableInfo", "Convergence", "DeviceFallbackWarning", "semantics_matrix",
           "SemanticsMatrix", "diagnose_checkpoint", "diagnose_graph", "Diagnosis", "Finding",
           "sweep", "SweepResult", "recalibrate", "recalibrate_checkpoint", "RepairResult",
           "set_verbosity", "__version__", "BnDecayProbeError", "CheckpointError", "DataError",
           "BackendUnavailableError", "PlotUnavailableError", "GraphStructureError",
           "UnsharedVariablesError", "FrameworkError", "check_port", "PortCheck"]
