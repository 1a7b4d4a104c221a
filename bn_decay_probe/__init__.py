"""Measure what batch norm's decay does to its moving statistics in TensorFlow 1.x graphs.

Importing this package does not import TensorFlow; the first probe does.
"""
__version__ = "0.1.0"

from .api import probe  # noqa: E402
from .config import ProbeConfig  # noqa: E402
from .doctor import Diagnosis, Finding, diagnose_checkpoint, diagnose_graph  # noqa: E402
from .matrix import SemanticsMatrix, semantics_matrix  # noqa: E402
from .errors import DeviceFallbackWarning, ProbeConfigError  # noqa: E402
from .repair import RepairResult, recalibrate, recalibrate_checkpoint  # noqa: E402
from .result import Convergence, DeviceReport, ProbeResult, VariableInfo  # noqa: E402
from .sweep import SweepResult, sweep  # noqa: E402  (the function hides its module's name)
from .verbosity import set_verbosity  # noqa: E402

__all__ = ["probe", "ProbeConfig", "ProbeConfigError", "ProbeResult", "DeviceReport",
           "VariableInfo", "Convergence", "DeviceFallbackWarning", "semantics_matrix",
           "SemanticsMatrix", "diagnose_checkpoint", "diagnose_graph", "Diagnosis", "Finding",
           "sweep", "SweepResult", "recalibrate", "recalibrate_checkpoint", "RepairResult",
           "set_verbosity", "__version__"]
