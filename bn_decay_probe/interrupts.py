"""Ctrl-C: in a command-line process before cli.main can answer it, and held back where it
must not cut (a repair's file moves, importing TensorFlow, Keras, tf_keras and PyTorch).

Importing the package (numpy, the modules) takes a few tenths of a second; Ctrl-C then would
print Python's traceback, or, landing inside an extension module's import, turn into an
ImportError. While the package loads in a command-line process (bn-decay-probe,
run_experiment.py, python -m bn_decay_probe), SIGINT ends the process at once with the command
line's one line and status 130: nothing has been written yet. cli.main then gives Python's own
handler back, and turns the KeyboardInterrupt it raises into the same line, after the writes in
progress have cleaned up. Library imports (a notebook, a test) keep Python's handler.

:func:`held` keeps Ctrl-C out of a block that must not be cut: moving a repair's files, and
importing TensorFlow (and Keras, tf_keras and PyTorch). A KeyboardInterrupt raised inside
TensorFlow's import was measured (TF 2.21, Ctrl-C 1 to 3.5 s after its library is mapped) to be
swallowed by it, the command then running to the end with status 0, or to leave it
half-initialized, the command then ending in a traceback.
"""
import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, List

from .errors import EXIT_INTERRUPTED

_COMMANDS = ("bn-decay-probe", "run_experiment")
_held = []  # the handler replaced while loading, if any


def while_loading() -> None:
    """In a command-line process whose SIGINT is Python's default handler: exit at once."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if not (name.startswith(_COMMANDS) or (sys.argv and sys.argv[0] == "-m")):
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        _held.append(signal.signal(signal.SIGINT, _exit))


def _exit(number: int, frame: object) -> None:
    os.write(2, b"bn-decay-probe: interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def loaded() -> None:
    """Python's handler back (KeyboardInterrupt), once cli.main can answer it."""
    while _held:
        signal.signal(signal.SIGINT, _held.pop())


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Ctrl-C (SIGINT) during the block is held back and answered once the block is done, by the
    handler in place before it (Python's raises KeyboardInterrupt). Where SIGINT has no Python
    handler (ignored, as in a background job) or outside the main thread (where handlers cannot
    be set), the block runs as it is."""
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: List[int] = []
    signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        previous(signal.SIGINT, None)
