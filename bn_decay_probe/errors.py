"""Every exception and warning bn_decay_probe raises, and the exit status each means.

Each exception class carries ``exit_code``, the status the command line exits with when it
ends a command: the CLI catches :class:`BnDecayProbeError` in one place, prints its one-line
message and exits with that code. The statuses:

- 0 ``EXIT_OK``: done (the doctor and port: clean);
- 1 ``EXIT_FINDINGS``: the doctor or port found problems;
- 2 ``EXIT_BAD_INPUT``: bad input (arguments, files, data), or a missing or unsupported backend;
- 3 ``EXIT_INCOMPLETE``: no finding, but something could not be checked;
- 70 ``EXIT_INTERNAL``: the graph TensorFlow built is not what the probe expects, or another
  framework failed while measuring (a bug, or a change of that framework; please report it);
- 130 ``EXIT_INTERRUPTED``: Ctrl-C;
- 141 ``EXIT_BROKEN_PIPE``: the reader closed the pipe (``| head``), as SIGPIPE ends a filter.
"""

import re
from typing import Any

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_INTERNAL = 70  # sysexits.h's EX_SOFTWARE
EXIT_INTERRUPTED = 128 + 2  # what a shell reports for a command SIGINT ended
EXIT_BROKEN_PIPE = 128 + 13  # ... and for a filter SIGPIPE ended


class BnDecayProbeError(Exception):
    """Base of every bn_decay_probe exception. The message is one line that says what was wrong
    and what is allowed, so the command line can print it as it is."""

    exit_code = EXIT_BAD_INPUT


class ProbeConfigError(BnDecayProbeError, ValueError):
    """A probe, doctor or repair was asked for something it cannot do: a bad argument, or (the
    subclasses) a file or data that cannot be used."""


class CheckpointError(ProbeConfigError):
    """A checkpoint or model file cannot be found, read or used (missing, damaged, of another
    kind, or not fitting its graph)."""


class DataError(ProbeConfigError):
    """The repair's data cannot be read or does not fit the model's input."""


class BackendUnavailableError(BnDecayProbeError, ImportError):
    """TensorFlow is missing or is a version the probe does not support; the message names the
    package to install."""


class PlotUnavailableError(BnDecayProbeError, ImportError):
    """A plot was asked for, but matplotlib is not installed."""


class GraphStructureError(BnDecayProbeError, RuntimeError):
    """The graph TensorFlow built is not shaped as the probe expects (a bug, or a TF change)."""

    exit_code = EXIT_INTERNAL


class FrameworkError(BnDecayProbeError, RuntimeError):
    """Another framework (PyTorch, JAX, Keras 3 on another backend in its child process) failed
    while measuring, in a way the probe does not expect (a bug, or a change of that framework)."""

    exit_code = EXIT_INTERNAL


class UnsharedVariablesError(GraphStructureError):
    """Shared variables were asked for, but the test branch reads variables the train branch
    does not have."""


class DeviceFallbackWarning(UserWarning):
    """device="auto" found no GPU and ran on the CPU."""


# TF 2.x puts a header before the reason of an error in a Session.run, then where the failing op
# was defined (the stack of the program that built it) up to a "Node: 'name'" line.
_HEADER = "Graph execution error:"
_DEFINED_AT = re.compile(r"^Detected at node .* defined at \(most recent call last\):$")
_NODE = re.compile(r"^Node: '.*'$")


def first_line(error: Any) -> str:
    """The first line that says something of an exception (TensorFlow's ``message`` when it has
    one) or a message, for a one-line error: TF 2.x's "Graph execution error:" header, the
    stack of where the failing op was defined and its "Node:" line are skipped; an exception
    that says nothing is named by its type."""
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    kept, skipping = [], False
    for line in lines:
        if line == _HEADER:
            continue
        if _DEFINED_AT.match(line):
            skipping = True
        elif skipping and _NODE.match(line):
            skipping = False
        elif not skipping:
            kept.append(line)
    lines = kept or lines
    if lines:
        return lines[0]
    return type(error).__name__ if isinstance(error, BaseException) else "no reason given"
