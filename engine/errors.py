"""The error names of llama-index-workflows' ``workflows.errors``, for programs that import them
from there: ``from workflows.errors import X`` becomes ``from engine.errors import X``.

Each name is jetloom's own class; the whole tree, with what each error means, is in
``engine.model.errors``.
"""

from __future__ import annotations

from engine.model.errors import (
    ContextSerdeError,
    ContextStateError,
    WorkflowCancelledByUser,
    WorkflowConfigurationError,
    WorkflowDone,
    WorkflowRuntimeError,
    WorkflowStepDoesNotExistError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)

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
