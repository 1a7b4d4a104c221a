"""What a command writes: text and JSON to stdout, and files written whole or not at all.

On stdout a reader that closed the pipe early (``| head``) is noted rather than raised; files
(--json PATH, --csv) are checked writable before the work starts."""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Dict

from ..errors import ProbeConfigError
from ..values import to_json


class Output:
    """A command's stdout. ``closed``: the reader went away while the command was writing."""

    def __init__(self) -> None:
        self.closed = False

    def emit(self, text: str) -> None:
        """Prints ``text`` and a newline, unless the reader has gone."""
        if self.closed:
            return
        try:
            print(text)
            sys.stdout.flush()
        except BrokenPipeError:
            self.close()

    def close(self) -> None:
        """The reader has gone: later writes, and Python's own flush at exit, go to devnull."""
        self.closed = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def json(self, document: Dict[str, Any], path: str) -> None:
        """``document`` as JSON to stdout (``path`` '-') or to the file ``path``."""
        if path == "-":
            self.emit(to_json(document))
        else:
            self.write_file(path, to_json(document) + "\n", "--json")

    @staticmethod
    def write_file(path: str, text: str, flag: str) -> None:
        """Writes ``text`` to ``path``. A regular file (or a new one) is written through a
        temporary file beside it, renamed when complete: an interrupted or failed write leaves
        the old file (or none), never a part. Anything else (/dev/stdout, a FIFO) is written
        to directly."""
        try:
            target = os.path.realpath(path)
            if os.path.exists(target) and not os.path.isfile(target):
                with open(target, "w") as handle:
                    handle.write(text)
                return
            _replace(target, text)
        except OSError as exc:  # e.g. a full disk: opening it worked before the run
            raise ProbeConfigError("%s %s cannot be written: %s"
                                   % (flag, path, exc.strerror or exc)) from None


def _replace(target: str, text: str) -> None:
    """``target`` replaced by a file holding ``text``, with the old file's permissions (a new
    file's: what the umask leaves of 0666)."""
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle = tempfile.NamedTemporaryFile("w", dir=os.path.dirname(target), delete=False,
                                         prefix=".%s." % os.path.basename(target))
    try:
        with handle:
            handle.write(text)
        os.chmod(handle.name, mode)
        os.replace(handle.name, target)
    except BaseException:
        os.remove(handle.name)
        raise


def check_writable(path: str, flag: str = "--json") -> None:
    """Fails now, before TensorFlow loads and work starts, if ``flag PATH`` cannot be written
    later. Only --json also takes '-' (stdout)."""
    alternative = " or -" if flag == "--json" else ""
    if not path:
        raise ProbeConfigError("%s needs a file path%s, got ''" % (flag, alternative))
    if os.path.isdir(path):
        raise ProbeConfigError("%s %s is a directory; give a file path%s"
                               % (flag, path, alternative))
    existed = os.path.exists(path)
    try:
        open(path, "a").close()
    except OSError as exc:
        raise ProbeConfigError("%s %s cannot be written: %s"
                               % (flag, path, exc.strerror)) from None
    if not existed:
        os.remove(path)
