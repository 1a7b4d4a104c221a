"""Keyword-only arguments that say so: a call that passes too many arguments by position, or a
shape where the inputs go, gets a ProbeConfigError naming the keyword to use (no TensorFlow)."""
from __future__ import annotations

import functools
import numbers
from typing import Any, Callable, Sequence, TypeVar

from ..errors import ProbeConfigError

Function = TypeVar("Function", bound=Callable[..., Any])


def positional_up_to(names: Sequence[str]) -> Callable[[Function], Function]:
    """Decorates a function whose parameters after ``names`` are keyword-only: an extra
    positional argument raises ProbeConfigError naming the keyword it was probably meant for
    (the next parameter in the signature), instead of Python's TypeError."""
    def decorate(function: Function) -> Function:
        import inspect

        keywords = [p.name for p in inspect.signature(function).parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY]

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if len(args) > len(names):
                extra = args[len(names)]
                meant = keywords[0] if keywords else "a keyword"
                raise ProbeConfigError(
                    "%s() takes %s by position, the rest by keyword: got %r as argument %d; "
                    "pass %s=%r" % (function.__name__, _listed(names), extra,
                                    len(names) + 1, meant, extra))
            return function(*args, **kwargs)

        return checked  # type: ignore[return-value]
    return decorate


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else "%s and %s" % (", ".join(names[:-1]), names[-1])


def check_not_a_shape(inputs: Any) -> None:
    """``probe(0.9, (1, 4, 4, 1))`` passes a shape as ``inputs``: say so, where the array check
    would only complain about its dtype."""
    if isinstance(inputs, (tuple, list)) and len(inputs) == 4 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in inputs):
        raise ProbeConfigError("inputs %r is a shape, not an array [N, H, W, C]: pass "
                               "shape=%r to draw an input of that shape"
                               % (inputs, tuple(inputs)))
