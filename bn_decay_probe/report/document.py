"""The probe command's JSON document: every result's to_dict(), and the steps to converge."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from .._version import __version__


def json_document(results: Sequence[Any],
                  tol: Optional[float] = None) -> Dict[str, Any]:
    """The CLI's --json: every result's to_dict() under "results"; with ``tol``, also "tol" and
    "steps_to_converge", one per result at that tol (with "why_never"; None for a result
    trained on batches)."""
    document: Dict[str, Any] = {"bn_decay_probe": __version__,
                                "results": [r.to_dict() for r in results]}
    if tol is not None:
        document["tol"] = tol
        document["steps_to_converge"] = [None if r.batches is not None
                                         else r.steps_to_converge(tol).to_dict()
                                         for r in results]
    return document
