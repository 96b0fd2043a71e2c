"""The error names of llama-index-workflows' ``workflows.errors``, for programs that import them
from there: ``from workflows.errors import X`` becomes ``from engine.errors import X``.

Each name is jetloom's own class (the tree is in ``engine.model.errors``); names that module does
not define (yet) are looked up on first use and raise ``AttributeError`` if it still lacks them.
"""

# ruff: noqa: F822  (names in __all__ that the module-level __getattr__ below provides, PEP 562)
from __future__ import annotations

import importlib
from typing import Any

from engine.model.errors import WorkflowRuntimeError, WorkflowTimeoutError, WorkflowValidationError

__all__ = [
    "ContextSerdeError",
    "ContextStateError",
    "WorkflowCancelledByUser",
    "WorkflowConfigurationError",
    "WorkflowDone",
    "WorkflowRuntimeError",
    "WorkflowStepDoesNotExistError",
    "WorkflowTimeoutError",
    "WorkflowValidationError",
]

_LATER = {
    "ContextSerdeError": "engine.model.errors",
    "ContextStateError": "engine.model.errors",
    "WorkflowCancelledByUser": "engine.model.errors",
    "WorkflowConfigurationError": "engine.model.errors",
    "WorkflowDone": "engine.model.errors",
    "WorkflowStepDoesNotExistError": "engine.model.errors",
}


def __getattr__(name: str) -> Any:
    module = _LATER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} ({module} does not define it)") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
