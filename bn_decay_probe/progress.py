"""The progress bar of a long run (over many decays, or a repair's batches): tqdm on stderr,
shown only once the run has taken about a second, and only to a person (stdout a terminal, no
--quiet)."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator, Optional

SHOW_AFTER = 1.0  # seconds: a quick run prints no bar at all


@contextlib.contextmanager
def bar(total: Optional[int], enabled: bool,
        unit: str = "decay") -> Iterator[Optional[Callable[[int], Any]]]:
    """Yields the bar's ``update`` (call it with the units finished), or None if disabled.
    ``total`` None: unknown (a count, no percentage)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm  # only when a bar may be shown: it is not free to import

    with tqdm(total=total, unit=unit, delay=SHOW_AFTER, leave=False, file=sys.stderr,
              dynamic_ncols=True) as progress:
        yield progress.update


def wanted(quiet: bool) -> bool:
    """A bar helps a person at a terminal; in a pipe or a log it is noise."""
    return not quiet and sys.stdout.isatty()
